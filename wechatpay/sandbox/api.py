"""The simulated WeChat Pay APIv3 endpoints: authenticate, apply faults, answer signed."""

from __future__ import annotations

import datetime
import email.utils
import gzip
import hashlib
import json
import re
import secrets
import time
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, g, request, url_for

from wechatpay.crypto import aead_encrypt, make_nonce

from . import bills, rules
from .refusal import Refusal, param_error
from .signing import check_request_signature
from .state import SandboxState, rfc3339

bp = Blueprint("api", __name__)

API_PREFIX = "/v3/"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def sandbox() -> SandboxState:
    state: SandboxState = current_app.extensions["wechatpay_sandbox"]
    return state


def json_response(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return current_app.response_class(body, status=status, mimetype="application/json")


def install(app: Flask) -> None:
    """Hook authentication, faults and response signing around every /v3/ call."""
    app.before_request(_before_api_call)
    app.after_request(_after_api_call)
    app.register_error_handler(Refusal, lambda refusal: json_response(refusal.body(), refusal.status))


def _is_api_call() -> bool:
    return request.path.startswith(API_PREFIX)


def _canonical_urls() -> list[str]:
    """The signed URL as on the wire, then as seen from the mount point (they differ only when mounted)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw and "://" in raw.split("?", 1)[0]:
        raw = "/" + raw.split("://", 1)[1].partition("/")[2]
    if not raw:
        raw = quote(request.script_root + request.path)
        if request.query_string:
            raw += "?" + request.query_string.decode("latin-1")
    urls = [raw]
    if request.script_root and raw.startswith(request.script_root + "/"):
        urls.append(raw[len(request.script_root):])
    return urls


def _signed_body() -> bytes:
    """What the merchant signed: the body, or for an image upload (multipart) only its ``meta`` JSON."""
    if request.mimetype == "multipart/form-data" and request.path.endswith("/images/upload"):
        return request.form.get("meta", "").encode("utf-8")
    return request.get_data()


def _before_api_call() -> Response | None:
    if not _is_api_call():
        return None
    state = sandbox()
    g.api_started = time.monotonic()
    with state.lock:
        g.fault = state.faults.take_api(request.path, now=state.now())
    if g.fault.fail is not None:
        raise g.fault.fail
    config = state.config
    g.mchid = check_request_signature(
        header=request.headers.get("Authorization"),
        method=request.method,
        canonical_urls=_canonical_urls(),
        body=_signed_body(),
        identity=state.identity,
        mchid=config.mchid,
        merchant_serial=config.merchant_serial,
        now=state.now(),
    )
    # Production answers a request that breaks the APIv3 header rules with INVALID_REQUEST.
    if "application/json" not in request.headers.get("Accept", ""):
        raise Refusal(400, "INVALID_REQUEST", "Accept请求头必须是application/json (Accept must be application/json)",
                      {"field": "Accept", "location": "header"})
    if not request.headers.get("User-Agent"):
        raise Refusal(400, "INVALID_REQUEST", "请求必须带User-Agent (a User-Agent is required)",
                      {"field": "User-Agent", "location": "header"})
    wanted = request.headers.get("Wechatpay-Serial")
    if wanted and not state.identity.knows_serial(wanted):
        if wanted.startswith("PUB_KEY_ID_"):
            # What merchants report of production: a public-key id it does not know gets a bare 500.
            raise Refusal(500, "SYSTEM_ERROR", "系统繁忙，请稍后重试")
        raise Refusal(400, "INVALID_REQUEST", "Wechatpay-Serial 不正确", {"field": "Wechatpay-Serial"})
    g.response_serial = state.response_serial(wanted or None)
    return None


def _after_api_call(response: Response) -> Response:
    if not _is_api_call():
        return response
    state = sandbox()
    fault = g.get("fault")
    if fault is not None and fault.hang:
        # The call has had its effect; only the answer is late (what a client timeout really faces).
        state.stopping.wait(fault.hang)
    if fault is not None and fault.fail_after is not None and 200 <= response.status_code < 300:
        response = json_response(fault.fail_after.body(), fault.fail_after.status)
    request_id = secrets.token_hex(16).upper()
    response.headers["Request-ID"] = request_id
    # WeChat's servers date their answers by their own clock; a merchant compares it with its own.
    response.headers["Date"] = email.utils.formatdate(state.now(), usegmt=True)
    # A bill file is the one answer WeChat does not sign: its SHA1 hash_value is the proof.
    if (fault is None or not fault.unsigned) and not g.get("unsigned_response"):
        body = response.get_data()
        serial = g.get("response_serial") or state.response_serial(None)
        probe = fault is not None and fault.probe and 200 <= response.status_code < 300
        response.headers.update(state.identity.signed_headers(body, int(state.now()), serial, probe=probe))
    code = None
    if response.status_code >= 400 and response.is_json:
        code = (response.get_json(silent=True) or {}).get("code")
    state.record_request({
        "method": request.method,
        "path": request.full_path.rstrip("?"),
        "status": response.status_code,
        "code": code,
        "request_id": request_id,
        "time": state.now(),
    })
    return response


def _require_mchid_query() -> None:
    mchid = request.args.get("mchid")
    if not mchid:
        raise param_error("mchid", "此字段为必填项 (required)", location="query")
    if mchid != g.mchid:
        raise param_error("mchid", "与请求头Authorization中的商户号不一致", mchid, location="query")


@bp.post("/v3/pay/transactions/native")
def native_order() -> Response:
    state = sandbox()
    data = rules.parse_json_object(request.get_data())
    order = state.create_native_order(rules.native_order(data, g.mchid, state.config.appid))
    return json_response({"code_url": order.code_url})


@bp.get("/v3/pay/transactions/out-trade-no/<out_trade_no>")
def query_by_out_trade_no(out_trade_no: str) -> Response:
    _require_mchid_query()
    state = sandbox()
    return json_response(state.transaction(state.order(out_trade_no)))


@bp.get("/v3/pay/transactions/id/<transaction_id>")
def query_by_transaction_id(transaction_id: str) -> Response:
    _require_mchid_query()
    state = sandbox()
    return json_response(state.transaction(state.order_by_transaction_id(transaction_id)))


@bp.post("/v3/pay/transactions/out-trade-no/<out_trade_no>/close")
def close_order(out_trade_no: str) -> Response:
    data = rules.parse_json_object(request.get_data())
    mchid = data.get("mchid")
    if not isinstance(mchid, str) or not mchid:
        raise param_error("mchid", "此字段为必填项 (required)")
    if mchid != g.mchid:
        raise param_error("mchid", "与请求头Authorization中的商户号不一致", mchid)
    sandbox().close_order(out_trade_no)
    return current_app.response_class(b"", status=204)


@bp.post("/v3/refund/domestic/refunds")
def create_refund() -> Response:
    data = rules.parse_json_object(request.get_data())
    return json_response(sandbox().create_refund(rules.refund(data)))


@bp.get("/v3/refund/domestic/refunds/<out_refund_no>")
def query_refund(out_refund_no: str) -> Response:
    state = sandbox()
    return json_response(state.refund_view(state.refund(out_refund_no)))


@bp.post("/v3/refund/domestic/refunds/<refund_id>/apply-abnormal-refund")
def apply_abnormal_refund(refund_id: str) -> Response:
    data = rules.parse_json_object(request.get_data())
    if data.get("type") == "USER_BANK_CARD":
        # The card number and the name travel encrypted with WeChat Pay's public key (RSA-OAEP).
        for name in ("bank_type", "bank_account", "real_name"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise param_error(name, "退款至用户银行卡时必填 (required for USER_BANK_CARD)")
        if not request.headers.get("Wechatpay-Serial"):
            raise param_error("Wechatpay-Serial", "加密字段须带Wechatpay-Serial", location="header")
    return json_response(sandbox().apply_abnormal_refund(refund_id, data.get("out_refund_no"), data.get("type")))


@bp.get("/v3/certificates")
def certificates() -> Response:
    """Every platform certificate, a rotated-in one included (WeChat lists a new one before it signs)."""
    state = sandbox()
    if not state.config.certificates:
        # What WeChat answers every merchant registered since late 2024 (public key only).
        raise Refusal(404, "RESOURCE_NOT_EXISTS", "证书不存在")
    with state.lock:
        held = list(state.identity.certificates)
    entries = []
    for held_certificate in held:
        nonce = make_nonce(12)
        cert = held_certificate.certificate
        entries.append({
            "serial_no": held_certificate.serial,
            "effective_time": rfc3339(cert.not_valid_before_utc.timestamp()),
            "expire_time": rfc3339(cert.not_valid_after_utc.timestamp()),
            "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM",
                "nonce": nonce,
                "associated_data": "certificate",
                "ciphertext": aead_encrypt(state.config.apiv3_key, nonce, "certificate", held_certificate.pem),
            },
        })
    return json_response({"data": entries})


@bp.get("/v3/bill/tradebill")
def trade_bill() -> Response:
    state = sandbox()
    raw_date = request.args.get("bill_date", "")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw_date):
        raise param_error("bill_date", "格式为YYYY-MM-DD (YYYY-MM-DD)", raw_date or None, location="query")
    try:
        day = datetime.date.fromisoformat(raw_date)
    except ValueError:
        raise param_error("bill_date", "格式为YYYY-MM-DD (YYYY-MM-DD)", raw_date, location="query") from None
    if request.args.get("bill_type", "ALL") != "ALL":
        raise param_error("bill_type", "模拟器只提供ALL账单 (the sandbox serves ALL bills only)", location="query")
    tar_type = request.args.get("tar_type")
    if tar_type not in (None, "GZIP"):
        raise param_error("tar_type", "取值只能是GZIP", tar_type, location="query")
    bills.refuse_unless_published(state, day)
    text, corrupt = bills.build_trade_bill(state, day)
    if text.count("\n") <= 3 and not any(p.get("date") == raw_date for p in state.bill_plants):
        # Header, summary header and summary only: WeChat has no bill for a day without trades.
        raise Refusal(400, "NO_STATEMENT_EXIST", "请求的账单文件不存在")
    data = text.encode("utf-8")
    digest = hashlib.sha1(data).hexdigest()
    if corrupt:
        digest = ("0" if digest[0] != "0" else "1") + digest[1:]
    payload = gzip.compress(data) if tar_type == "GZIP" else data
    token = secrets.token_urlsafe(24)
    with state.lock:
        # A download_url lives five minutes.
        state.bill_files[token] = (payload, state.now() + 300)
    url = url_for("api.bill_download", token=token, _external=True)
    return json_response({"hash_type": "SHA1", "hash_value": digest, "download_url": url})


@bp.get("/v3/billdownload/file")
def bill_download() -> Response:
    state = sandbox()
    with state.lock:
        found = state.bill_files.get(request.args.get("token", ""))
    if found is None or found[1] < state.now():
        raise Refusal(400, "INVALID_REQUEST", "账单下载地址已过期，请重新申请")
    g.unsigned_response = True
    return current_app.response_class(found[0], status=200, mimetype="application/octet-stream")


@bp.route("/v3/<path:rest>", methods=ALL_METHODS)
def unknown_endpoint(rest: str) -> Response:
    raise Refusal(404, "NOT_FOUND", "请求的资源不存在", {"path": "/v3/" + rest})
