"""A simulated IOS XE router over real SSH: PKI trustpoints, EEM mail applets, faults (see server.Fleet)."""

from eemwatchd_lab.router.device import READ_ONLY_COMMANDS, Device, DeviceSpec, User
from eemwatchd_lab.router.faults import Faults, SilentPeer
from eemwatchd_lab.router.server import Fleet, LabDevice
from eemwatchd_lab.wan import Wan

__all__ = ["READ_ONLY_COMMANDS", "Device", "DeviceSpec", "Faults", "Fleet", "LabDevice", "SilentPeer", "User", "Wan"]
