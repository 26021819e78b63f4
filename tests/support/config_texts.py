"""Configuration files the tests write."""

from __future__ import annotations

# One server and one router whose password is in the file `pw` beside the config (see the `config_dir` fixture).
MINIMAL = """
servers:
  - {name: gmail, host: smtp.gmail.com}
routers:
  - {name: r1, host: 192.0.2.1, username: u, password_file: pw, applet: MAIL, servers: [gmail],
     known_hosts: kh}
"""

# A config naming state.db beside it (and one server, no router): all the audit commands need.
STATE_CONFIG = """
state_path: state.db
servers:
  - name: lab
    host: 127.0.0.1
    port: 2525
    mode: starttls
routers: []
"""
