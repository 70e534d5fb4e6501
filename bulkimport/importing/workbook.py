"""Excel workbooks (.xlsx, .xlsm) → rows of strings, read as a stream with openpyxl.

Cells come out as the administrator sees them in Excel: text unchanged (leading zeros kept),
numbers without a spurious ".0" and with at most the 15 significant digits Excel shows, dates as
ISO dates, formulas as the values Excel last calculated. The package is checked before it is
opened, so that a renamed file, a ZIP of something else or a zip bomb gets a clear `FileProblem`.
"""

from __future__ import annotations

import datetime
import io
import re
import zipfile
from dataclasses import dataclass
from decimal import Decimal

from .problems import FileProblem

WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")
WORKBOOK_PART = "xl/workbook.xml"

# Limits checked on the ZIP's central directory before anything is decompressed. zipfile stops
# every member at its declared size (and fails its CRC check beyond), so the declared sizes hold.
MAX_UNCOMPRESSED = 1024 * 1024 * 1024  # the whole package, unpacked
MAX_SHARED_STRINGS = 128 * 1024 * 1024  # the one part openpyxl holds in memory whole
MAX_RATIO = 100  # a sheet of user rows compresses about 8 to 1; bombs compress thousands to 1
RATIO_EXEMPT = 1024 * 1024  # small parts (styles, themes) may compress well and harm no one
MAX_PARTS = 10_000  # zipfile builds the whole central directory in memory, so count it first
MAX_ROWS = 1_048_576  # Excel's own limit; more means a damaged sheet numbering rows by itself

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")  # the stream of an encrypted .xlsx
_CENTRAL_ENTRY = b"PK\x01\x02"
_SHARED_STRINGS_PART = "xl/sharedStrings.xml"
_ZERO_PADDED = re.compile(r"0+")  # "00000": numbers shown with leading zeros (postcodes, ids)
# A number format's literals ("…", \x, [$-409], [Red]) say nothing about what it shows.
_FORMAT_LITERALS = re.compile(r'"[^"]*"|\\.|\[[^\]]*\]')
_TIME_TOKENS = re.compile(r"[hs]|am/pm|a/p", re.IGNORECASE)

SAVE_AS = ("Open it in your spreadsheet and use “Save as” to save it as an “Excel Workbook "
           "(.xlsx)” or as “CSV UTF-8 (comma delimited)”, then upload that file.")
DAMAGED = "This Excel workbook is damaged and cannot be read. " + SAVE_AS
# ZIP-based files that are not Excel workbooks, by a part only they have.
_OTHER_PACKAGES = (
    ("xl/workbook.bin", "an Excel binary workbook (.xlsb), which cannot be read"),
    ("word/document.xml", "a Word document, not a spreadsheet"),
    ("ppt/presentation.xml", "a PowerPoint presentation, not a spreadsheet"),
    ("content.xml", "an OpenDocument file (.ods or .odt), which cannot be read"),
)


@dataclass
class Workbook:
    """The rows of one sheet as strings, with the names of the sheets one may choose from.

    `rows[i]` is row `i + 1` of the sheet (so the line numbers of messages are Excel's row
    numbers); an empty row in between is `[]`, trailing empty cells and rows are left out.
    """

    sheet_names: list[str]
    sheet: str
    rows: list[list[str]]


def is_workbook(data: bytes) -> bool:
    """Whether `data` is a ZIP archive holding an Excel workbook part (xl/workbook.xml); reads
    only the archive's directory."""
    if not data.startswith(_ZIP) or data.count(_CENTRAL_ENTRY) > MAX_PARTS:
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return WORKBOOK_PART in archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return False


def read_workbook(data: bytes, sheet: str | None = None, max_columns: int = 200) -> Workbook:
    """Read one sheet of the workbook in `data` (the first visible one unless `sheet` names
    another) as strings; raise FileProblem when it cannot be, or a row has more than
    `max_columns` cells."""
    _refuse_non_workbook(data)
    from openpyxl import load_workbook  # here: a CSV upload need not carry openpyxl's memory

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except Exception as exc:  # openpyxl reports damaged parts with many kinds of exception
        raise FileProblem(DAMAGED) from exc
    try:
        worksheets = book.worksheets  # not chart sheets, which hold no cells
        if not worksheets:
            raise FileProblem("The workbook has no sheet with cells. " + SAVE_AS)
        visible = [ws for ws in worksheets if ws.sheet_state == "visible"] or worksheets
        chosen = _choose_sheet(worksheets, visible, sheet)
        rows = _read_rows(chosen, max_columns)
        return Workbook([ws.title for ws in visible], chosen.title, rows)
    finally:
        book.close()  # read-only mode keeps the archive open until then


def _refuse_non_workbook(data: bytes) -> None:
    """Raise FileProblem unless `data` is a ZIP holding a workbook within the size limits."""
    if data.startswith(_OLE):
        if _ENCRYPTED_PACKAGE in data:
            raise FileProblem(
                "This workbook is protected with a password, so it cannot be read. Open it in "
                "your spreadsheet, remove the password (in Excel: File › Info › Protect Workbook "
                "› Encrypt with Password, and clear it), save it and upload it again.")
        raise FileProblem(
            "This is an old Excel workbook (.xls) or another Office file, which cannot be "
            "read. " + SAVE_AS)
    if not data:
        raise FileProblem("The file is empty.")
    if not data.startswith(_ZIP):
        if b"\x00" in data[:4096]:  # binary, or UTF-16 text: no advice fits both
            raise FileProblem("This file is not an Excel workbook (.xlsx). " + SAVE_AS)
        raise FileProblem(
            "This file is not an Excel workbook (.xlsx): it looks like a text file, perhaps a "
            "CSV file with its name changed. Upload it under a name ending in .csv, or open it "
            "in your spreadsheet and save it as an “Excel Workbook (.xlsx)”.")
    if data.count(_CENTRAL_ENTRY) > MAX_PARTS:
        raise FileProblem(f"This ZIP archive holds more than {MAX_PARTS:,} files, so it is not "
                          "an Excel workbook of user rows. " + SAVE_AS)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise FileProblem(DAMAGED) from exc
    names = {member.filename for member in members}
    if WORKBOOK_PART not in names:
        what = next((what for part, what in _OTHER_PACKAGES if part in names), None)
        raise FileProblem(f"This is {what}. {SAVE_AS}" if what else
                          f"This is a ZIP archive, not an Excel workbook. {SAVE_AS}")
    _refuse_bomb(members)


def _refuse_bomb(members: list[zipfile.ZipInfo]) -> None:
    """Raise FileProblem when the package would unpack to far more than its rows can need."""
    total = sum(member.file_size for member in members)
    if total > MAX_UNCOMPRESSED:
        raise _bomb(f"it unpacks to {total / 2**20:,.0f} MiB, more than the "
                    f"{MAX_UNCOMPRESSED / 2**20:,.0f} MiB accepted")
    for member in members:
        if member.filename == _SHARED_STRINGS_PART and member.file_size > MAX_SHARED_STRINGS:
            raise _bomb(f"its text cells unpack to {member.file_size / 2**20:,.0f} MiB, more "
                        f"than the {MAX_SHARED_STRINGS / 2**20:,.0f} MiB accepted")
        if member.file_size > RATIO_EXEMPT and (
                member.file_size > MAX_RATIO * max(member.compress_size, 1)):
            raise _bomb(f"its part {member.filename} unpacks to "
                        f"{member.file_size / max(member.compress_size, 1):,.0f} times its "
                        f"packed size, more than the {MAX_RATIO} times accepted")


def _bomb(reason: str) -> FileProblem:
    return FileProblem(f"This workbook is not read because {reason}: a workbook of user rows is "
                       "never that large, so it is damaged or made to exhaust the server. "
                       + SAVE_AS)


def _choose_sheet(worksheets: list, visible: list, name: str | None):
    """The worksheet named `name` (exactly, else ignoring case), or the first visible one when
    `name` is None or empty (a form's unchosen field)."""
    if not name:
        return visible[0]
    for matches in (lambda ws: ws.title == name,
                    lambda ws: ws.title.casefold() == name.casefold()):
        for ws in worksheets:
            if matches(ws):
                return ws
    listed = ", ".join(f"“{ws.title}”" for ws in visible)
    raise FileProblem(f"The workbook has no sheet named “{name}”. Its sheets are: {listed}.")


def _read_rows(ws, max_columns: int) -> list[list[str]]:
    """Every row of `ws` as strings, converted one row at a time as openpyxl streams them."""
    ws.reset_dimensions()  # the stored dimension may be wrong; trust only the cells
    rows: list[list[str]] = []
    pending_empty = 0  # empty rows are kept only when a row with cells follows them
    number = 0
    try:
        for number, cells in enumerate(ws.iter_rows(), 1):
            if number > MAX_ROWS:
                raise FileProblem(f"The sheet “{ws.title}” has more than {MAX_ROWS:,} rows, "
                                  "more than Excel allows, so the workbook is damaged. "
                                  + SAVE_AS)
            row = [_shown(cell) for cell in cells]
            while row and row[-1] == "":
                row.pop()
            if not row:
                pending_empty += 1
                continue
            if len(row) > max_columns:
                raise FileProblem(
                    f"Line {number}: the row has {len(row):,} cells; at most {max_columns:,} "
                    "columns are accepted (BULKIMPORT_MAX_COLUMNS). Delete the columns that "
                    "are not needed from the sheet and upload it again.", number)
            rows.extend([] for _ in range(pending_empty))
            pending_empty = 0
            rows.append(row)
    except FileProblem:
        raise
    except Exception as exc:  # a damaged sheet fails inside openpyxl's parser, mid-stream
        # The XML parser reads ahead, so the damage is somewhere after the last row read, not
        # necessarily in the next one: name only what is certain.
        where = f" beyond line {number}" if number else ""
        raise FileProblem(f"The sheet “{ws.title}” cannot be read{where}. {DAMAGED}") from exc
    if not rows:
        raise FileProblem(f"The sheet “{ws.title}” is empty.")
    return rows


def _shown(cell) -> str:
    """A streamed cell's text; its number format is looked up only when a number needs it."""
    value = cell.value
    if value is None:
        return ""
    if isinstance(value, str):  # most cells: no need to look up the format
        return value
    return cell_text(value, cell.number_format)


def cell_text(value: object, number_format: str | None = "General") -> str:
    """One cell's value as Excel shows it, given openpyxl's value and the cell's number format
    (which is looked at only for numbers and dates)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return _number_text(value, number_format)
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time() or not _shows_time(number_format):
            return value.date().isoformat()
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.time):
        return value.strftime("%H:%M:%S")
    if isinstance(value, datetime.timedelta):  # an elapsed-time format such as [h]:mm:ss
        seconds = round(value.total_seconds())
        sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
        return f"{sign}{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return str(value)


def _number_text(value: int | float, number_format: str | None) -> str:
    """A number as Excel's General format shows it (15 significant digits, no exponent for
    everyday magnitudes), or zero-padded when its format is one such as "00000"."""
    section = (number_format or "General").split(";")[0]
    if _ZERO_PADDED.fullmatch(section) and float(value).is_integer():
        whole = int(value)
        return ("-" if whole < 0 else "") + str(abs(whole)).zfill(len(section))
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"  # and not "-0"
    text = format(value, ".15g")  # 0.1 + 0.2 is stored as 0.30000000000000004; Excel shows 0.3
    if "e" in text and 1e-6 <= abs(value) < 1e21:  # where a spreadsheet writes the digits out
        text = format(Decimal(text), "f")
    return text


def _shows_time(number_format: str | None) -> bool:
    """Whether a date's number format shows a time of day (hours, seconds or AM/PM)."""
    section = _FORMAT_LITERALS.sub("", (number_format or "").split(";")[0])
    return bool(_TIME_TOKENS.search(section))
