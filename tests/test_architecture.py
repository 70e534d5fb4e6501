"""The architecture of DESIGN.md, checked: services never load web code, no import cycles
between the packages and modules of bulkimport, the standard columns declared once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICE_ENTRY_POINTS = ("bulkimport.importing.validation", "bulkimport.mailing.sending",
                        "bulkimport.worker")


@pytest.mark.parametrize("module", SERVICE_ENTRY_POINTS)
def test_a_service_loads_no_view(module):
    code = (f"import sys, {module}\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith('bulkimport')))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    assert module in loaded
    views = [m for m in loaded if m.endswith(".routes") or m.rsplit(".", 1)[-1].endswith(
        "_routes") or m.split(".")[1:2] in (["auth"], ["people"], ["localisation"], ["system"])]
    assert views == []


def test_import_contracts_are_kept():
    """No cycles between sibling packages and modules; services import no blueprint
    (the contracts are in pyproject.toml)."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("spelling", [
    '"Change password next time"', '"givenname"', '"forcepasswordchange"', '"familyname"',
    '"emailaddress"', '"loginname"'])
def test_standard_columns_are_declared_once(spelling):
    places = [path.relative_to(ROOT).as_posix() for path in (ROOT / "bulkimport").rglob("*.py")
              if spelling in path.read_text()]
    assert places == ["bulkimport/columns.py"]


def test_only_columns_declares_the_updatable_fields():
    pattern = re.compile(r"\(\s*\"username\",\s*\"firstname\",\s*\"surname\"")
    places = [path.name for path in (ROOT / "bulkimport").rglob("*.py")
              if pattern.search(path.read_text())]
    assert places == []
