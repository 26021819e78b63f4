"""The lab itself: the IOS XE simulator over real SSH (driven by raw asyncssh and netmiko, compared with real
transcripts) and the lab SMTP server."""
