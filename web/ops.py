"""For whoever runs the service: health, readiness, metrics, request logs and the proxy in front."""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging
import random
import re
import time
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

from operations.health import database_writable, last_success
from operations.logs import configure_logging, register_secrets, request_id
from operations.metrics import flush_calls, render_client_metrics, render_metrics, wechat_setup
from settings import Config

from . import current_shop

bp = Blueprint("ops", __name__)
log = logging.getLogger("lbpay.request")

UTC = dt.timezone.utc
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
SCHEDULER_STALE = dt.timedelta(minutes=3)


def _settings() -> Config:
    return current_shop().config


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and answering; no database, so a slow disk never restarts the machine."""
    return jsonify(status="ok")


def _check_keys() -> tuple[bool, str]:
    shop = current_shop()
    if shop.license_keys.active is None or not shop.apiv3_keys:
        return False, "keys missing"
    return True, f"license key {shop.license_keys.active.kid}, {len(shop.apiv3_keys)} APIv3 key(s)"


def _check_scheduler(now: dt.datetime, started: dt.datetime) -> tuple[bool, str]:
    scheduler = current_app.extensions.get("lbpay.scheduler")
    if scheduler is None:
        return True, "off in this process (jobs run elsewhere)"
    if not scheduler.scheduler.running:
        return False, "stopped"
    beat = scheduler.last_beat or started
    if now - beat > SCHEDULER_STALE:
        return False, f"last beat {int((now - beat).total_seconds())} s ago"
    return True, "alive"


def _check_reconcile(now: dt.datetime, started: dt.datetime) -> tuple[bool, str]:
    stale = dt.timedelta(minutes=_settings().ready_reconcile_minutes)
    last = last_success("reconcile")
    if last is None:
        if now - started < stale:
            return True, "no run yet (just started)"
        return False, "never ran"
    age = now - last
    if age > stale:
        return False, f"last ran {int(age.total_seconds())} s ago"
    return True, f"last ran {int(age.total_seconds())} s ago"


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready to take payments: database writable, keys loaded, scheduler alive, reconciliation recent."""
    now = current_shop().now()
    started = current_app.extensions["lbpay.started_at"]
    checks = {
        "database": database_writable(),
        "keys": _check_keys(),
        "scheduler": _check_scheduler(now, started),
        "reconcile": _check_reconcile(now, started),
        # A refused public-key id is the shop's configuration to fix, not "WeChat down".
        "wechat_config": wechat_setup(current_shop().wechat),
    }
    ready = all(ok for ok, _ in checks.values())
    # The details name the signing key, count keys and quote database errors: for the operator only.
    detailed = _holds_metrics_token()
    body = {"status": "ready" if ready else "not_ready",
            "checks": {name: {"ok": ok, "detail": detail} if detailed else {"ok": ok}
                       for name, (ok, detail) in checks.items()}}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if ready else 503


def _holds_metrics_token() -> bool:
    """True when the request carries ``Authorization: Bearer <LBPAY_METRICS_TOKEN>`` (and a token is set)."""
    token = _settings().metrics_token
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), (token or "").encode())


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics for the holder of ``LBPAY_METRICS_TOKEN``; 404 when no token is set."""
    if not _settings().metrics_token:
        abort(404)
    if not _holds_metrics_token():
        response = Response("unauthorized\n", status=401, mimetype="text/plain")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    now = current_shop().now()
    flush_calls(current_shop())  # this process's WeChat calls of the last few seconds count too
    response = Response(render_metrics(now) + render_client_metrics(current_shop().wechat), mimetype="text/plain")
    response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"
    return response


def address_source(settings: Config) -> str:
    """Say where client addresses (every per-address limit's key) come from, for the start-up log."""
    if settings.proxy_hops:
        source = f"X-Forwarded-For, trusting {settings.proxy_hops} proxy hop(s) (LBPAY_PROXY_HOPS)"
    else:
        source = "the connection itself; X-Forwarded-For is ignored (LBPAY_PROXY_HOPS=0)"
    if settings.client_ip_header:
        source = f"the {settings.client_ip_header} header when present (LBPAY_CLIENT_IP_HEADER), else {source}"
    return source


class ClientAddressHeader:
    """WSGI middleware: the client address is the one the edge proxy put in a named header (``Fly-Client-IP``)."""

    def __init__(self, app: Any, header: str) -> None:
        self.app = app
        self.environ_key = "HTTP_" + header.upper().replace("-", "_")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        value = environ.get(self.environ_key, "").strip()
        if value:
            try:
                environ["REMOTE_ADDR"] = str(ipaddress.ip_address(value))
            except ValueError:
                pass  # not an address: keep what the connection (or the trusted hops) said
        return self.app(environ, start_response)


def choose_request_id(offered: str | None) -> str:
    """The id a request is logged and answered under: the proxy's (X-Request-Id, Fly-Request-Id) if sane.

    Else 128 random bits from the process's generator (reseeded in every forked worker): an id to
    find a request by, not a secret, so no system call for fresh entropy on every request.
    """
    return offered if offered and _REQUEST_ID.match(offered) else f"{random.getrandbits(128):032x}"


def transport_security(settings: Config) -> tuple[tuple[str, str], ...]:
    """HSTS in live mode: HTTPS is enforced at the edge; this tells browsers never to try plain HTTP again."""
    return (("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),) if settings.live else ()


def register_ops(app: Flask, settings: Config, secrets: list[Any], *, json_logs: bool) -> None:
    """Install the ops blueprint, JSON request logs, the proxy fix and live-mode transport security."""
    app.extensions["lbpay.started_at"] = dt.datetime.now(UTC)
    app.register_blueprint(bp)
    register_secrets(secrets)
    if json_logs:
        configure_logging(settings.log_level)
    if settings.client_ip_header:
        app.wsgi_app = ClientAddressHeader(app.wsgi_app, settings.client_ip_header)  # type: ignore[method-assign]
    if settings.proxy_hops:
        # Fly's edge and Caddy each add one hop; trusting more would let a client choose its own address.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops,  # type: ignore[method-assign]
                                x_proto=settings.proxy_hops)
    logging.getLogger("lbpay").info("client addresses: %s", address_source(settings))
    if settings.live:
        app.config.update(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True)

    @app.before_request
    def _start_request_log() -> None:
        g.request_id = choose_request_id(request.headers.get("X-Request-Id") or request.headers.get("Fly-Request-Id"))
        g.request_token = request_id.set(g.request_id)
        g.request_started = time.monotonic()

    @app.after_request
    def _finish_request_log(response: Response) -> Response:
        rid = g.get("request_id")
        if rid is None:
            return response
        response.headers["X-Request-Id"] = rid
        for name, value in transport_security(settings):
            response.headers.setdefault(name, value)
        # A successful status poll (an answer, or a 304 for the one the client holds) is the bulk of
        # all traffic and says nothing new: DEBUG, not INFO.
        level = logging.DEBUG if response.status_code in (200, 304) and request.endpoint == "api.get_order" \
            else logging.INFO
        if not log.isEnabledFor(level):
            return response
        took = (time.monotonic() - g.get("request_started", time.monotonic())) * 1000
        # The message names the route, not the path, so an id in the path never meets the scrubber's
        # "long base64 run" rule; the path itself is a field of its own.
        route = request.url_rule.rule if request.url_rule is not None else "-"
        log.log(level, "%s %s %s", request.method, route, response.status_code,
                 extra={"method": request.method, "path": request.path, "status": response.status_code,
                        "duration_ms": round(took, 1), "ip": request.remote_addr,
                        "request_id": rid})
        return response

    @app.teardown_request
    def _end_request_log(exc: BaseException | None) -> None:
        token = g.pop("request_token", None)
        if token is not None:
            try:
                request_id.reset(token)
            except ValueError:  # set in another context (a copied one); nothing to undo here
                pass
