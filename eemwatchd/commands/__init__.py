"""CLI commands, one module each, registered in eemwatchd.cli.COMMANDS."""
