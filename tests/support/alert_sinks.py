"""Alert sinks for the tests (Protocol fakes: no base class) and the secrets no alert may carry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from eemwatchd.adapters.alerts import Alert
from tests.support.reconcile_lab import ROUTER_PASSWORD, SMTP_PASSWORD

ALERT_PASSWORD = "alert-sink-pw-K2"  # lab only; must never leave in an alert, a log line or an error
SECRETS = (ALERT_PASSWORD, ROUTER_PASSWORD, SMTP_PASSWORD)


def assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@dataclass
class RecordingSink:
    """A sink that keeps what it was given (a Protocol fake: no base class)."""

    name: str = "recorder"
    batches: list[list[Alert]] = field(default_factory=list)

    async def send(self, alerts: Sequence[Alert]) -> None:
        self.batches.append(list(alerts))

    @property
    def alerts(self) -> list[Alert]:
        return [a for batch in self.batches for a in batch]
