"""read_table without a database: every bad file gives a FileProblem naming the line (never a
traceback, never a silently merged row), and good files are decoded, split and mapped right."""

from __future__ import annotations

import codecs
import gzip
import io
import zipfile

import pytest

from bulkimport.columns import normalise_heading
from bulkimport.importing.mapping import propose
from bulkimport.importing.reader import (
    FileProblem,
    Table,
    check_headings,
    detect_delimiter,
    read_table,
)

HEADING = "username,firstname,surname,email\n"
ROW = "jsmith,John,Smith,john@example.com\n"
ROW2 = "apatel,Anita,Patel,anita@example.com\n"


def utf8(text: str) -> bytes:
    return text.encode("utf-8")


def xlsx_like() -> bytes:
    """The first bytes of a real .xlsx: a ZIP archive holding the workbook's XML parts."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    return buffer.getvalue()


NOT_CSV = "not a CSV file. In your spreadsheet, use “Save as” and choose “CSV UTF-8"

# id → (bytes, read_table keyword arguments, fragment of the message, expected line)
BAD_FILES = {
    # empty, or nothing but headings
    "empty": (b"", {}, "The file is empty.", None),
    "only-whitespace": (b"  \r\n\t\n   \n", {}, "The file is empty.", None),
    "utf8-bom-only": (codecs.BOM_UTF8, {}, "The file is empty.", None),
    "utf16-bom-only": (codecs.BOM_UTF16_LE, {}, "The file is empty.", None),
    "utf8-bom-and-blank-lines": (codecs.BOM_UTF8 + b"\r\n\r\n", {}, "The file is empty.", None),
    "heading-only": (utf8(HEADING), {}, "The file has a heading line but no user rows.", 2),
    "heading-only-no-newline": (utf8(HEADING.rstrip()), {},
                                "The file has a heading line but no user rows.", 2),
    "heading-and-blank-lines": (utf8(HEADING + "\n\n   \r\n\n"), {},
                                "The file has a heading line but no user rows.", 2),
    "heading-and-empty-cells": (utf8(HEADING + ",,,\n , , ,\n"), {},
                                "The file has a heading line but no user rows.", 2),
    "blank-first-line": (utf8("\n" + HEADING + ROW), {},
                         "Line 1: the first line must hold the column headings.", 1),
    "delimiters-only-first-line": (utf8(",,,\n" + ROW), {},
                                   "Line 1: the first line must hold the column headings.", 1),
    # quotes
    "unclosed-quote-at-end": (utf8(HEADING + ROW + 'apatel,"Anita,Patel,anita@example.com\n'), {},
                              "Line 3: a quoted value that starts on this line is never closed "
                              "(a \" is missing), so the rest of the file would be swallowed", 3),
    "unclosed-quote-swallows-lines": (
        utf8(HEADING + 'jsmith,"John,Smith,john@example.com\n' + ROW2 + "x,y,z,w@example.com\n"),
        {}, "Line 2: a quoted value that starts on this line is never closed", 2),
    "unclosed-quote-semicolons": (
        utf8("username;firstname;surname;email\nj;J;S;j@example.com\na;\"A;P;a@example.com\n"),
        {}, "Line 3: a quoted value that starts on this line is never closed", 3),
    "junk-after-closing-quote": (utf8(HEADING + ROW + 'apatel,"abc"def,Patel,a@example.com\n'), {},
                                 "Line 3: a quoted value is not closed properly — after a closing "
                                 "\" the next character must be the delimiter or the end of the "
                                 "line. Check the quotes.", 3),
    "space-after-closing-quote": (utf8(HEADING + 'jsmith,"John" ,Smith,john@example.com\n'), {},
                                  "Line 2: a quoted value is not closed properly", 2),
    "junk-after-multiline-quote": (utf8(HEADING + 'jsmith,"Jo\nhn"x,Smith,john@example.com\n'), {},
                                   "Lines 2–3: a quoted value is not closed properly", 2),
    "quote-in-heading": (utf8('username,"firstname"x,surname,email\n' + ROW), {},
                         "Line 1: a quoted value is not closed properly", 1),
    "field-too-large": (utf8(HEADING + 'jsmith,"' + "x" * 200_000 + '",Smith,j@example.com\n'), {},
                        "Line 2: a value is far too long", 2),
    # headings
    "duplicated-heading": (utf8("username,firstname,surname,email,email\n" + ROW), {},
                           "Line 1: the heading “email” (column 5) duplicates column 4; each "
                           "column must appear once.", 1),
    "duplicated-heading-by-alias": (utf8("username,firstname,surname,email,E-mail\n" + ROW), {},
                                    "Line 1: the heading “E-mail” (column 5) duplicates column 4",
                                    1),
    "duplicated-heading-by-case": (utf8("Username,firstname,surname,email,USER_NAME\n" + ROW), {},
                                   "Line 1: the heading “USER_NAME” (column 5) duplicates column "
                                   "1", 1),
    "duplicated-firstname-aliases": (
        utf8("username,First name,surname,email,Given name\n" + ROW), {},
        "Line 1: the heading “Given name” (column 5) duplicates column 2", 1),
    "duplicated-surname-aliases": (utf8("username,firstname,Last name,Family name,email\n" + ROW),
                                   {}, "the heading “Family name” (column 4) duplicates column 3",
                                   1),
    "duplicated-unknown-heading": (
        utf8("username,firstname,surname,email,Department,department\n" + ROW), {},
        "Line 1: the heading “department” (column 6) duplicates column 5", 1),
    "missing-one-required-heading": (utf8("username,firstname,surname\njsmith,John,Smith\n"), {},
                                     "Line 1: required column missing: email. The first line must "
                                     "name the columns username, firstname, surname and email "
                                     "(found: username, firstname, surname).", 1),
    "missing-required-headings": (utf8("username,firstname\njsmith,John\n"), {},
                                  "Line 1: required columns missing: surname, email.", 1),
    "missing-all-required-headings": (utf8("name,mail address\nJohn,j@example.com\n"), {},
                                      "required column missing: username. The first line must "
                                      "name the columns username, firstname, surname and email "
                                      "(found: name, mail address)",
                                      1),
    "one-column-file": (utf8("username\njsmith\napatel\n"), {},
                        "Line 1: required columns missing: firstname, surname, email.", 1),
    "empty-heading-cell": (utf8("username,,firstname,surname,email\njsmith,x,John,Smith,j@x.com\n"),
                           {}, "Line 1: column 2 has no heading.", 1),
    "blank-heading-cell": (utf8("username,firstname,  ,surname,email\n" + ROW), {},
                           "Line 1: column 3 has no heading.", 1),
    "quoted-heading-with-delimiter": (
        utf8('"user,name";firstname;surname;email\nj;J;S;j@example.com\n'), {},
        "Line 1: required column missing: username.", 1),
    # control characters and NUL
    "nul-byte": (utf8(HEADING + ROW + "apatel,An\0ita,Patel,a@example.com\n"), {},
                 "Line 3: the file contains a NUL byte, so it is not a text file", 3),
    "nul-in-cr-only-file": (utf8(HEADING + ROW + "x,y\0,z,w@example.com\n").replace(b"\n", b"\r"),
                            {}, "Line 3: the file contains a NUL byte", 3),
    "utf16-without-bom": ((HEADING + ROW).encode("utf-16-le"), {},
                          "Line 1: the file contains a NUL byte, so it is not a text file — or it "
                          "is UTF-16 without a byte-order mark (then choose UTF-16 under "
                          "Advanced).", 1),
    "bell": (utf8(HEADING + ROW + "apatel,An\x07ita,Patel,a@example.com\n"), {},
             "Line 3: the file contains the control character U+0007, which has no place in a CSV "
             "file. Remove it and upload again.", 3),
    "escape": (utf8(HEADING + "jsmith,\x1b[31mJohn,Smith,j@example.com\n"), {},
               "Line 2: the file contains the control character U+001B", 2),
    "delete": (utf8(HEADING + ROW + ROW2 + "x,y\x7f,z,w@example.com\n"), {},
               "Line 4: the file contains the control character U+007F", 4),
    "vertical-tab": (utf8(HEADING + "jsmith,John\x0b,Smith,j@example.com\n"), {},
                     "Line 2: the file contains the control character U+000B", 2),
    "form-feed-in-heading": (utf8("username,firstname\x0c,surname,email\n" + ROW), {},
                             "Line 1: the file contains the control character U+000C", 1),
    "c1-control-in-utf8": (utf8(HEADING + "jsmith,Jo\x85hn,Smith,j@example.com\n"), {},
                           "Line 2: the file contains the control character U+0085", 2),
    "control-in-cr-only-file": (utf8((HEADING + ROW + "x,y\x07,z,w@example.com\n")
                                     .replace("\n", "\r")), {},
                                "Line 3: the file contains the control character U+0007", 3),
    "control-in-crlf-file": (utf8((HEADING + ROW + "x,y\x07,z,w@example.com\n")
                                  .replace("\n", "\r\n")), {},
                             "Line 3: the file contains the control character U+0007", 3),
    "control-after-multiline-value": (utf8(HEADING + 'jsmith,"Jo\nhn",Smith,j@x.com\nx,\x07,y,z\n'),
                                      {}, "Line 4: the file contains the control character U+0007",
                                      4),
    # files that are not text
    # a ZIP is read as a workbook, whatever encoding or delimiter is forced; these are damaged
    "zip-archive": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 20, {},
                    "This Excel workbook is damaged and cannot be read.", None),
    "xlsx-workbook": (xlsx_like(), {}, "This Excel workbook is damaged and cannot be read.", None),
    "xlsx-with-forced-encoding": (xlsx_like(), {"encoding": "latin-1", "delimiter": ","},
                                  "This Excel workbook is damaged and cannot be read.", None),
    "old-xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 40, {},
                "This is an old Excel workbook (.xls) or another Office file, " + NOT_CSV, None),
    "png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 20, {},
            "This is a PNG image, " + NOT_CSV, None),
    "jpeg": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\x00" * 20, {},
             "This is a JPEG image, " + NOT_CSV, None),
    "gif": (b"GIF89a\x01\x00\x01\x00\x80\x00\x00", {}, "This is a GIF image, " + NOT_CSV, None),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", {}, "This is a PDF document, " + NOT_CSV,
            None),
    "gzip": (gzip.compress(utf8(HEADING + ROW)), {}, "This is a gzip archive, " + NOT_CSV, None),
    "utf32": ((HEADING + ROW).encode("utf-32"), {}, "Line 1: the file contains the control "
              "character U+0000", 1),
    # encodings
    "undecodable-utf8-and-cp1252": (utf8(HEADING + ROW) + b"apatel,An\x81ta,Patel,a@example.com\n",
                                    {"fallbacks": ["cp1252"]},
                                    "Line 3: the file is neither UTF-8 nor Windows-1252 (byte 0x81 "
                                    "cannot be read). Save it as “CSV UTF-8”, or choose its "
                                    "encoding under Advanced.", 3),
    "undecodable-at-different-places": (
        utf8(HEADING) + b"jsmith,J\xe9r\xf4me,Smith,j@example.com\nx,\x8d,y,z@example.com\n",
        {"fallbacks": ["cp1252"]},
        "Line 3: the file is neither UTF-8 (byte 0xe9 on line 2 cannot be read) nor Windows-1252 "
        "(byte 0x8d on line 3 cannot be read).", 3),
    "undecodable-cr-only": (b"username,firstname,surname,email\rj,J,S,j@x.com\rx,\x90,y,z@x.com\r",
                            {}, "Line 3: the file is neither UTF-8 nor Windows-1252 nor "
                            "Windows-1250 (byte 0x90", 3),
    "no-fallbacks": (utf8(HEADING) + b"jsmith,J\xe9r\xf4me,Smith,j@example.com\n",
                     {"fallbacks": []}, "Line 2: the file is not valid UTF-8 (byte 0xe9 cannot be "
                     "read).", 2),
    "invalid-after-utf8-bom": (codecs.BOM_UTF8 + utf8(HEADING) + b"jsmith,J\xe9r\xf4me,S,j@x.com\n",
                               {}, "Line 2: the file is not valid UTF-8 with BOM (byte 0xe9 cannot "
                               "be read).", 2),
    "odd-length-utf16": ((HEADING + ROW).encode("utf-16") + b"\x00", {},
                         "Line 3: the file is not valid UTF-16 with BOM", 3),
    "forced-utf8-on-cp1252": ((HEADING + ROW + "apatel,Hélène,Patel,a@example.com\n")
                              .encode("cp1252"), {"encoding": "utf-8"},
                              "Line 3: the file is not valid UTF-8 (byte 0xe9). Choose the right "
                              "encoding under Advanced, or leave it on “Detect”.", 3),
    "forced-utf8-after-bom": (codecs.BOM_UTF8 + utf8(HEADING + "\r\n") + b"j,H\xe9,S,j@x.com\n",
                              {"encoding": "UTF8"}, "Line 3: the file is not valid UTF-8 (byte "
                              "0xe9).", 3),
    "forced-ascii": (utf8(HEADING + "jsmith,Jérôme,Smith,j@example.com\n"), {"encoding": "ascii"},
                     "Line 2: the file is not valid ascii (byte 0xc3).", 2),
    "forced-cp1252-undefined-byte": (utf8(HEADING) + b"j,\x81,S,j@example.com\n",
                                     {"encoding": "cp1252"},
                                     "Line 2: the file is not valid Windows-1252 (byte 0x81).", 2),
    "forced-cp1252-on-utf8-bom": (codecs.BOM_UTF8 + utf8(HEADING + ROW), {"encoding": "cp1252"},
                                  "Line 1: required column missing: username.", 1),
    "unknown-encoding": (utf8(HEADING + ROW), {"encoding": "klingon"},
                         "“klingon” is not an encoding this server knows.", None),
    "unknown-fallback": (utf8(HEADING) + b"j,J\xe9,S,j@example.com\n", {"fallbacks": ["nope"]},
                         "“nope” is not an encoding this server knows.", None),
    # delimiters
    "forced-wrong-delimiter": (utf8(HEADING + ROW), {"delimiter": ";"},
                               "Line 1: required columns missing: username, firstname, surname, "
                               "email.", 1),
}


@pytest.mark.parametrize(("data", "options", "message", "line"), BAD_FILES.values(),
                         ids=BAD_FILES.keys())
def test_bad_file_gives_a_file_problem_naming_the_line(data, options, message, line):
    with pytest.raises(FileProblem) as caught:
        read_table(data, **options)
    problem = caught.value
    assert message in problem.message
    assert problem.line == line
    assert str(problem) == problem.message
    if message.startswith("Line"):
        assert problem.message.startswith(message)
    assert "Traceback" not in problem.message and "Error" not in problem.message


# ---- encodings -------------------------------------------------------------------------------

NAMES = HEADING + "mgarcia,María,García,maria@example.com\n"


@pytest.mark.parametrize(("data", "options", "encoding", "name"), [
    (utf8(NAMES), {}, "utf-8", "UTF-8"),
    (codecs.BOM_UTF8 + utf8(NAMES), {}, "utf-8-sig", "UTF-8 with BOM"),
    (codecs.BOM_UTF8 + utf8(NAMES), {"encoding": "utf-8"}, "utf-8-sig", "UTF-8 with BOM"),
    (NAMES.encode("utf-16"), {}, "utf-16", "UTF-16 with BOM"),
    (codecs.BOM_UTF16_LE + NAMES.encode("utf-16-le"), {}, "utf-16", "UTF-16 with BOM"),
    (codecs.BOM_UTF16_BE + NAMES.encode("utf-16-be"), {}, "utf-16", "UTF-16 with BOM"),
    (NAMES.encode("cp1252"), {}, "cp1252", "Windows-1252"),
    (NAMES.encode("cp1252"), {"fallbacks": ["ascii", "cp1252"]}, "cp1252", "Windows-1252"),
    (NAMES.encode("latin-1"), {"encoding": "cp1252"}, "cp1252", "Windows-1252"),
    (NAMES.encode("latin-1"), {"encoding": "latin-1"}, "iso8859-1", "ISO-8859-1"),
    (NAMES.encode("iso8859-15"), {"encoding": "iso8859-15"}, "iso8859-15", "ISO-8859-15"),
    (NAMES.encode("mac-roman"), {"encoding": "mac-roman"}, "mac-roman", "Mac Roman"),
    (NAMES.encode("utf-16-le"), {"encoding": "utf-16"}, "utf-16", "UTF-16 with BOM"),
], ids=["utf8", "utf8-bom", "utf8-bom-forced-utf8", "utf16-native", "utf16-le-bom", "utf16-be-bom",
        "cp1252-fallback", "fallback-list-skips-failing", "latin1-read-as-cp1252", "forced-latin1",
        "forced-iso8859-15", "forced-mac-roman", "utf16-without-bom-forced"])
def test_encoding_is_detected_or_forced(data, options, encoding, name):
    table = read_table(data, **options)
    assert (table.encoding, table.encoding_name) == (encoding, name)
    assert table.headings == ["username", "firstname", "surname", "email"]  # no \ufeff left
    assert table.records[0].cells == ["mgarcia", "María", "García", "maria@example.com"]


def test_utf8_bom_does_not_pollute_the_first_heading():
    table = read_table(codecs.BOM_UTF8 + utf8("Username,First name,Last name,E-mail\n" + ROW))
    assert table.headings[0] == "Username"
    assert table.fields == ["username", "firstname", "surname", "email"]


def test_excel_unicode_text_utf16_with_tabs_keeps_every_script():
    text = ("username\tfirstname\tsurname\temail\r\n"
            "kyamada\t健\t山田\tk@example.com\r\nsivanova\tСветлана\tИванова\ts@example.com\r\n")
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        table = read_table(bom + text.encode(codec))
        assert (table.encoding, table.delimiter) == ("utf-16", "\t")
        assert [r.cells for r in table.records] == [
            ["kyamada", "健", "山田", "k@example.com"],
            ["sivanova", "Светлана", "Иванова", "s@example.com"]]


def test_cp1252_fallback_reads_accents_and_euro():
    data = (HEADING + "blefevre,Bérénice,Lefèvre,b@example.com\njstrauss,Jürgen,Strauß €,"
            "j@example.com\n").encode("cp1252")
    table = read_table(data)
    assert table.encoding == "cp1252"
    assert table.records[0].cells[1:3] == ["Bérénice", "Lefèvre"]
    assert table.records[1].cells[2] == "Strauß €"


def test_fallbacks_order_decides_only_between_equally_plausible_readings():
    novacek = utf8(HEADING) + b"jnovak,Jan,Nov\xe1\xe8ek,j@example.com\n"  # "Nováček" in cp1250
    for order in (["cp1250", "cp1252"], ["cp1252", "cp1250"]):
        table = read_table(novacek, fallbacks=order)
        # á with č is Czech; á with è (Windows-1252) belongs to no one language
        assert (table.encoding, table.records[0].cells[2]) == ("cp1250", "Nováček")
        assert [(a.codec, a.words) for a in table.alternatives] == [
            ("cp1252", [("Nováček", "Nováèek")])]
    lefevre = utf8(HEADING) + b"blefevre,B,Lef\xe8vre,b@example.com\n"  # Lefèvre or Lefčvre
    assert read_table(lefevre, fallbacks=["cp1252", "cp1250"]).records[0].cells[2] == "Lefèvre"
    assert read_table(lefevre, fallbacks=["cp1250", "cp1252"]).records[0].cells[2] == "Lefčvre"
    assert read_table(novacek, fallbacks=("cp1250",)).encoding == "cp1250"


def test_override_encoding_wins_even_when_wrong():
    data = utf8(HEADING + "jose,José,Núñez,jose@example.com\n")
    assert read_table(data).records[0].cells[1:3] == ["José", "Núñez"]
    table = read_table(data, encoding="latin-1")
    assert table.encoding == "iso8859-1"
    assert table.records[0].cells[1:3] == ["JosÃ©", "NÃºÃ±ez"]


def test_override_encoding_wins_over_the_byte_order_mark():
    data = codecs.BOM_UTF8 + utf8("Notes," + HEADING + "x," + ROW)
    assert read_table(data).headings[0] == "Notes"
    table = read_table(data, encoding="cp1252")
    assert table.headings[0] == "ï»¿Notes"
    assert table.fields[0] is None and table.unknown_columns == ["ï»¿Notes"]


# ---- delimiters ------------------------------------------------------------------------------

@pytest.mark.parametrize(("delimiter", "name"), [
    (",", "comma"), (";", "semicolon"), ("\t", "tab"), ("|", "vertical bar")])
def test_delimiter_is_detected(delimiter, name):
    text = (HEADING + ROW + 'apatel,"Patel, Anita",Patel,a@example.com\n').replace(",", delimiter)
    table = read_table(utf8(text))
    assert (table.delimiter, table.delimiter_name) == (delimiter, name)
    assert table.headings == ["username", "firstname", "surname", "email"]
    assert table.records[0].cells == ["jsmith", "John", "Smith", "john@example.com"]
    assert table.records[1].cells[1] == f"Patel{delimiter} Anita"


@pytest.mark.parametrize(("text", "expected"), [
    ("username\njsmith\n", ","),
    ("username", ","),
    ("", ","),
    ("username,firstname;surname;email\n", ";"),
    ("username;firstname,surname,email\n", ","),
    ('"a;b;c;d",username,firstname\n', ","),
    ('username|"a,b,c"|x\n', "|"),
    ("\n\r\nusername\tfirstname\n", "\t"),
    ("username,firstname;surname\n", ","),  # a tie keeps the order , ; tab |
    ("username;firstname\na,b,c,d,e,f\n", ";"),  # only the heading line counts
], ids=["one-column", "one-column-no-newline", "empty", "semicolon", "comma", "quoted-ignored",
        "bar", "leading-blank-lines", "tie", "heading-line-only"])
def test_detect_delimiter(text, expected):
    assert detect_delimiter(text) == expected


def test_override_delimiter_wins():
    data = utf8("username|firstname|surname|email|a,b,c,d,e\njsmith|John|Smith|j@x.com|x\n")
    assert detect_delimiter(data.decode()) == ","
    table = read_table(data, delimiter="|")
    assert table.delimiter == "|" and table.delimiter_name == "vertical bar"
    assert table.headings[-1] == "a,b,c,d,e" and table.unknown_columns == ["a,b,c,d,e"]
    assert table.records[0].cells == ["jsmith", "John", "Smith", "j@x.com", "x"]


def test_override_delimiter_tab_on_a_file_with_commas_in_values():
    data = utf8("username\tfirstname\tsurname\temail\njsmith\tSmith, John\tSmith\tj@x.com\n")
    table = read_table(data, delimiter="\t")
    assert table.records[0].cells[1] == "Smith, John"


def test_quoted_fields_keep_delimiters_quotes_and_line_breaks():
    data = utf8(HEADING + '"jsmith","Smith, Jr.","He said ""hi""",j@example.com\n'
                'apatel,"Anita\nMarie",Patel,a@example.com\n' + ROW2.replace("apatel", "bpatel"))
    table = read_table(data)
    assert table.records[0].cells == ["jsmith", "Smith, Jr.", 'He said "hi"', "j@example.com"]
    assert [(r.line, r.end_line) for r in table.records] == [(2, 2), (3, 4), (5, 5)]
    assert table.records[1].cells[1] == "Anita\nMarie"


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"], ids=["crlf", "cr", "lf"])
def test_line_endings(newline):
    data = utf8((HEADING + ROW + "\n" + ROW2).replace("\n", newline))
    table = read_table(data)
    assert [r.cells for r in table.records] == [
        ["jsmith", "John", "Smith", "john@example.com"],
        ["apatel", "Anita", "Patel", "anita@example.com"]]
    assert [r.line for r in table.records] == [2, 4]
    assert table.blank_rows == 1


def test_quoted_crlf_spans_two_lines():
    data = utf8(HEADING + 'jsmith,"John\r\nJr",Smith,j@x.com\r\n' + ROW2.replace("\n", "\r\n"))
    table = read_table(data)
    assert [(r.line, r.end_line) for r in table.records] == [(2, 3), (4, 4)]
    assert table.records[0].cells[1] == "John\r\nJr"


# ---- headings --------------------------------------------------------------------------------

ALIASES = [
    ("username", "username"), ("Username", "username"), ("USER NAME", "username"),
    ("user_name", "username"), ("User", "username"), ("Login", "username"),
    ("Login name", "username"), ("login-name", "username"),
    ("firstname", "firstname"), ("First name", "firstname"), ("FIRST-NAME", "firstname"),
    ("first_name", "firstname"), ("  First   Name  ", "firstname"), ("Given name", "firstname"),
    ("GivenName", "firstname"), ("Forename", "firstname"),
    ("surname", "surname"), ("Surname", "surname"), ("Last name", "surname"),
    ("last_name", "surname"), ("LASTNAME", "surname"), ("Family name", "surname"),
    ("family-name", "surname"),
    ("email", "email"), ("E-mail", "email"), ("E_Mail", "email"), (" E_Mail ", "email"),
    ("EMAIL", "email"), ("Email address", "email"), ("e-mail-address", "email"), ("Mail", "email"),
    ("Change password next time", "must_change_password"),
    ("change_password_next_time", "must_change_password"),
    ("CHANGE-PASSWORD-NEXT-TIME", "must_change_password"),
    ("Must change password", "must_change_password"),
    ("Force password change", "must_change_password"),
    ("Language", "language"), ("lang", "language"), ("Password", "password"),
]
_DEFAULT = {"username": "username", "firstname": "firstname", "surname": "surname",
            "email": "email"}


@pytest.mark.parametrize(("heading", "field"), ALIASES, ids=[h.strip() for h, _ in ALIASES])
def test_heading_aliases(heading, field):
    headings = dict(_DEFAULT)
    headings[field] = heading  # replaces a required column, or adds an optional one at the end
    line = ",".join(f'"{h}"' for h in headings.values())
    cells = ",".join(["jsmith", "John", "Smith", "j@example.com", "x"][:len(headings)])
    table = read_table(utf8(line + "\n" + cells + "\n"))
    index = list(headings).index(field)
    assert table.fields[index] == field
    assert table.headings[index] == heading.strip()
    assert table.column(field) == index
    assert table.unknown_columns == []


@pytest.mark.parametrize(("heading", "normalised"), [
    ("First name", "firstname"), (" E_Mail ", "email"), ("FIRST-NAME", "firstname"),
    ("e - mail _ address", "emailaddress"),
    ("Change\tpassword next-time", "changepasswordnexttime"),
    ("Straße", "strasse"),
])
def test_normalise_heading(heading, normalised):
    assert normalise_heading(heading) == normalised


def test_unknown_columns_are_named_in_order():
    data = utf8("Department,username,firstname,surname,email,Phone number,start_date\n"
                "Sales,jsmith,John,Smith,j@example.com,123,2024-01-01\n")
    table = read_table(data)
    assert table.unknown_columns == ["Department", "Phone number", "start_date"]
    assert table.fields == [None, "username", "firstname", "surname", "email", None, None]
    assert table.column("username") == 1
    assert table.column("language") is None


def test_headings_are_trimmed_but_values_are_left_for_validation():
    data = utf8("  username , firstname,surname ,\temail\n  jsmith ,  John,Smith  , j@x.com \n")
    table = read_table(data)
    assert table.headings == ["username", "firstname", "surname", "email"]
    assert table.records[0].cells == ["  jsmith ", "  John", "Smith  ", " j@x.com "]


def test_headings_are_mapped_and_checked_like_read_table():
    headings = ["E-mail", "Login", "Given name", "Family name", "Notes"]
    assert propose(headings).fields() == ["email", "username", "firstname", "surname", None]
    headings = ["Email address", "username", "firstname", "surname", "mail"]
    with pytest.raises(FileProblem, match="duplicates column 1"):
        check_headings(headings, propose(headings))


# ---- rows ------------------------------------------------------------------------------------

def test_blank_rows_are_counted_and_skipped():
    data = utf8(HEADING + ROW + "\n,,,\n  ,  , , \n\n" + ROW2 + "\n")
    table = read_table(data)
    assert [r.line for r in table.records] == [2, 7]
    assert table.blank_rows == 5


def test_ragged_rows_are_kept_for_validation_to_flag():
    data = utf8(HEADING + "jsmith,John,Smith\n" + ROW2 + "x,y,z,w@x.com,extra\nlonely\n")
    table = read_table(data)
    assert [len(r.cells) for r in table.records] == [3, 4, 5, 1]
    assert [r.line for r in table.records] == [2, 3, 4, 5]


def test_a_lone_carriage_return_splits_a_row_which_then_has_the_wrong_width():
    table = read_table(utf8(HEADING + "jsmith,Jo\rhn,Smith,j@x.com\n" + ROW2))
    assert [(r.line, r.cells) for r in table.records] == [
        (2, ["jsmith", "Jo"]), (3, ["hn", "Smith", "j@x.com"]),
        (4, ["apatel", "Anita", "Patel", "anita@example.com"])]


def test_a_quote_closed_much_later_gives_one_record_spanning_lines():
    # Not refused by the reader (it is valid CSV); validation flags the line breaks.
    data = utf8(HEADING + 'jsmith,"John,Smith,john@example.com\n' + ROW2 + 'x",Smith,j@x.com\n'
                + "bpatel,B,Patel,b@example.com\n")
    table = read_table(data)
    assert [(r.line, r.end_line) for r in table.records] == [(2, 4), (5, 5)]
    assert table.records[0].cells[1] == "John,Smith,john@example.com\n" + ROW2 + "x"


def test_record_lines_after_a_multiline_value_and_blank_lines():
    data = utf8(HEADING + '\njsmith,"J\n\nohn",Smith,j@x.com\n\n' + ROW2)
    table = read_table(data)
    assert [(r.line, r.end_line) for r in table.records] == [(3, 5), (7, 7)]
    assert table.blank_rows == 2


def test_table_is_a_plain_dataclass():
    table = read_table(utf8(HEADING + ROW))
    assert isinstance(table, Table)
    assert table.records[0].line == table.records[0].end_line == 2
    assert table.blank_rows == 0


def test_trailing_empty_columns_of_excel_are_ignored():
    data = b"username;firstname;surname;email;;\r\nj;J;S;j@x.com;;\r\nk;K;T;k@x.com\r\n"
    table = read_table(data)
    assert table.headings == ["username", "firstname", "surname", "email"]
    assert [r.cells for r in table.records] == [["j", "J", "S", "j@x.com"],
                                                 ["k", "K", "T", "k@x.com"]]


def test_a_value_in_a_trailing_empty_column_still_makes_the_row_ragged():
    table = read_table(b"username,firstname,surname,email,\nj,J,S,j@x.com,extra\n")
    assert table.records[0].cells == ["j", "J", "S", "j@x.com", "extra"]
