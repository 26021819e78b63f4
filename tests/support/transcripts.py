"""Access to the real IOS XE transcripts copied into tests/transcripts/ (each starts with its # source: line)."""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).resolve().parents[1] / "transcripts"


def transcript(name: str) -> str:
    """The published output of a transcript file, without its `# source:`/`# platform:` header."""
    text = (DIR / name).read_text(encoding="utf-8")
    lines = text.split("\n")
    body_start = 0
    while body_start < len(lines) and lines[body_start].startswith("# "):
        body_start += 1
    if body_start < len(lines) and lines[body_start] == "":
        body_start += 1
    return "\n".join(lines[body_start:])


def transcript_lines(name: str) -> list[str]:
    """The device lines of a shared transcript: after the `# source` / `# platform` / blank header."""
    text = (DIR / name).read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[0].startswith("# source:")
    assert lines[1].startswith("# platform:")
    return [ln.rstrip("\r") for ln in lines[3:]]
