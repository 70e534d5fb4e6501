"""read_workbook and is_workbook without a database: cells come out as Excel shows them, sheets
can be chosen, and every file that is not a readable workbook gets a FileProblem saying so."""

from __future__ import annotations

import datetime
import io
import zipfile

import openpyxl
import pytest

from bench.generate import make_csv, make_xlsx
from bulkimport.importing import workbook as workbook_module
from bulkimport.importing.reader import FileProblem
from bulkimport.importing.workbook import cell_text, is_workbook, read_workbook

SHEET1 = "xl/worksheets/sheet1.xml"


def build(*sheets: tuple[str, list[list[object]]], formats: dict[str, str] | None = None,
          hidden: tuple[str, ...] = ()) -> bytes:
    """A workbook written by openpyxl with the named sheets and rows; `formats` maps a cell of
    the first sheet ("B2") to its number format."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        ws = book.create_sheet(title)
        for row in rows:
            ws.append(row)
        if title in hidden:
            ws.sheet_state = "hidden"
    for reference, number_format in (formats or {}).items():
        book.worksheets[0][reference].number_format = number_format
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def rewrite(data: bytes, part: str, old: str, new: str) -> bytes:
    """`data` with `old` replaced by `new` in one part: how a test gets what openpyxl never
    writes (a formula's cached value, a stored 0.30000000000000004, damaged XML)."""
    source, buffer = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == part:
                text = content.decode()
                assert old in text, f"{old!r} not in {part}"
                content = text.replace(old, new).encode()
            target.writestr(info.filename, content)
    return buffer.getvalue()


def zip_of(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_cells_read_as_excel_shows_them():
    data = build(("Users", [
        ["id", "count", "whole", "sum", "price", "tiny", "huge", "flag", "missing"],
        ["00123", 42, 12.0, 0.3, 1234.5, 0.00001, 1.5e17, True, "#N/A"],
        ["007", -3, -0.0, 2.5, 100, 1e-7, 12345678901234567890, False, "=1+1"],
    ]))
    # What Excel itself stores and openpyxl never writes: 17 significant digits, "12.0".
    data = rewrite(data, SHEET1, '<c r="C2" t="n"><v>12</v>', '<c r="C2" t="n"><v>12.0</v>')
    data = rewrite(data, SHEET1, '<c r="D2" t="n"><v>0.3</v>',
                   '<c r="D2" t="n"><v>0.30000000000000004</v>')
    assert read_workbook(data).rows[1:] == [
        ["00123", "42", "12", "0.3", "1234.5", "0.00001", "150000000000000000", "TRUE", "#N/A"],
        ["007", "-3", "0", "2.5", "100", "1e-07", "12345678901234600000", "FALSE"],
    ]  # Excel keeps 15 digits; the formula was never calculated: no cached value, no cell


def test_a_formula_is_read_as_its_cached_value():
    data = build(("Users", [["username", "email"], ["jsmith", '=A2&"@example.com"']]))
    data = rewrite(data, SHEET1, "<v />", "<v>jsmith@example.com</v>")
    data = rewrite(data, SHEET1, '<c r="B2">', '<c r="B2" t="str">')  # as Excel stores text
    assert read_workbook(data).rows == [["username", "email"], ["jsmith", "jsmith@example.com"]]


def test_dates_and_times_as_iso():
    data = build(("Users", [
        ["date", "midnight", "datetime", "time", "date-only format", "elapsed"],
        [datetime.date(2026, 1, 31), datetime.datetime(2026, 2, 1),
         datetime.datetime(2026, 2, 1, 8, 30, 15), datetime.time(17, 5),
         datetime.datetime(2026, 3, 4, 12, 0), datetime.timedelta(hours=36, minutes=5)],
    ]), formats={"E2": "dd/mm/yyyy", "F2": "[h]:mm:ss"})
    assert read_workbook(data).rows[1] == [
        "2026-01-31", "2026-02-01", "2026-02-01 08:30:15", "17:05:00", "2026-03-04", "36:05:00"]


def test_the_1904_date_system():
    book = openpyxl.Workbook()
    book.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    book.active.append([datetime.date(2026, 1, 31)])
    buffer = io.BytesIO()
    book.save(buffer)
    assert read_workbook(buffer.getvalue()).rows == [["2026-01-31"]]


def test_zero_padded_number_formats_keep_their_zeros():
    data = build(("Users", [["postcode", "id", "percent"], [1234, 42.0, 0.5]]),
                 formats={"A2": "00000", "B2": "000000", "C2": "0%"})
    assert read_workbook(data).rows[1] == ["01234", "000042", "0.5"]


@pytest.mark.parametrize(("value", "number_format", "shown"), [
    (None, "General", ""),
    ("  spaced  ", "General", "  spaced  "),
    (0, "General", "0"),
    (-0.0, "General", "0"),
    (1 / 3, "General", "0.333333333333333"),
    (1e21, "General", "1e+21"),
    (123456789012.0, "General", "123456789012"),
    (-42, "0000", "-0042"),
    (4.5, "0000", "4.5"),  # not a whole number: the exact value, not Excel's rounded "0005"
    (datetime.datetime(2026, 1, 31, 9, 0), 'yyyy-mm-dd "at" hh:mm', "2026-01-31 09:00:00"),
    (datetime.datetime(2026, 1, 31, 9, 0), '[$-409]d-mmm-yy;@', "2026-01-31"),
    (datetime.timedelta(seconds=-90), "[mm]:ss", "-0:01:30"),
])
def test_cell_text(value, number_format, shown):
    assert cell_text(value, number_format) == shown


def test_empty_rows_and_cells():
    data = build(("Users", [
        ["username", "email", None], [], ["jsmith", None, "x"], [None, None], ["apatel"],
        [], [None, None, None],
    ]))
    assert read_workbook(data).rows == [
        ["username", "email"], [], ["jsmith", "", "x"], [], ["apatel"]]


def test_a_wrong_stored_dimension_does_not_cut_rows():
    data = build(("Users", [["username"], ["jsmith"], ["apatel"]]))
    data = rewrite(data, SHEET1, '<dimension ref="A1:A3" />', '<dimension ref="A1:A1" />')
    assert read_workbook(data).rows == [["username"], ["jsmith"], ["apatel"]]


def test_sheets_first_visible_by_default_or_chosen():
    data = build(("Notes", [["hidden"]]), ("Users", [["username"], ["jsmith"]]),
                 ("Groups", [["group"], ["staff"]]), hidden=("Notes",))
    default = read_workbook(data)
    assert (default.sheet_names, default.sheet, default.rows) == (
        ["Users", "Groups"], "Users", [["username"], ["jsmith"]])
    assert read_workbook(data, sheet="").sheet == "Users"
    assert read_workbook(data, sheet="Groups").rows == [["group"], ["staff"]]
    assert read_workbook(data, sheet="groups").sheet == "Groups"
    assert read_workbook(data, sheet="Notes").rows == [["hidden"]]
    with pytest.raises(FileProblem) as problem:
        read_workbook(data, sheet="People")
    assert problem.value.message == (
        "The workbook has no sheet named “People”. Its sheets are: “Users”, “Groups”.")


def test_the_bench_workbook_holds_the_rows_of_the_bench_csv():
    rows = [line.split(",") for line in make_csv(300, extra_columns=False).decode().splitlines()]
    assert read_workbook(make_xlsx(300, extra_columns=False)).rows == rows
    xlsx = read_workbook(make_xlsx(300)).rows
    assert len(xlsx) == 301 and xlsx[0][5] == "Change password next time"
    assert {row[5] for row in xlsx[1:] if len(row) > 5} <= {"1", "0", ""}  # stored as numbers


def test_is_workbook():
    assert is_workbook(build(("Users", [["username"]])))
    assert is_workbook(make_xlsx(2))
    assert not is_workbook(make_csv(2))
    assert not is_workbook(b"")
    assert not is_workbook(zip_of({"readme.txt": "hello"}))
    assert not is_workbook(make_xlsx(2)[:200])  # truncated: no directory to read


GOOD = build(("Users", [["username", "email"], ["jsmith", "j@example.com"]]))
SAVE_AS = "save it as an “Excel Workbook (.xlsx)” or as “CSV UTF-8 (comma delimited)”"
DAMAGED = "This Excel workbook is damaged and cannot be read."
# id → (bytes, read_workbook keyword arguments, fragment of the message, line)
BAD_WORKBOOKS = {
    "empty": (b"", {}, "The file is empty.", None),
    "renamed-csv": (make_csv(3), {}, "it looks like a text file, perhaps a CSV file with its "
                    "name changed. Upload it under a name ending in .csv", None),
    "binary-not-zip": (b"\x89PNG\r\n\x1a\n\x00\x00", {}, "This file is not an Excel workbook "
                       "(.xlsx). Open it in your spreadsheet", None),
    "zip-of-something-else": (zip_of({"readme.txt": "hello"}), {},
                              "This is a ZIP archive, not an Excel workbook. Open it in your "
                              "spreadsheet and use “Save as” to " + SAVE_AS, None),
    "word-document": (zip_of({"[Content_Types].xml": "<Types/>", "word/document.xml": "<w/>"}),
                      {}, "This is a Word document, not a spreadsheet.", None),
    "xlsb": (zip_of({"xl/workbook.bin": b"\x00"}), {},
             "This is an Excel binary workbook (.xlsb), which cannot be read.", None),
    "ods": (zip_of({"mimetype": "application/vnd.oasis.opendocument.spreadsheet",
                    "content.xml": "<office:document-content/>"}), {},
            "This is an OpenDocument file (.ods or .odt), which cannot be read.", None),
    "old-xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, {},
                "This is an old Excel workbook (.xls) or another Office file, which cannot be "
                "read. Open it", None),
    "password-protected": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600
                           + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 100, {},
                           "This workbook is protected with a password, so it cannot be read. "
                           "Open it in your spreadsheet, remove the password", None),
    "truncated": (GOOD[: len(GOOD) // 2], {}, DAMAGED, None),
    "workbook-part-not-xml": (rewrite(GOOD, "xl/workbook.xml", "<workbook", "<<workbook"), {},
                              DAMAGED, None),
    "no-content-types": (zip_of({"xl/workbook.xml": "<workbook/>"}), {}, DAMAGED, None),
    "sheet-not-xml": (rewrite(GOOD, SHEET1, '<c r="A1"', '<<c r="A1"'), {},
                      "The sheet “Users” cannot be read. " + DAMAGED, None),
    "shared-string-missing": (rewrite(make_xlsx(2), SHEET1, "<v>9</v>", "<v>999</v>"), {},
                              "The sheet “Users” cannot be read beyond line 1. " + DAMAGED,
                              None),
    "empty-sheet": (build(("Users", [])), {}, "The sheet “Users” is empty.", None),
    "too-wide": (GOOD, {"max_columns": 1}, "Line 1: the row has 2 cells; at most 1 columns are "
                 "accepted (BULKIMPORT_MAX_COLUMNS). Delete the columns", 1),
    "unknown-sheet": (GOOD, {"sheet": "Sheet1"}, "The workbook has no sheet named “Sheet1”. "
                      "Its sheets are: “Users”.", None),
    "zip-bomb": (zip_of({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>",
                         SHEET1: b" " * (20 * 1024 * 1024)}), {},
                 "This workbook is not read because its part xl/worksheets/sheet1.xml unpacks "
                 "to 1,0", None),
}


@pytest.mark.parametrize(("data", "options", "message", "line"), BAD_WORKBOOKS.values(),
                         ids=BAD_WORKBOOKS.keys())
def test_bad_workbooks_are_refused_with_a_clear_message(data, options, message, line):
    with pytest.raises(FileProblem) as problem:
        read_workbook(data, **options)
    assert message in problem.value.message
    assert problem.value.line == line


def test_zip_bomb_message_in_full():
    with pytest.raises(FileProblem) as problem:
        read_workbook(BAD_WORKBOOKS["zip-bomb"][0])
    ratio = problem.value.message.split("unpacks to ")[1].split(" times")[0]
    assert int(ratio.replace(",", "")) > 100
    assert problem.value.message.endswith(
        " times its packed size, more than the 100 times accepted: a workbook of user rows is "
        "never that large, so it is damaged or made to exhaust the server. Open it in your "
        "spreadsheet and use “Save as” to " + SAVE_AS + ", then upload that file.")


@pytest.mark.parametrize(("limit", "value", "message"), [
    ("MAX_UNCOMPRESSED", 10_000, "it unpacks to 0 MiB, more than the 0 MiB accepted"),
    ("MAX_SHARED_STRINGS", 1_000, "its text cells unpack to 0 MiB, more than the 0 MiB"),
    ("MAX_PARTS", 5, "This ZIP archive holds more than 5 files, so it is not an Excel workbook"),
    ("MAX_ROWS", 2, "The sheet “Users” has more than 2 rows, more than Excel allows"),
])
def test_limits(monkeypatch, limit, value, message):
    monkeypatch.setattr(workbook_module, limit, value)
    with pytest.raises(FileProblem) as problem:
        read_workbook(make_xlsx(20))
    assert message in problem.value.message
