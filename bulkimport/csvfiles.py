"""Writing CSV downloads safely: UTF-8 with BOM for spreadsheets, every cell quoted, and
formula-like text neutralised wherever a spreadsheet could start a cell."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Where a spreadsheet may start a cell: the start of ours, and after any character that some
# reader takes for a delimiter or a line break when it ignores the quotes (a `;` locale reads
# `x;=cmd|' /C calc'!A0` as two cells, the second a formula).
_CELL_BREAKS = ",;\t|\r\n"
_FORMULA_AHEAD = "[=+\\-@\t\r']"  # a formula start, or ' itself so that `restore` is exact
_NEUTRALISE = re.compile(f"(^|[{_CELL_BREAKS}])(?={_FORMULA_AHEAD})")
_RESTORE = re.compile(f"(^|[{_CELL_BREAKS}])'(?={_FORMULA_AHEAD})")


def neutralise(value: object) -> str:
    """The cell as text with ' put before a formula start (or a ') at the start of the cell and
    after each delimiter or line break inside it, so that no spreadsheet runs it as a formula."""
    text = "" if value is None else str(value)
    return _NEUTRALISE.sub(r"\1'", text)


def restore(cell: str) -> str:
    """The value of a cell that `neutralise` wrote: the import reads our exports unchanged."""
    return _RESTORE.sub(r"\1", cell)


def csv_lines(rows: Iterable[Iterable[object]], delimiter: str = ",") -> Iterator[str]:
    """Encode rows one line at a time (for streaming responses), starting with a BOM; every cell
    is quoted, so that a spreadsheet of any locale keeps a cell's delimiters inside it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n",
                        quoting=csv.QUOTE_ALL)
    yield "\ufeff"
    for row in rows:
        writer.writerow([neutralise(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
