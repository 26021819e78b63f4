"""Pinned instants: no test depends on today's date, the wall clock or the host's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

# Our side's "now" for pure tests, and the moment the `pki` fixture mints its certificates.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# The lab router's clock (`router_spec`): a one-digit day (the history column pads it), never today's date.
PINNED = datetime(2026, 12, 1, 23, 49, 35, tzinfo=UTC)
