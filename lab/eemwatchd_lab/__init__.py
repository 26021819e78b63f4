"""The lab: a local SMTP server with its own PKI and simulated IOS XE routers over real SSH."""
