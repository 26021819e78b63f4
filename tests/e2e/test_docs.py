"""The docs say what the code does (issue 19): metrics.md's states are the ones the scrape exports; deploy.md has one
truth about `${CREDENTIALS_DIRECTORY}`; the README documents the commands' new options and exit codes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from eemwatchd.config import parse_config
from eemwatchd.daemon.status import ROUTER_STATES

ROOT = Path(__file__).resolve().parents[2]
METRICS = (ROOT / "docs" / "metrics.md").read_text()
DEPLOY = (ROOT / "docs" / "deploy.md").read_text()
README = (ROOT / "README.md").read_text()


def test_metrics_md_lists_every_state_the_scrape_exports() -> None:
    section = METRICS.split("### Router states", 1)[1].split("\n### ", 1)[0]
    listed = re.findall(r"^\| `([a-z-]+)` \|", section, re.MULTILINE)
    assert listed == list(ROUTER_STATES)


def test_metrics_md_mentions_no_issue_numbers() -> None:
    assert not re.search(r"\bissue \d+", METRICS, re.IGNORECASE)


def test_deploy_md_has_one_truth_about_the_credentials_directory(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert "does not expand `${CREDENTIALS_DIRECTORY}`" not in DEPLOY
    example = re.search(r"^    password_file: (\$\{CREDENTIALS_DIRECTORY\}/router-password)", DEPLOY, re.MULTILINE)
    assert example is not None, "deploy.md's credentials example names the file through the variable"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "router-password").write_text("from-systemd\n")
    (tmp_path / "known_hosts").write_text("")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = parse_config(f"""
servers: [{{name: s, host: smtp.example.net}}]
defaults:
  routers:
    password_file: {example.group(1)}
routers:
  - {{name: r1, host: 192.0.2.1, username: u, known_hosts: known_hosts, applet: A, servers: [s]}}
""", base=tmp_path).config
    assert config.routers[0].password is not None
    assert config.routers[0].password.reveal() == "from-systemd"


@pytest.mark.parametrize("words", [
    "--wait-max", "--no-wait", "check-config -c FILE [--json]", "3 when nothing failed but a chain",
    "`summary`", "state.db.control", "`-v` (before or after the command)",
])
def test_the_readme_says_what_the_commands_do(words: str) -> None:
    assert words in README


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("args", "usage"), [
    (["--schedules", "3"], "usage: soak_schedules.py"),  # README: `./dev soak --schedules N` runs the fault schedules
    (["--seed=7"], "usage: soak_schedules.py"),
    ([], "usage: soak_daemon.py"),  # README: `./dev soak` runs the daemon under environment faults
])
def test_dev_soak_runs_the_soak_its_options_name(args: list[str], usage: str) -> None:
    done = subprocess.run([str(ROOT / "dev"), "soak", *args, "--help"], capture_output=True, text=True, timeout=100,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(usage), done.stdout[:300]
