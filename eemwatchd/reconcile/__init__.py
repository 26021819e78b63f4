"""The reconcile service: observe servers, compute desired trust, plan and apply it router by router.

The names below load on first use (PEP 562), so `eemwatchd fetch`, which needs only
``eemwatchd.reconcile.observe``, does not import the router side (scrapli, asyncssh) or the config.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eemwatchd.core.reason import Reason
    from eemwatchd.core.secrets import mail_passwords
    from eemwatchd.reconcile.alerting import build_alerts
    from eemwatchd.reconcile.connect import (
        RouterConnector,
        RouterSessionLike,
        ServerFetcher,
        default_connector,
        default_fetcher,
        target_from_config,
    )
    from eemwatchd.reconcile.results import (
        AddressOutcome,
        AppliedStep,
        ApplyFailed,
        HeldTrustpoint,
        Interrupted,
        RouterResult,
        RunReport,
        ServerOutcome,
        StepKind,
    )
    from eemwatchd.reconcile.service import Reconciler, config_secrets, trust_policy, utc_now

_WHERE = {
    "Reason": "eemwatchd.core.reason",
    "mail_passwords": "eemwatchd.core.secrets",
    "build_alerts": "eemwatchd.reconcile.alerting",
    **dict.fromkeys(("RouterConnector", "RouterSessionLike", "ServerFetcher", "default_connector",
                     "default_fetcher", "target_from_config"), "eemwatchd.reconcile.connect"),
    **dict.fromkeys(("AddressOutcome", "AppliedStep", "ApplyFailed", "HeldTrustpoint", "Interrupted", "RouterResult",
                     "RunReport", "ServerOutcome", "StepKind"), "eemwatchd.reconcile.results"),
    **dict.fromkeys(("Reconciler", "config_secrets", "trust_policy", "utc_now"), "eemwatchd.reconcile.service"),
}

__all__ = [
    "AddressOutcome", "AppliedStep", "ApplyFailed", "HeldTrustpoint", "Interrupted", "Reason", "Reconciler",
    "RouterConnector", "RouterResult", "RouterSessionLike", "RunReport", "ServerFetcher", "ServerOutcome", "StepKind",
    "build_alerts", "config_secrets", "default_connector", "default_fetcher", "mail_passwords", "target_from_config",
    "trust_policy", "utc_now",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
