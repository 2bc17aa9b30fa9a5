"""The app factory: settings in, the shop and its clients built, blueprints registered."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from flask import Flask
from peewee import Database, SqliteDatabase
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import models
from alipay.client import AlipayClient
from alipay.keys import PublicKeyMode
from billing import Shop
from billing.alipay_method import AlipayAsWeChat, AlipaySetup, PaymentRouter
from billing.sandbox_orders import SandboxOrdersInLiveDatabase, check_live_start
from billing.mail import MailSettingError, Mailer, parse_mail_from, parse_smtp_url
from database import open_database
from licensing import KeyRing, generate_private_key_pem
from licensing.keys import KeyFileError
from operations.key_files import ACTIVE, load_key_ring
from operations.metrics import CountedWeChat
from settings import Config, ConfigError, Problem, is_loopback, load_config, values_from
from wechatpay.client import WeChatPayClient
from wechatpay.crypto import load_private_key, load_public_key
from wechatpay.verifier import MODE_CERTIFICATE, MODE_PUBLIC_KEY, PlatformVerifier, PublicKeyVerifier
from web.routing import App

NOTIFY_PATH = "/wechatpay/notify/transaction"
SANDBOX_PREFIX = "/sandbox"
SANDBOX_MAIL = SANDBOX_PREFIX + "/mail"
SANDBOX_MCHID = "1900000109"
SANDBOX_APPID = "wx0123456789abcdef"
SANDBOX_PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092026112600000000000001"
SANDBOX_ALIPAY = SANDBOX_PREFIX + "/alipay"
SANDBOX_ALIPAY_APP_ID = "9021000100000001"
SANDBOX_ALIPAY_SELLER_ID = "2088721000000001"
ALIPAY_NOTIFY_PATH = "/alipay/notify/trade"

log = logging.getLogger("lbpay")


def create_app(test_config: Mapping[str, Any] | None = None, *, command_line: bool = False) -> Flask:
    """Build the app from defaults, then ``LBPAY_*`` environment variables, then ``test_config``."""
    app = App(__name__, instance_relative_config=True)
    config = load_config(values_from(os.environ, test_config), app.instance_path)
    instance = config.instance_path
    instance.mkdir(parents=True, exist_ok=True)
    app.instance_path = str(instance)

    secret_key = config.secret_key or ensure_file(
        instance / "secret_key", lambda: secrets.token_hex(32).encode()).decode()
    app.config.update(
        SECRET_KEY=secret_key,
        MAX_CONTENT_LENGTH=64 * 1024,
        JSON_SORT_KEYS=False,
        WECHATPAY_MODE=config.mode,
        TESTING=config.testing,
        PUBLIC_BASE_URL=config.public_base_url,
        SESSION_COOKIE_SECURE=config.session_cookie_secure,
        ADMIN_IDLE_MINUTES=config.admin_idle_minutes,
    )

    database = open_database(config.database_url, str(instance), busy_timeout_ms=config.db_busy_timeout_ms)
    models.db.initialize(database)

    if config.live:
        wechat, verifier, apiv3_keys, mchid, appid = _live_wechat(config)
        notify_url = config.public_base_url + NOTIFY_PATH
    else:
        keys = sandbox_keys(instance)
        mchid, appid = SANDBOX_MCHID, SANDBOX_APPID
        apiv3_keys = [keys["apiv3_key"]]
        verifier = PublicKeyVerifier(SANDBOX_PUBLIC_KEY_ID, load_private_key(keys["platform_pem"]).public_key())
        # WeChat calls only https:// URLs; the sandbox is told our https origin is served locally.
        notify_url = "https://" + urlsplit(config.public_base_url).netloc + NOTIFY_PATH
        wechat = WeChatPayClient(api_base=config.sandbox_api_base or config.public_base_url + SANDBOX_PREFIX,
                                 mchid=mchid, appid=appid, merchant_serial=keys["merchant_serial"],
                                 merchant_key=keys["merchant_key"], verifier=verifier, apiv3_keys=apiv3_keys,
                                 public_key_id=SANDBOX_PUBLIC_KEY_ID)
        _mount_sandbox(app, keys, config.public_base_url, public=config.sandbox_public)
    # Alipay (issue 23): in sandbox mode against its own simulator, in live mode the app LBPAY_ALIPAY_* names.
    if not config.alipay_enabled:
        alipay = None
    elif config.live:
        alipay = _live_alipay(config) if config.alipay is not None else None
    else:
        alipay = _sandbox_alipay(app, instance, config.public_base_url, public=config.sandbox_public)
    payments: Any = wechat if alipay is None else PaymentRouter(wechat, AlipayAsWeChat(alipay))

    shop = Shop(
        # Every call to WeChat Pay is counted and timed, for /metrics and the "WeChat unreachable" alert.
        wechat=CountedWeChat(payments, config.clock, lambda: config.alert_email), verifier=verifier, apiv3_keys=apiv3_keys,
        mchid=mchid, appid=appid, license_keys=_license_keys(config), notify_url=notify_url,
        clock=config.clock,
        token_secret=hashlib.sha256(b"lbpay bearer tokens\0" + secret_key.encode()).digest(),
        mailer=_mailer(config), config=config, alipay=alipay)
    app.extensions["lbpay.shop"] = shop
    app.extensions["lbpay.clock"] = config.clock
    try:  # a live shop never counts simulator orders: refuse them unless told to archive them
        check_live_start(shop)
    except SandboxOrdersInLiveDatabase as exc:
        raise ConfigError([Problem("LBPAY_ARCHIVE_SANDBOX_ORDERS", str(exc), example="on")]) from None

    _register(app, database)
    from web.ops import register_ops

    register_ops(app, config, [secret_key, config.metrics_token, *apiv3_keys], json_logs=not command_line)
    from web.pages import people_hooks_only_for_people

    people_hooks_only_for_people(app)  # after every hook is in place
    from web.ops import transport_security
    from web.unchanged import UnchangedPolls

    # Outermost: a poll that holds its answer gets its 304 before any other layer or hook runs.
    app.wsgi_app = UnchangedPolls(app.wsgi_app, shop, database, transport_security(config))  # type: ignore[method-assign]
    return app


def ensure_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """Return a local-only secret file's contents, creating it (mode 0600) when absent.

    The file appears whole or not at all (written aside, then linked into place), so a process
    starting beside the one that creates it never reads it half written.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, aside = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(make())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(aside, path)
            except FileExistsError:
                pass  # another process created it first: use theirs
        finally:
            os.unlink(aside)
    return path.read_bytes()


def sandbox_keys(instance: Path) -> dict[str, Any]:
    """The embedded sandbox's key material, made once per instance folder (never real secrets)."""
    folder = instance / "sandbox"
    merchant_pem = ensure_file(folder / "merchant_key.pem", generate_private_key_pem)
    platform_pem = ensure_file(folder / "platform_key.pem", generate_private_key_pem)
    apiv3 = ensure_file(folder / "apiv3_key", lambda: secrets.token_hex(16).encode())
    merchant_key = load_private_key(merchant_pem)
    der = merchant_key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "merchant_pem": merchant_pem, "merchant_key": merchant_key,
        "merchant_serial": hashlib.sha1(der).hexdigest().upper(),
        "platform_pem": platform_pem, "apiv3_key": apiv3.strip(),
    }


def _mailer(config: Config) -> Mailer:
    """The mail settings: LBPAY_SMTP_URL (unset: mails stay queued), LBPAY_MAIL_FROM, reminder days."""
    problems: list[Problem] = []
    smtp = None
    mail_from = config.mail_from or "Learning Buddy <noreply@localhost>"
    try:
        smtp = parse_smtp_url(config.smtp_url) if config.smtp_url else None
    except MailSettingError as exc:
        problems.append(Problem("LBPAY_SMTP_URL", str(exc), example="smtps://user:password@smtp.example.com:465"))
    try:
        mail_from = parse_mail_from(mail_from)
    except MailSettingError as exc:
        problems.append(Problem("LBPAY_MAIL_FROM", str(exc), config.mail_from, "Learning Buddy <pay@example.com>"))
    if problems:
        raise ConfigError(problems)
    return Mailer(smtp=smtp, mail_from=mail_from, public_base_url=config.public_base_url,
                  renewal_reminder_days=config.renewal_reminder_days,
                  vscode_extension_id=config.vscode_extension_id)


def _license_keys(config: Config) -> KeyRing:
    path = config.license_key_file
    if path is None and not (config.license_keys_dir / ACTIVE).exists():
        local = config.instance_path / "license_key.pem"  # sandbox only: live mode requires the setting
        ensure_file(local, generate_private_key_pem)
        path = str(local)
    try:
        return load_key_ring(path, config.license_keys_dir)
    except KeyFileError as exc:
        raise ConfigError([Problem(exc.setting, exc.problem)]) from None


def _live_wechat(config: Config) -> tuple[WeChatPayClient, Any, list[bytes], str, str]:
    settings = config.wechat
    assert settings is not None  # live mode always has them (load_config)
    try:
        merchant_key = load_private_key(settings.merchant_key_pem)
    except ValueError:
        raise ConfigError([Problem("LBPAY_WECHATPAY_MERCHANT_KEY_FILE", "is not an RSA private key PEM")]) from None
    public_key = None
    if settings.verify != MODE_CERTIFICATE and settings.public_key_pem is not None and settings.public_key_id:
        try:
            platform_public = load_public_key(settings.public_key_pem)
        except ValueError:
            raise ConfigError([Problem("LBPAY_WECHATPAY_PUBLIC_KEY_FILE", "is not an RSA public key PEM")]) from None
        public_key = PublicKeyVerifier(settings.public_key_id, platform_public)
    # LBPAY_WECHATPAY_VERIFY: both (the gray phase of the key switch: the public key and a certificate
    # store downloaded lazily, each message checked by the key its Wechatpay-Serial names), public_key
    # (after the switch: no certificate store at all) or certificate (before it). The store is filled
    # through the client it verifies for; the client binds itself as the store's source.
    # The shop's clock paces the once-a-minute refresh an unknown certificate serial may trigger.
    verifier = PlatformVerifier(settings.verify, public_key=public_key, clock=lambda: config.clock().timestamp())
    apiv3_keys = list(settings.apiv3_keys)
    client = WeChatPayClient(api_base=settings.api_base, mchid=settings.mchid, appid=settings.appid,
                             merchant_serial=settings.merchant_serial, merchant_key=merchant_key,
                             verifier=verifier, apiv3_keys=apiv3_keys,
                             # Before the switch (certificate mode) we name no public-key id.
                             public_key_id=verifier.request_serial,
                             backup_base=settings.backup_api_base, read_timeout=settings.read_timeout)
    if settings.verify == MODE_PUBLIC_KEY:
        log.info("WeChat Pay: public-key mode, no platform certificates kept")
    return client, verifier, apiv3_keys, settings.mchid, settings.appid


def sandbox_config(keys: dict[str, Any], merchant_origin: str) -> Any:
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


def _mount_sandbox(app: Flask, keys: dict[str, Any], public_base: str, *, public: bool) -> None:
    from wechatpay.sandbox import create_sandbox_app

    sandbox = create_sandbox_app(sandbox_config(keys, public_base))
    app.extensions["lbpay.sandbox"] = sandbox
    # /sandbox/mail is ours (the outbox a newcomer reads), not the simulator's: the longer mount wins.
    ours = _unmounted(app.wsgi_app, SANDBOX_MAIL)
    mounts: dict[str, Any] = {SANDBOX_PREFIX: sandbox, SANDBOX_MAIL: ours}
    if not public:
        # Whatever start path bound a public address, the simulator (it pays for anything) and the
        # outbox answer only this machine unless LBPAY_SANDBOX_PUBLIC=on.
        mounts = {path: _loopback_only(wsgi) for path, wsgi in mounts.items()}
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, mounts)  # type: ignore[method-assign]


def _live_alipay(config: Config) -> AlipaySetup:
    """The merchant's Alipay app from its settings; a key or certificate that cannot be used is a ConfigError."""
    from alipay import signing
    from alipay.errors import AlipayError
    from alipay.keys import CertMode

    settings = config.alipay
    assert settings is not None
    try:
        private_key = signing.load_private_key(settings.private_key)
    except (AlipayError, ValueError):
        raise ConfigError([Problem("LBPAY_ALIPAY_APP_PRIVATE_KEY_FILE",
                                   "is not an RSA private key (PEM, or the base64 Alipay's key tool writes)")]) from None
    keys: Any
    if settings.public_key is not None:
        try:
            keys = PublicKeyMode(signing.load_public_key(settings.public_key))
        except (AlipayError, ValueError):
            raise ConfigError([Problem("LBPAY_ALIPAY_PUBLIC_KEY_FILE",
                                       "is not Alipay's RSA public key (PEM or base64)")]) from None
    else:
        assert settings.app_cert is not None and settings.alipay_cert is not None and settings.root_cert is not None
        try:
            keys = CertMode.from_pem(settings.app_cert, settings.alipay_cert, settings.root_cert)
        except (AlipayError, ValueError) as exc:
            raise ConfigError([Problem("LBPAY_ALIPAY_CERT_FILE", f"the certificates cannot be used: {exc}"[:300])]) from None
    client = AlipayClient(app_id=settings.app_id, private_key=private_key, keys=keys, gateway=settings.gateway,
                          notify_url=config.public_base_url + ALIPAY_NOTIFY_PATH, seller_id=settings.seller_id)
    return AlipaySetup(client=client, keys=keys, app_id=settings.app_id, seller_id=settings.seller_id)


def _sandbox_alipay(app: Flask, instance: Path, public_base: str, *, public: bool) -> AlipaySetup:
    """The Alipay simulator under /sandbox/alipay (loopback only, like WeChat's) and our app's client for it."""
    from alipay.sandbox import AlipaySandboxConfig, create_alipay_sandbox

    folder = instance / "sandbox"
    app_key = load_private_key(ensure_file(folder / "alipay_app_key.pem", generate_private_key_pem))
    alipay_pem = ensure_file(folder / "alipay_platform_key.pem", generate_private_key_pem)
    alipay_public = load_private_key(alipay_pem).public_key()
    # Alipay, like WeChat, calls only https:// URLs; the simulator is told our https origin is served locally.
    public_https = "https://" + urlsplit(public_base).netloc
    simulator = create_alipay_sandbox(AlipaySandboxConfig(
        app_id=SANDBOX_ALIPAY_APP_ID, seller_id=SANDBOX_ALIPAY_SELLER_ID,
        app_public_key_pem=app_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        alipay_private_key_pem=alipay_pem, notify_origin_map={public_https: public_base}))
    app.extensions["lbpay.alipay_sandbox"] = simulator
    wsgi: Any = simulator if public else _loopback_only(simulator)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {SANDBOX_ALIPAY: wsgi})  # type: ignore[method-assign]
    client = AlipayClient(app_id=SANDBOX_ALIPAY_APP_ID, private_key=app_key,
                          keys=PublicKeyMode(alipay_public),
                          gateway=public_base + SANDBOX_ALIPAY + "/gateway.do",
                          notify_url=public_https + ALIPAY_NOTIFY_PATH, seller_id=SANDBOX_ALIPAY_SELLER_ID)
    return AlipaySetup(client=client, keys=PublicKeyMode(alipay_public),
                       app_id=SANDBOX_ALIPAY_APP_ID, seller_id=SANDBOX_ALIPAY_SELLER_ID)


def _loopback_only(wsgi: Callable[..., Any]) -> Callable[..., Any]:
    """Answer 403 to a peer that is not this machine (the address the proxy settings name, when trusted)."""

    def call(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if is_loopback(environ.get("REMOTE_ADDR")):
            return wsgi(environ, start_response)
        body = ("403: the WeChat Pay sandbox answers only this machine (it pays for anything); "
                "set LBPAY_SANDBOX_PUBLIC=on to show the demo to other machines\n").encode()
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]

    return call


def _unmounted(wsgi: Callable[..., Any], mount: str) -> Callable[..., Any]:
    """Give a mounted path back to our app whole, as if no dispatcher had split it off."""

    def call(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        script = environ.get("SCRIPT_NAME", "")
        environ["SCRIPT_NAME"] = script[:len(script) - len(mount)]
        environ["PATH_INFO"] = mount + environ.get("PATH_INFO", "")
        return wsgi(environ, start_response)

    return call


def _register(app: Flask, database: Database) -> None:
    from web import admin, api, bills, console, notify, notify_alipay, pages, provider, receipts, sandbox_mail
    from web import seats  # before admin.init_app: its console routes live on the console's blueprint

    app.register_blueprint(sandbox_mail.bp)
    app.register_blueprint(notify_alipay.bp)
    app.register_blueprint(seats.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(provider.bp)
    app.register_blueprint(notify.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(receipts.bp)
    admin.init_app(app)
    bills.init_app(app)
    console.init_app(app)

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


def start_scheduler(app: Flask) -> Any:
    """Run the scheduled jobs in this server process (a gunicorn worker), unless LBPAY_SCHEDULER is off."""
    shop: Shop = app.extensions["lbpay.shop"]
    if not shop.config.scheduler or "lbpay.scheduler" in app.extensions:
        return app.extensions.get("lbpay.scheduler")
    from operations.scheduler import Scheduler

    scheduler = Scheduler(shop)
    scheduler.start()
    app.extensions["lbpay.scheduler"] = scheduler
    return scheduler
