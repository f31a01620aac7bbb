"""The small HTML pages of an acknowledgement link (GET and POST /v1/ack/{token}).

A person follows the link from a mail, a chat or a pager app: the page names the incident and
offers one button; only the button (a form POST) acknowledges, since mail scanners and chat
previews fetch links on their own. Everything shown is escaped; the page loads nothing else
(a strict Content-Security-Policy) and tells the browser to keep no copy and send no referrer
(the link is a credential).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from aiohttp import web

# No scripts, no outside resources, no framing; the form posts back to this same link only.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}"
    "dt{font-weight:bold}button{font-size:1.2rem;padding:.6rem 1.4rem}"
)


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What the page says about the incident."""

    title: str
    site: str
    severity: str
    status: str


def page(
    status: int, heading: str, message: str, facts: IncidentFacts | None = None, *, button: bool = False
) -> web.Response:
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(heading)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(heading)}</h1>",
        f"<p>{escape(message)}</p>",
    ]
    if facts is not None:
        rows = (
            ("Incident", facts.title),
            ("Site", facts.site),
            ("Severity", facts.severity),
            ("Status", facts.status),
        )
        parts.append("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows) + "</dl>")
    if button:
        # An empty action posts to this same URL (the link).
        parts.append('<form method="post"><button type="submit">Acknowledge</button></form>')
    parts.append("</body></html>")
    return web.Response(
        status=status,
        text="\n".join(parts),
        content_type="text/html",
        charset="utf-8",
        headers=_HEADERS,
    )
