"""A complete package (issue 19, sec. 4): the sdist and wheels build, carry what they must, and install into a
fresh virtualenv where `eemwatchd --version` and `eemwatchd lab --once` work from outside the checkout.

No network: the builds run without isolation on the build backend of the project's virtualenv (`build`,
`setuptools>=77` are test dependencies), and the fresh virtualenvs get eemwatchd and eemwatchd-lab from the built
files (`pip --no-index --no-deps`) and their third-party dependencies, as resolved in the project's virtualenv,
through a `.pth` file naming a directory of links to them (never the checkout's own editable install). `pip check`
then proves that every requirement the built metadata declares is met: a dependency missing from pyproject.toml
fails the `lab --once` run, a stray one fails `pip check`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(sysconfig.get_paths()["purelib"])  # the project's virtualenv
OURS = ("eemwatchd", "__editable__", "_eemwatchd", "__pycache__", "_virtualenv", "distutils-precedence.pth")


def run(*argv: str | Path, cwd: Path, timeout: float = 50, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def tracked_copy(dest: Path) -> Path:
    """The checkout's files as a clean clone has them (tracked, or new and not ignored), so building writes
    nothing into the checkout."""
    names = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).split("\0")
    for name in filter(None, names):
        source = ROOT / name
        if not source.is_file():
            continue  # deleted in the work tree, not yet committed
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        target.chmod(source.stat().st_mode)
    return dest


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist + wheel of eemwatchd (the wheel built from the sdist), and of eemwatchd-lab."""
    src = tracked_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    for project in (src, src / "lab"):
        run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, project, cwd=project, timeout=120)
    return out


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links to every third-party distribution of the project's virtualenv (not eemwatchd's own)."""
    deps = tmp_path_factory.mktemp("deps")
    for entry in SITE.iterdir():
        if entry.name.startswith(OURS) or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    return deps


def fresh_venv(where: Path, dependencies: Path) -> Path:
    run(sys.executable, "-m", "venv", "--without-pip", where, cwd=where.parent, timeout=60)
    site = next((where / "lib").glob("python3*/site-packages"))
    (site / "dependencies.pth").write_text(f"{dependencies}\n")
    return where / "bin" / "python"


def pip(python: Path, *args: str | Path, cwd: Path) -> str:
    return run(sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check", *args, cwd=cwd,
               timeout=120)


def outside(python: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `eemwatchd` command, run from a directory outside the checkout, with nothing of it on the
    path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python.parent / "eemwatchd"), *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=55, check=False, env=env)


def test_the_sdist_carries_the_tests_config_units_docs_and_license(dist: Path) -> None:
    [sdist] = dist.glob("eemwatchd-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    tracked = set(run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=ROOT).splitlines())
    for folder in ("tests/", "tests/transcripts/", "config/", "systemd/", "docs/"):
        wanted = {n for n in tracked if n.startswith(folder) and (ROOT / n).is_file()}
        assert wanted and wanted <= names, sorted(wanted - names)
    assert {"LICENSE", "README.md", "pyproject.toml", "MANIFEST.in"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".db"))]
    [wheel] = dist.glob("eemwatchd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
    assert "eemwatchd-0.1.0.dist-info/licenses/LICENSE" in files and "eemwatchd/py.typed" in files
    assert "eemwatchd-0.1.0.data/data/share/doc/eemwatchd/deploy.md" in files
    assert "eemwatchd-0.1.0.data/data/share/eemwatchd/systemd/eemwatchd.service" in files
    metadata = archive_text(wheel, "eemwatchd-0.1.0.dist-info/METADATA")
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    [lab_wheel] = dist.glob("eemwatchd_lab-*.whl")
    assert "eemwatchd_lab-0.1.0.dist-info/licenses/LICENSE" in zipfile.ZipFile(lab_wheel).namelist()


def archive_text(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(name).decode()


@pytest.mark.timeout(120)
def test_the_wheels_install_and_run_outside_the_checkout(dist: Path, dependencies: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv", dependencies)
    [wheel] = dist.glob("eemwatchd-*.whl")
    [lab_wheel] = dist.glob("eemwatchd_lab-*.whl")
    pip(python, "install", "--no-index", "--no-deps", wheel, lab_wheel, cwd=tmp_path)
    pip(python, "check", cwd=tmp_path)  # every requirement the built metadata declares is met
    work = tmp_path / "elsewhere"
    work.mkdir()
    version = outside(python, "--version", cwd=work)
    assert (version.returncode, version.stdout.strip()) == (0, "eemwatchd 0.1.0"), version.stderr
    where = run(python, "-c", "import eemwatchd, eemwatchd_lab; print(eemwatchd.__file__, eemwatchd_lab.__file__)",
                cwd=work)
    assert str(ROOT) not in where and str(tmp_path / "venv") in where
    story = outside(python, "lab", "--once", cwd=work)
    assert story.returncode == 0, story.stdout[-3000:] + story.stderr[-3000:]
    assert "every router kept sending mail" in story.stdout
    # the units' Documentation= is where this install put the docs, under the virtualenv deploy.md installs into
    assert (tmp_path / "venv" / "share" / "doc" / "eemwatchd" / "deploy.md").is_file()
    unit = (ROOT / "systemd" / "eemwatchd.service").read_text()
    assert "Documentation=file:///opt/eemwatchd/share/doc/eemwatchd/deploy.md" in unit
    assert "python3 -m venv /opt/eemwatchd" in (ROOT / "docs" / "deploy.md").read_text()


@pytest.mark.timeout(120)
def test_the_sdist_installs_and_runs_outside_the_checkout(dist: Path, dependencies: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv", dependencies)
    [sdist] = dist.glob("eemwatchd-*.tar.gz")
    [lab_sdist] = dist.glob("eemwatchd_lab-*.tar.gz")
    # built here from the sdists with the backend the dependencies provide (setuptools>=77), no network
    pip(python, "install", "--no-index", "--no-deps", "--no-build-isolation", sdist, lab_sdist, cwd=tmp_path)
    pip(python, "check", cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert outside(python, "--version", cwd=work).stdout.strip() == "eemwatchd 0.1.0"
    story = outside(python, "lab", "--once", "--routers", "1", cwd=work)
    assert story.returncode == 0, story.stdout[-3000:] + story.stderr[-3000:]
