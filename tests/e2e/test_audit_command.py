"""`eemwatchd audit` prints each row with its test-fire evidence, as text and as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eemwatchd.adapters.store import AuditEntry, Store
from eemwatchd.cli import main
from tests.support.config_texts import STATE_CONFIG

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_evidence_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "eemwatchd.yaml").write_text(STATE_CONFIG)
    with Store.open(tmp_path / "state.db") as store:
        store.append_audit(AuditEntry(at=NOW, router="r1", action="test-fire", trustpoint=None, sha256_before=None,
                                      sha256_after=None, test_fire="failed", reason="could not prove mail works",
                                      evidence="Command authorization failed."))
        head = store.audit()[0].hash
    assert main(["audit", "-c", str(tmp_path / "eemwatchd.yaml")]) == 0
    assert capsys.readouterr().out == ("2026-03-01 12:00:00 r1 test-fire failed: could not prove mail works "
                                       "(evidence: Command authorization failed.)\n")
    assert main(["audit", "-c", str(tmp_path / "eemwatchd.yaml"), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["entries"]
    assert (row["evidence"], row["hash"]) == ("Command authorization failed.", head)
