"""A learner's receipt and their 发票 (fapiao) request: reached from the license page or the license mail."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from billing import CATALOGUE, BillingError, receipts
from billing.orders import order_for_token

from . import current_shop

bp = Blueprint("receipts", __name__)


def _page(order: Any, token: str, *, form: dict[str, str] | None = None,
          problems: dict[str, tuple[str, str]] | None = None, status: int = 200) -> tuple[str, int]:
    shop = current_shop()
    paid = receipts.receipt(shop, order)
    if paid is None:
        raise BillingError("order_not_found")
    asked = receipts.requests_of(order)
    return render_template("receipt.html", r=paid, token=token, requests=asked,
                           open_request=next((a for a in asked if a.issued_at is None), None),
                           form=form or {"title": "", "tax_id": "", "email": order.email or ""},
                           problems=problems or {}, done=request.args.get("asked") == "1"), status


@bp.get("/receipt/<order_id>")
def receipt(order_id: str) -> tuple[str, int]:
    token = request.args.get("t", "")
    return _page(receipts.order_for_receipt(current_shop(), order_id, token), token)


@bp.post("/receipt/<order_id>")
def ask_fapiao(order_id: str) -> BaseResponse | tuple[str, int]:
    token = request.args.get("t", "")
    shop = current_shop()
    order = receipts.order_for_receipt(shop, order_id, token)
    fields = {name: request.form.get(name, "") for name in ("title", "tax_id", "email")}
    try:
        form = receipts.check_form(fields["title"], fields["tax_id"], fields["email"])
    except receipts.FapiaoInvalid as exc:
        words = {name: receipts.FIELD_WORDS[key] for name, key in exc.fields.items()}
        return _page(order, token, form=fields, problems=words, status=400)
    receipts.request_fapiao(shop, order, form, ip=request.remote_addr)
    return redirect(url_for("receipts.receipt", order_id=order_id, t=token, asked="1") + "#fapiao", 303)


@bp.post("/receipt/<order_id>/open")
def open_receipt(order_id: str) -> BaseResponse:
    """From the license page with JavaScript: the order token (never in a URL) buys the receipt link."""
    order = order_for_token(order_id, request.form.get("order_token"))
    return redirect(url_for("receipts.receipt", order_id=order_id, t=receipts.receipt_token(current_shop(), order)), 303)


@bp.errorhandler(BillingError)
def _refused(exc: BillingError) -> tuple[str, int]:
    return render_template("error.html", status=exc.status, text=CATALOGUE[exc.code], detail=exc.detail), exc.status
