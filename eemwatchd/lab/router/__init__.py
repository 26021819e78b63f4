"""A simulated IOS XE router over real SSH: PKI trustpoints, EEM mail applets, faults (see server.Fleet)."""

from eemwatchd.lab.router.device import READ_ONLY_COMMANDS, Device, DeviceSpec, User
from eemwatchd.lab.router.faults import Faults, SilentPeer
from eemwatchd.lab.router.server import Fleet, LabDevice

__all__ = ["READ_ONLY_COMMANDS", "Device", "DeviceSpec", "Faults", "Fleet", "LabDevice", "SilentPeer", "User"]
