"""The status page: one self-contained HTML document (inline CSS, no scripts, no external assets) from a FleetStatus.

Every value from the model goes through ``_e`` (``html.escape``): router names, errors and device text
are data, never markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from eemwatchd.daemon.status import (
    AddressStatus,
    AuditLine,
    CertStatus,
    FleetStatus,
    RouterStatus,
    ServerStatus,
    TrustpointStatus,
)

EXPIRY_WARNING_DAYS = 14  # as the EemwatchdCertificateExpiring alerts in config/prometheus-rules.yml

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em}h3{font-size:1em;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.3em 0 1em;background:#fff}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0}
.ok{color:#116b2e;font-weight:600}.bad{color:#b00020;font-weight:600}.warn{color:#9a5b00;font-weight:600}
.muted{color:#666}code{font:12px ui-monospace,monospace}
ul{margin:0;padding-left:1.1em}.summary{margin:.3em 0 1em}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _ago(moment: datetime | None, now: datetime, *, never: str = "never") -> str:
    if moment is None:
        return f'<span class="muted">{_e(never)}</span>'
    delta = (now - moment).total_seconds()
    when = f"{_span(delta)} ago" if delta >= 0 else f"in {_span(delta)}"
    return f'<span title="{_e(_utc(moment))}">{_e(when)}</span>'


def _expiry(not_after: datetime, now: datetime) -> str:
    left = (not_after - now).total_seconds()
    if left <= 0:
        css, text = "bad", f"expired {_span(left)} ago"
    elif left < EXPIRY_WARNING_DAYS * 86400:
        css, text = "warn", f"in {_span(left)}"
    else:
        css, text = "", f"in {_span(left)}"
    cls = f' class="{css}"' if css else ""
    return f'{_e(not_after.astimezone(UTC).strftime("%Y-%m-%d"))} <span{cls}>({_e(text)})</span>'


def _short(sha256: str) -> str:
    return f'<code title="{_e(sha256)}">{_e(sha256[:16])}</code>'


def _yes(flag: bool, yes: str = "yes", no: str = "no") -> str:
    return f'<span class="ok">{_e(yes)}</span>' if flag else f'<span class="bad">{_e(no)}</span>'


def _table(head: Iterable[str], rows: Iterable[str], *, table_id: str | None = None) -> str:
    ident = f' id="{_e(table_id)}"' if table_id else ""
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table{ident}><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_status_page(status: FleetStatus, *, now: datetime) -> str:
    """The whole page; ``now`` (timezone-aware) is what ages and expiries are measured against."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="refresh" content="30">',
        f"<title>eemwatchd {_e(status.version)}</title><style>{_CSS}</style></head><body>",
        _header(status, now),
        "<h2>Routers</h2>",
        _routers(status, now),
        "<h2>SMTP servers</h2>",
        *(_server(server, status.chain_changes.get(name, 0), now) + _prestaged(server, status.routers, now)
          for name, server in sorted(status.servers.items())),
        "" if status.servers else '<p class="muted">No server fetched yet.</p>',
        "<h2>Recent changes</h2>",
        _changes(status.recent_changes, now),
        "</body></html>",
    ]
    return "\n".join(parts)


def _header(status: FleetStatus, now: datetime) -> str:
    routers = status.routers.values()
    in_sync = sum(1 for r in routers if r.in_sync)
    addresses = [a for s in status.servers.values() for a in s.addresses]
    verified = sum(1 for a in addresses if a.verified)
    shard = f", shard <b>{_e(status.shard)}</b>" if status.shard is not None else ""
    ready = _yes(status.ready, "ready", "first pass running")
    reload = (_yes(True, "loaded") if status.config_reload_ok
              else _yes(False, no="last reload FAILED (the previous configuration is still running)"))
    routers_css = "ok" if in_sync == len(status.routers) else "bad"
    servers_css = "ok" if verified == len(addresses) else "bad"
    return (
        f"<h1>eemwatchd {_e(status.version)}</h1>"
        f'<p class="muted">started {_ago(status.started_at, now)}{shard}; page generated {_e(_utc(now))}</p>'
        f'<p class="summary" id="summary"><span class="{routers_css}">'
        f"{in_sync} of {len(status.routers)} routers in sync</span>"
        f' &middot; <span class="{servers_css}">{verified} of {len(addresses)} server addresses verified</span>'
        f" &middot; {ready} &middot; configuration {reload} {_ago(status.config_reload_at, now)}</p>"
    )


def _routers(status: FleetStatus, now: datetime) -> str:
    if not status.routers:
        return '<p class="muted">No router checked yet.</p>'
    rows = [_router_row(router, status.refreshes.get(name, {}), now) for name, router in sorted(status.routers.items())]
    head = ("router", "state", "detail", "last check", "last proven test-fire", "trustpoints", "lint findings",
            "refreshes")
    return _table(head, rows, table_id="routers")


def _router_row(router: RouterStatus, refreshes: dict[str, int], now: datetime) -> str:
    state_css = "ok" if router.in_sync else ("warn" if router.state in ("pending", "waiting") else "bad")
    if router.last_testfire_ok is False:
        testfire = (f'<span class="bad">failed</span> {_ago(router.last_testfire_at, now)}; '
                    f"last proven {_ago(router.last_proven_at, now)}")
    else:
        testfire = _ago(router.last_proven_at, now)
    unreachable = "" if router.up else ' <span class="bad">(not reachable)</span>'
    lint = ("<ul>" + "".join(f"<li><code>{_e(f.rule)}</code> ({_e(f.severity)}): {_e(f.message)}</li>"
                             for f in router.lint) + "</ul>") if router.lint else '<span class="muted">none</span>'
    counts = ", ".join(f"{_e(result)} {count}" for result, count in sorted(refreshes.items()) if count) or "none"
    return (
        f'<tr data-router="{_e(router.name)}" data-state="{_e(router.state)}">'
        f"<td><b>{_e(router.name)}</b><br><span class=\"muted\">{_e(router.host)}</span></td>"
        f'<td class="state"><span class="{state_css}">{_e(router.state)}</span>{unreachable}</td>'
        f"<td>{_e(router.detail)}</td>"
        f"<td>{_ago(router.last_check, now)}</td>"
        f"<td>{testfire}</td>"
        f"<td>{_trustpoints(router.trustpoints, now)}</td>"
        f"<td>{lint}</td>"
        f"<td>{counts}</td></tr>"
    )


def _trustpoints(trustpoints: tuple[TrustpointStatus, ...], now: datetime) -> str:
    if not trustpoints:
        return '<span class="muted">none</span>'
    items = []
    for tp in trustpoints:
        mark = " (managed)" if tp.managed else ""
        certs = "; ".join(f"{_short(c.sha256)} {_e(c.subject)}{_role(c.role)}, expires {_expiry(c.not_after, now)}"
                          for c in tp.certificates) or '<span class="muted">empty</span>'
        items.append(f"<li><code>{_e(tp.name)}</code>{_e(mark)}: {certs}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _role(role: str) -> str:
    if role == "prestaged":
        return ' <span class="prestaged" data-role="prestaged">(pre-staged)</span>'
    return f' <span class="muted" data-role="{_e(role)}">({_e(role)})</span>' if role and role != "none" else ""


_ACCEPTED_SHAPES = (("signed-by", "chains it signs"), ("on-top", "itself sent on top"),
                    ("cross-signed-on-top", "a cross-sign of it on top"))


def _prestaged(server: ServerStatus, routers: Mapping[str, RouterStatus], now: datetime) -> str:
    """The certificates pre-staged for ``server``: expiry, how many routers hold each, and how many would accept
    each shape of chain that uses it today."""
    if not server.prestaged:
        return ""
    rows = []
    for cert in server.prestaged:
        seen = [p for r in routers.values() for p in r.prestaged if p.server == server.name and p.sha256 == cert.sha256]
        held = sum(1 for p in seen if p.trustpoint)
        accepted = []
        for shape, words in _ACCEPTED_SHAPES:
            answers = [dict(p.accepted).get(shape, "absent") for p in seen]
            answers = [a for a in answers if a != "absent"]
            if answers:
                yes = sum(1 for a in answers if a is True)
                unknown = sum(1 for a in answers if a is None)
                css = "ok" if yes == len(answers) else ("muted" if unknown == len(answers) else "bad")
                text = f"{yes} of {len(answers)}" if unknown < len(answers) else "cannot tell"
                accepted.append(f'{_e(words)}: <span class="{css}">{_e(text)}</span>')
        verdicts = "<br>".join(accepted) or '<span class="muted">no router read yet</span>'
        rows.append(f'<tr data-prestaged="{_e(cert.sha256)}"><td>{_e(cert.subject)}</td><td>{_short(cert.sha256)}</td>'
                    f"<td>{_expiry(cert.not_after, now)}</td><td>{held} of {len(seen)}</td><td>{verdicts}</td></tr>")
    head = ("pre-staged certificate", "sha256", "expires", "routers holding it", "routers that would accept today")
    return f"<p>Pre-staged for {_e(server.name)} (servers[].prestage):</p>" + _table(head, rows)


def _server(server: ServerStatus, chain_changes: int, now: datetime) -> str:
    head = (
        f'<h3 id="server-{_e(server.name)}">{_e(server.name)} '
        f'<span class="muted">{_e(server.host)}:{_e(server.port)} ({_e(server.mode)}), last fetch '
        f"{_ago(server.last_fetch, now)}, {chain_changes} confirmed chain change{'s' if chain_changes != 1 else ''}"
        f"</span></h3>"
    )
    if not server.addresses:
        return head + '<p class="muted">No address fetched yet.</p>'
    return head + "".join(_address(address, now) for address in server.addresses)


def _address(address: AddressStatus, now: datetime) -> str:
    if not address.fetch_ok:
        verdict = f'<span class="bad">fetch failed</span>: {_e(address.error or "no reason recorded")}'
    elif address.verified:
        verdict = '<span class="ok">verified</span>'
    else:
        verdict = f'<span class="bad">NOT verified</span>: {_e(address.error or "no reason recorded")}'
    seen = f"seen {address.times_seen} time{'s' if address.times_seen != 1 else ''}, " + (
        "confirmed" if address.confirmed else "not yet confirmed")
    line = f"<p><code>{_e(address.address)}</code>: {verdict} <span class=\"muted\">({_e(seen)})</span></p>"
    if not address.chain:
        return line
    rows = [_cert_row(cert, now) for cert in address.chain]
    return line + _table(("#", "subject", "issuer", "sha256", "expires", "kind"), rows)


def _cert_row(cert: CertStatus, now: datetime) -> str:
    kind = "CA" if cert.is_ca else "leaf"
    return (f"<tr><td>{cert.position}</td><td>{_e(cert.subject)}</td><td>{_e(cert.issuer)}</td>"
            f"<td>{_short(cert.sha256)}</td><td>{_expiry(cert.not_after, now)}</td><td>{kind}</td></tr>")


def _changes(lines: list[AuditLine], now: datetime) -> str:
    if not lines:
        return '<p class="muted">No recent change.</p>'
    rows = [
        f"<tr><td>{_ago(line.at, now)}</td><td>{_e(line.router)}</td><td>{_e(line.action)}</td>"
        f"<td>{_e(line.trustpoint or '')}</td><td>{_short(line.sha256) if line.sha256 else ''}</td>"
        f"<td>{_e(line.detail)}</td></tr>"
        for line in lines
    ]
    return _table(("when", "router", "action", "trustpoint", "sha256", "detail"), rows, table_id="changes")
