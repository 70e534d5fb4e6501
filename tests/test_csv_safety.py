"""Every CSV the product writes quotes every cell and neutralises formula starts, also after a
delimiter inside a cell; the import restores the values exactly (issue 13, point 11)."""

from __future__ import annotations

import csv
import io
import re

import pytest
from conftest import batch_id_of, choose_all, import_file, upload
from test_profile_fields import export, new_field, proposed, review

from bulkimport.csvfiles import FORMULA_STARTS, csv_lines, neutralise, restore

BREAKS = ",;\t|"
HOSTILE = [
    "x;=cmd|' /C calc'!A0",
    "x,=1+1",
    "x\t=HYPERLINK(\"http://evil.example\")",
    "x|@SUM(A1)",
    "a;+1;-2;@3",
    "=cmd|' /C calc'!A0",
    "-2+3",
    "+44 20 7946 0001",
    "@home",
    "x;'=already quoted",
    "'",
    "''",
    "a;'",
    "x;\t=1",
    "x,,=1",
    "O'Neil",
    "plain value",
]


def cells_a_spreadsheet_could_see(line: str) -> list[str]:
    """The pieces of a written line that a reader ignoring quotes, in any locale, could take for
    cells: quotes removed, split at every delimiter."""
    return re.split(f"[{BREAKS}]", line.replace('"', ""))


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_a_written_cell_is_quoted_neutralised_and_restored(value, delimiter):
    text = "".join(csv_lines([["head", "er"], [value, "after"]], delimiter))
    lines = text.removeprefix("\ufeff").split("\r\n")
    quoted = '"(?:[^"]|"")*"'
    for line in lines[:2]:
        assert re.fullmatch(f"{quoted}(?:{re.escape(delimiter)}{quoted})*", line), line
        for piece in cells_a_spreadsheet_could_see(line):
            assert not piece.startswith(FORMULA_STARTS), (value, line)
    [cell, after] = list(csv.reader(io.StringIO(lines[1]), delimiter=delimiter))[0]
    assert restore(cell) == value and after == "after"


@pytest.mark.parametrize("value", ["", "a", "'x", "a\t\t=b", "\t=", "x\r\n=y", "|'|'=", "';'"])
def test_restore_undoes_neutralise_exactly(value):
    assert restore(neutralise(value)) == value


@pytest.mark.parametrize("value", [v for v in HOSTILE if v.strip() == v])
def test_hostile_values_survive_export_then_import_as_no_change(app, client, value):
    new_field(client, "note")
    rows = [["username", "firstname", "surname", "email", "note"],
            ["ann", value, "Lee", "ann@example.com", value]]
    import_file(client, "".join(csv_lines(rows)).encode("utf-8"))
    exported = export(client)
    for line in exported.splitlines():
        for piece in cells_a_spreadsheet_could_see(line):
            assert not piece.startswith(FORMULA_STARTS), line
    by_name = {row[0]: row for row in csv.reader(io.StringIO(exported))}
    assert restore(by_name["ann"][1]) == value
    batch_id = batch_id_of(upload(client, exported.encode("utf-8-sig")))
    counts = proposed(review(client, batch_id))
    assert counts["nochange"] == 2 and counts["update"] == counts["error"] == 0  # ann and boss


def test_errors_and_results_files_are_quoted_and_neutralised(app, client):
    hostile = "x;=cmd|' /C calc'!A0"
    data = ("username;firstname;surname;email\n"
            f'ann;Ann;Lee;ann@example.com\nbad;"{hostile}";;bad@example.com\n').encode()
    batch_id = batch_id_of(upload(client, data))
    errors = client.get(f"/admin/people/import/{batch_id}/errors.csv").get_data(as_text=True)
    line = errors.splitlines()[1]
    assert line.startswith('"bad";"x;\'=cmd') and "surname is missing" in line
    for piece in cells_a_spreadsheet_could_see(line):
        assert not piece.startswith(FORMULA_STARTS), line
    choose_all(client, batch_id, "add")
    results = client.get(f"/admin/people/import/{batch_id}/results.csv").get_data(as_text=True)
    assert results.splitlines()[1] == '"2","ann","add","added","Added; invitation queued."'
