"""Progress on long work (issue 19, sec. 2): a live line on a terminal, nothing on a pipe or with --json; -v logs
each router's steps as they happen. The terminal is a real pseudo-terminal; the routers are the lab's."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import socket
import sys
from pathlib import Path

from tests.support.reconcile_lab import ReconcileLab, cli
from tests.support.terminal import ANSI, drain

ROOT = Path(__file__).resolve().parents[2]


async def on_terminal(lab: ReconcileLab, *args: str) -> tuple[int, str, str]:
    """`eemwatchd ARGS -c CONFIG` with stderr on a pseudo-terminal (80 columns); (exit code, stdout, terminal)."""
    master, slave = pty.openpty()
    os.set_blocking(master, True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eemwatchd.cli", *args, "-c", str(lab.tmp / "eemwatchd.yaml"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=slave,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120", "TERM": "xterm"})
    os.close(slave)
    try:
        reader = asyncio.create_task(asyncio.to_thread(drain, master))
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=40)
        terminal = await asyncio.wait_for(reader, timeout=10)
    finally:
        os.close(master)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), terminal.decode(errors="replace")


async def test_plan_shows_live_progress_on_a_terminal_only(lab: ReconcileLab) -> None:
    code, out, terminal = await on_terminal(lab, "plan")
    assert code == 3, terminal  # the first sighting of the chain: awaiting confirmation
    text = ANSI.sub("", terminal)
    # routers done / total, in flight, failures so far, time left: drawn, then cleared (transient)
    assert re.search(r"plan .*\d/2 routers, \d in flight, 0 failed, left:", text), repr(terminal)
    assert ANSI.search(terminal)
    assert "router r1:" in out and "in flight" not in out  # the report itself goes to stdout as before

    # the same command on a pipe, and with --json on a terminal: not one byte of progress
    code, _, err = await cli(lab, "plan")
    assert code == 3
    assert "in flight" not in err and not ANSI.search(err), err
    code, out, terminal = await on_terminal(lab, "plan", "--json")
    assert "in flight" not in terminal and not ANSI.search(terminal), repr(terminal)
    assert out.lstrip().startswith("{")


async def test_apply_progress_counts_failures_and_verbose_logs_steps_live(lab: ReconcileLab) -> None:
    config_file = lab.tmp / "eemwatchd.yaml"
    config_file.write_text(config_file.read_text().replace("interval: 10m", "interval: 1s"))
    await cli(lab, "plan")
    await asyncio.sleep(0.6)  # the second sighting, half the 1 s interval later, confirms the chain
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    r2 = f"port: {lab.fleet['r2'].port}\n"
    config_file.write_text(config_file.read_text().replace(r2, f"port: {port}\n"))  # r2 is unreachable now
    code, out, terminal = await on_terminal(lab, "apply", "--yes", "-v")
    assert code == 1
    text = ANSI.sub("", terminal)
    assert re.search(r"apply .*2/2 routers, 0 in flight, 1 failed", text), repr(terminal)
    # -v: each step of r1 is logged as it happens, above the progress line
    assert re.search(r"INFO eemwatchd\.steps: router r1: add EEMW-\w+ ok: ", text), text
    assert re.search(r"INFO eemwatchd\.steps: router r1: test-fire ok: show event manager history", text), text
    assert "result: applied" in out


async def test_an_interactive_apply_keeps_what_its_preview_could_not_fetch(lab: ReconcileLab) -> None:
    """`apply` without --yes previews (fetching the servers), asks, then applies without fetching again: when the
    preview's fetch failed, what the server sends now is unknown, and the apply must not call the routers in sync
    (issue 16: a server that cannot be fetched leaves its routers `unconfirmed`)."""
    config_file = lab.tmp / "eemwatchd.yaml"
    config_file.write_text(config_file.read_text().replace("interval: 10m", "interval: 1s"))
    await cli(lab, "plan")
    await asyncio.sleep(0.6)  # the second sighting, half the 1 s interval later, confirms the chain
    code, out, _ = await cli(lab, "apply", "--yes")
    assert code == 0, out  # installed, proven by a test-fire, saved
    await lab.smtp.stop()  # eemwatchd can no longer fetch the server
    try:
        master, slave = pty.openpty()
        os.set_blocking(master, True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "eemwatchd.cli", "apply", "-c", str(config_file),
            stdin=slave, stdout=asyncio.subprocess.PIPE, stderr=slave,
            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120", "TERM": "xterm"})
        os.close(slave)
        try:
            os.write(master, b"y\n")  # the answer to "Apply these changes? [y/N]", read once the preview is shown
            reader = asyncio.create_task(asyncio.to_thread(drain, master))
            out_bytes, _ = await asyncio.wait_for(proc.communicate(), timeout=40)
            terminal = ANSI.sub("", (await asyncio.wait_for(reader, timeout=10)).decode(errors="replace"))
        finally:
            os.close(master)
    finally:
        await lab.smtp.start()
    assert "Apply these changes?" in terminal, terminal
    out = out_bytes.decode()
    assert proc.returncode == 1, out
    assert "the last fetch failed" in out and "result: in-sync" not in out, out
