"""Receipts of paid orders and the 发票 (fapiao) a learner asks for, which the creator issues by hand.

A receipt is what a learner needs to show what they paid: the amount, the time in Beijing, WeChat's
transaction number, our order numbers and who sold it. A fapiao is China's tax invoice: the learner
gives a title (抬头), a tax id for a company, and an address; the creator issues it in their tax
software, marks the request issued here (with the PDF, if they have it) and the learner gets a mail.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hmac
import re
from dataclasses import dataclass
from typing import Any

from database import write_transaction
from models import Course, FapiaoRequest, MailOutbox, Order

from . import audit
from .addresses import has_control_characters, is_email_address
from .errors import BillingError
from .shop import Shop

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
TITLE_MAX = 100
NOTE_MAX = 300
PDF_MAX = 2 * 1024 * 1024
# The unified social credit code (统一社会信用代码, 18 characters) or an older taxpayer number (15 or 20).
TAX_ID = re.compile(r"[0-9A-HJ-NP-RT-UW-Y]{18}|[0-9A-Z]{15}|[0-9A-Z]{20}")
FAPIAO_MAIL_PREFIX = "fapiao:"
COMP_PREFIX = "COMP"  # out_trade_no of an order made by a comp (a gift): never sent to WeChat Pay, no receipt


def yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def beijing(at: dt.datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def receipt_token(shop: Shop, order: Order) -> str:
    """The token in a receipt link: whoever holds the license mail or page may ask for a fapiao."""
    return shop.derive_token("receipt", order.public_id)


def token_ok(shop: Shop, order: Order, token: str) -> bool:
    return hmac.compare_digest(receipt_token(shop, order).encode(), token.encode())


def receipt_link(shop: Shop, order: Order) -> str:
    base = shop.mailer.public_base_url if shop.mailer is not None else shop.config.public_base_url
    return f"{base.rstrip('/')}/receipt/{order.public_id}?t={receipt_token(shop, order)}"


def receipt(shop: Shop, order: Order) -> dict[str, Any] | None:
    """What a receipt says of a paid order (None before it is paid or for a gift, which nobody paid for)."""
    if order.paid_at is None or not order.amount_fen:
        return None
    listed = order.list_price_fen if order.list_price_fen is not None else order.amount_fen
    course: Course = order.course
    return {"order_id": order.public_id, "out_trade_no": order.out_trade_no,
            "transaction_id": order.transaction_id or "", "course_title": course.title,
            "amount": yuan(order.amount_fen), "amount_fen": order.amount_fen,
            "list_price": yuan(listed) if order.discount_fen else "",
            "discount": yuan(order.discount_fen) if order.discount_fen else "",
            "paid_at": beijing(order.paid_at), "sandbox": bool(order.sandbox),
            "seller_name": shop.config.seller_name, "seller_contact": seller_contact(shop),
            "refund_terms": shop.config.refund_terms}


def api_receipt(shop: Shop, order: Order) -> dict[str, Any] | None:
    """The receipt as ``/api/v1/me/orders`` carries it (None before payment and for a gift), with the link
    to its page, where the learner asks for a fapiao."""
    paid = receipt(shop, order)
    if paid is None:
        return None
    return {"order_id": paid["order_id"], "out_trade_no": paid["out_trade_no"],
            "transaction_id": paid["transaction_id"] or None, "course_title": paid["course_title"],
            "amount_fen": paid["amount_fen"], "amount": paid["amount"], "currency": order.currency,
            "paid_at_beijing": paid["paid_at"], "timezone": "Asia/Shanghai",
            "seller": {"name": paid["seller_name"], "contact": paid["seller_contact"] or None,
                       "refund_terms": paid["refund_terms"]},
            "url": receipt_link(shop, order)}


def seller(shop: Shop) -> dict[str, str]:
    """Who sells, for the pages: name, contact and refund terms ('' when the creator set none)."""
    return {"name": shop.config.seller_name, "contact": seller_contact(shop), "refund_terms": shop.config.refund_terms or ""}


def seller_contact(shop: Shop) -> str:
    """The seller's contact: the setting, else the address mails come from."""
    if shop.config.seller_contact:
        return shop.config.seller_contact
    mail_from = shop.mailer.mail_from if shop.mailer is not None else shop.config.mail_from
    return email.utils.parseaddr(mail_from)[1] if mail_from else ""


# --- fapiao requests ------------------------------------------------------------------------

# Each field mistake in words, Chinese then English: shown next to the field on the form.
FIELD_WORDS = {
    "title_missing": ("请填写发票抬头（公司名称，或“个人”）。", "Give the fapiao title: a company's name, or 个人 for a person."),
    "title_long": (f"发票抬头最多 {TITLE_MAX} 个字。", f"The title is at most {TITLE_MAX} characters."),
    "title_bad": ("发票抬头只能是一行文字。", "The title must be one line of text."),
    "tax_id_missing": ("公司抬头需要填写纳税人识别号（统一社会信用代码）。",
                       "A company title needs its tax id (unified social credit code)."),
    "tax_id_bad": ("纳税人识别号应为 18 位数字和大写字母（旧号码为 15 或 20 位）。",
                   "The tax id is 18 digits and capital letters (older ones 15 or 20)."),
    "email_bad": ("请填写有效的邮箱地址，例如 name@example.com。", "Give an e-mail address such as name@example.com."),
}
PERSON = ("个人", "personal", "person", "individual")


class FapiaoInvalid(BillingError):
    """Mistakes in the fapiao form, by field: {field: catalogue key of FIELD_WORDS}."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("bad_request", "; ".join(f"{k}: {FIELD_WORDS[v][1]}" for k, v in fields.items()))
        self.fields = fields


@dataclass(frozen=True)
class FapiaoForm:
    title: str
    tax_id: str
    email: str


def check_form(title: Any, tax_id: Any, email: Any) -> FapiaoForm:
    """The form's fields cleaned, or FapiaoInvalid naming every mistake."""
    t = " ".join(str(title or "").split())
    tid = "".join(str(tax_id or "").split()).upper()
    mail = str(email or "").strip()
    fields: dict[str, str] = {}
    if not t:
        fields["title"] = "title_missing"
    elif len(t) > TITLE_MAX:
        fields["title"] = "title_long"
    elif has_control_characters(t):
        fields["title"] = "title_bad"
    if tid and not TAX_ID.fullmatch(tid):
        fields["tax_id"] = "tax_id_bad"
    elif not tid and t and t.lower() not in PERSON and "title" not in fields:
        fields["tax_id"] = "tax_id_missing"
    if not is_email_address(mail):
        fields["email"] = "email_bad"
    if fields:
        raise FapiaoInvalid(fields)
    return FapiaoForm(t, tid, mail)


def requests_of(order: Order) -> list[FapiaoRequest]:
    return list(FapiaoRequest.select().where(FapiaoRequest.order == order.id).order_by(FapiaoRequest.id.desc()))


def request_fapiao(shop: Shop, order: Order, form: FapiaoForm, *, ip: str | None) -> FapiaoRequest:
    """Record a learner's fapiao request for a paid order, with its audit event; one open request per order."""
    now = shop.now()
    with write_transaction():
        fresh = Order.get_by_id(order.id)
        if fresh.paid_at is None or not fresh.amount_fen:
            raise BillingError("bad_request", "only a paid order has a fapiao")
        waiting = FapiaoRequest.get_or_none((FapiaoRequest.order == order.id) & FapiaoRequest.issued_at.is_null())
        if waiting is not None:
            raise BillingError("bad_request", "a fapiao for this order is already requested")
        row = FapiaoRequest.create(order=fresh.id, title=form.title, tax_id=form.tax_id or None, email=form.email,
                                   requested_at=now)
        audit.record("fapiao.requested", at=now, actor="buyer", order=fresh, ip=ip,
                     detail={"request": row.id, "title": form.title, "tax_id": form.tax_id})
    return row


def open_requests(limit: int = 200) -> list[FapiaoRequest]:
    return list(FapiaoRequest.select(FapiaoRequest, Order, Course).join(Order).join(Course)
                .where(FapiaoRequest.issued_at.is_null()).order_by(FapiaoRequest.id).limit(limit))


def issued_requests(limit: int = 50) -> list[FapiaoRequest]:
    return list(FapiaoRequest.select(FapiaoRequest, Order, Course).join(Order).join(Course)
                .where(FapiaoRequest.issued_at.is_null(False)).order_by(FapiaoRequest.issued_at.desc())
                .limit(limit))


def open_count() -> int:
    return FapiaoRequest.select().where(FapiaoRequest.issued_at.is_null()).count()


def mark_issued(shop: Shop, request_id: int, *, actor: str, ip: str | None, note: str = "",
                pdf: bytes | None = None) -> FapiaoRequest:
    """Mark a request issued and queue the learner's mail (the PDF attached when given), in one transaction."""
    now = shop.now()
    text = " ".join(note.split())
    if len(text) > NOTE_MAX:
        raise BillingError("bad_request", f"the note is longer than {NOTE_MAX} characters")
    if pdf is not None and (len(pdf) > PDF_MAX or not pdf.startswith(b"%PDF-")):
        raise BillingError("bad_request", "the file must be a PDF of at most 2 MB")
    with write_transaction():
        row = FapiaoRequest.get_or_none(FapiaoRequest.id == request_id)
        if row is None:
            raise BillingError("not_found", "no such fapiao request")
        if row.issued_at is not None:
            raise BillingError("bad_request", "this fapiao is already marked issued")
        row.issued_at, row.issued_by, row.note, row.pdf = now, actor, text or None, pdf
        row.save()
        order = Order.get_by_id(row.order_id)
        subject, body = issued_mail(row, order, shop)
        MailOutbox.create(to=row.email, subject=subject, text=body, html=None, kind="fapiao", created_at=now,
                          next_attempt_at=now, dedupe_key=f"{FAPIAO_MAIL_PREFIX}{row.id}")
        audit.record("fapiao.issued", at=now, actor=actor, order=order, ip=ip,
                     detail={"request": row.id, "pdf": pdf is not None, "note": text})
    return row


def issued_mail(row: FapiaoRequest, order: Order, shop: Shop) -> tuple[str, str]:
    """Subject and text of the mail that tells the learner their fapiao is issued."""
    course = Course.get_by_id(order.course_id)
    seller = shop.config.seller_name
    attached_zh = "发票 PDF 在附件中。" if row.pdf else "发票将由开票系统另行发送到这个邮箱。"
    attached_en = ("The fapiao PDF is attached." if row.pdf
                   else "The fapiao itself comes separately from the invoicing system to this address.")
    note = f"\n{row.note}\n" if row.note else ""
    subject = f"发票已开具 · Your fapiao is issued: {course.title}"
    text = (f"您好！\n\n您申请的发票已开具。{attached_zh}\n"
            f"抬头：{row.title}\n" + (f"纳税人识别号：{row.tax_id}\n" if row.tax_id else "") +
            f"课程：{course.title}\n金额：{yuan(order.amount_fen)}\n订单号：{order.public_id}\n"
            f"{note}\n{seller}" + (f" · {seller_contact(shop)}" if seller_contact(shop) else "") +
            "\n\n----------------------------------------------------------------\n\n"
            f"Hello!\n\nThe fapiao you asked for is issued. {attached_en}\n"
            f"Title: {row.title}\n" + (f"Tax id: {row.tax_id}\n" if row.tax_id else "") +
            f"Course: {course.title}\nAmount: {yuan(order.amount_fen)}\nOrder: {order.public_id}\n")
    return "".join(" " if ord(c) < 32 else c for c in subject)[:200], text


def attachment_for(mail: MailOutbox) -> tuple[str, bytes] | None:
    """The PDF a queued fapiao mail carries (file name and bytes), or None."""
    if mail.kind != "fapiao" or not (mail.dedupe_key or "").startswith(FAPIAO_MAIL_PREFIX):
        return None
    ident = (mail.dedupe_key or "")[len(FAPIAO_MAIL_PREFIX):]
    row = FapiaoRequest.get_or_none(FapiaoRequest.id == int(ident)) if ident.isdigit() else None
    if row is None or not row.pdf:
        return None
    return f"fapiao-{row.order.public_id}.pdf", bytes(row.pdf)


def order_for_receipt(shop: Shop, public_id: str, token: str) -> Order:
    """The order a receipt link names, only when its token is the right one (else order_not_found)."""
    order = Order.get_or_none(Order.public_id == public_id) if 0 < len(public_id) <= 40 else None
    if order is None or not token or len(token) > 100 or not token_ok(shop, order, token):
        raise BillingError("order_not_found")
    return order
