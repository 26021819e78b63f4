"""Secrets in text: scrubbing known values and `user:password@` forms, and the mail passwords a router holds."""

from __future__ import annotations

import re
from collections.abc import Collection

from eemwatchd.core.router_state import MailServer, RouterSnapshot

_CREDENTIALS = re.compile(r"(?P<user>[^\s:/@\"']+):(?P<password>[^\s@\"']+)@")


def scrub_text(text: str, secrets: Collection[str]) -> str:
    """``text`` with every secret and every ``user:password@`` password replaced by ``****``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "****")
    return _CREDENTIALS.sub(lambda m: f"{m.group('user')}:****@", text)


def mail_passwords(snapshot: RouterSnapshot) -> set[str]:
    """The SMTP passwords a router's applets use (``_email_server`` and mail actions)."""
    texts = [snapshot.environment.get("_email_server", "")]
    texts += [snapshot.expand(m.server)[0] for a in snapshot.applets for m in a.mail_actions]
    out: set[str] = set()
    for text in texts:
        password = MailServer.from_text(text).password if text else None
        if password:
            out.add(password)
    return out
