"""The audit's account of a router against what the router holds (pure; table-driven)."""

from __future__ import annotations

import pytest

from eemwatchd.core.audit_replay import AuditedChange, expected_holdings, observed_differences

A, B, C = "a" * 64, "b" * 64, "c" * 64
P = "EEMW-"


def row(action: str, tp: str | None, before: str | None = None, after: str | None = None) -> AuditedChange:
    return AuditedChange(action, tp, before, after)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param([], {}, id="empty-log"),
        pytest.param([row("add", "EEMW-A", after=A)], {"EEMW-A": {A}}, id="add"),
        pytest.param([row("add", "EEMW-A", after=A), row("retire", "EEMW-A", before=A)], {}, id="add-retire"),
        pytest.param([row("add-failed", "EEMW-A", after=A)], {}, id="a-failed-add-says-nothing"),
        pytest.param([row("add", "EEMW-A", after=A), row("test-fire", None), row("save", None)],
                     {"EEMW-A": {A}}, id="test-fire-and-save-change-nothing"),
        pytest.param([row("add", "EEMW-A", after=A), row("retire", "EEMW-A", before=A),
                      row("rollback", "EEMW-A", after=A)], {"EEMW-A": {A}}, id="rollback-puts-back"),
        pytest.param([row("observed-add", "EEMW-B", after=B)], {"EEMW-B": {B}}, id="observed-add-counts"),
        pytest.param([row("add", "EEMW-A", after=A), row("observed-retire", "EEMW-A", before=A)], {},
                     id="observed-retire-counts"),
        pytest.param([row("retire", "EEMW-E")], {}, id="retiring-an-empty-trustpoint"),
        pytest.param([row("add", "CA-X", after=A)], {}, id="not-ours-ignored"),
    ],
)
def test_expected_holdings(rows: list[AuditedChange], expected: dict[str, set[str]]) -> None:
    assert expected_holdings(rows, prefix=P) == {k: frozenset(v) for k, v in expected.items()}


@pytest.mark.parametrize(
    ("expected", "actual", "diffs"),
    [
        pytest.param({"EEMW-A": {A}}, {"EEMW-A": (A,)}, [], id="agree"),
        pytest.param({}, {"EEMW-A": (A,)}, [("observed-add", "EEMW-A", None, A)],
                     id="installed-but-read-back-interrupted"),
        pytest.param({"EEMW-A": {A}}, {}, [("observed-retire", "EEMW-A", A, None)],
                     id="removed-but-retire-row-missing"),
        pytest.param({"EEMW-A": {A}}, {"EEMW-A": (B,)},
                     [("observed-retire", "EEMW-A", A, None), ("observed-add", "EEMW-A", None, B)],
                     id="replaced-by-hand"),
        pytest.param({}, {"EEMW-E": ()}, [], id="empty-trustpoint-is-the-planners"),
        pytest.param({}, {"CA-GlobalSign": (C,)}, [], id="unmanaged-not-audited"),
    ],
)
def test_observed_differences(
    expected: dict[str, set[str]], actual: dict[str, tuple[str, ...]], diffs: list[tuple[object, ...]]
) -> None:
    got = observed_differences({k: frozenset(v) for k, v in expected.items()}, actual, prefix=P)
    assert [(d.action, d.trustpoint, d.sha256_before, d.sha256_after) for d in got] == diffs
    assert all(d.reason for d in got)


def test_replaying_the_differences_makes_the_audit_agree() -> None:
    rows = [row("add", "EEMW-A", after=A), row("add", "EEMW-B", after=B)]
    actual = {"EEMW-B": (C,), "EEMW-D": (A,)}
    diffs = observed_differences(expected_holdings(rows, prefix=P), actual, prefix=P)
    rows += [row(d.action, d.trustpoint, d.sha256_before, d.sha256_after) for d in diffs]
    assert observed_differences(expected_holdings(rows, prefix=P), actual, prefix=P) == []
