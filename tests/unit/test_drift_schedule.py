"""``drift.every``: when the next drift check is overdue (shown by ``envctl status``)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from unithelpers import CliResult, MakeRepo

from envctl.core.drift import overdue_seconds
from envctl.core.durations import format_duration, parse_duration

AT = "2026-11-28T12:00:00+00:00"


def test_no_schedule_is_never_overdue() -> None:
    assert overdue_seconds("2026-01-01T00:00:00+00:00", None, AT) is None


def test_a_check_within_the_schedule_is_not_overdue() -> None:
    assert overdue_seconds("2026-11-28T11:30:00+00:00", "1h", AT) is None


def test_a_late_check_says_by_how_much() -> None:
    assert overdue_seconds("2026-11-28T09:00:00+00:00", "1h", AT) == pytest.approx(2 * 3600)


def test_never_checked_with_a_schedule_is_overdue_since_ever() -> None:
    assert overdue_seconds(None, "1h", AT) == math.inf


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (60, "1m"), (3725, "1h2m"), (90061, "1d1h"), (7200, "2h")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**7))
def test_format_duration_reads_back_within_its_precision(seconds: int) -> None:
    back = parse_duration(format_duration(seconds))
    # two units: the rest is below the second unit, i.e. below 1/60 of the first one
    assert back <= seconds and seconds - back < max(1.0, seconds / 23)


STACK_ONLY = {
    "environments/dev/environment.yaml": "name: dev\ndrift:\n  every: 1h\n",
    "environments/dev/stacks/network/main.tf": 'output "vpc_id" { value = "vpc-1" }\n',
}


def test_status_says_when_the_scheduled_drift_check_is_overdue(
    make_repo: MakeRepo, run_cli: Callable[..., CliResult]
) -> None:
    root = make_repo(STACK_ONLY, base=False)
    r = run_cli("status", "-e", "dev", "--repo", root)
    assert r.code == 0, r
    assert "drift check due every 1h (drift.every): never run; run envctl drift -e dev" in r.out, r.out
    (root / ".envctl" / "drift" / "dev").mkdir(parents=True)
    (root / ".envctl" / "drift" / "dev" / "last.json").write_text(
        json.dumps({"at": "2020-01-01T00:00:00+00:00", "summary": "in sync"})
    )
    r = run_cli("status", "-e", "dev", "--repo", root, "--format", "json")
    data = json.loads(r.out)
    assert data["drift_every"] == "1h" and data["drift_overdue"] is True
    r = run_cli("status", "-e", "dev", "--repo", root)
    assert re.search(r"drift check due every 1h \(drift\.every\): overdue by \d+d", r.out), r.out
