"""The Dockerfile, checked without a container engine: its instructions, the files it copies, and its
HEALTHCHECK command run for real against an HTTP server on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eemwatchd.cli import build_parser
from tests.support.repo import REPO


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(?:\s*#.*\n)*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


DOCKERFILE = instructions((REPO / "Dockerfile").read_text())
STAGES = [i for i, (word, _) in enumerate(DOCKERFILE) if word == "FROM"]
FINAL = DOCKERFILE[STAGES[-1]:]


def final(word: str) -> list[str]:
    return [args for w, args in FINAL if w == word]


def test_every_stage_is_python_311_slim() -> None:
    bases = [args.split()[0] for word, args in DOCKERFILE if word == "FROM"]
    assert bases, "no FROM"
    assert all(b.startswith("python:3.11-slim") for b in bases), bases


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    (user,) = final("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, user
    assert any(f"--uid {uid}" in args for args in final("RUN")), "the user is created in the image"


@pytest.mark.parametrize(("word", "expected"), [
    ("VOLUME", ["/etc/eemwatchd", "/var/lib/eemwatchd"]),
    ("ENTRYPOINT", ["eemwatchd"]),
    ("CMD", ["run", "-c", "/etc/eemwatchd/eemwatchd.yaml"]),
])
def test_json_form_instructions(word: str, expected: list[str]) -> None:
    (args,) = final(word)
    assert json.loads(args) == expected


def test_port_and_stop_signal() -> None:
    assert final("EXPOSE") == ["9810"]
    assert final("STOPSIGNAL") == ["SIGTERM"]


def test_the_entrypoint_is_the_installed_script_and_the_config_is_on_a_volume() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = final("ENTRYPOINT")
    assert json.loads(entrypoint)[0] in scripts
    cmd = json.loads(final("CMD")[0])
    config = Path(cmd[cmd.index("-c") + 1])
    volumes = [Path(v) for v in json.loads(final("VOLUME")[0])]
    assert any(config.is_relative_to(v) for v in volumes)


def test_the_default_command_is_one_the_cli_accepts() -> None:
    parser = build_parser()
    known = {n for a in parser._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices}
    cmd = json.loads(final("CMD")[0])
    if cmd[0] not in known:
        pytest.skip(f"`eemwatchd {cmd[0]}` is not in this tree yet")
    assert parser.parse_args(cmd).command == cmd[0]


def test_only_runtime_dependencies_are_installed() -> None:
    pip = [args for word, args in DOCKERFILE if word == "RUN" and "pip" in args]
    assert pip
    assert not any("[test]" in args or "-e " in args for args in pip), pip


def _dockerignore_allows(path: str) -> bool:
    """Our .dockerignore excludes everything (*) and re-includes by `!name`; later lines win, as in Docker."""
    allowed = True
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        if pattern == "*" or path == pattern or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


def test_every_copied_path_exists_and_reaches_the_build_context() -> None:
    sources = []
    for word, args in DOCKERFILE:
        if word == "COPY" and "--from=" not in args:
            sources.extend(args.split()[:-1])
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert _dockerignore_allows(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"
    # and what must not travel: local state and virtualenvs
    assert not _dockerignore_allows(".venv")
    assert not _dockerignore_allows("tests")


# --- the HEALTHCHECK command, executed -------------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n" if code == 200 else b"no\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _healthcheck(port: int) -> int:
    (args,) = final("HEALTHCHECK")
    argv = json.loads(args[args.index("CMD") + 3:].strip())
    assert argv[0] == "python"
    script = argv[2]
    assert "http://127.0.0.1:9810/healthz" in script
    # the same command, aimed at the test's port (9810 may be taken on a shared machine)
    argv = [sys.executable, argv[1], script.replace(":9810/", f":{port}/")]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (500, False)])
def test_healthcheck_command_follows_healthz(status: int, healthy: bool, health_server: ThreadingHTTPServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Health, "status", status)
    assert (_healthcheck(health_server.server_address[1]) == 0) is healthy


def test_healthcheck_fails_when_nothing_listens(health_server: ThreadingHTTPServer) -> None:
    port = health_server.server_address[1]
    health_server.shutdown()
    health_server.server_close()
    assert _healthcheck(port) != 0


def test_healthcheck_has_bounds() -> None:
    (args,) = final("HEALTHCHECK")
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", args.split("CMD")[0]))
    assert set(options) == {"interval", "timeout", "start-period", "retries"}


def test_no_workdir_after_the_state_directory_gets_its_mode() -> None:
    # buildah (podman build) leaves a WORKDIR it processes at 0755: found building this image with podman 4.3
    made = next(i for i, (word, args) in enumerate(FINAL) if word == "RUN" and "-m 0700 /var/lib/eemwatchd" in args)
    assert not [args for word, args in FINAL[made:] if word == "WORKDIR"]
