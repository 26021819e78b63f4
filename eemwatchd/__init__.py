"""eemwatchd: keeps the EEM e-mail alerts of Cisco IOS XE routers working."""

__version__ = "0.1.0"
