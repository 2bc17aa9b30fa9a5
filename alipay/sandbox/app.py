"""The Alipay simulator's Flask app: the OpenAPI gateway, the learner's phone, and a control API for tests."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, render_template, request

from web.routing import App

from .config import AlipaySandboxConfig
from .signing import answer_text
from .bills import bill_archive
from .state import AlipaySandboxState, Refusal, Trade, beijing, business, yuan

BEIJING = timezone(timedelta(hours=8))
COMMON_REQUIRED = ("app_id", "method", "charset", "sign_type", "sign", "timestamp", "version")
METHODS = (
    "alipay.trade.precreate", "alipay.trade.query", "alipay.trade.close", "alipay.trade.cancel",
    "alipay.trade.refund", "alipay.trade.fastpay.refund.query", "alipay.data.dataservice.bill.downloadurl.query",
)

gateway = Blueprint("alipay_gateway", __name__)
phone = Blueprint("alipay_phone", __name__)
control = Blueprint("alipay_control", __name__)


def create_alipay_sandbox(config: AlipaySandboxConfig) -> Flask:
    """Build a simulator app; it works standalone at "/" and mounted under a prefix."""
    app = App(__name__, template_folder=str(Path(__file__).with_name("templates")))  # as WeChat's simulator
    app.extensions["alipay_sandbox"] = AlipaySandboxState(config)
    app.register_blueprint(gateway)
    app.register_blueprint(phone)
    app.register_blueprint(control, url_prefix="/control")
    return app


def sandbox() -> AlipaySandboxState:
    state: AlipaySandboxState = current_app.extensions["alipay_sandbox"]
    return state


# -- the gateway -----------------------------------------------------------------------------------

@gateway.route("/gateway.do", methods=["GET", "POST"])
def gateway_do() -> Response:
    state = sandbox()
    params: dict[str, str] = {}
    for source in (request.args, request.form):
        for key in source:
            values = source.getlist(key)
            if len(values) != 1 or (key in params and params[key] != values[0]):
                return _answer(state, "error_response", _refusal_node(Refusal(
                    "40002", "Invalid Arguments", "isv.invalid-parameter", f"{key} 重复")))
            params[key] = values[0]
    method = params.get("method", "")
    node_name = method.replace(".", "_") + "_response" if method in METHODS else "error_response"
    with state.lock:
        state.requests.append({"method": method, "params": params})
    try:
        _check_common(state, params, method)
        fault = state.take_gateway_fault(method)
        if fault == "http_error":
            return Response("<html><body>502 Bad Gateway</body></html>", status=502, mimetype="text/html")
        if fault == "unavailable":
            raise Refusal("20000", "Service Currently Unavailable", "isp.unknow-error", "系统繁忙")
        if fault == "system_error":
            raise business("ACQ.SYSTEM_ERROR", "系统错误")
        if fault == "unsigned":
            raise _Unsigned()
        if fault == "tampered":
            raise _Tampered()
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError as exc:
            raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", "biz_content 格式错误") from exc
        if not isinstance(biz, dict):
            raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", "biz_content 格式错误")
        node = _dispatch(state, method, biz, params)
        if fault == "lost_answer":  # Alipay did it; its answer never reached the merchant
            return Response("<html><body>504 Gateway Time-out</body></html>", status=504, mimetype="text/html")
    except Refusal as refusal:
        return _answer(state, node_name, _refusal_node(refusal))
    except _Unsigned:
        text = json.dumps({"code": "10000", "msg": "Success"}, separators=(",", ":"))
        return Response(f'{{"{node_name}":{text}}}', mimetype="application/json")
    except _Tampered:
        return _answer(state, node_name, {"code": "10000", "msg": "Success"}, tamper=True)
    return _answer(state, node_name, {"code": "10000", "msg": "Success", **node})


class _Unsigned(Exception):
    """Answer 10000 without a signature (what a man in the middle could send)."""


class _Tampered(Exception):
    """Answer 10000 whose node was changed after signing."""


def _check_common(state: AlipaySandboxState, params: dict[str, str], method: str) -> None:
    config = state.config
    for name in COMMON_REQUIRED:
        if not params.get(name):
            raise Refusal("40001", "Missing Required Arguments", f"isv.missing-{name.replace('_', '-')}",
                          f"缺少{name}参数")
    if method not in METHODS:
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-method", "不存在的方法名")
    if params["app_id"] != config.app_id:
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数")
    if params["sign_type"] != "RSA2":
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-signature-type", "无效的签名类型")
    if params["charset"].lower() != "utf-8":
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-charset", "字符集错误")
    try:
        sent = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError as exc:
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-timestamp", "非法的时间戳参数") from exc
    if abs(sent.timestamp() - state.now()) > config.timestamp_window:
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-timestamp", "时间戳与网关时间相差过大")
    if config.cert_mode:
        if params.get("app_cert_sn") != config.app_cert_sn:
            raise Refusal("40002", "Invalid Arguments", "isv.invalid-app-cert-sn", "应用公钥证书序列号不匹配")
        if params.get("alipay_root_cert_sn") != config.alipay_root_cert_sn:
            raise Refusal("40002", "Invalid Arguments", "isv.invalid-alipay-root-cert-sn", "支付宝根证书序列号不匹配")
    if not state.identity.app_signed(params):
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-signature", "验签出错")


def _dispatch(state: AlipaySandboxState, method: str, biz: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    if method == "alipay.trade.precreate":
        origin = request.host_url.rstrip("/") + request.script_root
        trade = state.precreate(biz, params.get("notify_url", ""), origin)
        return {"out_trade_no": trade.out_trade_no, "qr_code": trade.qr_code}
    if method == "alipay.trade.query":
        trade = state.existing(biz)
        answer = {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                  "buyer_logon_id": trade.buyer_logon_id, "trade_status": trade.status,
                  "total_amount": yuan(trade.total_fen), "buyer_user_id": trade.buyer_id}
        if trade.paid_at is not None:
            answer.update(send_pay_date=beijing(trade.paid_at), receipt_amount=yuan(trade.total_fen),
                          buyer_pay_amount=yuan(trade.total_fen))
        return answer
    if method == "alipay.trade.close":
        trade = state.existing(biz)
        state.close(trade)
        return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}
    if method == "alipay.trade.cancel":
        found, action = state.cancel(str(biz.get("out_trade_no") or ""))
        answer = {"out_trade_no": biz.get("out_trade_no"), "retry_flag": "N", "action": action}
        if found is not None and found.trade_no:
            answer["trade_no"] = found.trade_no
        return answer
    if method == "alipay.trade.refund":
        trade = state.existing(biz)
        fen = _refund_amount(biz)
        out_request_no = str(biz.get("out_request_no") or "")
        if not out_request_no:
            # Without out_request_no Alipay takes the refund as a full one of the trade.
            if fen != trade.total_fen:
                raise business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "部分退款需要传入out_request_no")
            out_request_no = trade.out_trade_no
        trade, changed = state.refund(trade, out_request_no, fen, str(biz.get("refund_reason") or ""))
        return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                "buyer_logon_id": trade.buyer_logon_id, "fund_change": "Y" if changed else "N",
                "refund_fee": yuan(trade.refunded_fen),
                "gmt_refund_pay": beijing(trade.refunds[out_request_no].at)}
    if method == "alipay.trade.fastpay.refund.query":
        trade = state.existing(biz)
        out_request_no = str(biz.get("out_request_no") or "")
        if not out_request_no:
            raise Refusal("40002", "Invalid Arguments", "isv.missing-parameter", "out_request_no 不能为空")
        refund = trade.refunds.get(out_request_no)
        if refund is None:
            return {}  # 10000 with no refund fields: no such refund (yet)
        return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                "out_request_no": out_request_no, "total_amount": yuan(trade.total_fen),
                "refund_amount": yuan(refund.fen), "refund_status": "REFUND_SUCCESS",
                "gmt_refund_pay": beijing(refund.at)}
    if method == "alipay.data.dataservice.bill.downloadurl.query":
        return _bill_address(state, biz)
    raise business("ACQ.INVALID_PARAMETER", "不支持的方法")


def _bill_address(state: AlipaySandboxState, biz: dict[str, Any]) -> dict[str, Any]:
    """A day's bill is ready the next Beijing day (or at once, when the control API says so)."""
    if biz.get("bill_type") != "trade":
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", "bill_type 仅支持 trade")
    try:
        day = datetime.strptime(str(biz.get("bill_date") or ""), "%Y-%m-%d").date()
    except ValueError as exc:
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", "bill_date 格式错误") from exc
    today = datetime.fromtimestamp(state.now(), BEIJING).date()
    if day > today or (day == today and not state.bills_same_day):
        raise business("isp.bill_not_exist", "账单不存在")
    token = secrets.token_urlsafe(16)
    with state.lock:
        state.bill_links[token] = (day, state.now())
    origin = request.host_url.rstrip("/") + request.script_root
    return {"bill_download_url": f"{origin}/bills/{token}.zip"}


@gateway.get("/bills/<token>.zip")
def bill_file(token: str) -> Response:
    """The bill's bytes; the address works for 30 seconds, as Alipay's does."""
    state = sandbox()
    with state.lock:
        found = state.bill_links.get(token)
    if found is None or state.now() - found[1] > 30:
        abort(404)
    return Response(bill_archive(state, found[0]), content_type="application/oct-stream")


def _refund_amount(biz: dict[str, Any]) -> int:
    text = biz.get("refund_amount")
    if not isinstance(text, str):
        raise Refusal("40002", "Invalid Arguments", "isv.missing-parameter", "refund_amount 不能为空")
    whole, _, cents = text.partition(".")
    if not whole.isdigit() or (cents and (not cents.isdigit() or len(cents) > 2)):
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", "refund_amount 格式错误")
    fen = int(whole) * 100 + int(cents.ljust(2, "0") or "0")
    if fen <= 0:
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", "refund_amount 必须大于0")
    return fen


def _refusal_node(refusal: Refusal) -> dict[str, str]:
    node = {"code": refusal.code, "msg": refusal.msg}
    if refusal.sub_code:
        node.update(sub_code=refusal.sub_code, sub_msg=refusal.sub_msg)
    return node


def _answer(state: AlipaySandboxState, node_name: str, node: dict[str, Any], *, tamper: bool = False) -> Response:
    text = answer_text(state.identity, node_name, node, cert_sn=state.config.alipay_cert_sn,
                       spaced=state.spaced_answers)
    if tamper:
        text = text.replace('"Success"', '"Success "', 1)
    return Response(text, content_type="text/html;charset=utf-8")


# -- the learner's phone ---------------------------------------------------------------------------

@phone.get("/")
def index() -> str:
    state = sandbox()
    with state.lock:
        trades = sorted(state.trades.values(), key=lambda t: t.created_at, reverse=True)[:100]
    return render_template("alipay_index.html", trades=trades, yuan=yuan, config=state.config)


@phone.route("/qr/<token>", methods=["GET", "POST"])
def pay_page(token: str) -> tuple[str, int]:
    state = sandbox()
    with state.lock:
        trade = state.by_token.get(token)
    if trade is None:
        abort(404)
    state.scan(trade)  # opening the QR is the scan: Alipay now has the trade
    result = ""
    status = 200
    if request.method == "POST":
        choice = request.form.get("result", "")
        if choice not in ("pay", "cancel"):
            abort(400)
        if choice == "pay":
            result = "paid" if state.pay(trade) else "refused"
            status = 200 if result == "paid" else 409
        else:
            result = "cancelled"
    return render_template("alipay_pay.html", trade=trade, amount=yuan(trade.total_fen), result=result,
                           config=state.config), status


# -- the control API (tests and the demo drive faults through it) ---------------------------------

@control.post("/faults")
def arm_faults() -> Response:
    """Arm faults: ``lose_notifications``, ``repeat_notifications``, ``refuse_answers``, ``gateway``, ``spaced``.

    ``gateway`` maps a method (or ``*``) to faults taken one per call: ``unavailable``, ``system_error``,
    ``http_error``, ``unsigned``, ``tampered``, or ``lost_answer`` (done, but the answer is a 504).
    """
    state = sandbox()
    body = request.get_json(silent=True) or {}
    with state.lock:
        state.lose_notifications = int(body.get("lose_notifications", state.lose_notifications))
        state.repeat_notifications = max(1, int(body.get("repeat_notifications", state.repeat_notifications)))
        state.refuse_answers = int(body.get("refuse_answers", state.refuse_answers))
        state.spaced_answers = bool(body.get("spaced", state.spaced_answers))
        state.bills_same_day = bool(body.get("bills_same_day", state.bills_same_day))
        for method, faults in (body.get("gateway") or {}).items():
            state.gateway_faults[method] = [str(f) for f in faults]
    return jsonify(ok=True)


@control.post("/reset")
def reset_faults() -> Response:
    state = sandbox()
    with state.lock:
        state.lose_notifications, state.repeat_notifications, state.refuse_answers = 0, 1, 0
        state.gateway_faults.clear()
        state.spaced_answers = False
        state.bills_same_day = False
    return jsonify(ok=True)


def _trade_or_404(out_trade_no: str) -> Trade:
    state = sandbox()
    with state.lock:
        trade = state.trades.get(out_trade_no)
    if trade is None:
        abort(404)
    return trade


@control.post("/trades/<out_trade_no>/scan")
def scan(out_trade_no: str) -> Response:
    trade = _trade_or_404(out_trade_no)
    sandbox().scan(trade)
    return jsonify(_view(trade))


@control.post("/trades/<out_trade_no>/pay")
def pay(out_trade_no: str) -> tuple[Response, int]:
    trade = _trade_or_404(out_trade_no)
    paid = sandbox().pay(trade)
    return jsonify(_view(trade)), 200 if paid else 409


@control.post("/trades/<out_trade_no>/refund")
def merchant_centre_refund(out_trade_no: str) -> tuple[Response, int]:
    """A refund the merchant makes by hand in Alipay's merchant centre (商家中心), not through our API.

    ``refund_amount`` in yuan; ``out_request_no`` as the merchant centre chose it (one we never issued).
    """
    state = sandbox()
    body = request.get_json(silent=True) or {}
    trade = _trade_or_404(out_trade_no)
    out_request_no = str(body.get("out_request_no") or "HZ" + "".join(secrets.choice("0123456789") for _ in range(20)))
    try:
        trade, _ = state.refund(trade, out_request_no, _refund_amount(body), str(body.get("refund_reason") or "商家中心退款"))
    except Refusal as refusal:
        return jsonify(code=refusal.sub_code, msg=refusal.sub_msg), 409
    return jsonify({**_view(trade), "out_request_no": out_request_no}), 200


@control.post("/trades/<out_trade_no>/resend")
def resend(out_trade_no: str) -> Response:
    delivery = sandbox().resend(out_trade_no)
    return jsonify(notify_id=delivery.notify_id, attempts=delivery.attempts, delivered=delivery.delivered)


@control.get("/trades/<out_trade_no>")
def trade_view(out_trade_no: str) -> Response:
    return jsonify(_view(_trade_or_404(out_trade_no)))


@control.get("/deliveries")
def deliveries() -> Response:
    state = sandbox()
    with state.lock:
        return jsonify([{"notify_id": d.notify_id, "out_trade_no": d.out_trade_no, "url": d.url,
                         "delivered": d.delivered, "lost": d.lost, "attempts": list(d.attempts),
                         "trade_status": d.params.get("trade_status")} for d in state.deliveries])


@control.get("/requests")
def requests_made() -> Response:
    state = sandbox()
    with state.lock:
        return jsonify([{"method": r["method"]} for r in state.requests])


def _view(trade: Trade) -> dict[str, Any]:
    return {"out_trade_no": trade.out_trade_no, "trade_no": trade.trade_no, "status": trade.status,
            "total_amount": yuan(trade.total_fen), "refunded": yuan(trade.refunded_fen),
            "qr_code": trade.qr_code, "refunds": sorted(trade.refunds)}
