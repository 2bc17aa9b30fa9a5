"""The mail outbox: mails are rows written in the caller's transaction, sent later by the scheduler over SMTP."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from peewee import IntegrityError

from models import License, MailOutbox, Order, db

from . import receipts, rows
from .shop import Shop, iso_utc
from settings import DEFAULT_VSCODE_EXTENSION_ID
from database import write_transaction

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "mail"
BATCH = 20
CLAIM = dt.timedelta(minutes=10)  # a mail being sent is not due again until this passes (a crash mid-send)
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600
SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

_templates = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                         autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
                         keep_trailing_newline=True)


class MailSettingError(ValueError):
    """An ``LBPAY_SMTP_URL`` or ``LBPAY_MAIL_FROM`` that cannot be used, with the reason."""


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to hand mails over: host, port, implicit TLS or STARTTLS, and credentials."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0

    def connect(self) -> smtplib.SMTP:
        """Open an authenticated connection (the one choke point to the mail server), with a timeout."""
        context = ssl.create_default_context()
        connection: smtplib.SMTP
        if self.implicit_tls:
            connection = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.starttls:
                connection.starttls(context=context)
            if self.username is not None:
                connection.login(self.username, self.password or "")
        except BaseException:
            connection.close()
            raise
        return connection


def parse_smtp_url(url: str) -> SmtpServer:
    """Read ``smtp://user:pass@host:port?starttls=1&timeout=10`` or ``smtps://…``; raise MailSettingError."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise MailSettingError("must start with smtp:// or smtps://")
    if not parts.hostname:
        raise MailSettingError("names no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise MailSettingError("must not have a path or fragment")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"starttls", "timeout"}
    if unknown:
        raise MailSettingError(f"unknown options: {', '.join(sorted(unknown))} (known: starttls, timeout)")
    starttls_text = query.get("starttls", ["0"])[-1].lower()
    if starttls_text not in ("0", "1", "true", "false", "yes", "no"):
        raise MailSettingError("starttls must be 1 or 0")
    starttls = starttls_text in ("1", "true", "yes")
    implicit_tls = parts.scheme == "smtps"
    if implicit_tls and starttls:
        raise MailSettingError("smtps:// is already TLS; starttls applies to smtp:// only")
    try:
        timeout = float(query.get("timeout", ["10"])[-1])
        port = parts.port or (465 if implicit_tls else (587 if starttls else 25))
    except ValueError:
        raise MailSettingError("port and timeout must be numbers") from None
    if not 0.5 <= timeout <= 120:
        raise MailSettingError("timeout must be between 0.5 and 120 seconds")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return SmtpServer(host=parts.hostname, port=port, implicit_tls=implicit_tls, starttls=starttls,
                      username=username, password=password, timeout=timeout)


def parse_mail_from(value: str) -> str:
    """Check ``Name <address>`` or a bare address; raise MailSettingError otherwise."""
    name, address = email.utils.parseaddr(value)
    if not address or "@" not in address or any(c in value for c in "\r\n"):
        raise MailSettingError(f"is not a mail address: {value!r}")
    return email.utils.formataddr((name, address)) if name else address


@dataclass(frozen=True)
class Mailer:
    """The shop's mail settings: the SMTP server (None keeps mails queued), the sender and link base."""

    smtp: SmtpServer | None
    mail_from: str
    public_base_url: str
    renewal_reminder_days: int = 7
    vscode_extension_id: str = DEFAULT_VSCODE_EXTENSION_ID


# --- writing to the outbox ----------------------------------------------------------------

def enqueue_mail(*, to: str, subject: str, text: str, html: str | None = None, kind: str,
                 now: dt.datetime, dedupe_key: str | None = None) -> MailOutbox | None:
    """Queue one mail inside the caller's transaction; None when ``dedupe_key`` was queued before."""
    if any(c in to + subject for c in "\r\n"):
        raise ValueError("a header must not contain a line break")
    if dedupe_key is not None and MailOutbox.get_or_none(MailOutbox.dedupe_key == dedupe_key) is not None:
        return None
    try:
        with db.atomic():  # a savepoint: a racing duplicate must not undo the caller's work
            return MailOutbox.create(to=to, subject=subject[:200], text=text, html=html, kind=kind[:32],
                                     created_at=now, next_attempt_at=now, dedupe_key=dedupe_key)
    except IntegrityError:
        if dedupe_key is None:
            raise
        return None


def render(name: str, **context: Any) -> tuple[str, str]:
    """Render ``templates/mail/<name>.txt`` and ``.html`` with the same context."""
    text = _templates.get_template(name + ".txt").render(**context)
    html = _templates.get_template(name + ".html").render(**context)
    return text, html


def shanghai(value: dt.datetime) -> str:
    """Show a time as a learner in China reads it."""
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") + " (北京时间 Beijing time)"


def open_in_vscode_url(extension_id: str, key: str) -> str:
    """The link that hands a license to the extension's URI handler: ``vscode://<id>/activate?key=…``.

    Every character of the key outside [A-Za-z0-9_.~-] is percent-encoded ("+", "/", "=", "|"), so the
    handler's query parser gives back exactly the key.
    """
    return f"vscode://{extension_id}/activate?key={quote(key, safe='')}"


def license_line(*, course_id: str, course_title: str, license_id: str, order_id: str, out_trade_no: str,
                 expires_at: dt.datetime, key: str, price: str = "",
                 extension_id: str = DEFAULT_VSCODE_EXTENSION_ID,
                 receipt: dict[str, Any] | None = None, receipt_url: str = "") -> dict[str, Any]:
    """What a mail says about one license: course, ids, expiry, the price when discounted, the key on one line and its VS Code link."""
    # A one-time course's key expires a century on (shop.LIFETIME): the learner reads "for good".
    lifetime = expires_at - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=50 * 365)
    return {"course_id": course_id, "course_title": course_title, "license_id": license_id,
            "order_id": order_id, "out_trade_no": out_trade_no,
            "expires_at": "永久 · Lifetime" if lifetime else shanghai(expires_at),
            "expires_at_utc": iso_utc(expires_at) or "", "key": key, "price": price,
            "open_url": open_in_vscode_url(extension_id, key), "receipt": receipt, "receipt_url": receipt_url,
            "gift": False}


def _yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def price_line(order: Order) -> str:
    """List price, discount and paid of a discounted order ("" when nothing was taken off)."""
    if not order.discount_fen:
        return ""
    listed = order.list_price_fen if order.list_price_fen is not None else order.amount_fen + order.discount_fen
    return f"{_yuan(listed)} − {_yuan(order.discount_fen)} = {_yuan(order.amount_fen)}"


def license_lines(licenses: list[License], extension_id: str = DEFAULT_VSCODE_EXTENSION_ID,
                  shop: Shop | None = None) -> list[dict[str, Any]]:
    """The mail lines of stored licenses; with the shop, each paid one carries its receipt and fapiao link."""
    lines = []
    for lic in licenses:
        paid = receipts.receipt(shop, lic.order) if shop is not None else None
        lines.append(license_line(course_id=lic.course_id, course_title=lic.course.title, license_id=lic.license_id,
                                  order_id=lic.order.public_id, out_trade_no=lic.order.out_trade_no,
                                  expires_at=lic.expires_at, key=lic.key, price=price_line(lic.order),
                                  extension_id=extension_id, receipt=paid,
                                  receipt_url=receipts.receipt_link(shop, lic.order) if shop and paid else ""))
        lines[-1]["gift"] = lic.order.out_trade_no.startswith(receipts.COMP_PREFIX)
    return lines


def extension_of(shop: Shop) -> str:
    """The extension id the shop's mails link to."""
    return shop.mailer.vscode_extension_id if shop.mailer is not None else DEFAULT_VSCODE_EXTENSION_ID


def header_text(text: str) -> str:
    """Text for a mail header: control characters become spaces, as a header must not break."""
    return "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)


def license_subject(course_title: str) -> str:
    """The subject of a license mail, the course's title made safe for a header."""
    return f"您的 Learning Buddy 许可证 · Your Learning Buddy license: {header_text(course_title)}"


def license_mail(line: dict[str, Any], plan: str) -> tuple[str, str, str]:
    """Subject, text and HTML of the mail that delivers one license."""
    text, html = render("license", licenses=[line], renewal=plan == "subscription")
    return license_subject(line["course_title"]), text, html


LICENSE_MAIL_PREFIX = "license:"


def enqueue_license_mail(order: Order, now: dt.datetime) -> bool:
    """Queue the license mail of a fulfilled order that gave an address, in the fulfilment transaction.

    Nothing is rendered here: the mail job renders it when it sends (``render_queued_license``), so
    neither the time it takes nor a title that cannot be rendered can hold up or fail a payment.
    One prepared insert that a mail already queued for the order turns into nothing: this runs
    inside every fulfilment's write lock. Returns whether a mail was queued.
    """
    statement = prepare_license_mail(order, now)
    return statement is not None and statement.insert() is not None


def prepare_license_mail(order: Order, now: dt.datetime) -> rows.Statement | None:
    """The insert ``enqueue_license_mail`` runs, made ready before the write lock (None: no address)."""
    if not order.email:
        return None
    if any(c in order.email for c in "\r\n"):
        raise ValueError("a header must not contain a line break")
    return rows.prepare_insert(MailOutbox, {"to": order.email, "subject": "", "text": "", "html": None,
                                            "kind": "license", "created_at": now, "next_attempt_at": now,
                                            "dedupe_key": LICENSE_MAIL_PREFIX + order.public_id},
                               unless_exists="dedupe_key")


def plain_license_mail(license: License,
                       extension_id: str = DEFAULT_VSCODE_EXTENSION_ID) -> tuple[str, str, None]:
    """A license mail built without templates or the course title: what goes out when rendering fails."""
    text = (f"Learning Buddy license / 许可证\n\nCourse: {license.course_id}\nLicense id: {license.license_id}\n"
            f"Order: {license.order.public_id}\nValid until: {iso_utc(license.expires_at)}\n\n"
            f"在 VS Code 中打开 · Open in VS Code:\n{open_in_vscode_url(extension_id, license.key)}\n\n"
            f"Your license key (one line):\n{license.key}\n")
    return license_subject(license.course_id), text, None


def render_queued_license(mail: MailOutbox, extension_id: str = DEFAULT_VSCODE_EXTENSION_ID,
                          shop: Shop | None = None) -> tuple[str, str, str | None] | None:
    """Subject, text and HTML of a license mail queued unrendered; None when it is not one or was rendered."""
    if mail.kind != "license" or mail.text or not (mail.dedupe_key or "").startswith(LICENSE_MAIL_PREFIX):
        return None
    public_id = (mail.dedupe_key or "")[len(LICENSE_MAIL_PREFIX):]
    license = License.select().join(Order).where(Order.public_id == public_id).first()
    if license is None:
        return None
    try:
        return license_mail(license_lines([license], extension_id, shop)[0], license.plan)
    except Exception:  # noqa: BLE001 - a broken template or odd title must still let the key go out
        log.exception("license mail %s did not render; sending the plain form", mail.id)
        return plain_license_mail(license, extension_id)


# --- sending ------------------------------------------------------------------------------

def retry_delay(attempts: int) -> dt.timedelta:
    """How long to wait after the ``attempts``-th failure: 30 s doubling, at most an hour."""
    return dt.timedelta(seconds=min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS))


def as_message(mail: MailOutbox, mail_from: str, attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    """Build the MIME message: plain text, with the HTML as an alternative, and a PDF (a fapiao) when given."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = email.utils.format_datetime(mail.created_at)
    domain = mail_from.rpartition("@")[2].rstrip(">") or "localhost"
    message["Message-ID"] = f"<lbpay-{mail.id}-{mail.created_at:%Y%m%d%H%M%S}@{domain}>"
    message.set_content(mail.text, charset="utf-8")
    if mail.html:
        message.add_alternative(mail.html, subtype="html", charset="utf-8")
    if attachment is not None:
        message.add_attachment(attachment[1], maintype="application", subtype="pdf", filename=attachment[0])
    return message


def _claim(now: dt.datetime, extension_id: str, shop: Shop | None = None) -> list[MailOutbox]:
    """Take the due mails (compare-and-set on ``next_attempt_at``) so no other sender takes them too."""
    claimed = []
    with write_transaction():
        due = (MailOutbox.select()
               .where(MailOutbox.sent_at.is_null() & (MailOutbox.next_attempt_at <= now))
               .order_by(MailOutbox.next_attempt_at, MailOutbox.id).limit(BATCH))
        for mail in due:
            taken = (MailOutbox.update(next_attempt_at=now + CLAIM)
                     .where((MailOutbox.id == mail.id) & (MailOutbox.next_attempt_at == mail.next_attempt_at)
                            & MailOutbox.sent_at.is_null()).execute())
            if taken:
                rendered = render_queued_license(mail, extension_id, shop)
                if rendered is not None:
                    mail.subject, mail.text, mail.html = rendered[0][:200], rendered[1], rendered[2]
                    MailOutbox.update(subject=mail.subject, text=mail.text, html=mail.html).where(
                        MailOutbox.id == mail.id).execute()
                claimed.append(mail)
    return claimed


def _record_sent(mail: MailOutbox, at: dt.datetime) -> None:
    with write_transaction():
        MailOutbox.update(sent_at=at, next_attempt_at=None, attempts=MailOutbox.attempts + 1,
                          last_error=None).where(MailOutbox.id == mail.id).execute()


def _record_failure(mail: MailOutbox, at: dt.datetime, error: str, permanent: bool) -> None:
    attempts = mail.attempts + 1
    next_at = None if permanent else at + retry_delay(attempts)
    with write_transaction():
        MailOutbox.update(attempts=attempts, next_attempt_at=next_at,
                          last_error=(("gave up: " if permanent else "") + error)[:300]
                          ).where(MailOutbox.id == mail.id).execute()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__} {exc.smtp_code} {exc.smtp_error!r}"
    return f"{type(exc).__name__}: {exc}"


def _is_permanent(exc: BaseException) -> bool:
    """A 5xx answer about this one mail (a refused recipient, a rejected message) will not change on retry."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    return isinstance(exc, (smtplib.SMTPDataError, smtplib.SMTPSenderRefused)) and exc.smtp_code >= 500


def send_due_mail(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Send the mails that are due; a failure backs off that mail, and a dead server backs off the batch."""
    mailer = shop.mailer
    if mailer is None or mailer.smtp is None:
        waiting = MailOutbox.select().where(MailOutbox.sent_at.is_null()
                                            & MailOutbox.next_attempt_at.is_null(False)).count()
        return {"sent": 0, "waiting_without_smtp": waiting}
    mails = _claim(now, mailer.vscode_extension_id, shop)
    if not mails:
        return {"sent": 0}
    sent = failed = 0
    connection: smtplib.SMTP | None = None
    try:
        connection = mailer.smtp.connect()
    except (OSError, smtplib.SMTPException) as exc:
        error = _describe(exc)
        log.warning("mail server unreachable, %d mails wait: %s", len(mails), error)
        for mail in mails:
            _record_failure(mail, shop.now(), error, permanent=False)
        return {"sent": 0, "deferred": len(mails), "error": error[:120]}
    try:
        for index, mail in enumerate(mails):
            try:
                connection.send_message(as_message(mail, mailer.mail_from, receipts.attachment_for(mail)))
            except (OSError, smtplib.SMTPException) as exc:
                error = _describe(exc)
                if _is_permanent(exc):
                    log.error("mail %s to a refused address given up: %s", mail.id, error)
                    _record_failure(mail, shop.now(), error, permanent=True)
                    failed += 1
                    continue
                # The connection is in doubt: back off this mail and the rest of the batch.
                log.warning("mail %s deferred: %s", mail.id, error)
                for rest in mails[index:]:
                    _record_failure(rest, shop.now(), error, permanent=False)
                return {"sent": sent, "failed": failed, "deferred": len(mails) - index, "error": error[:120]}
            _record_sent(mail, shop.now())
            sent += 1
    finally:
        try:
            connection.quit()
        except (OSError, smtplib.SMTPException):
            connection.close()
    return {"sent": sent, "failed": failed}


def mail_job(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Send the outbox's due mails."""
    return send_due_mail(shop, now)
