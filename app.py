"""The composition root: settings, the app factory, and the ``lbpay`` command line."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import click
from cryptography.hazmat.primitives import serialization
from flask import Flask, current_app
from flask.cli import FlaskGroup
from peewee import Database, SqliteDatabase

import models
from billing import Shop
from billing.shop import WRITERS
from licensing import KeyRing, generate_private_key_pem
from licensing.keys import KeyFileError
from wechatpay.client import WeChatPayClient
from wechatpay.crypto import load_private_key, load_public_key
from wechatpay.errors import ConfigError
from wechatpay.verifier import CertificateStore, PublicKeyVerifier

PREFIX = "LBPAY_"
NOTIFY_PATH = "/wechatpay/notify/transaction"
SANDBOX_PREFIX = "/sandbox"
SANDBOX_MCHID = "1900000109"
SANDBOX_APPID = "wx0123456789abcdef"
SANDBOX_PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092026112600000000000001"
UTC = dt.timezone.utc

log = logging.getLogger("lbpay")


# --- settings -----------------------------------------------------------------------------

class Settings:
    """Reads ``LBPAY_*`` settings from a mapping, failing with the setting's name."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def raw(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value is None or value == "" else value

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        return default if value is None else str(value).strip()

    def required(self, name: str, why: str) -> str:
        value = self.text(name)
        if value is None:
            raise ConfigError(PREFIX + name, f"required {why}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ConfigError(PREFIX + name, f"must be a whole number, not {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(PREFIX + name, f"must be between {low} and {high}")
        return number

    def secret(self, name: str) -> str | None:
        """A secret given inline or, with ``NAME_FILE``, as the contents of a file."""
        path = self.text(name + "_FILE")
        if path is not None:
            try:
                return Path(path).read_text().strip()
            except OSError as exc:
                raise ConfigError(PREFIX + name + "_FILE", f"cannot read {path}: {exc.strerror}") from None
        return self.text(name)


def _settings_from(environ: Mapping[str, str], test_config: Mapping[str, Any] | None) -> Settings:
    values: dict[str, Any] = {k[len(PREFIX):]: v for k, v in environ.items() if k.startswith(PREFIX)}
    values.update(test_config or {})
    return Settings(values)


def _https_url(settings: Settings, name: str, value: str, live: bool) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(PREFIX + name, f"must be an absolute URL without query, not {value!r}")
    if live and parts.scheme != "https":
        raise ConfigError(PREFIX + name, "must start with https:// in live mode")
    return value.rstrip("/")


# --- database -----------------------------------------------------------------------------

def open_database(url: str, instance_path: str, busy_timeout_ms: int = 10000) -> Database:
    """Open the database named by a URL: ``sqlite:///file`` (WAL) or ``postgresql://``."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path != ":memory:" and not os.path.isabs(path):
            path = os.path.join(instance_path, path)
        return SqliteDatabase(path, timeout=busy_timeout_ms / 1000, pragmas={
            "journal_mode": "wal", "foreign_keys": 1, "busy_timeout": busy_timeout_ms, "synchronous": "normal"})
    if url.startswith(("postgresql://", "postgres://")):
        from playhouse.db_url import connect

        return connect(url)
    raise ConfigError("LBPAY_DATABASE_URL", "must start with sqlite:/// or postgresql://")


# --- keys ---------------------------------------------------------------------------------

def _read_key_file(setting: str, path: str) -> bytes:
    try:
        mode = os.stat(path).st_mode
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(PREFIX + setting, f"cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(PREFIX + setting, f"{path} is readable by other users; run: chmod 600 {path}")
    return data


def _apiv3_key(value: str, setting: str) -> bytes:
    key = value.encode()
    if len(key) != 32:
        raise ConfigError(PREFIX + setting, f"must be exactly 32 bytes, got {len(key)}")
    return key


def _ensure_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """Return a local-only secret file's contents, creating it (mode 0600) when absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        data = make()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    return path.read_bytes()


def _sandbox_keys(instance: Path) -> dict[str, Any]:
    """The embedded sandbox's key material, made once per instance folder (never real secrets)."""
    folder = instance / "sandbox"
    merchant_pem = _ensure_file(folder / "merchant_key.pem", generate_private_key_pem)
    platform_pem = _ensure_file(folder / "platform_key.pem", generate_private_key_pem)
    apiv3 = _ensure_file(folder / "apiv3_key", lambda: secrets.token_hex(16).encode())
    merchant_key = load_private_key(merchant_pem)
    der = merchant_key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "merchant_pem": merchant_pem, "merchant_key": merchant_key,
        "merchant_serial": hashlib.sha1(der).hexdigest().upper(),
        "platform_pem": platform_pem, "apiv3_key": apiv3.strip(),
    }


# --- the factory --------------------------------------------------------------------------

def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from defaults, then ``LBPAY_*`` environment variables, then ``test_config``."""
    app = Flask(__name__, instance_relative_config=True)
    settings = _settings_from(os.environ, test_config)
    instance = Path(settings.text("INSTANCE_PATH") or app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    app.instance_path = str(instance)

    mode = settings.text("WECHATPAY_MODE") or ("live" if settings.text("WECHATPAY_MCHID") else "sandbox")
    if mode not in ("sandbox", "live"):
        raise ConfigError("LBPAY_WECHATPAY_MODE", "must be sandbox or live")
    live = mode == "live"

    secret_key = settings.secret("SECRET_KEY")
    if secret_key is None:
        if live:
            raise ConfigError("LBPAY_SECRET_KEY", "required in live mode")
        secret_key = _ensure_file(instance / "secret_key", lambda: secrets.token_hex(32).encode()).decode()
    app.config.update(
        SECRET_KEY=secret_key,
        MAX_CONTENT_LENGTH=64 * 1024,
        JSON_SORT_KEYS=False,
        WECHATPAY_MODE=mode,
        TESTING=bool(settings.raw("TESTING")),
    )

    public_base = _https_url(settings, "PUBLIC_BASE_URL",
                             settings.text("PUBLIC_BASE_URL", None if live else "http://127.0.0.1:5000")
                             or settings.required("PUBLIC_BASE_URL", "in live mode"), live)
    app.config["PUBLIC_BASE_URL"] = public_base
    # The console's session cookie: Secure whenever the public address is https (behind the TLS proxy).
    cookie_secure = settings.text("SESSION_COOKIE_SECURE", "on" if public_base.startswith("https://") else "off")
    if cookie_secure not in ("on", "off"):
        raise ConfigError("LBPAY_SESSION_COOKIE_SECURE", "must be on or off")
    app.config["SESSION_COOKIE_SECURE"] = cookie_secure == "on"
    app.config["ADMIN_IDLE_MINUTES"] = settings.integer("ADMIN_IDLE_MINUTES", 30, 1, 720)
    app.config["CONTENT_DIR"] = Path(settings.text("CONTENT_DIR") or instance / "content")  # served by /provider

    busy_timeout_ms = settings.integer("DB_BUSY_TIMEOUT_MS", 10000, 100, 60000)
    database = open_database(settings.text("DATABASE_URL") or "sqlite:///lbpay.db", str(instance),
                             busy_timeout_ms=busy_timeout_ms)
    models.db.initialize(database)
    WRITERS.patience = busy_timeout_ms / 1000

    license_keys = _license_keys(settings, instance, live)
    clock: Callable[[], dt.datetime] = settings.raw("CLOCK") or (lambda: dt.datetime.now(UTC))
    ttl = dt.timedelta(minutes=settings.integer("ORDER_TTL_MINUTES", 30, 5, 1440))

    if live:
        wechat, verifier, apiv3_keys, mchid, appid = _live_wechat(settings)
        notify_url = public_base + NOTIFY_PATH
    else:
        keys = _sandbox_keys(instance)
        mchid, appid = SANDBOX_MCHID, SANDBOX_APPID
        apiv3_keys = [_apiv3_key(keys["apiv3_key"].decode(), "sandbox apiv3 key")]
        platform_public = load_private_key(keys["platform_pem"]).public_key()
        verifier = PublicKeyVerifier(SANDBOX_PUBLIC_KEY_ID, platform_public)
        # WeChat calls only https:// URLs; the sandbox is told our https origin is served locally.
        public_https = "https://" + urlsplit(public_base).netloc
        notify_url = public_https + NOTIFY_PATH
        api_base = settings.text("WECHATPAY_API_BASE") or public_base + SANDBOX_PREFIX
        wechat = WeChatPayClient(api_base=api_base, mchid=mchid, appid=appid,
                                 merchant_serial=keys["merchant_serial"], merchant_key=keys["merchant_key"],
                                 verifier=verifier, apiv3_keys=apiv3_keys,
                                 public_key_id=SANDBOX_PUBLIC_KEY_ID)
        _mount_sandbox(app, keys, public_base)

    # Every call to WeChat Pay is counted and timed, for /metrics and the "WeChat unreachable" alert.
    from billing.metrics import CountedWeChat

    wechat = CountedWeChat(wechat, clock)
    app.extensions["lbpay.shop"] = Shop(
        wechat=wechat, verifier=verifier, apiv3_keys=apiv3_keys, mchid=mchid, appid=appid,
        license_keys=license_keys, notify_url=notify_url, order_ttl=ttl, clock=clock,
        token_secret=hashlib.sha256(b"lbpay bearer tokens\0" + secret_key.encode()).digest(),
        mailer=_mailer(settings, public_base))
    app.extensions["lbpay.clock"] = clock

    _register(app, database)
    _register_ops(app, settings, live, instance)
    _start_scheduler(app, settings)
    return app


def _mailer(settings: Settings, public_base: str) -> Any:
    """The mail settings: LBPAY_SMTP_URL (unset: mails stay queued), LBPAY_MAIL_FROM, reminder days."""
    from billing.mail import MailSettingError, Mailer, parse_mail_from, parse_smtp_url

    smtp_url = settings.secret("SMTP_URL")
    try:
        smtp = parse_smtp_url(smtp_url) if smtp_url else None
    except MailSettingError as exc:
        raise ConfigError("LBPAY_SMTP_URL", str(exc)) from None
    mail_from = settings.text("MAIL_FROM")
    if mail_from is None:
        if smtp is not None:
            raise ConfigError("LBPAY_MAIL_FROM", "required when LBPAY_SMTP_URL is set")
        mail_from = "Learning Buddy <noreply@localhost>"
    try:
        mail_from = parse_mail_from(mail_from)
    except MailSettingError as exc:
        raise ConfigError("LBPAY_MAIL_FROM", str(exc)) from None
    return Mailer(smtp=smtp, mail_from=mail_from, public_base_url=public_base,
                  renewal_reminder_days=settings.integer("RENEWAL_REMINDER_DAYS", 7, 1, 60))


_IN_CLI = False  # set by the command line: a CLI command never starts the web process's scheduler


def _start_scheduler(app: Flask, settings: Settings) -> None:
    """Run the scheduled jobs inside this process unless told not to (LBPAY_SCHEDULER=off)."""
    choice = settings.text("SCHEDULER", "on")
    if choice not in ("on", "off"):
        raise ConfigError("LBPAY_SCHEDULER", "must be on or off")
    if choice == "off" or _IN_CLI:
        return
    import billing.jobs  # noqa: F401  (registers the jobs)
    from billing.scheduler import Scheduler

    scheduler = Scheduler(app.extensions["lbpay.shop"],
                          intervals={"reconcile": settings.integer("RECONCILE_SECONDS", 60, 1, 3600)})
    scheduler.start()
    app.extensions["lbpay.scheduler"] = scheduler


def license_keys_dir(settings: Settings, instance: Path) -> Path:
    """Where rotated license keys live: LBPAY_LICENSE_KEYS_DIR, default ``<instance>/license-keys``."""
    return Path(settings.text("LICENSE_KEYS_DIR") or instance / "license-keys")


def _license_keys(settings: Settings, instance: Path, live: bool) -> KeyRing:
    from billing.license_keys import ACTIVE, load_key_ring

    keys_dir = license_keys_dir(settings, instance)
    path = settings.text("LICENSE_KEY_FILE")
    if path is None and not (keys_dir / ACTIVE).exists():
        if live:
            raise ConfigError("LBPAY_LICENSE_KEY_FILE", "required in live mode")
        local = instance / "license_key.pem"
        _ensure_file(local, generate_private_key_pem)
        path = str(local)
    try:
        return load_key_ring(path, keys_dir)
    except KeyFileError as exc:
        raise ConfigError(exc.setting, exc.problem) from None


def _live_wechat(settings: Settings) -> tuple[WeChatPayClient, Any, list[bytes], str, str]:
    why = "in live mode"
    mchid = settings.required("WECHATPAY_MCHID", why)
    appid = settings.required("WECHATPAY_APPID", why)
    if not mchid.isdigit():
        raise ConfigError("LBPAY_WECHATPAY_MCHID", "must be the merchant id's digits")
    api_base = _https_url(settings, "WECHATPAY_API_BASE",
                          settings.text("WECHATPAY_API_BASE", "https://api.mch.weixin.qq.com") or "", True)
    key_file = settings.required("WECHATPAY_MERCHANT_KEY_FILE", why)
    try:
        merchant_key = load_private_key(_read_key_file("WECHATPAY_MERCHANT_KEY_FILE", key_file))
    except ValueError:
        raise ConfigError("LBPAY_WECHATPAY_MERCHANT_KEY_FILE", f"{key_file} is not an RSA private key PEM") from None
    serial = settings.required("WECHATPAY_MERCHANT_SERIAL", why).upper()
    apiv3 = settings.secret("WECHATPAY_APIV3_KEY")
    if apiv3 is None:
        raise ConfigError("LBPAY_WECHATPAY_APIV3_KEY", "required in live mode")
    apiv3_keys = [_apiv3_key(apiv3, "WECHATPAY_APIV3_KEY")]
    # During an APIv3 key switch at the merchant platform both keys decrypt.
    apiv3_next = settings.secret("WECHATPAY_APIV3_KEY_NEXT")
    if apiv3_next is not None:
        apiv3_keys.append(_apiv3_key(apiv3_next, "WECHATPAY_APIV3_KEY_NEXT"))
    public_key_file = settings.text("WECHATPAY_PUBLIC_KEY_FILE")
    public_key_id = settings.text("WECHATPAY_PUBLIC_KEY_ID")
    verifier: Any
    if public_key_file or public_key_id:
        if not (public_key_file and public_key_id):
            raise ConfigError("LBPAY_WECHATPAY_PUBLIC_KEY_ID", "public-key mode needs both the key file and its id")
        try:
            platform_public = load_public_key(Path(public_key_file).read_bytes())
        except (OSError, ValueError):
            raise ConfigError("LBPAY_WECHATPAY_PUBLIC_KEY_FILE",
                              f"{public_key_file} is not a readable RSA public key PEM") from None
        verifier = PublicKeyVerifier(public_key_id, platform_public)
    else:
        # The store refreshes through the client that it itself verifies for: bind it late.
        late: list[WeChatPayClient] = []
        verifier = CertificateStore(refresh=lambda: late[0].download_certificates())
    client = WeChatPayClient(api_base=api_base, mchid=mchid, appid=appid, merchant_serial=serial,
                             merchant_key=merchant_key, verifier=verifier, apiv3_keys=apiv3_keys,
                             public_key_id=public_key_id,
                             read_timeout=settings.integer("WECHATPAY_READ_TIMEOUT", 5, 1, 30))
    if isinstance(verifier, CertificateStore):
        late.append(client)
    return client, verifier, apiv3_keys, mchid, appid


def _sandbox_config(keys: dict[str, Any], merchant_origin: str) -> Any:
    """Configure a sandbox that knows our sandbox merchant and delivers to ``merchant_origin``."""
    from wechatpay.sandbox import SandboxConfig

    public_https = "https://" + urlsplit(merchant_origin).netloc
    return SandboxConfig(
        mchid=SANDBOX_MCHID, appid=SANDBOX_APPID,
        merchant_public_key_pem=keys["merchant_key"].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        merchant_serial=keys["merchant_serial"], apiv3_key=keys["apiv3_key"],
        platform_private_key_pem=keys["platform_pem"], public_key_id=SANDBOX_PUBLIC_KEY_ID,
        notify_origin_map={public_https: merchant_origin})


def _mount_sandbox(app: Flask, keys: dict[str, Any], public_base: str) -> None:
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from wechatpay.sandbox import create_sandbox_app

    sandbox = create_sandbox_app(_sandbox_config(keys, public_base))
    app.extensions["lbpay.sandbox"] = sandbox
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {SANDBOX_PREFIX: sandbox})  # type: ignore[method-assign]


def _register(app: Flask, database: Database) -> None:
    from web import admin, api, notify, pages, provider

    app.register_blueprint(api.bp)
    app.register_blueprint(notify.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(provider.bp)
    admin.init_app(app)

    @app.before_request
    def _connect() -> None:
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(exc: BaseException | None) -> None:
        # A worker thread keeps its SQLite connection between requests: opening one and parsing
        # the schema on its first query cost more than the rest of a status poll. A request that
        # failed gives its connection up, so a broken one is never reused.
        keep = isinstance(database, SqliteDatabase) and exc is None and not database.in_transaction()
        if not keep and not database.is_closed():
            database.close()

    pages.register_error_pages(app)
    pages.use_sessions_only_for_people(app)


# --- command line -------------------------------------------------------------------------

def _register_ops(app: Flask, settings: Settings, live: bool, instance: Path) -> None:
    """Health, readiness, metrics, JSON logs, the proxy in front; backups, alerts and retention settings."""
    from billing import alerts, backups, retention
    from web.ops import OpsSettings, register_ops

    log_level = (settings.text("LOG_LEVEL", "INFO") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("LBPAY_LOG_LEVEL", "must be DEBUG, INFO, WARNING or ERROR")
    metrics_token = settings.secret("METRICS_TOKEN")
    if metrics_token is not None and len(metrics_token) < 16:
        raise ConfigError("LBPAY_METRICS_TOKEN", "must be at least 16 characters")
    ops = OpsSettings(
        live=live, proxy_hops=settings.integer("PROXY_HOPS", 1, 0, 5), metrics_token=metrics_token,
        reconcile_stale=dt.timedelta(minutes=settings.integer("READY_RECONCILE_MINUTES", 10, 2, 1440)),
        log_level=log_level, json_logs=not _IN_CLI)
    shop = app.extensions["lbpay.shop"]
    register_ops(app, ops, [app.config["SECRET_KEY"], metrics_token, *shop.apiv3_keys])
    backup_dir = settings.text("BACKUP_DIR")
    backups.SETTINGS.directory = Path(backup_dir) if backup_dir else None
    backups.SETTINGS.keep = settings.integer("BACKUP_KEEP", 14, 1, 365)
    alerts.SETTINGS.to = settings.text("ALERT_EMAIL")
    retention.SETTINGS.days = settings.integer("RETENTION_DAYS", 400, 30, 3650)


@click.group(cls=FlaskGroup, create_app=create_app, add_default_commands=True)
def cli() -> None:
    """Learning Buddy Pay: sell course licenses through WeChat Pay."""
    global _IN_CLI
    _IN_CLI = True


@cli.command("init")
def init_command() -> None:
    """Create or upgrade the database (numbered migrations); safe to run at every deploy."""
    import migrations

    with models.db.connection_context():
        applied = migrations.migrate()
        version = max(migrations.applied_versions(models.db.obj))
    done = f"applied migrations {', '.join(map(str, applied))}; " if applied else ""
    click.echo(f"database ready ({done}schema version {version})")


@cli.command("reconcile")
@click.option("--once", is_flag=True, required=True, help="run one pass now and exit")
def reconcile_command(once: bool) -> None:
    """Ask WeChat about pending orders, close expired ones; prints what was fixed."""
    import billing.jobs  # noqa: F401
    from billing.scheduler import holder_id, run_job

    with models.db.connection_context():
        summary = run_job(current_app.extensions["lbpay.shop"], "reconcile", holder_id())
    if summary is None:
        click.echo("another process is reconciling right now; nothing done")
        sys.exit(1)
    click.echo(json.dumps(summary, sort_keys=True))


@cli.command("scheduler")
def scheduler_command() -> None:
    """Run the scheduled jobs in the foreground (for LBPAY_SCHEDULER=off web processes)."""
    import signal
    import threading

    import billing.jobs  # noqa: F401
    from billing.scheduler import Scheduler

    scheduler = Scheduler(current_app.extensions["lbpay.shop"])
    scheduler.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    scheduler.stop()


@cli.group("courses")
def courses_group() -> None:
    """Courses for sale."""


@courses_group.command("add")
@click.argument("course_id")
@click.option("--title", required=True)
@click.option("--price-fen", type=click.IntRange(min=1), required=True, help="price in fen (1 yuan = 100)")
@click.option("--period-days", type=click.IntRange(min=1), default=None, help="license lifetime in days")
@click.option("--subscription", is_flag=True, help="time-limited access, renewed by paying again")
def courses_add(course_id: str, title: str, price_fen: int, period_days: int | None, subscription: bool) -> None:
    """Add a course, or update the one with this id."""
    from billing.courses import save_course

    shop = current_app.extensions["lbpay.shop"]
    with models.db.connection_context():
        course = save_course(shop, course_id=course_id, title=title, price_fen=price_fen,
                             plan="subscription" if subscription else "one_time", period_days=period_days,
                             actor="cli")
    click.echo(f"{course.id}\t{course.title}\t{course.price_fen} fen\t{course.plan}")


@courses_group.command("list")
def courses_list() -> None:
    """List the courses."""
    with models.db.connection_context():
        for c in models.Course.select().order_by(models.Course.id):
            period = f"{c.period_days}d" if c.period_days else "lifetime"
            state = "active" if c.active else "inactive"
            click.echo(f"{c.id}\t{c.title}\t{c.price_fen} fen\t{c.plan}\t{period}\t{state}")


@courses_group.command("content")
@click.argument("course_id")
@click.option("--download-limit", type=click.IntRange(min=1), default=None,
              help="downloads of paid files each new license allows")
@click.option("--no-download-limit", is_flag=True, help="new licenses download without limit")
def courses_content(course_id: str, download_limit: int | None, no_download_limit: bool) -> None:
    """List the files /provider serves for a course (free or licensed); optionally set its download limit."""
    from billing.content import ContentError, served_files, set_download_limit

    shop, folder = current_app.extensions["lbpay.shop"], current_app.config["CONTENT_DIR"]
    with models.db.connection_context():
        try:
            if download_limit is not None or no_download_limit:
                set_download_limit(shop, course_id, None if no_download_limit else download_limit, actor="cli")
            files = served_files(folder, course_id)
        except ContentError as exc:
            raise click.ClickException(exc.message) from None
        limit = models.Course.get_by_id(course_id).download_limit
    for item in files:
        click.echo(f"{'free' if item['free'] else 'licensed'}\t{item['size']}\t{item['path']}")
    click.echo(f"{len(files)} files from {folder / course_id}; downloads per new license: {limit or 'unlimited'}")


@cli.group("license")
def license_group() -> None:
    """License keys."""


@license_group.command("verify")
@click.argument("key_or_file")
@click.option("--public-key-file", type=click.Path(exists=True, dir_okay=False), default=None)
def license_verify(key_or_file: str, public_key_file: str | None) -> None:
    """Check a license (its text, or a file holding it); exit 0 only when valid."""
    from licensing import verify_license

    text = key_or_file
    if "|" not in key_or_file and os.path.exists(key_or_file):
        text = Path(key_or_file).read_text()
    if public_key_file:
        keys: Any = [load_public_key(Path(public_key_file).read_bytes())]
    else:
        keys = current_app.extensions["lbpay.shop"].license_keys.public_keys()
    check = verify_license(text, keys, dt.datetime.now(UTC))
    if check.payload is not None:
        click.echo(json.dumps(check.payload, ensure_ascii=False, indent=2))
    plain = check.reason in ("", "ok", check.status)
    click.echo(check.status if plain else f"{check.status}: {check.reason}")
    sys.exit(0 if check.status == "valid" else 1)


@cli.command("sandbox", with_appcontext=False)
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8001, type=int)
@click.option("--instance", default="instance", help="folder holding the sandbox keys")
@click.option("--merchant-origin", default="http://127.0.0.1:5000",
              help="where our app listens; the sandbox delivers notifications for its https origin there")
def sandbox_command(host: str, port: int, instance: str, merchant_origin: str) -> None:
    """Run the WeChat Pay sandbox on its own port, with this instance's sandbox keys."""
    from werkzeug.serving import run_simple

    from wechatpay.sandbox import create_sandbox_app

    sandbox = create_sandbox_app(_sandbox_config(_sandbox_keys(Path(instance)), merchant_origin))
    run_simple(host, port, sandbox, threaded=True)


@cli.group("admin")
def admin_group() -> None:
    """Accounts of the creator's console at /admin."""


def _read_password(password_file: str | None) -> str:
    if password_file is not None:
        password = Path(password_file).read_text(encoding="utf-8")
        return password[:-1] if password.endswith("\n") else password
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    raise click.UsageError("give --password-file FILE, or run on a terminal to be asked for the password")


@admin_group.command("create")
@click.argument("email")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="a file holding the password (one trailing newline is ignored)")
def admin_create(email: str, password_file: str | None) -> None:
    """Create a console account, or set a new password (signing out its sessions)."""
    from flask import current_app

    from billing import BillingError
    from billing.admin_users import create_admin

    password = _read_password(password_file)
    with models.db.connection_context():
        try:
            user = create_admin(current_app.extensions["lbpay.shop"], email, password)
        except BillingError as exc:
            raise click.ClickException(exc.detail or exc.code) from None
    click.echo(f"admin {user.email} ready; sign in at {current_app.config['PUBLIC_BASE_URL']}/admin/login")


@admin_group.command("totp")
@click.argument("email")
@click.option("--svg", "svg_file", type=click.Path(dir_okay=False, writable=True), default=None,
              help="also write the enrolment QR code to this SVG file")
def admin_totp(email: str, svg_file: str | None) -> None:
    """Enrol (or re-enrol) an authenticator app: prints the otpauth URI and its QR code."""
    import io

    import qrcode
    from flask import current_app

    from billing import BillingError
    from billing.admin_users import enrol_totp
    from billing.orders import qr_svg

    with models.db.connection_context():
        try:
            uri = enrol_totp(current_app.extensions["lbpay.shop"], email)
        except BillingError as exc:
            raise click.ClickException(exc.detail or exc.code) from None
    code = qrcode.QRCode(border=1)
    code.add_data(uri)
    picture = io.StringIO()
    code.print_ascii(out=picture, invert=True)
    click.echo(picture.getvalue())
    click.echo(uri)
    if svg_file:
        fd = os.open(svg_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(qr_svg(uri))
        click.echo(f"QR code written to {svg_file}")
    click.echo("Scan it with an authenticator app; sign-in now asks for its 6-digit code.")


@cli.group("audit")
def audit_group() -> None:
    """The hash-chained audit trail."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Check that no audit event was edited, removed or reordered; exit 1 naming the first bad one."""
    from billing.audit import verify_chain

    with models.db.connection_context():
        whole, checked, bad = verify_chain()
        event = None if bad is None else models.AuditEvent.get_or_none(models.AuditEvent.id == bad)
    if whole:
        click.echo(f"audit chain whole: {checked} events")
        return
    what = f" ({event.action} at {event.at.isoformat()})" if event is not None else ""
    click.echo(f"audit chain BROKEN at event {bad}{what}, after {checked} good events", err=True)
    sys.exit(1)


# --- operations ---------------------------------------------------------------------------

@cli.command("backup")
@click.argument("dest", type=click.Path(dir_okay=False))
def backup_command(dest: str) -> None:
    """Copy the live SQLite database to DEST (a new file), safely while it takes payments."""
    from billing.backups import BackupError, make_backup

    try:
        facts = make_backup(Path(dest))
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backup written to {facts['path']}: {facts['orders']} orders, {facts['bytes']} bytes")


@cli.command("restore")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="do not ask; the replaced database is kept beside it anyway")
def restore_command(src: str, yes: bool) -> None:
    """Check a backup and put it in place of the database; stop the server first."""
    from billing.backups import BackupError, check_backup, restore_backup

    try:
        facts = check_backup(Path(src))
    except BackupError as exc:
        raise click.ClickException(f"refusing to restore: {exc}") from None
    if not yes:
        click.confirm(f"{src} holds {facts['orders']} orders; replace the current database with it?", abort=True)
    try:
        done = restore_backup(Path(src), now=dt.datetime.now(UTC))
    except BackupError as exc:
        raise click.ClickException(f"refusing to restore: {exc}") from None
    kept = f"; the previous database is kept at {done['previous_kept_at']}" if done["previous_kept_at"] else ""
    click.echo(f"restored {done['orders']} orders from {src}{kept}")


@cli.command("purge")
@click.option("--dry-run", is_flag=True, help="only count what would be purged")
@click.option("--days", type=click.IntRange(min=30), default=None,
              help="keep this many days (default LBPAY_RETENTION_DAYS, 400)")
def purge_command(dry_run: bool, days: int | None) -> None:
    """Blank raw notifications and personal data older than the retention period; money records stay."""
    from billing.retention import SETTINGS, purge

    shop = current_app.extensions["lbpay.shop"]
    with models.db.connection_context():
        counts = purge(shop, shop.now(), days=days, dry_run=dry_run, actor="cli")
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} (older than {days or SETTINGS.days} days): {counts['notifications']} notification "
               f"bodies, personal data of {counts['orders']} orders and {counts['buyers']} buyers")


@cli.group("keys")
def keys_group() -> None:
    """License signing keys: list them, rotate to a new one."""


@keys_group.command("list")
def keys_list() -> None:
    """List every license key (kid, active or retired, licenses it signed)."""
    from peewee import fn

    shop = current_app.extensions["lbpay.shop"]
    with models.db.connection_context():
        counts = dict(models.License.select(models.License.kid, fn.COUNT(models.License.id))
                      .group_by(models.License.kid).tuples())
    for key in shop.license_keys.describe():
        state = "active" if key["active"] else "retired"
        click.echo(f"{key['kid']}\t{state}\t{counts.get(key['kid'], 0)} licenses")


@keys_group.command("rotate")
def keys_rotate() -> None:
    """Make a new license signing key active; old licenses keep verifying. Reload the server after."""
    from billing.license_keys import rotate

    settings = _settings_from(os.environ, None)
    keys_dir = license_keys_dir(settings, Path(current_app.instance_path))
    shop = current_app.extensions["lbpay.shop"]
    with models.db.connection_context():
        new = rotate(keys_dir, shop.license_keys, now=shop.now())
    click.echo(f"new license key {new.kid} is active in {keys_dir}; the previous keys verify old licenses.")
    click.echo("Reload the server (gunicorn: kill -HUP <pid>; Fly: fly apps restart) to sign with it.")


@keys_group.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
def keys_export(directory: str) -> None:
    """Write the public keys the extension ships: DIR/licence-keys/public-key.txt and keyring.json."""
    from licensing import export_public_keys

    for path in export_public_keys(current_app.extensions["lbpay.shop"].license_keys, directory):
        click.echo(f"wrote {path}")


@cli.command("alerts")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=20)
def alerts_command(limit: int) -> None:
    """List the newest alerts for the creator."""
    from billing.alerts import recent_alerts

    with models.db.connection_context():
        for alert in recent_alerts(limit):
            mailed = "mailed" if alert.mailed else "listed"
            click.echo(f"{alert.at:%Y-%m-%d %H:%M}Z\t{alert.kind}\t{mailed}\t{alert.message}")


if __name__ == "__main__":
    cli()
