"""The ``lbpay`` command line: each command a few lines that call billing or operations."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
import qrcode
from flask import Flask, current_app
from flask.cli import FlaskGroup, ScriptInfo
from flask.cli import run_command as flask_run_command
from peewee import fn
from werkzeug.serving import run_simple

import migrations
import models
from app import SANDBOX_MCHID, create_app, sandbox_config, sandbox_keys
from billing import BillingError, Shop, complaints, discounts
from billing.admin_users import create_admin, enrol_totp
from billing.audit import verify_chain
from billing.content import ContentError, served_files, set_download_limit
from billing.courses import save_course
from billing.orders import qr_svg
from billing.reports import SHANGHAI
from licensing import export_public_keys, verify_license
from operations.alerts import recent_alerts
from operations.backups import BackupError, check_backup, make_backup, restore_backup
from operations.key_files import rotate
from operations.replica import ReplicaError, litestream_program, restore_from_replica, seal_keys, write_litestream_config
from operations.retention import purge
from operations.scheduler import Scheduler, holder_id, run_job
from settings import (
    Config,
    ConfigError,
    Problem,
    bind_problems,
    load_config,
    sandbox_bind_problems,
    sandbox_public_setting,
    values_from,
)
from wechatpay.crypto import load_public_key

UTC = dt.timezone.utc


def _shop() -> Shop:
    shop: Shop = current_app.extensions["lbpay.shop"]
    return shop


def _command_line_app() -> Flask:
    return create_app(command_line=True)


@click.group(cls=FlaskGroup, create_app=_command_line_app, add_default_commands=True, add_version_option=False,
             load_dotenv=False, set_debug_flag=False)
@click.version_option(package_name="learning-buddy-pay", prog_name="lbpay")
def cli() -> None:
    """Learning Buddy Pay: sell course licenses through WeChat Pay."""


# Settings come from LBPAY_* variables only: a .env file option would be a second, silent source.
cli.params = [param for param in cli.params if param.name != "env_file"]


def main(args: list[str] | None = None) -> None:
    """The ``lbpay`` entry point: a bad setting is reported as a list of problems, never a traceback."""
    try:
        cli.main(args=args, prog_name="lbpay")
    except ConfigError as exc:
        click.echo(exc.report(), err=True)
        sys.exit(2)


class Refused(click.ClickException):
    """A start refused for its settings: the report and exit status 2, as for any bad setting."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _run_command(**options: Any) -> None:
    """Flask's development server, after the same sandbox guard as gunicorn's (issue 24)."""
    ctx = click.get_current_context()
    app = ctx.ensure_object(ScriptInfo).load_app()
    problems = bind_problems(app.extensions["lbpay.shop"].config, [_bind(options["host"], options["port"])])
    if problems:
        raise Refused(ConfigError(problems).report())  # a report, not a traceback, under `flask run` too
    ctx.invoke(flask_run_command, **options)


# `lbpay run` (and `flask --app app run`, through the entry point) is Flask's own command with the guard
# in front: a sandbox on 0.0.0.0 is refused there too.
run_command = click.Command("run", params=flask_run_command.params, callback=_run_command,
                            help=flask_run_command.help, short_help=flask_run_command.short_help)
cli.add_command(run_command)


@cli.command("check-config", with_appcontext=False)
def check_config_command() -> None:
    """Read every setting once and report every problem at once (exit 2), or say what will run."""
    try:
        config = load_config(values_from(os.environ), str(Path("instance").resolve()))
        if config.replica is not None:
            try:
                litestream_program()
            except ReplicaError as exc:
                raise ConfigError([Problem("LBPAY_REPLICA_URL", str(exc))]) from None
        create_app(command_line=True)  # also parses the keys and mail settings
    except ConfigError as exc:
        click.echo(exc.report(), err=True)
        sys.exit(2)
    replica = f", replica {config.replica.url}" if config.replica is not None else ", no off-machine replica"
    click.echo(f"settings ok: {config.mode} mode, public URL {config.public_base_url}, "
               f"database {config.database_url.split('?')[0]}{replica}")
    for line in payment_method_lines(config):
        click.echo(line)


def payment_method_lines(config: Config) -> list[str]:
    """One line per payment method: on or off, with what it runs on, or what it would need."""
    from settings import ALIPAY_NEEDS, WECHAT_NEEDS

    if config.live and config.wechat is not None:
        wechat = f"merchant {config.wechat.mchid}, app {config.wechat.appid}, verify by {config.wechat.verify}"
    else:
        wechat = f"sandbox simulator under /sandbox; live mode needs {WECHAT_NEEDS}"
    lines = [f"wechat: on ({wechat})" if config.wechat_enabled
             else f"wechat: off (LBPAY_WECHATPAY_ENABLED); live mode still reads {WECHAT_NEEDS}"]
    alipay = config.alipay
    if not config.alipay_enabled:
        lines.append(f"alipay: off (LBPAY_ALIPAY_ENABLED); to take Alipay in live mode set {ALIPAY_NEEDS}")
    elif not config.live:
        lines.append(f"alipay: on (sandbox simulator under /sandbox/alipay; live mode needs {ALIPAY_NEEDS})")
    elif alipay is None:
        lines.append(f"alipay: off (not set up); to take Alipay set {ALIPAY_NEEDS}")
    else:
        lines.append(f"alipay: on (app {alipay.app_id}, seller {alipay.seller_id}, {alipay.key_mode}, "
                     f"gateway {alipay.gateway})")
    return lines


@cli.command("init")
def init_command() -> None:
    """Create or upgrade the database (numbered migrations); safe to run at every deploy."""
    with models.db.connection_context():
        applied = migrations.migrate()
        version = max(migrations.applied_versions(models.db.obj))
    done = f"applied migrations {', '.join(map(str, applied))}; " if applied else ""
    click.echo(f"database ready ({done}schema version {version})")
    shop = _shop()
    if shop.config.replica is not None and seal_keys(shop.config, shop.mchid, shop.now()):
        click.echo("license keys sealed for the replica")


@cli.command("reconcile")
@click.option("--once", is_flag=True, required=True, help="run one pass now and exit")
def reconcile_command(once: bool) -> None:
    """Ask WeChat about pending orders, close expired ones; prints what was fixed."""
    with models.db.connection_context():
        summary = run_job(_shop(), "reconcile", holder_id())
    if summary is None:
        click.echo("another process is reconciling right now; nothing done")
        sys.exit(1)
    click.echo(json.dumps(summary, sort_keys=True))


@cli.command("scheduler")
def scheduler_command() -> None:
    """Run the scheduled jobs in the foreground (for LBPAY_SCHEDULER=off web processes)."""
    scheduler = Scheduler(_shop())
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
    shop = _shop()
    with models.db.connection_context():
        try:
            course = save_course(shop, course_id=course_id, title=title, price_fen=price_fen,
                                 plan="subscription" if subscription else "one_time", period_days=period_days,
                                 actor="cli")
        except BillingError as exc:
            raise click.ClickException(exc.detail or exc.code) from None
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
    shop = _shop()
    folder = shop.config.content_dir
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


@cli.group("codes")
def codes_group() -> None:
    """Discount codes and launch prices."""


def _utc_from_beijing(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=SHANGHAI).astimezone(dt.timezone.utc)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not YYYY-MM-DDTHH:MM (Beijing time)") from None


@codes_group.command("add")
@click.argument("code", required=False)
@click.option("--percent", type=click.IntRange(1, 100), default=None, help="percent off (100 = free)")
@click.option("--off-fen", type=click.IntRange(min=1), default=None, help="fen off the list price")
@click.option("--launch-price-fen", type=click.IntRange(min=1), default=None,
              help="a launch price (no CODE): what everyone pays until it ends")
@click.option("--course", "course_id", default=None, help="only this course (default: every course)")
@click.option("--starts", default=None, help="from, Beijing time: 2026-12-24T20:00")
@click.option("--ends", default=None, help="until, Beijing time")
@click.option("--max-uses", type=click.IntRange(min=1), default=None, help="at most N uses (first N buyers)")
@click.option("--once-per-buyer", is_flag=True, help="each buyer (token or e-mail) may use it once")
@click.option("--note", default="", help="for you only")
def codes_add(code: str | None, percent: int | None, off_fen: int | None, launch_price_fen: int | None,
              course_id: str | None, starts: str | None, ends: str | None, max_uses: int | None,
              once_per_buyer: bool, note: str) -> None:
    """Add a discount CODE (--percent or --off-fen), or a launch price (--launch-price-fen, no CODE)."""
    given = [(k, v) for k, v in (("percent", percent), ("fixed", off_fen), ("launch", launch_price_fen))
             if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --percent, --off-fen, --launch-price-fen")
    kind, value = given[0]
    shop = _shop()
    with models.db.connection_context():
        try:
            made = discounts.create(kind=kind, value=value, code=code, course_id=course_id,
                                    starts_at=_utc_from_beijing(starts), ends_at=_utc_from_beijing(ends),
                                    max_uses=max_uses, once_per_buyer=once_per_buyer, note=note,
                                    actor="cli", now=shop.now())
        except BillingError as exc:
            raise click.ClickException(exc.detail or exc.code) from None
    click.echo(f"{made.id}\t{discounts.describe(made)}\t{kind}\t{value}")


@codes_group.command("list")
def codes_list() -> None:
    """List codes and launch prices: uses now, paid orders, revenue and discount given (fen)."""
    shop = _shop()
    with models.db.connection_context():
        for s in discounts.summaries(shop.now()):
            d = s.discount
            state = "paused" if d.paused_at else "active"
            limit = f"{s.uses}/{d.max_uses}" if d.max_uses else f"{s.uses}"
            click.echo(f"{d.id}\t{s.label}\t{d.kind}\t{d.value}\t{d.course_id or '*'}\t{limit} uses\t"
                       f"{s.paid_orders} paid\t{s.revenue_fen} fen\t-{s.discount_given_fen} fen\t{state}")


@codes_group.command("pause")
@click.argument("code_or_id")
@click.option("--resume", is_flag=True, help="let it be used again")
def codes_pause(code_or_id: str, resume: bool) -> None:
    """Pause a code or launch price (by its code, or by the id `codes list` shows); --resume undoes it."""
    shop = _shop()
    with models.db.connection_context():
        found = (discounts.find(int(code_or_id)) if code_or_id.isdigit() else discounts.find_by_code(code_or_id))
        if found is None:
            raise click.ClickException(f"no code {code_or_id!r}")
        done = discounts.set_paused(found.id, not resume, actor="cli", now=shop.now())
    click.echo(f"{done.id}\t{discounts.describe(done)}\t{'paused' if done.paused_at else 'active'}")


@cli.group("complaints")
def complaints_group() -> None:
    """WeChat Pay consumer complaints (消费者投诉2.0)."""


@complaints_group.command("register-url")
@click.option("--url", default=None, help="https URL (default: this shop's /wechatpay/notify/complaint)")
def complaints_register_url(url: str | None) -> None:
    """Tell WeChat Pay where to send complaint notifications (created, or updated if another is set)."""
    shop = _shop()
    with models.db.connection_context():
        try:
            done = complaints.register_notification_url(shop, url=url, actor="cli")
        except BillingError as exc:
            raise click.ClickException(exc.detail or exc.code) from None
    click.echo(f"{done['outcome']}\t{done['url']}" + (f"\t(was {done['before']})" if done["outcome"] == "updated" else ""))


@complaints_group.command("sync")
def complaints_sync() -> None:
    """List the last 30 days' complaints at WeChat Pay now and fetch the new or changed ones."""
    shop = _shop()
    with models.db.connection_context():
        try:
            found = complaints.sync_now(shop)
        except BillingError as exc:
            raise click.ClickException(exc.detail or exc.code) from None
    click.echo(f"{found['listed']} listed, {found['found']} new, {found['changed']} changed")


@complaints_group.command("list")
def complaints_list() -> None:
    """List complaints, newest first: id, state, reply deadline (Beijing time), order."""
    with models.db.connection_context():
        for c in complaints.listing():
            due = c.reply_due_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
            waiting = "unanswered" if complaints.unanswered(c) else ""
            click.echo(f"{c.complaint_id}\t{c.state}\t{due}\t{c.out_trade_no or '-'}\t{waiting}".rstrip())


@cli.group("license")
def license_group() -> None:
    """License keys."""


@license_group.command("verify")
@click.argument("key_or_file")
@click.option("--public-key-file", type=click.Path(exists=True, dir_okay=False), default=None)
def license_verify(key_or_file: str, public_key_file: str | None) -> None:
    """Check a license (its text, or a file holding it); exit 0 only when valid."""
    text = key_or_file
    if "|" not in key_or_file and os.path.exists(key_or_file):
        text = Path(key_or_file).read_text()
    if public_key_file:
        keys: Any = [load_public_key(Path(public_key_file).read_bytes())]
    else:
        keys = _shop().license_keys.public_keys()
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

    from wechatpay.sandbox import create_sandbox_app  # the simulator, never imported by live code

    # It pays for anything: loopback only, unless LBPAY_SANDBOX_PUBLIC=on says to show it to others.
    problems = sandbox_bind_problems([_bind(host, port)], public=sandbox_public_setting(values_from(os.environ)))
    if problems:
        raise ConfigError(problems)
    sandbox = create_sandbox_app(sandbox_config(sandbox_keys(Path(instance)), merchant_origin))
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

    password = _read_password(password_file)
    with models.db.connection_context():
        try:
            user = create_admin(_shop(), email, password)
        except BillingError as exc:
            raise click.ClickException(exc.detail or exc.code) from None
    click.echo(f"admin {user.email} ready; sign in at {current_app.config['PUBLIC_BASE_URL']}/admin/login")


@admin_group.command("totp")
@click.argument("email")
@click.option("--svg", "svg_file", type=click.Path(dir_okay=False, writable=True), default=None,
              help="also write the enrolment QR code to this SVG file")
def admin_totp(email: str, svg_file: str | None) -> None:
    """Enrol (or re-enrol) an authenticator app: prints the otpauth URI and its QR code."""


    with models.db.connection_context():
        try:
            uri = enrol_totp(_shop(), email)
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
    try:
        facts = make_backup(Path(dest))
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backup written to {facts['path']}: {facts['orders']} orders, {facts['bytes']} bytes")


@cli.command("restore", with_appcontext=False)
@click.argument("src", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--from-replica", is_flag=True, help="restore the database and the license keys from "
              "LBPAY_REPLICA_URL onto an empty volume")
@click.option("--if-missing", is_flag=True, help="with --from-replica: do nothing (exit 0) when the database "
              "exists or no replica has been written yet (the entrypoint's start)")
@click.option("--yes", is_flag=True, help="do not ask; the replaced database is kept beside it anyway")
def restore_command(src: str | None, from_replica: bool, if_missing: bool, yes: bool) -> None:
    """Put a backup FILE in place of the database, or fill an empty volume --from-replica; stop the server first."""
    if from_replica == (src is not None):
        raise click.UsageError("give either a backup FILE or --from-replica")
    if from_replica:
        _restore_from_replica(load_config(values_from(os.environ), str(Path("instance").resolve())), if_missing)
        return
    assert src is not None
    with create_app(command_line=True).app_context():
        _restore_backup(src, yes)


def _restore_from_replica(config: Config, if_missing: bool) -> None:
    mchid = config.wechat.mchid if config.wechat is not None else SANDBOX_MCHID
    try:
        done = restore_from_replica(config, mchid, only_if_missing=if_missing)
    except ReplicaError as exc:
        raise click.ClickException(f"refusing to restore: {exc}") from None
    if not done["restored"]:
        click.echo(f"nothing restored: {done['reason']}")
        return
    click.echo(f"restored {done['orders']} orders and {done['key_files']} key files from the replica "
               f"{done['url']} into {done['database']}")


def _restore_backup(src: str, yes: bool) -> None:
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


@cli.group("replica")
def replica_group() -> None:
    """The off-machine replica (Litestream to S3-compatible storage)."""


@replica_group.command("config", with_appcontext=False)
@click.argument("dest", type=click.Path(dir_okay=False))
def replica_config(dest: str) -> None:
    """Write Litestream's settings for LBPAY_REPLICA_* to DEST (mode 0600: it holds the storage's key)."""
    _write_litestream_config(_replica_settings(), dest)


@replica_group.command("prepare", with_appcontext=False)
@click.argument("dest", type=click.Path(dir_okay=False))
def replica_prepare(dest: str) -> None:
    """Before the server starts: write Litestream's settings to DEST, and fill an empty volume from the replica."""
    config = _replica_settings()
    _write_litestream_config(config, dest)
    _restore_from_replica(config, if_missing=True)


def _write_litestream_config(config: Config, dest: str) -> None:
    try:
        write_litestream_config(config, Path(dest))
    except ReplicaError as exc:
        raise click.ClickException(str(exc)) from None
    url = config.replica.url if config.replica is not None else ""
    click.echo(f"litestream settings written to {dest}: the database and its sealed keys to {url}")


def _replica_settings() -> Config:
    config = load_config(values_from(os.environ), str(Path("instance").resolve()))
    if config.replica is None:
        raise click.ClickException("LBPAY_REPLICA_URL is not set")
    return config


@cli.command("purge")
@click.option("--dry-run", is_flag=True, help="only count what would be purged")
@click.option("--days", type=click.IntRange(min=30), default=None,
              help="keep this many days (default LBPAY_RETENTION_DAYS, 400)")
def purge_command(dry_run: bool, days: int | None) -> None:
    """Blank raw notifications and personal data older than the retention period; money records stay."""
    shop = _shop()
    with models.db.connection_context():
        counts = purge(shop, shop.now(), days=days, dry_run=dry_run, actor="cli")
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} (older than {days or shop.config.retention_days} days): {counts['notifications']} notification "
               f"bodies, personal data of {counts['orders']} orders and {counts['buyers']} buyers")


@cli.group("keys")
def keys_group() -> None:
    """License signing keys: list them, rotate to a new one."""


@keys_group.command("list")
def keys_list() -> None:
    """List every license key (kid, active or retired, licenses it signed)."""
    shop = _shop()
    with models.db.connection_context():
        counts = dict(models.License.select(models.License.kid, fn.COUNT(models.License.id))
                      .group_by(models.License.kid).tuples())
    for key in shop.license_keys.describe():
        state = "active" if key["active"] else "retired"
        click.echo(f"{key['kid']}\t{state}\t{counts.get(key['kid'], 0)} licenses")


@keys_group.command("rotate")
def keys_rotate() -> None:
    """Make a new license signing key active; old licenses keep verifying. Reload the server after."""
    shop = _shop()
    keys_dir = shop.config.license_keys_dir
    with models.db.connection_context():
        new = rotate(keys_dir, shop.license_keys, now=shop.now())
    click.echo(f"new license key {new.kid} is active in {keys_dir}; the previous keys verify old licenses.")
    if shop.config.replica is not None:
        seal_keys(shop.config, shop.mchid, shop.now())  # the replica has the new key within a second
        click.echo("the new key is sealed for the replica too.")
    click.echo("Reload the server (gunicorn: kill -HUP <pid>; Fly: fly apps restart) to sign with it.")


@keys_group.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--sandbox-key", is_flag=True,
              help="sandbox mode only: export the throwaway sandbox key anyway (for a demo, never to ship)")
def keys_export(directory: str, sandbox_key: bool) -> None:
    """Write the public keys the extension ships: DIR/licence-keys/public-key.txt and keyring.json."""
    shop = _shop()
    if not shop.config.live:
        # An extension shipped with this key would take every free sandbox license as paid.
        if not sandbox_key:
            raise Refused("lbpay keys export: this is sandbox mode, so the key is the sandbox's throwaway key "
                          "(its simulator pays for anything: every license it signs is free). Export the live "
                          "server's keys (LBPAY_WECHATPAY_MODE=live) for an extension you ship; for a demo "
                          "only, add --sandbox-key.")
        click.echo("WARNING: SANDBOX KEY. These are the sandbox's throwaway keys: never ship them in an "
                   "extension (every free sandbox license would verify).", err=True)
    for path in export_public_keys(shop.license_keys, directory):
        click.echo(f"wrote {path}")


@cli.command("alerts")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=20)
def alerts_command(limit: int) -> None:
    """List the newest alerts for the creator."""
    with models.db.connection_context():
        for alert in recent_alerts(limit):
            mailed = "mailed" if alert.mailed else "listed"
            click.echo(f"{alert.at:%Y-%m-%d %H:%M}Z\t{alert.kind}\t{mailed}\t{alert.message}")


@cli.group("refunds")
def refunds_group() -> None:
    """Refunds through WeChat Pay."""


@refunds_group.command("apply-abnormal")
@click.argument("out_refund_no")
@click.option("--type", "kind", required=True, type=click.Choice(["USER_BANK_CARD", "MERCHANT_BANK_CARD"]),
              help="to the user's bank card (needs --bank-type, --bank-account, --real-name) or the merchant's")
@click.option("--bank-type", help="the user's bank, as WeChat names it (e.g. ICBC_DEBIT)")
@click.option("--bank-account", help="the user's card number (sent encrypted, never stored)")
@click.option("--real-name", help="the card holder's name (sent encrypted, never stored)")
def refunds_apply_abnormal(out_refund_no: str, kind: str, bank_type: str | None, bank_account: str | None,
                           real_name: str | None) -> None:
    """Resolve an ABNORMAL refund (the user's card frozen or closed) at WeChat Pay."""
    from billing.refunds import apply_abnormal_refund

    with models.db.connection_context():
        refund = models.Refund.get_or_none(models.Refund.out_refund_no == out_refund_no)
        if refund is None:
            raise click.ClickException(f"no refund {out_refund_no}")
        try:
            outcome = apply_abnormal_refund(_shop(), refund, kind=kind, actor="cli", bank_type=bank_type,
                                            bank_account=bank_account, real_name=real_name)
        except BillingError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{out_refund_no}: {outcome}")


@cli.group("bill")
def bill_group() -> None:
    """WeChat Pay's daily trade bill, compared with our orders."""


@bill_group.command("check")
@click.option("--date", "bill_date", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="the Beijing day of the bill, YYYY-MM-DD")
def bill_check(bill_date: dt.datetime) -> None:
    """Download one day's trade bill now, compare every line and keep the differences (exit 3: not published yet)."""
    from billing.daily_bill import bill_differences
    from operations.jobs import check_daily_bills

    day = bill_date.date()
    with models.db.connection_context():
        shop = _shop()
        summary = check_daily_bills(shop, shop.now(), days=[day])
        for row in bill_differences(limit=1000):
            if row["date"] == day:
                click.echo(f"{row['kind']}\t{row['out_trade_no'] or '-'}\t{row['out_refund_no'] or '-'}\t"
                           f"wechat={row['wechat_fen']}\tours={row['ours_fen']}\t{row['detail']}")
    click.echo(json.dumps(summary, sort_keys=True))
    if summary.get("failed"):
        sys.exit(1)
    if summary.get("not_ready"):
        click.echo("WeChat Pay has not published this bill yet (after 10:00 Beijing time); try again later", err=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
