"""Bytes → Table: detect the encoding and delimiter, parse strictly, and map the headings.

Plain functions without Flask objects, so that the web, the CLI, the benchmarks and the tests
share them. Problems that make the whole file unusable raise `FileProblem`; problems of one row
(a wrong number of fields, say) are left to validation so that the other rows can still be used.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .encodings import Alternative, Reading, UndecodableFile, choose_reading
from .mapping import Mapping, heading_key, is_version_line, propose
from .problems import FileProblem
from .workbook import is_workbook, read_workbook

# Most columns a file may have (BULKIMPORT_MAX_COLUMNS): every column costs every page that shows
# the batch, and a 1.5 MB file of 200,000 columns made a 30 MB review page.
MAX_COLUMNS = 200

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}

ENCODING_NAMES = {
    "utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "utf-16": "UTF-16 with BOM",
    "cp1252": "Windows-1252", "iso8859-1": "ISO-8859-1", "iso8859-15": "ISO-8859-15",
    "cp1250": "Windows-1250", "mac-roman": "Mac Roman", "xlsx": "Excel workbook",
}
WORKBOOK = "xlsx"  # the encoding recorded for a workbook, whose cells are already text

# Signatures of common files that are not text, with what to tell the person who uploaded them.
BINARY_SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel workbook (.xls) or another Office file"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
)

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_QUOTED = re.compile('"[^"]*"')
_NEWLINE = re.compile("\r\n?|\n")
_NEWLINE_BYTES = re.compile(b"\r\n?|\n")


@dataclass(slots=True)
class Record:
    """One data row: the physical line it starts on, the line it ends on, and its cells."""

    line: int
    end_line: int
    cells: list[str]


@dataclass
class Table:
    """A parsed file: what was detected, the headings with their fields, and the data rows."""

    encoding: str
    delimiter: str
    headings: list[str]
    fields: list[str | None]
    records: list[Record] = field(default_factory=list)
    blank_rows: int = 0
    mapping: Mapping | None = None
    skipped_first_line: bool = False  # Entra's `version:v1.0` line before the headings
    # Other plausible readings of a file whose encoding is in doubt, to offer beside this one.
    alternatives: list[Alternative] = field(default_factory=list)
    sheets: list[str] = field(default_factory=list)  # a workbook's sheets, to choose from

    @property
    def encoding_name(self) -> str:
        """The encoding as a person would call it."""
        return ENCODING_NAMES.get(self.encoding, self.encoding)

    @property
    def delimiter_name(self) -> str:
        """The delimiter as a person would call it."""
        return DELIMITERS.get(self.delimiter, repr(self.delimiter)) if self.delimiter \
            else "none (a workbook)"

    @property
    def unknown_columns(self) -> list[str]:
        """Headings whose columns are not imported."""
        return [h for h, f in zip(self.headings, self.fields, strict=True) if f is None]

    def remap(self, mapping: Mapping) -> None:
        """Read the columns as `mapping` says (the administrator's or a saved choice)."""
        self.mapping = mapping
        self.fields = mapping.fields()

    def column(self, field_name: str) -> int | None:
        """Index of the column holding `field_name`, or None if the file has no such column."""
        try:
            return self.fields.index(field_name)
        except ValueError:
            return None


def read_table(
    data: bytes,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    fallbacks: tuple[str, ...] | list[str] = ("cp1252", "cp1250"),
    custom_fields: Iterable[str] = (),
    max_columns: int = MAX_COLUMNS,
    mapping: Mapping | None = None,
    require_mapped: bool = True,
    sheet: str | None = None,
) -> Table:
    """Parse an uploaded file; `encoding` and `delimiter` override detection when given.
    `custom_fields` are the symbolic names of the profile fields a heading may name; a line with
    more than `max_columns` fields refuses the file. Without `mapping`, the headings are mapped
    as `mapping.propose` reads them; `require_mapped` refuses a file whose mapping leaves a
    required field without a column (the web's mapping step asks instead). An Excel workbook
    is read from `sheet` (the first by default), its cells as the spreadsheet shows them."""
    alternatives: list[Alternative] = []
    sheets: list[str] = []
    if data.startswith(b"PK\x03\x04") or is_workbook(data):  # a ZIP: a workbook or not
        workbook = read_workbook(data, sheet, max_columns)
        used_encoding, used_delimiter, sheets = WORKBOOK, "", workbook.sheet_names
        rows: Iterator[Record] = _workbook_records(workbook.rows)
    else:
        _refuse_binary(data, encoding)
        reading = decode_reading(data, encoding, fallbacks)
        text, used_encoding, alternatives = reading.text, reading.codec, reading.alternatives
        if not text.strip():
            raise FileProblem("The file is empty.")
        _refuse_control_characters(text)
        used_delimiter = delimiter or detect_delimiter(text)
        rows = _parse(text, used_delimiter)

    first = next(rows, None)
    skipped = first is not None and is_version_line(first.cells)
    if skipped:
        first = next(rows, None)
    line = first.line if first is not None else 1
    if first is None or not any(cell.strip() for cell in first.cells):
        raise FileProblem(f"Line {line}: the first line must hold the column headings.", line)
    headings = [cell.strip() for cell in first.cells]
    while headings[-1] == "":  # Excel keeps empty columns that once held formatting
        headings.pop()
    width = len(headings)
    _refuse_too_wide(width, line, max_columns)
    records = list(rows)
    if mapping is None:
        mapping = propose(headings, custom_fields, [r.cells for r in records[:1000]])
    check_headings(headings, mapping, line)
    if require_mapped and mapping.missing:
        raise FileProblem(missing_message(mapping, line), line)
    fields = mapping.fields()
    table = Table(used_encoding, used_delimiter, headings, fields, mapping=mapping,
                  skipped_first_line=skipped, alternatives=alternatives, sheets=sheets)
    for record in records:
        if len(record.cells) > width and not any(c.strip() for c in record.cells[width:]):
            record.cells = record.cells[:width]  # empty cells of those empty columns
        _refuse_too_wide(len(record.cells), record.line, max_columns)
        if any(cell.strip() for cell in record.cells):
            table.records.append(record)
        else:
            table.blank_rows += 1
    if not table.records:
        raise FileProblem("The file has a heading line but no user rows.", line + 1)
    return table


def _workbook_records(rows: list[list[str]]) -> Iterator[Record]:
    """The rows of a sheet as records on their spreadsheet row numbers; a cell holding a
    control character refuses the file as it would in a CSV file."""
    for number, cells in enumerate(rows, start=1):
        for cell in cells:
            match = _CONTROL.search(cell)
            if match:
                raise FileProblem(
                    f"Line {number}: a cell contains the control character "
                    f"U+{ord(match.group()):04X}, which has no place in a user's details. Remove "
                    "it and upload again.", number)
        yield Record(number, number, cells)


def _refuse_too_wide(count: int, line: int, max_columns: int) -> None:
    """Raise FileProblem when a line has more fields than a file may have columns."""
    if count > max_columns:
        what = "the heading line has {:,} columns" if line == 1 else "the line has {:,} fields"
        raise FileProblem(
            f"Line {line}: {what.format(count)}; at most {max_columns:,} columns are "
            "accepted (BULKIMPORT_MAX_COLUMNS). Remove the columns that are not needed, or "
            "check the delimiter under Advanced.", line)


def check_headings(headings: list[str], mapping: Mapping, line: int = 1) -> None:
    """Raise FileProblem for a heading that is empty or repeats another, by name or by the field
    it is read as."""
    seen: dict[str, int] = {}
    for number, (heading, target) in enumerate(zip(headings, mapping.targets, strict=True), 1):
        if not heading:
            raise FileProblem(f"Line {line}: column {number} has no heading.", line)
        keys = {heading_key(heading) or heading.casefold()} | ({target} if target else set())
        for key in keys:
            if key in seen:
                raise FileProblem(
                    f"Line {line}: the heading “{heading}” (column {number}) duplicates column "
                    f"{seen[key]}; each column must appear once.", line)
        seen.update(dict.fromkeys(keys, number))


def missing_message(mapping: Mapping, line: int = 1, hint: str = "") -> str:
    """The refusal of a file whose mapping leaves required fields without a column."""
    missing = mapping.missing
    return (f"Line {line}: required column" + ("s" if len(missing) > 1 else "") + " missing: "
            + ", ".join(missing) + ". The first line must name the columns username, firstname, "
            "surname and email (found: " + ", ".join(mapping.headings) + ")." + hint)


def decode(data: bytes, encoding: str | None, fallbacks) -> tuple[str, str]:
    """Decode `data` with the override, else by BOM, else UTF-8, else the most plausible fallback.

    Returns the text and the codec name used. A UTF-8 BOM is never kept in the text.
    """
    reading = decode_reading(data, encoding, fallbacks)
    return reading.text, reading.codec


def decode_reading(data: bytes, encoding: str | None, fallbacks: Iterable[str]) -> Reading:
    """Decode `data` as `decode` does, with the other plausible readings when the fallbacks
    leave a doubt (see `encodings.choose_reading`); raises FileProblem when nothing decodes it."""
    if encoding:
        chosen = _codec(encoding)
        codec = "utf-8-sig" if chosen == "utf-8" else chosen
        try:
            return Reading(data.decode(codec), codec)
        except UnicodeDecodeError as exc:
            line, byte = _where(exc)
            raise FileProblem(
                f"Line {line}: the file is not valid {ENCODING_NAMES.get(chosen, chosen)} "
                f"(byte 0x{byte:02x}). Choose the right encoding under Advanced, or leave it on "
                "“Detect”.", line) from None
    if data.startswith(codecs.BOM_UTF8):
        first, candidates = "utf-8-sig", []
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        first, candidates = "utf-16", []
    else:
        first, candidates = "utf-8", [_codec(name) for name in fallbacks]
    failures = []  # (name, line, byte) of each candidate, which may each fail somewhere else
    try:
        return Reading(data.decode(first), first)
    except UnicodeDecodeError as exc:
        failures.append((ENCODING_NAMES.get(first, first), *_where(exc)))
    try:
        return choose_reading(data, candidates)
    except UndecodableFile as undecodable:
        failures += [(ENCODING_NAMES.get(codec, codec), *_where(exc))
                     for codec, exc in undecodable.failures]
    _, line, byte = failures[-1]  # where even the most lenient candidate fails
    names = [name for name, _, _ in failures]
    if len(failures) == 1:
        what = f"not valid {names[0]} (byte 0x{byte:02x} cannot be read)"
    elif len({(at, b) for _, at, b in failures}) == 1:
        what = f"neither {' nor '.join(names)} (byte 0x{byte:02x} cannot be read)"
    else:
        what = "neither " + " nor ".join(
            f"{name} (byte 0x{b:02x} on line {at} cannot be read)" for name, at, b in failures)
    raise FileProblem(
        f"Line {line}: the file is {what}. Save it as “CSV UTF-8”, or choose its encoding under "
        "Advanced.", line)


def detect_delimiter(text: str) -> str:
    """The most frequent of , ; tab | on the heading line, outside quotes; ',' when none occurs
    (a one-column file), since csv.Sniffer raises on those."""
    heading_line = _QUOTED.sub("", text.lstrip("\r\n").split("\n", 1)[0])
    counts = {d: heading_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])  # ties keep the order of DELIMITERS
    return best if counts[best] else ","


def _parse(text: str, delimiter: str):
    """Yield Records, turning csv errors into FileProblem with the line the row starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileProblem(_csv_error_message(exc, start, reader.line_num), start) from None
        yield Record(start, reader.line_num, cells)
        start = reader.line_num + 1


def _csv_error_message(exc: csv.Error, start: int, end: int) -> str:
    reason = str(exc)
    if "unexpected end of data" in reason:
        return (f"Line {start}: a quoted value that starts on this line is never closed "
                "(a \" is missing), so the rest of the file would be swallowed into one cell.")
    if "expected after" in reason:
        where = f"Line {start}" if start == end else f"Lines {start}–{end}"
        return (f"{where}: a quoted value is not closed properly — after a closing \" the next "
                "character must be the delimiter or the end of the line. Check the quotes.")
    if "field larger than field limit" in reason:
        return f"Line {start}: a value is far too long ({reason})."
    return f"Line {start}: the line cannot be read as CSV ({reason})."


def _refuse_binary(data: bytes, encoding: str | None) -> None:
    for signature, what in BINARY_SIGNATURES:
        if data.startswith(signature):
            raise FileProblem(
                f"This is {what}, not a CSV file. In your spreadsheet, use “Save as” and choose "
                "“CSV UTF-8 (comma delimited)”, then upload that file.")
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
        encoding and _codec(encoding).startswith("utf-16"))
    if not utf16 and b"\x00" in data:
        line = _line_of(data, data.index(b"\x00"))
        raise FileProblem(
            f"Line {line}: the file contains a NUL byte, so it is not a text file — or it is "
            "UTF-16 without a byte-order mark (then choose UTF-16 under Advanced).", line)


def _refuse_control_characters(text: str) -> None:
    match = _CONTROL.search(text)
    if match:
        line = _line_at(text, match.start())
        raise FileProblem(
            f"Line {line}: the file contains the control character U+{ord(match.group()):04X}, "
            "which has no place in a CSV file. Remove it and upload again.", line)


def _codec(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise FileProblem(f"“{name}” is not an encoding this server knows.") from None


def _line_of(data: bytes, offset: int) -> int:
    """The line of a byte of an ASCII-compatible file, counting line breaks as csv does."""
    return len(_NEWLINE_BYTES.findall(data, 0, offset)) + 1


def _line_at(text: str, offset: int) -> int:
    """The line of a character, counting \\r\\n, \\r and \\n as line breaks, as csv does."""
    return len(_NEWLINE.findall(text, 0, offset)) + 1


def _where(exc: UnicodeDecodeError) -> tuple[int, int]:
    """The line and the value of the byte a decoder refused. The offsets of `exc` are those of
    `exc.object`, which lacks the BOM that utf-8-sig strips; what precedes decoded fine."""
    before = exc.object[:exc.start].decode(exc.encoding, errors="replace")
    return _line_at(before, len(before)), exc.object[exc.start]
