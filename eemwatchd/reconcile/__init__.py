"""The reconcile service: observe servers, compute desired trust, plan and apply it router by router."""

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
    Interrupted,
    RouterResult,
    RunReport,
    ServerOutcome,
)
from eemwatchd.reconcile.service import Reconciler, config_secrets, trust_policy, utc_now

__all__ = [
    "AddressOutcome", "AppliedStep", "ApplyFailed", "Interrupted", "Reason", "Reconciler", "RouterConnector",
    "RouterResult", "RouterSessionLike", "RunReport", "ServerFetcher", "ServerOutcome", "build_alerts",
    "config_secrets", "default_connector", "default_fetcher", "mail_passwords", "target_from_config",
    "trust_policy", "utc_now",
]
