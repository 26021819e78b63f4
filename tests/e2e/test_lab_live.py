"""`eemwatchd lab` as a newcomer runs it: the daemon on the lab, a rotation on request, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float, after: int = 0) -> int:
    """The offset just past ``text`` in the output file, once it appears after ``after``; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = path.read_text(errors="replace")
        found = output.find(text, after)
        if found >= 0:
            return found + len(text)
        if proc.poll() is not None:
            pytest.fail(f"the lab exited ({proc.returncode}) before {text!r}:\n{output[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {text!r} within {timeout}s:\n{path.read_text(errors='replace')[-3000:]}")


@contextlib.contextmanager
def live_lab(lab_dir: Path, out: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """`eemwatchd lab --routers 1 --rotate-every 0 OPTIONS --dir LAB_DIR` with its output in ``out``; the test sends
    SIGINT when done, and whatever is still running at the end is killed."""
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eemwatchd.cli", "lab", "--routers", "1", "--rotate-every", "0", *options,
             "--dir", str(lab_dir)], stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def rotate(lab_dir: Path) -> None:
    """`eemwatchd lab rotate --dir LAB_DIR` from another process, as a person would."""
    done = subprocess.run([sys.executable, "-m", "eemwatchd.cli", "lab", "rotate", "--dir", str(lab_dir)],
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0


@pytest.mark.timeout(150)
def test_the_live_lab_detects_and_repairs_a_rotation_on_request(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    out = tmp_path / "lab.out"
    with live_lab(lab_dir, out) as proc:
        seen = wait_for(out, "status page http://127.0.0.1:", proc, 60)
        seen = wait_for(out, "test-fire PROVED mail works", proc, 60, 0)
        rotate(lab_dir)
        seen = wait_for(out, "== rotation 1: the provider now serves a new intermediate", proc, 30, seen)
        seen = wait_for(out, "chain CHANGED from", proc, 30, seen)
        seen = wait_for(out, "confirmed", proc, 30, seen)
        wait_for(out, "test-fire PROVED mail works", proc, 60, seen)
        stop(proc)
    text = out.read_text()
    assert "eemwatchd stopped" in text
    assert (lab_dir / "eemwatchd.yaml").is_file()  # kept for the person to look at


@pytest.mark.timeout(150)
def test_the_live_lab_with_prestage_keeps_every_probe_mail_through_a_move_to_the_announced_root(
    tmp_path: Path,
) -> None:
    lab_dir = tmp_path / "lab"
    out = tmp_path / "lab.out"
    with live_lab(lab_dir, out, "--prestage", "--probe-every", "1") as proc:
        seen = wait_for(out, "and eemwatchd pre-stages it (next-root.pem in servers[0].prestage)", proc, 60)
        seen = wait_for(out, "add EEMW-", proc, 60, seen)
        seen = wait_for(out, "ok: prestaged: pre-staged for lab-smtp", proc, 30, seen)
        seen = wait_for(out, "probe: lab-rtr-01 mails again", proc, 30, seen)
        rotate(lab_dir)
        seen = wait_for(out, "== rotation 1: the provider now serves a new intermediate", proc, 30, seen)
        seen = wait_for(out, "test-fire PROVED mail works", proc, 30, seen)
        rotate(lab_dir)
        seen = wait_for(out, "== rotation 2: the provider now serves a chain under its announced root Lab Next Root "
                             "N1, sent on top", proc, 30, seen)
        seen = wait_for(out, "configuration reloaded", proc, 30, seen)
        seen = wait_for(out, "chain ", proc, 30, seen)
        seen = wait_for(out, "confirmed", proc, 30, seen)
        seen = wait_for(out, "ok: intermediate: lab-smtp", proc, 30, seen)
        seen = wait_for(out, "test-fire PROVED mail works", proc, 30, seen)
        time.sleep(2.0)  # a few more probe mails after the move
        stop(proc)
    text = out.read_text()
    tail = text[seen:]
    assert "CANNOT MAIL" not in text[text.index("== rotation 1"):], text[-3000:]
    assert "probe mails since rotation 1: " in text and "sent, 0 failed" in text
    summary = next(line for line in tail.splitlines() if line.startswith("probe mails through the rotations:"))
    sent = int(summary.split(": ", 1)[1].split(" sent", 1)[0])
    assert sent >= 5 and ", 0 failed (the routers held each announced root before the provider moved to it)" in summary
    # the next announced root is pre-staged after the move (the lab reloaded the daemon's config)
    assert "ok: prestaged: pre-staged for lab-smtp" in text[text.index("== rotation 2"):]
