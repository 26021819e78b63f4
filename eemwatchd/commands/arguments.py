"""Arguments several commands take alike (kept light: `--help` imports this and nothing heavy)."""

from __future__ import annotations

import argparse


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """`-c FILE`, `--router NAME`, `--json`, `--shard K/N`: what plan, apply and audit take."""
    parser.add_argument("-c", "--config", required=True, metavar="FILE")
    parser.add_argument("--router", metavar="NAME", help="only this router")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_shard_argument(parser)


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", metavar="K/N",
                        help="act as instance K of N: only the routers rendezvous hashing gives it, with that "
                             "instance's state file (overrides the config's shard:)")
