"""Arguments several commands take alike (kept light: `--help` imports this and nothing heavy)."""

from __future__ import annotations

import argparse
from typing import Any

CONFIG_HELP = "the configuration file (YAML; every key: config/eemwatchd.example.yaml)"


def add_config_argument(parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    """`-c FILE`, required, with its help text (every command that reads the configuration)."""
    parser.add_argument("-c", "--config", required=True, metavar="FILE", help=CONFIG_HELP, **kwargs)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """`-c FILE`, `--router NAME`, `--json`, `--shard K/N`: what plan and apply take."""
    add_config_argument(parser)
    parser.add_argument("--router", metavar="NAME", help="only this router")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_shard_argument(parser)


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", metavar="K/N",
                        help="act as instance K of N: only the routers rendezvous hashing gives it, with that "
                             "instance's state file (overrides the config's shard:)")
