"""Writing CSV downloads safely: UTF-8 with BOM for spreadsheets, formula-like cells neutralised."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    """The cell as text, prefixed with ' when a spreadsheet would run it as a formula (or when
    it starts with ' itself, so that `restore` gives back exactly the value)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS + ("'",)) else text


def restore(cell: str) -> str:
    """The value of a cell that `neutralise` wrote: the import reads our exports unchanged."""
    if len(cell) > 1 and cell[0] == "'" and cell[1] in "=+-@\t\r'":
        return cell[1:]
    return cell


def csv_lines(rows: Iterable[Iterable[object]], delimiter: str = ",") -> Iterator[str]:
    """Encode rows one line at a time (for streaming responses), starting with a BOM."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    yield "\ufeff"
    for row in rows:
        writer.writerow([neutralise(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
