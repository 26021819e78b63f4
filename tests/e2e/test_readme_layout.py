"""The README's Layout section and the tree agree: every package it lists exists, every module it names is there,
and every module of the product and the lab is named (a newcomer finds each one from the README)."""

from __future__ import annotations

import re

from tests.support.repo import REPO as ROOT

PACKAGES = ("eemwatchd", "lab/eemwatchd_lab")


def layout() -> dict[str, set[str]]:
    """Directory -> the module file names its lines name."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed: dict[str, set[str]] = {}
    current = ""
    for line in block.splitlines():
        head = re.match(r"^(\S+/)\s", line + " ")
        if head:
            current = head.group(1).rstrip("/")
            listed.setdefault(current, set())
        if current:
            listed[current] |= set(re.findall(r"\b([a-z_]+\.py)\b", line))
    return listed


def test_every_listed_directory_and_module_exists() -> None:
    for directory, modules in layout().items():
        assert (ROOT / directory).is_dir(), f"README lists {directory}/, which does not exist"
        for module in modules:
            assert (ROOT / directory / module).is_file(), f"README names {directory}/{module}, which does not exist"


def test_every_package_and_module_is_in_the_readme() -> None:
    listed = layout()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            directory = str(path.parent.relative_to(ROOT))
            assert directory in listed, f"package {directory}/ is not in the README's Layout"
            if path.name != "__init__.py":
                assert path.name in listed[directory], f"{directory}/{path.name} is not named in the README's Layout"
