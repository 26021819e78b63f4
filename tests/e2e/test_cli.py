"""CLI start-up: `eemwatchd --help` imports no command, each command only what it needs, every `--help` works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eemwatchd.cli import COMMANDS, main
from tests.support.repo import REPO

# What only some commands need: the router side, the lab, the daemon's HTTP and schedule, config validation.
ROUTER_AND_LAB = {"scrapli", "asyncssh", "aiosmtpd", "aiohttp", "prometheus_client"}
HEAVY = ROUTER_AND_LAB | {"cryptography", "pydantic", "yaml"}

# One option of each command, so a command whose arguments were not loaded shows up.
OPTION_OF = {
    "fetch": "--servername",
    "check-config": "--config",
    "lab": "--routers",
    "lab-router": "--count",
    "plan": "--router",
    "apply": "--yes",
    "audit": "--verify",
    "run": "--plan-only",
    "onboard": "--dry-run",
}


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=50, check=False, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


# A fresh interpreter runs the CLI, then lists every module it holds (importtime misses the command modules:
# importlib.import_module bypasses its timer).
_LIST_MODULES = """
import sys
from eemwatchd.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w") as out:
    out.write("\\n".join(sorted(sys.modules)))
sys.exit(code)
"""


# What several commands share lives in the commands package beside them, not in a command.
SHARED = {"eemwatchd.commands.arguments", "eemwatchd.commands.runtime", "eemwatchd.commands.report"}
# The lab's commands come from its own distribution (entry points), not from the product.
COMMAND_MODULE = {"lab": "eemwatchd_lab.commands.lab", "lab-router": "eemwatchd_lab.commands.lab_router"}


def command_module(command: str) -> str:
    return COMMAND_MODULE.get(command, f"eemwatchd.commands.{command.replace('-', '_')}")


def loaded_modules(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[set[str], set[str]]:
    """The top-level packages and the command modules (shared ones left out) a process running `eemwatchd ARGV`
    ends up holding."""
    listing = tmp_path / "modules.txt"
    proc = _run([sys.executable, "-c", _LIST_MODULES, str(listing), *argv], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = set(listing.read_text().split())
    commands = {m for m in modules if m.startswith(("eemwatchd.commands.", "eemwatchd_lab.commands."))} - SHARED
    return {m.split(".")[0] for m in modules}, commands


def test_help_under_importtime_imports_no_heavy_library() -> None:
    """The brief's own check: `python -X importtime -m eemwatchd.cli --help`."""
    proc = _run([sys.executable, "-X", "importtime", "-m", "eemwatchd.cli", "--help"])
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "argparse" in modules  # the listing was read
    assert not {m.split(".")[0] for m in modules} & HEAVY


def test_top_level_help_imports_no_command_and_no_heavy_library(tmp_path: Path) -> None:
    packages, commands = loaded_modules(tmp_path, "--help")
    assert "eemwatchd" in packages
    assert not packages & HEAVY
    assert not commands


def test_check_config_imports_nothing_of_the_router_side_or_the_lab(tmp_path: Path) -> None:
    packages, commands = loaded_modules(
        tmp_path, "check-config", "-c", str(REPO / "config" / "eemwatchd.example.yaml"),
        env={"EEMWATCHD_ROUTER_PASSWORD": "not-a-secret"},
    )
    assert "pydantic" in packages  # it did validate
    assert not packages & ROUTER_AND_LAB
    assert commands == {"eemwatchd.commands.check_config"}


@pytest.mark.parametrize("command", ["plan", "apply", "audit", "lab", "lab-router", "check-config", "onboard"])
def test_a_commands_help_imports_nothing_of_the_router_side_or_the_lab(tmp_path: Path, command: str) -> None:
    packages, commands = loaded_modules(tmp_path, command, "--help")
    assert not packages & ROUTER_AND_LAB
    assert commands == {command_module(command)}  # no command imports another


def test_every_command_is_in_the_option_table() -> None:
    assert {c.name for c in COMMANDS} == set(OPTION_OF)


@pytest.mark.parametrize("command", sorted(OPTION_OF))
def test_every_commands_help_shows_its_own_options(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert out.startswith(f"usage: eemwatchd {command} ")
    assert OPTION_OF[command] in out


def test_top_level_help_lists_every_command_with_its_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # no line breaks inside a help text
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0
    for command in COMMANDS:
        assert f"{command.name} {' '.join(command.help.split())}" in out


def test_a_missing_argument_names_the_commands_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["plan"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "usage: eemwatchd plan [-h] [-v] -c FILE" in err
    assert "-c/--config" in err
