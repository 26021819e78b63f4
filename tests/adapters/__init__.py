"""Adapters against real peers on 127.0.0.1: SMTP servers (lab, Postfix), AIA over HTTP, the lab router over SSH,
the state store and lock, alert sinks, the HTTP endpoint and metrics, systemd's notify socket."""
