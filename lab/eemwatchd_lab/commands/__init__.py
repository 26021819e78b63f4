"""The lab's commands: `eemwatchd lab` and `eemwatchd lab-router` (entry points in the eemwatchd.commands group)."""
