"""When `./dev test` installed the real tools, their tests must run, not skip (a skip would hide a broken install)."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.mark.skipif(os.environ.get("EEMWATCHD_REQUIRE_TOOLS") != "1", reason="tools not required here")
@pytest.mark.parametrize("tool", ["promtool", "prometheus", "chromium", "systemd-analyze", "faketime"])
def test_the_real_tools_are_installed(tool: str) -> None:
    assert shutil.which(tool) is not None, f"{tool} is missing although ./dev test installed the test tools"
