"""A file that is not UTF-8 is never silently mis-decoded: the candidate encodings are judged by
the plausibility of the words they read, and a doubt is left to the admin with both readings."""

from __future__ import annotations

import pytest
from conftest import sample

from bulkimport.config import SETTINGS
from bulkimport.importing.encodings import (
    MAX_WORD_PAIRS,
    Alternative,
    UndecodableFile,
    choose_reading,
    is_plausible,
    judge_words,
)
from bulkimport.importing.reader import FileProblem, read_table

DEFAULT_FALLBACKS = tuple(next(s.default for s in SETTINGS if s.name == "ENCODING_FALLBACKS"))
HEADING = "username;firstname;surname;email\r\n"


def test_the_default_candidates_are_windows_1252_then_1250():
    assert DEFAULT_FALLBACKS == ("cp1252", "cp1250")


def test_polish_windows_1250_sample_is_read_right_with_the_default_settings():
    table = read_table(sample("excel-semicolon-cp1250.csv"), fallbacks=DEFAULT_FALLBACKS)
    assert (table.encoding, table.encoding_name, table.delimiter) == (
        "cp1250", "Windows-1250", ";")
    assert [r.cells[1:3] for r in table.records] == [
        ["Agnieszka", "Wiśniewska"], ["Łukasz", "Zieliński"], ["Małgorzata", "Dąbrowska"]]
    assert table.alternatives == []  # Wiœniewska, £ukasz, Ma³gorzata, D¹browska: implausible


def test_french_german_windows_1252_sample_is_read_right_with_the_default_settings():
    table = read_table(sample("excel-semicolon-cp1252.csv"), fallbacks=DEFAULT_FALLBACKS)
    assert table.encoding == "cp1252"
    assert [r.cells[1:3] for r in table.records] == [
        ["Bérénice", "Lefèvre"], ["Jürgen", "Strauß"], ["Céline", "d'Aubigné"]]
    # "Lefčvre" is a plausible Czech-looking name, so it is offered, never chosen silently.
    assert table.alternatives == [Alternative("cp1250", [("Lefèvre", "Lefčvre")])]


@pytest.mark.parametrize("word", [
    "£ukasz", "Ma³gorzata", "Kwaœniewski", "Wiœniewska", "D¹browska", "ŁUkasz", "£ódŸ", "Mo¿e",
    "ªerban", "Lefè\x80vre", "Ivanов",
])
def test_implausible_words(word):
    assert not is_plausible(word)


@pytest.mark.parametrize("word", [
    "Łukasz", "Małgorzata", "Kwaśniewski", "Wiśniewska", "Müller", "Bréville", "Straße", "cœur",
    "Œuvre", "Zieliński", "Zieliñski", "Lefèvre", "Lefčvre", "O’Brien", "Nº", "1º", "¿Qué",
    "Иванов", "山田", "McDonald", "ÉTIENNE",
])
def test_plausible_words(word):
    assert is_plausible(word)


def test_letters_of_no_one_language_make_a_word_doubtful_not_implausible():
    assert judge_words(["Dvořák"]).doubtful == 0
    assert judge_words(["Dvoøák"]).doubtful == 1  # ø with á: no language writes both
    assert judge_words(["Œliwa"]).doubtful == 1  # Polish Śliwa read as Windows-1252
    assert judge_words(["Dvoøák", "Kuèera"]).languages > judge_words(["Dvořák", "Kučera"]).languages


def test_two_plausible_readings_give_the_chosen_one_and_the_other_with_the_differing_words():
    data = (HEADING + "lzielinski;Jan;Zieliński;jan@example.com\r\n"
            "lzielinska;Ewa;Zielińska;ewa@example.com\r\n"
            "amarek;Anna;Marek;anna@example.com\r\n").encode("cp1250")
    table = read_table(data, fallbacks=DEFAULT_FALLBACKS)
    # ñ is Spanish and ń Polish: nothing tells them apart, so the order decides and both show.
    assert (table.encoding, table.records[0].cells[2]) == ("cp1252", "Zieliñski")
    assert table.alternatives == [
        Alternative("cp1250", [("Zieliñski", "Zieliński"), ("Zieliñska", "Zielińska")])]
    again = read_table(data, encoding=table.alternatives[0].codec)
    assert [r.cells[2] for r in again.records] == ["Zieliński", "Zielińska", "Marek"]
    assert again.alternatives == []


def test_a_file_that_is_coherent_in_one_reading_prefers_it_but_still_offers_the_other():
    data = (HEADING + "advorak;Antonín;Dvořák;a@example.com\r\n"
            "pkucera;Petr;Kučera;p@example.com\r\n").encode("cp1250")
    table = read_table(data, fallbacks=DEFAULT_FALLBACKS)
    assert (table.encoding, [r.cells[2] for r in table.records]) == ("cp1250", ["Dvořák", "Kučera"])
    assert table.alternatives == [
        Alternative("cp1252", [("Dvořák", "Dvoøák"), ("Kučera", "Kuèera")])]


def test_a_candidate_that_cannot_decode_the_file_is_skipped():
    data = (HEADING + "mtrnka;Marek;Ťapák;m@example.com\r\n").encode("cp1250")  # 0x8d
    table = read_table(data, fallbacks=DEFAULT_FALLBACKS)
    assert (table.encoding, table.records[0].cells[2], table.alternatives) == (
        "cp1250", "Ťapák", [])


def test_a_control_character_in_a_reading_makes_it_lose():
    data = (HEADING + "jdoe;Jérôme;Doe €;j@example.com\r\n").encode("cp1252")
    for order in (["latin-1", "cp1252"], ["cp1252", "latin-1"]):
        table = read_table(data, fallbacks=order)
        assert (table.encoding, table.records[0].cells[2], table.alternatives) == (
            "cp1252", "Doe €", [])


def test_readings_that_agree_on_every_byte_of_the_file_are_no_alternative():
    data = (HEADING + "jstrauss;Jürgen;Strauß;j@example.com\r\n").encode("cp1252")
    table = read_table(data, fallbacks=["cp1252", "latin-1", "cp1250"])
    assert (table.encoding, table.alternatives) == ("cp1252", [])


def test_the_word_pairs_of_an_alternative_are_capped_and_in_file_order():
    rows = "".join(f"u{n};Jan;Zieliński{n};u{n}@example.com\r\n" for n in range(30))
    reading = choose_reading((HEADING + rows).encode("cp1250"), ["cp1252", "cp1250"])
    [alternative] = reading.alternatives
    assert len(alternative.words) == MAX_WORD_PAIRS
    assert alternative.words[:2] == [("Zieliñski0", "Zieliński0"), ("Zieliñski1", "Zieliński1")]


def test_no_candidate_decoding_the_file_keeps_the_message_naming_each_one():
    data = (HEADING + "x;y;Lef\x81vre;z@example.com\r\n").encode("latin-1")
    with pytest.raises(UndecodableFile) as caught:
        choose_reading(data, ["cp1252", "cp1250"])
    assert [codec for codec, _ in caught.value.failures] == ["cp1252", "cp1250"]
    with pytest.raises(FileProblem) as problem:
        read_table(data, fallbacks=DEFAULT_FALLBACKS)
    assert problem.value.message.startswith(
        "Line 2: the file is neither UTF-8 nor Windows-1252 nor Windows-1250 (byte 0x81 cannot be "
        "read). Save it as “CSV UTF-8”")


def test_a_large_file_is_read_and_judged_by_its_distinct_words():
    names = ["Wiśniewska", "Łukasz", "Zieliński", "Małgorzata", "Dąbrowska", "Kowalski"]
    rows = "".join(f"u{n};{names[n % 6]};{names[(n + 1) % 6]}{n % 97};u{n}@example.com\r\n"
                   for n in range(100_000))
    table = read_table((HEADING + rows).encode("cp1250"), fallbacks=DEFAULT_FALLBACKS)
    assert (table.encoding, len(table.records), table.alternatives) == ("cp1250", 100_000, [])
    assert table.records[99_999].cells[1:3] == ["Małgorzata", "Dąbrowska89"]


def test_a_long_word_without_separators_is_scanned_once():
    # Each word is matched from its start only, so a long run of letters costs one pass, not one
    # pass per letter (which would take minutes here).
    data = (HEADING + "a;b;" + "x" * 2_000_000 + "è;c@example.com\r\n").encode("cp1252")
    reading = choose_reading(data, ["cp1252", "cp1250"])
    assert reading.codec == "cp1252"
    [(chosen, other)] = reading.alternatives[0].words
    assert (chosen[-2:], other[-2:]) == ("xè", "xč")
