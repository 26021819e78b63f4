"""CLI commands, one module each, listed in eemwatchd.cli.COMMANDS (loaded only when used)."""
