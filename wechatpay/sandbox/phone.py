"""The learner's phone: the page a scanned code_url opens, with Pay / Cancel / Insufficient buttons."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request

from .state import Order, Outcome, SandboxState

bp = Blueprint("phone", __name__)

RESULTS = ("success", "cancel", "insufficient")


def sandbox() -> SandboxState:
    state: SandboxState = current_app.extensions["wechatpay_sandbox"]
    return state


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


@bp.get("/")
def index() -> str:
    state = sandbox()
    with state.lock:
        orders = sorted(state.orders.values(), key=lambda o: o.created_at, reverse=True)[:100]
    return render_template("sandbox_index.html", orders=orders, yuan=yuan, config=state.config)


@bp.route("/pay/<pr>", methods=["GET", "POST"])
def pay_page(pr: str) -> tuple[str, int]:
    state = sandbox()
    order = state.order_by_pr(pr)
    if order is None:
        abort(404)
    outcome: Outcome | None = None
    status = 200
    if request.method == "POST":
        result = request.form.get("result", "")
        if result not in RESULTS:
            abort(400)
        outcome = state.attempt_payment(order, result, pr)
        if outcome.kind == "refused":
            status = 409
    return _render(state, order, outcome, pr), status


def _render(state: SandboxState, order: Order, outcome: Outcome | None, pr: str) -> str:
    return render_template(
        "sandbox_pay.html",
        order=order,
        outcome=outcome,
        payable=state.payable(order, pr),
        amount=yuan(order.total),
        config=state.config,
        pr=pr,
    )
