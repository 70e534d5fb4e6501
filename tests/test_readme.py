"""The README stays true: every setting is documented, and so are the two commands."""

from pathlib import Path

from bulkimport.config import SETTINGS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    missing = [s.env for s in SETTINGS if f"| `{s.env}` |" not in README]
    assert missing == []


def test_the_two_commands_are_shown():
    assert "make run" in README and "make test" in README
