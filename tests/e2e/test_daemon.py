"""The daemon end to end: lab SMTP server and lab routers on 127.0.0.1, `eemwatchd run` as a real process,
its webhook alerts, /metrics scraped by a real Prometheus, the status page, SIGHUP and SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eemwatchd_lab.scenario import Lab
from tests.support.daemon import daemon_process, free_port, get, metrics, series, wait_until
from tests.support.prometheus_server import start_prometheus
from tests.support.webhook import Receiver, serve_webhook

pytestmark = pytest.mark.timeout(150)


def configure(live_lab: Lab, receiver: Receiver, port: int) -> None:
    document = yaml.safe_load(live_lab.config_path.read_text())
    document["metrics"] = {"listen": f"127.0.0.1:{port}"}
    document["alerts"] = [{"kind": "log"}, {"kind": "webhook", "url": receiver.url + "/hook",
                                            "events": ["chain_changed", "chain_unverified", "router_drift",
                                                       "refresh_failed", "refresh_succeeded"]}]
    document["defaults"]["routers"]["interval"] = "60s"
    live_lab.config_path.write_text(yaml.safe_dump(document, sort_keys=False))


def in_sync_everywhere(base: str, names: list[str], mails_before: int, live_lab: Lab) -> bool:
    values = metrics(base)
    synced = series(values, "eemwatchd_router_in_sync")
    fired = series(values, "eemwatchd_router_testfire_success")
    return (all(synced.get(n) == 1.0 for n in names) and all(fired.get(n) == 1.0 for n in names)
            and len(live_lab.smtp.messages) >= mails_before + len(names))


def page_rows(base: str) -> dict[str, str]:
    code, page = get(f"{base}/")
    assert code == 200
    return dict(re.findall(r'data-router="([^"]+)"[^>]*data-state="([^"]+)"', page))


async def test_daemon_keeps_routers_mailing_through_a_root_rotation(live_lab: Lab, tmp_path: Path) -> None:
    names = [d.name for d in live_lab.fleet]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "daemon.log"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # systemd's side of sd_notify
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)

    def notifications() -> list[str]:
        out = []
        with contextlib.suppress(BlockingIOError):
            while True:
                out.append(notify.recv(4096).decode())
        return out

    with serve_webhook() as receiver, contextlib.closing(notify):
        configure(live_lab, receiver, port)
        with daemon_process(live_lab.config_path, log, env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}) as daemon:
            # first pass: ready, every router gets the CAs and proves mail
            await wait_until("/readyz", lambda: get(f"{base}/readyz")[0] == 200, 60, daemon, log)
            await wait_until("routers in sync", lambda: in_sync_everywhere(base, names, 0, live_lab), 60, daemon, log)
            assert set(page_rows(base).items()) == {(n, "in-sync") for n in names}

            # one writer: a manual apply meanwhile is told the daemon runs (exit 75)
            apply = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "eemwatchd.cli", "apply", "--yes", "-c", str(live_lab.config_path)],
                capture_output=True, timeout=60, check=False)
            assert apply.returncode == 75, apply.stderr
            assert b"another eemwatchd (pid " in apply.stderr and b"is applying; try again later (it is the daemon" \
                in apply.stderr

            # a real Prometheus scrapes the daemon
            # (its helper blocks: off the event loop, which serves the lab's SMTP server and routers)
            prometheus = await asyncio.to_thread(start_prometheus, f"127.0.0.1:{port}", tmp_path / "prometheus")
            try:
                rows = await asyncio.to_thread(prometheus.wait_for, "eemwatchd_router_in_sync == 1", timeout=30,
                                               check=lambda rows: len(rows) == len(names))
            finally:
                await asyncio.to_thread(prometheus.stop)
            assert {r.labels["router"] for r in rows} == set(names)

            # the provider moves to a new root (cross-signed by the old one)
            mails = len(live_lab.smtp.messages)
            live_lab.pki.rotate_root("Lab Root R9", "Lab WE9")
            live_lab.serve()
            new_root = live_lab.pki.new_root.cert.sha256
            await wait_until("chain_changed on the webhook",
                             lambda: any(a["event"] == "chain_changed" for b in receiver.bodies for a in b["alerts"]),
                             30, daemon, log)

            def holders_of(sha256: str) -> set[str]:
                return {dict(labels)["router"] for (n, labels), _ in metrics(base).items()
                        if n == "eemwatchd_router_cert_not_after_timestamp_seconds"
                        and dict(labels)["sha256"] == sha256}

            await wait_until("routers re-synced with a proven test-fire",
                             lambda: holders_of(new_root) == set(names)
                             and in_sync_everywhere(base, names, mails, live_lab),
                             60, daemon, log)
            # /metrics and the status page tell the same story: the new root is held, every router in sync
            assert set(page_rows(base).items()) == {(n, "in-sync") for n in names}
            assert new_root[:8].upper() in get(f"{base}/")[1].upper()
            assert all(live_lab.mailing_now(list(live_lab.pki.served)) == names for _ in [0])

            # SIGHUP with a broken config: reported, the running one kept
            good = live_lab.config_path.read_text()
            live_lab.config_path.write_text(good + "\nrouters: [{name: x}]\n")
            os.kill(daemon.pid, signal.SIGHUP)
            await wait_until("reload failure in /metrics",
                             lambda: series(metrics(base), "eemwatchd_config_last_reload_successful").get("") == 0.0,
                             20, daemon, log)
            assert get(f"{base}/healthz")[0] == 200
            live_lab.config_path.write_text(good)

            # SIGTERM: exits 0 within a bound
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0, log.read_text()[-3000:]
            told = notifications()
            assert any(m.startswith("READY=1") for m in told), told
            assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in told), told
            assert any(m.startswith("STOPPING=1") for m in told), told
    text = log.read_text()
    assert live_lab.mail_password not in text and live_lab.router_password not in text
    assert "reload failed, keeping the running configuration" in text
    events = [(a["event"], a.get("state")) for b in receiver.bodies for a in b["alerts"]]
    assert ("chain_changed", "firing") in events
    assert json.dumps(receiver.bodies).count(live_lab.mail_password) == 0
