"""docs/compatibility.md stays true: it lists every AMQP 0-9-1 method and every extension
the suite knows, and what it calls supported is exercised and not expected to fail."""

from __future__ import annotations

import pathlib
import re

import pytest
from pamqp import commands

from . import scenarios  # noqa: F401 - registers every scenario
from .harness import SCENARIOS
from .xfail import NOT_IMPLEMENTED_YET

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"
STATUSES = {"supported", "differs", "not supported"}
ROW = re.compile(r"^\|\s*([a-z][\w.:-]*)\s*\|\s*([a-z ]+?)\s*\|(.*)\|\s*$")
# AMQP 0-9-1 methods that pamqp's catalogue leaves out.
NOT_IN_PAMQP = {"access.request", "access.request-ok"}


def _amqp_name(pamqp_name: str) -> str:
    """``Basic.GetOk`` -> ``basic.get-ok``, the spec's spelling."""
    cls, method = pamqp_name.split(".")
    method = re.sub(r"(?<!^)([A-Z])", r"-\1", method)
    return f"{cls.lower()}.{method.lower()}"


def _rows() -> dict[str, str]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match and match.group(1) not in ("method", "extension"):
            name, status = match.group(1), match.group(2)
            assert name not in rows, f"{name} listed twice"
            rows[name] = status
    return rows


ROWS = _rows()
METHODS = {_amqp_name(cls.name) for cls in commands.INDEX_MAPPING.values()} | NOT_IN_PAMQP
COVERED = {cover for item in SCENARIOS.values() for cover in item.covers}
EXTENSIONS = {cover for cover in COVERED if cover.startswith("ext:")}


def test_statuses_are_known():
    assert {status for status in ROWS.values()} <= STATUSES


def test_every_method_is_listed():
    assert METHODS - ROWS.keys() == set()


def test_every_extension_is_listed():
    listed = {name for name in ROWS if name.startswith("ext:")}
    assert listed == EXTENSIONS | NOT_IMPLEMENTED_YET


def test_no_unknown_rows():
    assert ROWS.keys() - METHODS - EXTENSIONS - NOT_IMPLEMENTED_YET == set()


@pytest.mark.parametrize("name", sorted(n for n, s in ROWS.items() if s == "supported"))
def test_supported_rows_are_exercised(name):
    assert name in COVERED, f"{name} is marked {ROWS[name]} but no scenario covers it"


@pytest.mark.parametrize("name", sorted(n for n in ROWS if n.startswith("ext:")))
def test_extension_status_matches_the_xfail_list(name):
    if name in NOT_IMPLEMENTED_YET:
        assert ROWS[name] == "not supported", f"{name} is still in tests/compat/xfail.py"
    else:
        assert ROWS[name] != "not supported", f"{name} left xfail.py: update the table"


def test_every_covered_name_is_a_method_or_extension():
    assert COVERED - METHODS - EXTENSIONS == set()
