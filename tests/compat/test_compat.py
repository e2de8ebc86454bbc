"""Every scenario against our broker and, when there is one, against RabbitMQ.

- ``test_ours``: the scenario ran against our broker and met its own written expectation;
- ``test_rabbitmq``: the same against RabbitMQ, which keeps the expectations honest;
- ``test_same_as_rabbitmq``: both observations are equal after ``normalise``. Deliberate
  divergences (README) are checked against their documented expectations instead.
"""

from __future__ import annotations

import json

import pytest

from . import scenarios  # noqa: F401 - registers every scenario
from .harness import SCENARIOS, matches, normalise
from .xfail import REASON, pending

NAMES = sorted(SCENARIOS)


def _params(with_xfail: bool):
    params = []
    for name in NAMES:
        marks = []
        if with_xfail and pending(SCENARIOS[name].covers):
            marks.append(pytest.mark.xfail(reason=REASON, strict=False))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def _observed(result: dict):
    if "skipped" in result:
        pytest.skip(result["skipped"])
    if "crashed" in result:
        pytest.fail(f"scenario crashed: {result['crashed']}")
    json.dumps(result["observed"])  # observations are plain data
    return result["observed"]


def _meets(name: str, observed, expected) -> None:
    if expected is not None:
        assert matches(observed, expected), (
            f"{name}: observation does not meet the written expectation\n"
            f"observed: {json.dumps(observed, indent=1)}"
        )


@pytest.mark.parametrize("scenario_name", _params(with_xfail=True))
def test_ours(scenario_name, ours):
    item = SCENARIOS[scenario_name]
    observed = _observed(ours.observe(scenario_name))
    _meets(scenario_name, observed, item.divergence.ours if item.divergence else item.expect)


@pytest.mark.parametrize("scenario_name", _params(with_xfail=False))
def test_rabbitmq(scenario_name, rabbitmq):
    item = SCENARIOS[scenario_name]
    observed = _observed(rabbitmq.observe(scenario_name))
    expected = item.divergence.rabbitmq if item.divergence else item.expect
    _meets(scenario_name, observed, expected)


@pytest.mark.parametrize("scenario_name", _params(with_xfail=True))
def test_same_as_rabbitmq(scenario_name, ours, rabbitmq):
    item = SCENARIOS[scenario_name]
    result_ours, result_rabbitmq = ours.observe(scenario_name), rabbitmq.observe(scenario_name)
    seen_ours, seen_rabbitmq = _observed(result_ours), _observed(result_rabbitmq)
    if item.divergence is not None:
        # Deliberate: each side must do what is documented for it.
        _meets(scenario_name, seen_ours, item.divergence.ours)
        _meets(scenario_name, seen_rabbitmq, item.divergence.rabbitmq)
        return
    assert normalise(seen_ours, result_ours["prefix"]) == normalise(
        seen_rabbitmq, result_rabbitmq["prefix"]
    )
