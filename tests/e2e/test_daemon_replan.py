"""Issue 16 finding 2: the daemon re-plans a server's routers as soon as what the server sends changes, so a router
that cannot validate the new chain is `waiting` (not in sync) from the first sighting, not after confirmation."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import yaml

from eemwatchd_lab.scenario import Lab
from tests.support.daemon import all_in_sync, daemon_process, get, live_lab_document, metrics, series, wait_until

pytestmark = pytest.mark.timeout(120)


def state_of(base: str) -> dict[str, str]:
    values = metrics(base)
    return {dict(labels)["router"]: dict(labels)["state"] for (name, labels), value in values.items()
            if name == "eemwatchd_router_state" and value == 1.0}


async def test_a_new_root_the_routers_lack_makes_them_waiting_at_its_first_sighting(
    live_lab: Lab, tmp_path: Path
) -> None:
    lab = live_lab
    names = [d.name for d in lab.fleet]
    # Confirmation takes >= 5 sightings 1 s apart (spacing: half the 2 s interval): a window of >= 8 s in which
    # the new chain is seen but not confirmed. The routers' own interval (10 min) is far away.
    document, base = live_lab_document(lab.config_path, server_interval="2s", router_interval="10m")
    document["policy"]["confirmations"] = 5
    lab.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    log = tmp_path / "daemon.log"
    with daemon_process(lab.config_path, log) as daemon:
        await wait_until("/readyz", lambda: get(f"{base}/readyz")[0] == 200, 60, daemon, log)
        await wait_until("routers in sync", lambda: all_in_sync(base, names), 90, daemon, log)

        lab.pki.move_to_new_anchor("Other Root X1", "Other CA 1")  # a root nothing the routers hold signed
        lab.serve()
        rotated = time.monotonic()
        states = await wait_until("routers waiting", lambda: (lambda s: s if all(s.get(n) == "waiting" for n in names)
                                                            else None)(state_of(base)), 20, daemon, log)
        took = time.monotonic() - rotated
        assert set(states.values()) == {"waiting"}
        assert all(series(metrics(base), "eemwatchd_router_in_sync").get(n) == 0.0 for n in names)
        assert took < 8.0  # before 5 sightings 2 s apart could have confirmed the chain
        assert lab.mailing_now(list(lab.pki.served)) == []  # and indeed, no router could mail right now
    assert get(f"{base}/healthz")[0] == 0  # the daemon is gone


async def test_a_server_that_cannot_be_fetched_leaves_its_routers_not_in_sync_and_a_second_sigterm_is_harmless(
    live_lab: Lab, tmp_path: Path
) -> None:
    """Issue 16 (fault schedules, seed 2): while the daemon cannot fetch a server, what it sends now is unknown (the
    provider may have moved to a chain the routers reject): its routers are re-planned at once and are `unconfirmed`,
    not in sync, until a fetch works again. And SIGTERMs sent while the daemon stops never kill it (exit 0, not -15:
    its handlers used to go before the process had exited)."""
    lab = live_lab
    names = [d.name for d in lab.fleet]
    # the routers' own interval is far away: only a re-plan can change a router's state in time
    document, base = live_lab_document(lab.config_path, server_interval="2s", router_interval="10m")
    lab.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    log = tmp_path / "daemon.log"
    with daemon_process(lab.config_path, log) as daemon:
        await wait_until("/readyz", lambda: get(f"{base}/readyz")[0] == 200, 60, daemon, log)
        await wait_until("routers in sync", lambda: all_in_sync(base, names), 90, daemon, log)

        await lab.smtp.stop()
        states = await wait_until("routers unconfirmed", lambda: (lambda s: s if all(
            s.get(n) == "unconfirmed" for n in names) else None)(state_of(base)), 20, daemon, log)
        assert set(states.values()) == {"unconfirmed"}
        assert "its fetch failed" in log.read_text()

        await lab.smtp.start()
        await wait_until("routers in sync again", lambda: all_in_sync(base, names), 30, daemon, log)

        daemon.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while daemon.poll() is None and time.monotonic() < deadline:
            daemon.send_signal(signal.SIGTERM)  # every few ms, through the whole shutdown
            time.sleep(0.005)
        assert daemon.wait(timeout=5) == 0, log.read_text()[-3000:]
