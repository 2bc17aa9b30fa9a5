"""Every ``LBPAY_*`` setting, read once into one frozen ``Config``; every problem reported at once.

This is the only module that reads the settings. The app factory, the CLI and ``lbpay
check-config`` call ``load_config``; everything else gets the values from the ``Config`` hung on
the shop (``shop.config``) or from the objects the factory built with them. It imports nothing of
ours, so any layer may import it for the type.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

PREFIX = "LBPAY_"
UTC = dt.timezone.utc
TRUE = ("1", "true", "on", "yes")
FALSE = ("0", "false", "off", "no")
VERIFY_MODES = ("both", "public_key", "certificate")


@dataclass(frozen=True)
class Problem:
    """One setting that cannot be used: its name, the value (None when secret), the rule and an example."""

    name: str
    rule: str
    value: str | None = None
    example: str | None = None

    def __str__(self) -> str:
        shown = "" if self.value is None else f" (got {self.value!r})"
        hint = f"; for example {self.name}={self.example}" if self.example else ""
        return f"{self.name}: {self.rule}{shown}{hint}"


class ConfigError(Exception):
    """The settings cannot start the service; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    @property
    def setting(self) -> str:
        """The first bad setting's name (what a single-problem caller usually wants)."""
        return self.problems[0].name

    def report(self) -> str:
        """A few lines a person can act on: one per problem, no traceback."""
        lines = [f"Learning Buddy Pay cannot start: {len(self.problems)} setting(s) need attention"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class Reader:
    """Reads raw ``LBPAY_*`` values, noting each problem instead of stopping at the first."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self.problems: list[Problem] = []

    def problem(self, name: str, rule: str, value: Any = None, example: str | None = None) -> None:
        self.problems.append(Problem(PREFIX + name, rule, None if value is None else str(value), example))

    def raw(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value is None or value == "" else value

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        return default if value is None else str(value).strip()

    def required(self, name: str, why: str, example: str) -> str | None:
        value = self.text(name)
        if value is None:
            self.problem(name, f"required {why}", example=example)
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(str(value).strip())
        except ValueError:
            self.problem(name, "must be a whole number", value, str(default))
            return default
        if not low <= number <= high:
            self.problem(name, f"must be between {low} and {high}", value, str(default))
            return default
        return number

    def flag(self, name: str, default: bool) -> bool:
        """A boolean in any of the usual spellings: true/false, 1/0, on/off, yes/no, any case."""
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        self.problem(name, "must be on or off (true/false, 1/0, yes/no)", value, "on" if default else "off")
        return default

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.text(name) or default).lower()
        if value not in choices:
            rule = ", ".join(choices[:-1]) + " or " + choices[-1]
            self.problem(name, "must be " + rule, self.text(name), default)
            return default
        return value

    def secret(self, name: str) -> str | None:
        """A secret given inline or, with ``NAME_FILE``, as a file readable by its owner only."""
        path = self.text(name + "_FILE")
        if path is None:
            return self.text(name)
        data = self.secret_file(name + "_FILE", path)
        return None if data is None else data.decode("utf-8", "replace").strip()

    def secret_file(self, name: str, path: str) -> bytes | None:
        """Read a secret file; it must exist and be private (mode 0600 or stricter)."""
        try:
            mode = os.stat(path).st_mode
            data = Path(path).read_bytes()
        except OSError as exc:
            self.problem(name, f"cannot read {path}: {exc.strerror}")
            return None
        if mode & 0o077:
            self.problem(name, f"{path} is readable by other users; run: chmod 600 {path}")
            return None
        return data

    def url(self, name: str, value: str, https: bool) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            self.problem(name, "must be an absolute URL without query", value, "https://pay.example.com")
        elif https and parts.scheme != "https":
            self.problem(name, "must start with https:// in live mode", value, "https://pay.example.com")
        return value.rstrip("/")


@dataclass(frozen=True)
class WeChatSettings:
    """The merchant's WeChat Pay account (live mode only)."""

    mchid: str
    appid: str
    api_base: str
    backup_api_base: str | None
    merchant_key_pem: bytes
    merchant_serial: str
    apiv3_keys: tuple[bytes, ...]
    public_key_pem: bytes | None
    public_key_id: str | None
    verify: str
    read_timeout: int


@dataclass(frozen=True)
class AlipaySettings:
    """The shop's Alipay app (live mode only): its keys and either Alipay's public key or the three certificates."""

    app_id: str
    seller_id: str
    private_key: bytes  # PEM, or the bare base64 Alipay's key tool writes
    public_key: bytes | None  # 公钥模式
    app_cert: bytes | None  # 公钥证书模式: appCertPublicKey, alipayCertPublicKey_RSA2, alipayRootCert
    alipay_cert: bytes | None
    root_cert: bytes | None
    gateway: str

    @property
    def key_mode(self) -> str:
        return "public-key mode" if self.public_key is not None else "certificate mode"


ALIPAY_NEEDS = ("LBPAY_ALIPAY_APP_ID, LBPAY_ALIPAY_SELLER_ID, LBPAY_ALIPAY_APP_PRIVATE_KEY_FILE and "
                "LBPAY_ALIPAY_PUBLIC_KEY_FILE (or LBPAY_ALIPAY_APP_CERT_FILE, LBPAY_ALIPAY_CERT_FILE and "
                "LBPAY_ALIPAY_ROOT_CERT_FILE)")
WECHAT_NEEDS = ("LBPAY_WECHATPAY_MCHID, LBPAY_WECHATPAY_APPID, LBPAY_WECHATPAY_MERCHANT_KEY_FILE, "
                "LBPAY_WECHATPAY_MERCHANT_SERIAL, LBPAY_WECHATPAY_APIV3_KEY and LBPAY_WECHATPAY_PUBLIC_KEY_FILE "
                "with _ID (or platform certificates)")
ALIPAY_GATEWAY = "https://openapi.alipay.com/gateway.do"


# The extension whose URI handler the license mail's "Open in VS Code" link opens (publisher.name).
DEFAULT_VSCODE_EXTENSION_ID = "learning-primer-buddy-dev.learning-primer-buddy"
_EXTENSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}\.[A-Za-z0-9][A-Za-z0-9-]{0,99}")


@dataclass(frozen=True)
class ReplicaSettings:
    """Where Litestream copies the SQLite database off the machine (S3-compatible storage) and how the keys are sealed."""

    url: str  # s3://bucket/path, as the creator wrote it
    bucket: str
    path: str
    endpoint: str | None  # None: Amazon S3 itself
    region: str
    access_key_id: str
    secret_access_key: str
    seal_key: bytes  # 32 bytes: AES-256-GCM for the license keys and the shop's marker in the replica
    max_lag_seconds: int


@dataclass(frozen=True)
class Config:
    """Every setting of one running service, parsed and checked."""

    mode: str
    instance_path: Path
    secret_key: str | None  # None in sandbox mode: a local one is made under the instance folder
    public_base_url: str
    session_cookie_secure: bool
    admin_idle_minutes: int
    database_url: str
    db_busy_timeout_ms: int
    order_ttl: dt.timedelta
    license_key_file: str | None
    license_keys_dir: Path
    content_dir: Path
    wechat: WeChatSettings | None
    sandbox_api_base: str | None
    smtp_url: str | None
    mail_from: str | None
    renewal_reminder_days: int
    reconcile_seconds: int
    log_level: str
    metrics_token: str | None
    proxy_hops: int
    client_ip_header: str | None
    ready_reconcile_minutes: int
    backup_dir: Path | None
    backup_keep: int
    alert_email: str | None
    retention_days: int
    archive_sandbox_orders: bool = False
    vscode_extension_id: str = DEFAULT_VSCODE_EXTENSION_ID  # <publisher>.<name>: the mail's vscode:// link
    replica: ReplicaSettings | None = None  # None: no off-machine replica (LBPAY_REPLICA_URL unset)
    scheduler: bool = True
    sandbox_public: bool = False  # sandbox mode only: serve the simulator to other machines too
    # Webhooks (billing/webhooks.py): which addresses a creator's endpoint may reach (public only by default).
    webhook_targets: str = "public"
    # The origins allowed to frame /buy/<course>/embed (the buy button on the creator's own site).
    buy_button_origins: tuple[str, ...] = ()
    seller_name: str = "Learning Buddy"  # who sells, on receipts, the buy page and mails
    seller_contact: str | None = None  # how a learner reaches the seller (an address or a phone), on receipts
    alipay: AlipaySettings | None = None  # live mode: the Alipay app (LBPAY_ALIPAY_*); None: no live Alipay
    wechat_enabled: bool = True  # LBPAY_WECHATPAY_ENABLED: offered to learners
    alipay_enabled: bool = True  # LBPAY_ALIPAY_ENABLED: offered when set up (sandbox: its simulator)
    refund_terms: str | None = None  # the seller's refund terms, on the buy page, receipts and mails
    testing: bool = False
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(UTC), compare=False)

    @property
    def live(self) -> bool:
        """True when real money moves: the merchant's WeChat Pay account, not the sandbox."""
        return self.mode == "live"

    def secrets(self) -> list[str]:
        """Every secret value, for the log filter that must never print one."""
        found: list[str] = [s for s in (self.secret_key, self.metrics_token, self.smtp_url) if s]
        if self.replica is not None:
            found += [self.replica.secret_access_key, self.replica.seal_key.hex()]
        if self.wechat is not None:
            found += [key.decode() for key in self.wechat.apiv3_keys]
        return found


def values_from(environ: Mapping[str, str], test_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``LBPAY_*`` variables without their prefix, overlaid by a test's mapping."""
    values: dict[str, Any] = {k[len(PREFIX):]: v for k, v in environ.items() if k.startswith(PREFIX)}
    values.update(test_config or {})
    return values


def load_config(values: Mapping[str, Any], default_instance: str) -> Config:
    """Read and check every setting; raise one ``ConfigError`` naming every problem."""
    read = Reader(values)
    instance = Path(read.text("INSTANCE_PATH") or default_instance)
    has_mchid = read.text("WECHATPAY_MCHID") is not None
    mode = read.choice("WECHATPAY_MODE", "live" if has_mchid else "sandbox", ("sandbox", "live"))
    unclear = read.text("WECHATPAY_MODE") is None and not has_mchid and _mode_must_be_explicit(read)
    live = mode == "live"
    why = "in live mode"

    before = len(read.problems)
    secret_key = read.secret("SECRET_KEY")
    if secret_key is None and live and len(read.problems) == before:  # (a refused _FILE is reported once)
        read.problem("SECRET_KEY", "required in live mode (a long random string)",
                     example="$(python3 -c 'import secrets; print(secrets.token_hex(32))')")
    base = read.text("PUBLIC_BASE_URL", None if live else "http://127.0.0.1:5000")
    if base is None:
        read.problem("PUBLIC_BASE_URL", f"required {why}", example="https://pay.example.com")
        base = "https://invalid.example"
    public_base = read.url("PUBLIC_BASE_URL", base, live)
    sandbox_public = read.flag("SANDBOX_PUBLIC", False)
    if not live and not unclear and not sandbox_public and not is_loopback(urlsplit(public_base).hostname):
        read.problem("PUBLIC_BASE_URL", "must be a loopback address in sandbox mode (its simulator pays for "
                     "anything); to show the demo to other machines set LBPAY_SANDBOX_PUBLIC=on", public_base,
                     "http://127.0.0.1:5000")
    busy_ms = read.integer("DB_BUSY_TIMEOUT_MS", 10000, 100, 60000)

    license_key_file = read.text("LICENSE_KEY_FILE")
    keys_dir = Path(read.text("LICENSE_KEYS_DIR") or instance / "license-keys")
    if not live:
        # The simulator pays for anything: a real signing key here would sign free licenses.
        for name in ("LICENSE_KEY_FILE", "LICENSE_KEYS_DIR"):
            if read.text(name) is not None and not unclear:
                read.problem(name, "is never loaded in sandbox mode (sandbox licenses are signed with a "
                             "throwaway key in the instance folder); unset it, or set LBPAY_WECHATPAY_MODE=live")
        license_key_file, keys_dir = None, instance / "license-keys"
    if live and license_key_file is None and not (keys_dir / "active.pem").exists():
        read.problem("LICENSE_KEY_FILE", f"required {why} (the license signing key, RSA-2048 PEM)",
                     example="/run/secrets/license_key.pem")

    smtp_url = read.secret("SMTP_URL")
    mail_from = read.text("MAIL_FROM")
    if smtp_url is not None and mail_from is None:
        read.problem("MAIL_FROM", "required when LBPAY_SMTP_URL is set", example="Learning Buddy <pay@example.com>")
    metrics_token = read.secret("METRICS_TOKEN")
    if metrics_token is not None and len(metrics_token) < 16:
        read.problem("METRICS_TOKEN", "must be at least 16 characters")

    config = Config(
        mode=mode,
        instance_path=instance,
        secret_key=secret_key,
        public_base_url=public_base,
        session_cookie_secure=read.flag("SESSION_COOKIE_SECURE", public_base.startswith("https://")),
        admin_idle_minutes=read.integer("ADMIN_IDLE_MINUTES", 30, 1, 720),
        database_url=read.text("DATABASE_URL") or "sqlite:///lbpay.db",
        db_busy_timeout_ms=busy_ms,
        order_ttl=dt.timedelta(minutes=read.integer("ORDER_TTL_MINUTES", 30, 5, 1440)),
        license_key_file=license_key_file,
        license_keys_dir=keys_dir,
        content_dir=Path(read.text("CONTENT_DIR") or instance / "content"),
        wechat=_wechat_settings(read) if live else None,
        sandbox_api_base=None if live else read.text("WECHATPAY_API_BASE"),
        smtp_url=smtp_url,
        mail_from=mail_from,
        renewal_reminder_days=read.integer("RENEWAL_REMINDER_DAYS", 7, 1, 60),
        reconcile_seconds=read.integer("RECONCILE_SECONDS", 60, 1, 3600),
        log_level=read.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        metrics_token=metrics_token,
        # No proxy is trusted unless one is named: a client could otherwise pick its own address
        # in X-Forwarded-For and refill every per-address limit.
        proxy_hops=read.integer("PROXY_HOPS", 0, 0, 5),
        client_ip_header=_client_ip_header(read),
        ready_reconcile_minutes=read.integer("READY_RECONCILE_MINUTES", 10, 2, 1440),
        backup_dir=Path(d) if (d := read.text("BACKUP_DIR")) else None,
        backup_keep=read.integer("BACKUP_KEEP", 14, 1, 365),
        alert_email=read.text("ALERT_EMAIL"),
        retention_days=read.integer("RETENTION_DAYS", 400, 30, 3650),
        archive_sandbox_orders=read.flag("ARCHIVE_SANDBOX_ORDERS", False),
        vscode_extension_id=_vscode_extension_id(read),
        replica=_replica_settings(read),
        scheduler=read.flag("SCHEDULER", True),
        sandbox_public=sandbox_public,
        webhook_targets=read.choice("WEBHOOK_TARGETS", "public", WEBHOOK_TARGETS),
        buy_button_origins=_buy_button_origins(read),
        seller_name=_one_line(read, "SELLER_NAME", "Learning Buddy", 100) or "Learning Buddy",
        seller_contact=_one_line(read, "SELLER_CONTACT", None, 200),
        alipay=_alipay_settings(read) if live else None,
        wechat_enabled=read.flag("WECHATPAY_ENABLED", True),
        alipay_enabled=read.flag("ALIPAY_ENABLED", True),
        refund_terms=_one_line(read, "REFUND_TERMS", None, 300),
        testing=bool(read.raw("TESTING")),
        clock=read.raw("CLOCK") or (lambda: dt.datetime.now(UTC)),
    )
    if config.database_url.split(":", 1)[0] not in ("sqlite", "postgresql", "postgres") or (
            config.database_url.startswith("sqlite:") and not config.database_url.startswith("sqlite:///")):
        read.problem("DATABASE_URL", "must start with sqlite:/// or postgresql://", config.database_url,
                     "sqlite:////data/lbpay.db")
    if config.replica is not None and not config.database_url.startswith("sqlite:"):
        read.problem("REPLICA_URL", "replicates a SQLite database only; on PostgreSQL use the provider's backups "
                     "and point-in-time recovery", config.replica.url)
    alipay_on = config.alipay_enabled and (config.alipay is not None or not live)
    if live and config.alipay is None and read.text("ALIPAY_ENABLED") is not None and config.alipay_enabled:
        read.problem("ALIPAY_ENABLED", "is on, but Alipay is not set up: set " + ALIPAY_NEEDS)
    if not config.wechat_enabled and not alipay_on:
        read.problem("WECHATPAY_ENABLED", "is off and Alipay is off too: every payment method is off, so no "
                     "learner could pay; turn one on")
    if read.problems:
        raise ConfigError(read.problems)
    return config


def _alipay_settings(read: Reader) -> AlipaySettings | None:
    """LBPAY_ALIPAY_*: none set is no live Alipay; any set must be a whole, usable set."""
    names = ("ALIPAY_APP_ID", "ALIPAY_SELLER_ID", "ALIPAY_APP_PRIVATE_KEY_FILE", "ALIPAY_PUBLIC_KEY_FILE",
             "ALIPAY_APP_CERT_FILE", "ALIPAY_CERT_FILE", "ALIPAY_ROOT_CERT_FILE", "ALIPAY_GATEWAY")
    if not any(read.text(name) is not None for name in names):
        return None
    why = "for Alipay (any LBPAY_ALIPAY_* setting asks for it)"
    app_id = read.required("ALIPAY_APP_ID", why, "2021000000000001") or ""
    if app_id and not re.fullmatch(r"\d{16}", app_id):
        read.problem("ALIPAY_APP_ID", "must be the app's 16 digits (开放平台 APPID)", app_id, "2021000000000001")
    seller_id = read.required("ALIPAY_SELLER_ID", why + " (the 2088… PID the money goes to)", "2088000000000001") or ""
    if seller_id and not re.fullmatch(r"2088\d{12}", seller_id):
        read.problem("ALIPAY_SELLER_ID", "must be the 16-digit partner id starting 2088 (商户PID)", seller_id,
                     "2088000000000001")
    key_file = read.required("ALIPAY_APP_PRIVATE_KEY_FILE", why + " (应用私钥)", "/secrets/alipay_app_private_key.pem")
    private_key = read.secret_file("ALIPAY_APP_PRIVATE_KEY_FILE", key_file) if key_file else None
    public_file = read.text("ALIPAY_PUBLIC_KEY_FILE")
    cert_names = ("ALIPAY_APP_CERT_FILE", "ALIPAY_CERT_FILE", "ALIPAY_ROOT_CERT_FILE")
    cert_files = [read.text(name) for name in cert_names]
    public_key = certs = None
    if public_file is not None and any(cert_files):
        read.problem("ALIPAY_PUBLIC_KEY_FILE", "public-key mode or certificate mode, not both: unset "
                     "LBPAY_ALIPAY_PUBLIC_KEY_FILE or the three LBPAY_ALIPAY_*CERT_FILE settings")
    elif public_file is not None:
        public_key = _plain_file(read, "ALIPAY_PUBLIC_KEY_FILE", public_file)
    elif all(cert_files):
        certs = [_plain_file(read, name, path) for name, path in zip(cert_names, cert_files) if path]
    else:
        read.problem("ALIPAY_PUBLIC_KEY_FILE", "is required (Alipay's public key, 支付宝公钥), or the three certificate "
                     "files LBPAY_ALIPAY_APP_CERT_FILE, LBPAY_ALIPAY_CERT_FILE and LBPAY_ALIPAY_ROOT_CERT_FILE")
    gateway = read.url("ALIPAY_GATEWAY", read.text("ALIPAY_GATEWAY") or ALIPAY_GATEWAY, True)
    if private_key is None or (public_key is None and (certs is None or None in certs)):
        return None  # the problems above say why
    app_cert, alipay_cert, root_cert = certs if certs is not None else (None, None, None)
    return AlipaySettings(app_id=app_id, seller_id=seller_id, private_key=private_key, public_key=public_key,
                          app_cert=app_cert, alipay_cert=alipay_cert, root_cert=root_cert, gateway=gateway)


def _plain_file(read: Reader, name: str, path: str) -> bytes | None:
    """A file that need not be secret (a public key, a certificate)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        read.problem(name, f"cannot read {path}: {exc.strerror}")
        return None


def _one_line(read: Reader, name: str, default: str | None, longest: int) -> str | None:
    """A short text shown to learners (receipts, mails): one line, at most ``longest`` characters."""
    value = read.text(name)
    if value is None or value == "":
        return default
    if len(value) > longest or any(ord(c) < 32 or ord(c) == 127 for c in value):
        read.problem(name, f"must be one line of at most {longest} characters", value)
        return default
    return value


def _vscode_extension_id(read: Reader) -> str:
    value = read.text("VSCODE_EXTENSION_ID", DEFAULT_VSCODE_EXTENSION_ID) or DEFAULT_VSCODE_EXTENSION_ID
    if not _EXTENSION_ID.fullmatch(value):
        read.problem("VSCODE_EXTENSION_ID", "must be the extension's <publisher>.<name> (letters, digits, '-')",
                     value, DEFAULT_VSCODE_EXTENSION_ID)
        return DEFAULT_VSCODE_EXTENSION_ID
    return value


def _replica_settings(read: Reader) -> ReplicaSettings | None:
    """The off-machine replica (Litestream to S3-compatible storage), when LBPAY_REPLICA_URL names one."""
    url = read.text("REPLICA_URL")
    names = ("REPLICA_ENDPOINT", "REPLICA_REGION", "REPLICA_ACCESS_KEY_ID", "REPLICA_ACCESS_KEY_ID_FILE",
             "REPLICA_SECRET_ACCESS_KEY", "REPLICA_SECRET_ACCESS_KEY_FILE", "REPLICA_KEY", "REPLICA_KEY_FILE")
    if url is None:
        for name in names:
            if read.text(name) is not None:
                read.problem(name, "is set but LBPAY_REPLICA_URL is not: nothing would be replicated",
                             example=None)
        return None
    parts = urlsplit(url)
    bucket, path = parts.netloc, parts.path.strip("/")
    if parts.scheme != "s3" or not bucket or parts.query or parts.fragment or "@" in bucket:
        read.problem("REPLICA_URL", "must be s3://BUCKET/PATH (any S3-compatible storage: Tigris, R2, S3, MinIO)",
                     url, "s3://my-bucket/lbpay")
    endpoint = read.text("REPLICA_ENDPOINT")
    if endpoint is not None:
        where = urlsplit(endpoint)
        # Plain http only to this machine (a local test server): the storage's key travels with each request.
        if (where.scheme not in ("http", "https") or not where.netloc or where.query or where.fragment
                or (where.scheme == "http" and not is_loopback(where.hostname))):
            read.problem("REPLICA_ENDPOINT", "must be an https:// URL of the S3-compatible storage", endpoint,
                         "https://fly.storage.tigris.dev")
        endpoint = endpoint.rstrip("/")
    before = len(read.problems)
    key_id = read.secret("REPLICA_ACCESS_KEY_ID")
    secret = read.secret("REPLICA_SECRET_ACCESS_KEY")
    if len(read.problems) == before:
        for name, value in (("REPLICA_ACCESS_KEY_ID", key_id), ("REPLICA_SECRET_ACCESS_KEY", secret)):
            if value is None:
                read.problem(name, "required with LBPAY_REPLICA_URL (the storage's access key pair, as "
                             "`fly storage create` prints it; or as a file with LBPAY_" + name + "_FILE)")
    seal_key = _seal_key(read)
    return ReplicaSettings(
        url=url, bucket=bucket, path=path or "lbpay", endpoint=endpoint,
        region=read.text("REPLICA_REGION") or ("auto" if endpoint else "us-east-1"),
        access_key_id=key_id or "", secret_access_key=secret or "", seal_key=seal_key,
        max_lag_seconds=read.integer("REPLICA_MAX_LAG_SECONDS", 300, 2, 86400))


def _seal_key(read: Reader) -> bytes:
    """The key that seals the license keys and the shop's marker in the replica: 32 random bytes as 64 hex digits."""
    before = len(read.problems)
    value = read.secret("REPLICA_KEY")
    if value is None:
        if len(read.problems) == before:
            read.problem("REPLICA_KEY", "required with LBPAY_REPLICA_URL (it encrypts the license keys in the "
                         "replica; keep it with the other secrets, never on the volume)",
                         example="$(openssl rand -hex 32)")
        return bytes(32)
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != 32:
        read.problem("REPLICA_KEY", "must be 64 hex digits (32 random bytes)", example="$(openssl rand -hex 32)")
        return bytes(32)
    return key


def _client_ip_header(read: Reader) -> str | None:
    """A header the edge proxy sets to the client's address (``Fly-Client-IP``), trusted only when named."""
    name = read.text("CLIENT_IP_HEADER")
    if name is not None and not name.replace("-", "").isalnum():
        read.problem("CLIENT_IP_HEADER", "must be a header name", name, "Fly-Client-IP")
        return None
    return name


def _mode_must_be_explicit(read: Reader) -> bool:
    """Refuse to guess sandbox mode when a production-like setting says someone meant real money."""
    hints = []
    base = read.text("PUBLIC_BASE_URL") or ""
    if base.lower().startswith("https://"):
        hints.append("LBPAY_PUBLIC_BASE_URL is https://")
    for name in ("LICENSE_KEY_FILE", "LICENSE_KEYS_DIR", "SECRET_KEY", "SECRET_KEY_FILE", "WECHATPAY_APIV3_KEY",
                 "WECHATPAY_APIV3_KEY_FILE", "METRICS_TOKEN", "METRICS_TOKEN_FILE", "SMTP_URL_FILE"):
        if read.text(name) is not None:
            hints.append(PREFIX + name + " is set")
    smtp = read.text("SMTP_URL")
    if smtp is not None and not is_loopback(_host_of(smtp)):  # a mail server of this machine is a demo's
        hints.append(PREFIX + "SMTP_URL names another machine")
    if hints:
        read.problem("WECHATPAY_MODE", "must be set to live or sandbox when " + " and ".join(hints)
                     + " (without it the service would start as a sandbox whose simulator pays for anything)",
                     example="live")
    return bool(hints)


WEBHOOK_TARGETS = ("public", "loopback", "private")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:]+\](?::[0-9]{1,5})?$")


def _buy_button_origins(read: Reader) -> tuple[str, ...]:
    """LBPAY_BUY_BUTTON_ORIGINS: the creator's sites, as origins (scheme://host[:port]), separated by spaces or commas."""
    raw = read.text("BUY_BUTTON_ORIGINS") or ""
    origins = []
    for origin in re.split(r"[\s,]+", raw.strip()):
        if not origin:
            continue
        origin = origin.rstrip("/").lower()
        if not _ORIGIN.match(origin) or (origin.startswith("http://") and not is_loopback(_host_of(origin))):
            read.problem("BUY_BUTTON_ORIGINS", "each is an https:// origin, no path (http:// only for this machine)",
                         origin, "https://course.example.com https://www.example.com")
            continue
        origins.append(origin)
    return tuple(origins)


def _host_of(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def is_loopback(host: str | None) -> bool:
    """True for an address (or localhost name) that only this machine can reach."""
    if host is None:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_problems(config: Config, binds: list[str]) -> list[Problem]:
    """Problems with the addresses a sandbox-mode server listens on: loopback only unless told otherwise."""
    if config.live:
        return []
    return sandbox_bind_problems(binds, public=config.sandbox_public)


def sandbox_bind_problems(binds: list[str], *, public: bool) -> list[Problem]:
    """Problems with where a server holding the payment simulator listens (every start path asks this).

    ``host:port``, ``[v6]:port``, a bare host, ``unix:path`` (this machine only) or ``fd://N``, an
    inherited socket judged by the address it is bound to.
    """
    if public:
        return []
    others = [bind for bind in binds if not _bind_is_local(bind)]
    if not others:
        return []
    return [Problem(PREFIX + "SANDBOX_PUBLIC", "sandbox mode serves only loopback addresses (its simulator pays for "
                    f"anything) but the server binds {', '.join(others)}; bind 127.0.0.1, or set "
                    "LBPAY_SANDBOX_PUBLIC=on to show the demo to other machines", example="on")]


def sandbox_public_setting(values: Mapping[str, Any]) -> bool:
    """Only ``LBPAY_SANDBOX_PUBLIC``, for a start path that runs the simulator without the app (``lbpay sandbox``)."""
    read = Reader(values)
    public = read.flag("SANDBOX_PUBLIC", False)
    if read.problems:
        raise ConfigError(read.problems)
    return public


def _bind_is_local(bind: str) -> bool:
    if bind.startswith("unix:"):
        return True  # a socket file is reachable only from this machine
    if bind.startswith("fd://"):
        return _inherited_socket_is_local(bind[len("fd://"):])
    host = bind.rsplit(":", 1)[0] if bind.count(":") == 1 or bind.startswith("[") else bind
    return is_loopback(host or "0.0.0.0")


def _inherited_socket_is_local(fd: str) -> bool:
    """Whether the socket on descriptor ``fd`` is a socket file or bound to loopback; anything else is not."""
    try:
        copy = os.dup(int(fd))
    except (ValueError, OSError):
        return False  # not a descriptor of ours: never trusted
    try:
        with socket.socket(fileno=copy) as inherited:  # closes the copy only
            copy = -1
            if inherited.family == socket.AF_UNIX:
                return True
            name = inherited.getsockname()
    except OSError:
        return False  # not a socket
    finally:
        if copy >= 0:
            os.close(copy)
    return is_loopback(str(name[0]))


def _apiv3_key(read: Reader, name: str, required: bool = False) -> bytes | None:
    before = len(read.problems)
    value = read.secret(name)
    if value is None:
        if required and len(read.problems) == before:
            read.problem(name, "required in live mode (32 bytes, set in the merchant platform)",
                         example="the 32 characters from 商户平台 > 账户中心 > API安全")
        return None
    if len(value.encode()) != 32:
        read.problem(name, f"must be exactly 32 bytes, got {len(value.encode())}")
        return None
    return value.encode()


def _wechat_settings(read: Reader) -> WeChatSettings:
    why = "in live mode"
    mchid = read.required("WECHATPAY_MCHID", why, "1900000109") or ""
    if mchid and not mchid.isdigit():
        read.problem("WECHATPAY_MCHID", "must be the merchant id's digits", mchid, "1900000109")
    appid = read.required("WECHATPAY_APPID", why, "wx0123456789abcdef") or ""
    api_base = read.url("WECHATPAY_API_BASE", read.text("WECHATPAY_API_BASE") or "https://api.mch.weixin.qq.com",
                        True)
    key_file = read.required("WECHATPAY_MERCHANT_KEY_FILE", why + " (apiclient_key.pem)",
                             "/run/secrets/apiclient_key.pem")
    merchant_pem = read.secret_file("WECHATPAY_MERCHANT_KEY_FILE", key_file) if key_file else None
    serial = (read.required("WECHATPAY_MERCHANT_SERIAL", why + " (the API certificate's serial number)",
                            "3775B6A45ACD588826D15E583A95F5DD99311C6B") or "").upper()
    apiv3 = _apiv3_key(read, "WECHATPAY_APIV3_KEY", required=True)
    # During an APIv3 key switch at the merchant platform both keys decrypt.
    apiv3_next = _apiv3_key(read, "WECHATPAY_APIV3_KEY_NEXT")
    public_key_file = read.text("WECHATPAY_PUBLIC_KEY_FILE")
    public_key_id = read.text("WECHATPAY_PUBLIC_KEY_ID")
    public_pem: bytes | None = None
    if (public_key_file is None) != (public_key_id is None):
        read.problem("WECHATPAY_PUBLIC_KEY_ID", "public-key mode needs both LBPAY_WECHATPAY_PUBLIC_KEY_FILE and its id",
                     example="PUB_KEY_ID_0119000001092026112600000000000001")
    elif public_key_file is not None:
        try:
            public_pem = Path(public_key_file).read_bytes()
        except OSError as exc:
            read.problem("WECHATPAY_PUBLIC_KEY_FILE", f"cannot read {public_key_file}: {exc.strerror}")
    # Only the public key given: verify by it alone. WeChat issues no platform certificates to new
    # merchants (GET /v3/certificates answers 证书不存在), so "both" is a migration's explicit choice.
    verify = read.choice("WECHATPAY_VERIFY", "public_key" if public_key_id else "certificate", VERIFY_MODES)
    if verify != "certificate" and public_key_id is None:
        read.problem("WECHATPAY_VERIFY", f"{verify} needs LBPAY_WECHATPAY_PUBLIC_KEY_FILE and _ID", verify,
                     "certificate")
    # WeChat's second region backs up its production host only: a proxy or simulator has no api2.
    production = api_base.rstrip("/") == "https://api.mch.weixin.qq.com"
    backup = read.text("WECHATPAY_BACKUP_API_BASE", "https://api2.mch.weixin.qq.com" if production else None)
    if backup is not None and backup.lower() in FALSE:
        backup = None
    return WeChatSettings(
        mchid=mchid, appid=appid, api_base=api_base,
        backup_api_base=read.url("WECHATPAY_BACKUP_API_BASE", backup, True) if backup else None,
        merchant_key_pem=merchant_pem or b"", merchant_serial=serial,
        apiv3_keys=tuple(k for k in (apiv3, apiv3_next) if k is not None),
        public_key_pem=public_pem, public_key_id=public_key_id, verify=verify,
        read_timeout=read.integer("WECHATPAY_READ_TIMEOUT", 5, 1, 30),
    )


def default_config(**overrides: Any) -> Config:
    """A sandbox-mode config for a shop built by hand (benchmarks, unit tests), with ``overrides`` applied."""
    from dataclasses import replace

    return replace(load_config({"WECHATPAY_MODE": "sandbox"}, "instance"), **overrides)
