"""eemwatchd's state file as the store and audit tests meet it."""

from __future__ import annotations

# A config naming state.db beside it (and one server): all the audit commands need.
CONFIG = """
state_path: state.db
servers:
  - name: lab
    host: 127.0.0.1
    port: 2525
    mode: starttls
routers: []
"""
