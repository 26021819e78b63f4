"""The test suite's own layout: every test in its tier's directory, helpers in one home (tests/support), each fixture
defined once (tests/conftest.py), and no test module importing another."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TIERS = ("core", "adapters", "lab", "e2e")
# Spec fixtures: conftest builds `router`, `mail_server` and `live_lab` from them; a module may override these.
OVERRIDABLE = {"router_spec", "mail_server_user", "live_lab_routers"}


def _test_modules() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def _imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, dotted name) of every import; `from tests import x` names tests.x, a relative import its dots."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if node.level or node.module == "tests":
                found += [(node.lineno, f"{base}.{alias.name}".replace("..", ".")) for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def test_no_test_module_imports_another() -> None:
    offences = []
    for path in _test_modules():
        for line, name in _imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            shared = name == "tests.support" or name.startswith("tests.support.")
            if name.startswith(".") or (name.split(".")[0] == "tests" and not shared):
                offences.append(f"{path.relative_to(TESTS)}:{line} imports {name}")
    assert offences == [], "test modules import only from tests.support (fixtures come from conftest.py)"


def _fixtures(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            "fixture" in ast.unparse(d) for d in node.decorator_list
        ):
            names.append(node.name)
    return names


def test_each_fixture_is_defined_once_and_only_spec_fixtures_are_overridden() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in [*TESTS.rglob("conftest.py"), *_test_modules()]:
        for name in _fixtures(path):
            where[name].append(str(path.relative_to(TESTS)))
    shared = set(_fixtures(TESTS / "conftest.py"))
    twice = {name: paths for name, paths in where.items() if len(paths) > 1 and name not in OVERRIDABLE}
    assert twice == {}, "define a fixture once (shared ones in tests/conftest.py)"
    assert shared >= OVERRIDABLE


def test_every_test_module_is_in_a_tier_and_helpers_in_support() -> None:
    outside = [str(p.relative_to(TESTS)) for p in _test_modules() if p.relative_to(TESTS).parts[0] not in TIERS]
    assert outside == [], f"test modules live in one of {TIERS}"
    assert sorted(p.name for p in TESTS.glob("*.py")) == ["__init__.py", "conftest.py"]
    for tier in TIERS:
        assert (TESTS / tier / "__init__.py").is_file()  # packages: a module name may repeat across tiers
        assert sorted(p.name for p in (TESTS / tier).iterdir() if not p.name.startswith(("test_", "__"))) == []
