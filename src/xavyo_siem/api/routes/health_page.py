"""The delivery health page, `/ui/`: a server-rendered HTML page (a little CSS, no script,
no build step, nothing from another host) that a person opens in a browser.

Signing in takes an API token once (`/ui/login`); it is kept in a cookie that only this
page reads (HttpOnly, SameSite=Strict, Secure over HTTPS, path `/ui`). A tenant's token
shows its tenant; a platform token shows every tenant (the fleet view of the store,
`fleet_metrics.FleetView`, on both backends; `?tenant=` narrows it). Per destination: its
state in words, lag in human units, last success and last error, circuit, dead letters and
rate limit; above the table, how many workers are alive.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Final
from urllib.parse import parse_qs
from uuid import UUID

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from xavyo_siem import delivery_health
from xavyo_siem.api.deps import ContextDep, principal_of
from xavyo_siem.api.errors import ApiError
from xavyo_siem.model import (
    DeliveryHealth,
    RateLimit,
    WorkersSeen,
    format_duration,
    format_timestamp,
)
from xavyo_siem.store.leases import worker_heartbeats
from xavyo_siem.store.tokens import ApiToken

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

COOKIE: Final = "xavyo_siem_token"
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_CSS: Final = """\
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
.meta, .workers { color: #555; margin: .2rem 0; }
.workers.none { color: #b00020; font-weight: 600; }
table { border-collapse: collapse; margin-top: 1rem; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #ddd; }
td { vertical-align: top; }
th { background: #f4f4f6; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.state { font-weight: 600; border-radius: 3px; padding: 0 .35rem; }
.ok { color: #0a7a32; }
.failing, .switched-off { color: #fff; background: #b00020; }
.never-delivered { color: #8a5a00; }
.disabled { color: #666; }
.error { color: #b00020; max-width: 40rem; word-break: break-word; }
form.inline { display: inline; }
input[type=password] { width: 28rem; }
"""


def _page(title: str, body: str, *, refresh_s: int | None = None) -> HTMLResponse:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>{refresh}"
        '<link rel="stylesheet" href="/ui/style.css"></head>'
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, headers=_HEADERS)


@router.get("/style.css")
def style() -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _login_page(request.query_params.get("why"))


def _login_page(why: str | None) -> HTMLResponse:
    note = f'<p class="error">{escape(why)}</p>' if why else ""
    return _page(
        "xavyo-siem: sign in",
        "<h1>xavyo-siem delivery health</h1>"
        f"{note}<p>Sign in with an API token (<code>xavyo-siem tokens create</code>): a "
        "tenant's token shows its tenant, a platform token every tenant.</p>"
        '<form method="post" action="/ui/login">'
        '<label>API token <input type="password" name="token" autocomplete="off" required>'
        '</label> <button type="submit">Sign in</button></form>',
    )


@router.post("/login")
async def login(request: Request, context: ContextDep) -> Response:
    """Check the token; keep it in the page's cookie and go to the page."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    presented = (form.get("token") or [""])[0].strip()
    try:
        principal_of(context, presented or None)
    except ApiError as exc:
        return _login_page(exc.msg)
    answer = RedirectResponse("/ui/", status_code=303)
    answer.set_cookie(
        COOKIE,
        presented,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
    )
    return answer


@router.post("/logout")
def logout() -> Response:
    answer = RedirectResponse("/ui/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/ui")
    return answer


@router.get("/")
def health_page(request: Request, context: ContextDep) -> Response:
    """The health of every destination the signed-in token may see."""
    try:
        token = principal_of(context, request.cookies.get(COOKIE))
    except ApiError as exc:
        why = "" if request.cookies.get(COOKIE) is None else f"?why={exc.msg}"
        return RedirectResponse(f"/ui/login{why}", status_code=303)
    wanted = _tenant_filter(request, token)
    if wanted is None:  # a platform token, every tenant: the fleet view of the store
        fleet = context.fleet.snapshot(tenant_id=None)
        reports = [entry.health for entry in fleet.destinations]
        seen = fleet.workers
    else:
        with context.engine.connect() as conn:
            reports = delivery_health.list_health(conn, tenant_id=wanted)
            beats = worker_heartbeats(conn)
        seen = WorkersSeen.of(beats, now=datetime.now(UTC))
    now = datetime.now(UTC)
    scope = f"tenant {wanted}" if wanted else "every tenant"
    picker = "" if token.tenant_id is not None else _tenant_picker(wanted)
    body = (
        '<form class="inline" method="post" action="/ui/logout">'
        '<button type="submit">Sign out</button></form>'
        "<h1>xavyo-siem delivery health</h1>"
        f'<p class="meta">{escape(scope)} · {format_timestamp(now)[:19].replace("T", " ")} UTC'
        " · refreshes every 15 s</p>"
        f"{picker}{_workers(seen)}{_counts(reports)}{_table(reports, now)}"
    )
    return _page("xavyo-siem: delivery health", body, refresh_s=15)


def _tenant_picker(wanted: UUID | None) -> str:
    """A platform token's choice of tenant."""
    value = "" if wanted is None else str(wanted)
    return (
        '<form method="get" action="/ui/"><label>Tenant <input name="tenant" size="38" '
        f'placeholder="every tenant" value="{value}"></label> '
        '<button type="submit">Show</button></form>'
    )


def _tenant_filter(request: Request, token: ApiToken) -> UUID | None:
    if token.tenant_id is not None:
        return token.tenant_id
    asked = request.query_params.get("tenant")
    try:
        return UUID(asked) if asked else None
    except ValueError:
        return None


def _workers(seen: WorkersSeen) -> str:
    kind = "workers" if seen.alive else "workers none"
    return f'<p class="{kind}">Workers: {escape(seen.describe())}</p>'


def _counts(reports: list[DeliveryHealth]) -> str:
    states: dict[str, int] = {}
    for report in reports:
        states[report.state] = states.get(report.state, 0) + 1
    parts = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    return f'<p class="meta">{len(reports)} destination(s){": " + parts if parts else ""}</p>'


def _table(reports: list[DeliveryHealth], now: datetime) -> str:
    if not reports:
        return "<p>No destinations.</p>"
    head = "".join(
        f"<th>{name}</th>"
        for name in (
            "Tenant", "Destination", "State", "Lag", "Last success", "Last error",
            "Circuit", "Dead letters", "Rate limit",
        )
    )  # fmt: skip
    rows = "".join(_row(report, now) for report in _worst_first(reports))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


_ORDER: Final = {"failing": 0, "switched off": 1, "never delivered": 2, "ok": 3, "disabled": 4}


def _worst_first(reports: list[DeliveryHealth]) -> list[DeliveryHealth]:
    return sorted(reports, key=lambda r: (_ORDER[r.state], -r.lag_seconds, r.name))


def _row(report: DeliveryHealth, now: datetime) -> str:
    state = report.state
    lag = (
        "0"
        if report.lag_events == 0
        else f"{report.lag_events:,} ({format_duration(report.lag_seconds)})"
    )
    success = (
        "never"
        if report.last_success is None
        else f"{format_duration((now - report.last_success).total_seconds())} ago"
    )
    error = report.disabled_reason or report.last_error or ""
    cells = (
        f"<td><code>{report.tenant_id}</code></td>",
        f"<td>{escape(report.name)}</td>",
        f'<td><span class="state {state.replace(" ", "-")}">{state}</span></td>',
        f'<td class="num">{lag}</td>',
        f"<td>{success}</td>",
        f'<td class="error">{escape(error[:300])}</td>',
        f"<td>{report.circuit_state.value if report.enabled else '-'}</td>",
        f'<td class="num">{report.dead_letters:,}</td>',
        f"<td>{_rate(report.rate_limit)}</td>",
    )
    return f'<tr data-destination="{report.destination_id}">{"".join(cells)}</tr>'


def _rate(limit: RateLimit | None) -> str:
    return "none" if limit is None else f"{limit.events_per_s:,.0f}/s (burst {limit.burst:,})"
