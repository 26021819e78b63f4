"""Where the repository is, for tests that read its files (config/, systemd/, the Dockerfile, pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
