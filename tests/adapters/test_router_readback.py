"""Install and retire read back only the trustpoint's own sections, and still catch what the router really holds.

Against a lab router over real SSH. Where the router must be made to hold something else than what was sent,
the test prepares the lab device's state directly between the import and the read-back (the lab has no such fault).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from eemwatchd.adapters.router import RouterSession, RouterTarget
from eemwatchd.core.certificate import Certificate
from eemwatchd.errors import CommandFailed
from eemwatchd_lab.pki import GmailShapedPki
from eemwatchd_lab.router import DeviceSpec, LabDevice
from tests.support.router_adapter import adapter_router_spec


@pytest.fixture
def router_spec(tmp_path: Path) -> DeviceSpec:
    """The lab router of the adapter tests."""
    return adapter_router_spec(tmp_path)


class _Recording(RouterSession):
    """A real session that remembers every command it sent."""

    def __init__(self, target: RouterTarget) -> None:
        super().__init__(target)
        self.sent: list[str] = []

    async def _command(self, command: str, *, timeout: float | None = None) -> str:
        self.sent.append(command)
        return await super()._command(command, timeout=timeout)


class _SwapsBeforeReadBack(Mapping[str, str]):
    """Lab command errors that never print an error: when the trustpoint's sections are read after the import
    (the second read), the device is first made to hold ``stored`` in trustpoint NAME instead of what it
    imported. The read itself then runs as usual and shows the device's state."""

    def __init__(self, router: LabDevice, name: str, stored: Certificate | None) -> None:
        self.lab, self.name, self.stored = router, name, stored
        self.reads = 0

    def __getitem__(self, line: str) -> str:
        if line.startswith("show running-config | section") and self.name in line:
            self.reads += 1
            if self.reads == 2:
                self.lab.state.trustpoints[self.name].ca_cert = self.stored
        raise KeyError(line)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@pytest.mark.parametrize("stored", ["another", "nothing"])
async def test_install_reports_a_trustpoint_holding_another_certificate(
    router: LabDevice, router_target: RouterTarget, pki: GmailShapedPki, stored: str
) -> None:
    sent, other = pki.old_root.cert, pki.new_root.cert
    swap = _SwapsBeforeReadBack(router, "EEMW-Z", other if stored == "another" else None)
    router.spec.faults.command_errors = swap
    async with RouterSession(router_target) as session:
        with pytest.raises(CommandFailed) as info:
            await session.install_certificate("EEMW-Z", sent)
    shown = other.describe() if stored == "another" else "no CA certificate"
    assert f"trustpoint EEMW-Z holds {shown}, not {sent.describe()}" in info.value.output
    assert info.value.command == "crypto pki authenticate EEMW-Z"
    assert swap.reads == 2


async def test_read_backs_read_only_the_trustpoints_sections(
    router: LabDevice, router_target: RouterTarget, pki: GmailShapedPki
) -> None:
    async with _Recording(router_target) as session:
        await session.install_certificate("EEMW-A", pki.old_root.cert)
        await session.retire_trustpoint("EEMW-A")
        assert "EEMW-A" not in router.state.trustpoints
    section = "show running-config | section ^hostname |^crypto pki (trustpoint|certificate chain) EEMW-A"
    assert session.sent == [section, section, section]  # exists? / holds the DER? / gone?


@pytest.mark.parametrize(
    ("name", "neighbour"),
    [
        ("EEMW-A", "EEMW-AB"),  # the filter also brings the longer name's sections
        ("EEMW-AB", "EEMW-A"),
        ("EEMW_X", "EEMWzX"),  # `_` is sent as `.` (IOS: `_` is a delimiter), so EEMWzX matches too
    ],
)
async def test_read_backs_pick_the_trustpoint_by_its_exact_name(
    router: LabDevice, router_target: RouterTarget, pki: GmailShapedPki, name: str, neighbour: str
) -> None:
    async with RouterSession(router_target) as session:
        await session.install_certificate(neighbour, pki.new_root.cert)
        await session.install_certificate(name, pki.old_root.cert)
        assert router.state.trustpoints[name].ca_cert == pki.old_root.cert
        with pytest.raises(CommandFailed, match="already exists"):
            await session.install_certificate(name, pki.old_root.cert)
        await session.retire_trustpoint(name)
        assert name not in router.state.trustpoints
        assert router.state.trustpoints[neighbour].ca_cert == pki.new_root.cert
        with pytest.raises(CommandFailed, match="already exists"):
            await session.install_certificate(neighbour, pki.old_root.cert)


async def test_a_retire_the_router_ignored_is_reported(
    router: LabDevice, router_target: RouterTarget, pki: GmailShapedPki
) -> None:
    async with RouterSession(router_target) as session:
        await session.install_certificate("EEMW-A", pki.old_root.cert)
        router.spec.faults.command_errors = {"no crypto pki trustpoint EEMW-A": ""}  # silently does nothing
        with pytest.raises(CommandFailed, match="still configured"):
            await session.retire_trustpoint("EEMW-A")
    assert router.state.trustpoints["EEMW-A"].ca_cert == pki.old_root.cert


async def test_an_empty_filtered_read_is_never_taken_for_an_absent_trustpoint(
    router: LabDevice, router_target: RouterTarget, pki: GmailShapedPki
) -> None:
    section = "show running-config | section ^hostname |^crypto pki (trustpoint|certificate chain) EEMW-A"
    async with RouterSession(router_target) as session:
        await session.install_certificate("EEMW-A", pki.old_root.cert)
        router.spec.faults.command_errors = {section: ""}  # the filter answered nothing at all
        with pytest.raises(CommandFailed, match="no `hostname` line"):
            await session.retire_trustpoint("EEMW-A")
        with pytest.raises(CommandFailed, match="no `hostname` line"):
            await session.install_certificate("EEMW-A", pki.new_root.cert)
    assert "EEMW-A" not in router.state.trustpoints  # retired for real; the read-back just could not show it
