"""The status page: content a person needs, escaping of every value, no external assets, and a real headless
Chromium loading it from the endpoint over HTTP and finding one row per router with its state."""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from eemwatchd.daemon.http_endpoint import start_http
from eemwatchd.daemon.status import AuditLine, FleetStatus, RouterStatus
from eemwatchd.daemon.status_page import render_status_page
from tests.support.metrics_fleet import NOW, SECRET, SHA, fleet

EVIL_ROUTER = "<script>document.body.setAttribute('data-pwned','1')</script>"
EVIL_ERROR = '"><img src=x onerror="document.body.setAttribute(\'data-pwned\',\'2\')">'


def evil_fleet() -> FleetStatus:
    status = fleet()
    status.set_router(RouterStatus(name=EVIL_ROUTER, host="127.0.0.9", up=False, in_sync=False, state="failed",
                                   detail=EVIL_ERROR, last_check=NOW - timedelta(seconds=30)))
    gmail = status.servers["gmail"]
    bad = replace(gmail.addresses[1], error=EVIL_ERROR)
    status.set_server(replace(gmail, addresses=(gmail.addresses[0], bad)))
    status.add_changes([AuditLine(at=NOW - timedelta(minutes=7), router=EVIL_ROUTER, action="add",
                                  trustpoint="EEMW-<b>x</b>", sha256=SHA["e"], detail=EVIL_ERROR)])
    return status


def test_page_shows_servers_routers_and_changes_at_a_glance() -> None:
    status = fleet()
    status.add_changes([AuditLine(at=NOW - timedelta(minutes=7), router="r1", action="add",
                                  trustpoint="EEMW-b1b1b1b1", sha256=SHA["b"], detail="installed WR2")])
    page = render_status_page(status, now=NOW)
    # header
    assert "<title>eemwatchd 0.1.0</title>" in page
    assert "1 of 3 routers in sync" in page
    assert "1 of 3 server addresses verified" in page
    # servers: addresses, verdicts with reasons, chain, short fingerprints, expiry, last fetch
    assert "smtp.lab.test:587 (starttls), last fetch <span" in page
    assert ">5 min ago</span>" in page
    assert "2 confirmed chain changes" in page
    assert "<code>::1</code>: <span class=\"bad\">NOT verified</span>: unable to get issuer" in page
    assert '<span class="bad">fetch failed</span>: connection refused' in page
    assert "CN=GTS Root R1" in page
    assert f'<code title="{SHA["c"]}">{SHA["c"][:16]}</code>' in page
    assert "2026-04-30 <span>(in 60 d)</span>" in page  # leaf expiry: date and days left
    # routers: state, detail, last check, proven test-fire, trustpoints, lint
    assert 'data-router="r2" data-state="drift"' in page
    assert "misses WR2" in page
    assert "<code>EEMW-b1b1b1b1</code> (managed)" in page
    assert '<code>maxrun-short</code> (warning): maxrun 5 s' in page
    assert '<span class="bad">failed</span>' in page  # r2's test-fire
    assert "(not reachable)" in page  # r3
    # recent changes
    assert "installed WR2" in page
    assert ">7 min ago</span>" in page


def test_expiry_is_marked_when_close_or_past() -> None:
    page = render_status_page(fleet(), now=NOW)
    assert '<span class="bad">(expired 30 d ago)</span>' in page  # TP-self-signed-1 on r1
    page = render_status_page(fleet(), now=NOW + timedelta(days=50))
    assert '<span class="warn">(in 10 d)</span>' in page  # the leaf, 10 days left


def test_every_value_is_escaped() -> None:
    page = render_status_page(evil_fleet(), now=NOW)
    assert "<script" not in page
    assert "<img" not in page
    assert "<b>x</b>" not in page
    assert "&lt;script&gt;document.body.setAttribute(&#x27;data-pwned&#x27;,&#x27;1&#x27;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=&quot;" in page


def test_no_external_assets_and_no_scripts() -> None:
    page = render_status_page(fleet(), now=NOW)
    assert not re.search(r"<(script|link|img|iframe|object)\b", page)
    assert not re.search(r"\b(src|href)=", page)
    assert "url(" not in page
    assert "@import" not in page


def test_no_secret_on_the_page_from_the_model_beyond_what_it_was_given() -> None:
    # the model is scrubbed by the daemon; the page adds nothing of its own (here the fixture's raw error
    # deliberately holds a secret, which the page shows verbatim - proving the scrub must happen upstream)
    page = render_status_page(fleet(), now=NOW)
    assert page.count(SECRET) == 1


def test_empty_fleet_renders() -> None:
    page = render_status_page(FleetStatus(version="0.1.0", started_at=NOW), now=NOW)
    assert "No router checked yet." in page
    assert "No server fetched yet." in page
    assert "No recent change." in page
    assert "first pass running" in page


class _Rows(HTMLParser):
    """The rows of table#routers in a DOM dump: (data-router, data-state, text of the state cell, row text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self._in_table = False
        self._row: dict[str, str] | None = None
        self._cell = ""
        self.pwned = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "data-pwned" in a:
            self.pwned = True
        if tag == "table":
            self._in_table = a.get("id") == "routers"
        elif tag == "tr" and self._in_table and "data-router" in a:
            self._row = {"router": a["data-router"], "state": a["data-state"], "text": "", "state_cell": ""}
        elif tag == "td" and self._row is not None:
            self._cell = a.get("class", "")
        elif tag == "script" and self._row is not None:
            self._row["text"] += "[SCRIPT ELEMENT]"

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row["text"] += data
            if self._cell == "state":
                self._row["state_cell"] += data


async def test_headless_chromium_renders_one_row_per_router(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (Debian package 'chromium')")
    status = evil_fleet()
    endpoint = await start_http("127.0.0.1:0", status=status, registry=CollectorRegistry(), heartbeat=lambda: 0.0,
                                now=lambda: NOW)
    try:
        process = await asyncio.create_subprocess_exec(
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", endpoint.url + "/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=45)
        except TimeoutError:
            process.kill()  # only the process this test started, by its handle
            await process.wait()
            raise
    finally:
        await endpoint.close()
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    dom = out.decode()
    assert "<title>eemwatchd 0.1.0</title>" in dom
    parsed = _Rows()
    parsed.feed(dom)
    assert not parsed.pwned
    by_router = {row["router"]: row for row in parsed.rows}
    assert len(parsed.rows) == len(status.routers) == 4
    assert {name: row["state"] for name, row in by_router.items()} == {
        "r1": "in-sync", "r2": "drift", "r3": "unreachable", EVIL_ROUTER: "failed"}
    assert by_router["r1"]["state_cell"].strip() == "in-sync"
    assert by_router["r3"]["state_cell"].strip() == "unreachable (not reachable)"
    # the hostile name is text in its cell, not an element
    assert EVIL_ROUTER in by_router[EVIL_ROUTER]["text"]
    assert "[SCRIPT ELEMENT]" not in by_router[EVIL_ROUTER]["text"]


def test_page_shows_pre_staged_certificates_per_server_and_on_each_router() -> None:
    page = render_status_page(fleet(), now=NOW)
    # on the router that holds it, marked as pre-staged beside the path's roles
    assert ('<code>EEMW-e1e1e1e1</code> (managed): '
            f'<code title="{SHA["e"]}">{SHA["e"][:16]}</code> CN=GTS Root R4 '
            '<span class="prestaged" data-role="prestaged">(pre-staged)</span>, expires') in page
    assert '<span class="muted" data-role="intermediate">(intermediate)</span>' in page
    # under its server: expiry, how many routers hold it, and which future chains they would accept today
    row = re.search(rf'<tr data-prestaged="{SHA["e"]}">(.*?)</tr>', page)
    assert row is not None
    cells = row.group(1)
    assert "CN=GTS Root R4" in cells and "(in 3000 d)" in cells
    assert "<td>1 of 2</td>" in cells  # r1 holds it, r2 not yet (r3 was never read)
    assert 'chains it signs: <span class="bad">1 of 2</span>' in cells
    assert 'a cross-sign of it on top: <span class="muted">cannot tell</span>' in cells
    assert "Pre-staged for gmail" in page and "Pre-staged for office" not in page
