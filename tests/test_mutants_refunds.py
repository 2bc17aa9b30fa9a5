"""Rules of billing/refunds.py that no test broke when they were broken (issue 24: mutation survivors).

Each test names the rule it holds; ``python tests/mutation.py billing/refunds.py ...`` flips or
shifts that rule and this file must then fail (docs/mutation/refunds.md lists which test kills which
mutant). Every refund here is made through the console and settled by the sandbox or the job, over HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import FakeClock
from test_admin import Console, console  # noqa: F401  (the console fixture)
from test_wechat_billing import paid, shop_of, wait_until

import models
from billing.errors import CATALOGUE
from operations.scheduler import holder_id, run_job


def refunds_of(order: dict[str, Any]) -> list[models.Refund]:
    with models.db.connection_context():
        row = models.Order.get(models.Order.public_id == order["order_id"])
        return list(models.Refund.select().where(models.Refund.order == row.id).order_by(models.Refund.id))


def refund_in(console: Console, order: dict[str, Any], amount: str, **extra: str) -> models.Refund:
    answer = console.post(f"/admin/orders/{order['order_id']}/refund",
                          {"amount": amount, "reason": "学员申请退款", **extra})
    assert answer.status_code == 303, answer.text
    return refunds_of(order)[-1]


def settled(console: Console, order: dict[str, Any], amount: str) -> models.Refund:
    """A refund the sandbox has settled as SUCCESS (its notification delivered)."""
    made = refund_in(console, order, amount)
    console.shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "SUCCESS"})
    assert wait_until(lambda: refund_status(made) == "SUCCESS")
    return made


def problem_detail(page: str) -> str:
    """The detail line of the console's problem page."""
    return page.split('<p class="detail">', 1)[-1].split("</p>", 1)[0]


def refund_status(refund: models.Refund) -> str:
    with models.db.connection_context():
        return str(models.Refund.get_by_id(refund.id).status)


def reconcile(console: Console) -> Any:
    with models.db.connection_context():
        return run_job(shop_of(console.shop), "refunds.reconcile", holder_id())


def stuck_rows(console: Console) -> list[str]:
    """The dashboard's "needs attention" rows about refunds stuck in PROCESSING."""
    page = console.page("/admin/")
    return [row for row in page.split('<tr class="attention">')[1:] if "REFUND_STUCK" in row.split("</tr>")[0]]


# --- how often the job asks: PROCESSING after 1 minute, ABNORMAL after 10, both strictly after ----------

def test_the_job_asks_about_an_abnormal_refund_only_once_it_has_waited_ten_whole_minutes(
        console: Console, clock: FakeClock) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None  # nothing settles unless this test says so
    clock.freeze()
    made, done = refund_in(console, paid(shop), "99.00"), settled(console, paid(shop), "1.00")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "ABNORMAL"})
    assert wait_until(lambda: refund_status(made) == "ABNORMAL")

    clock.advance(10 * 60)  # exactly 10 minutes since WeChat said ABNORMAL: not yet
    assert reconcile(console)["checked"] == 0
    clock.advance(1)
    assert reconcile(console)["checked"] == 1, "the abnormal one; the succeeded one is final, never asked again"
    assert refund_status(done) == "SUCCESS"


def test_the_job_asks_about_a_processing_refund_only_once_it_has_waited_a_whole_minute(
        console: Console, clock: FakeClock) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    clock.freeze()
    made = refund_in(console, paid(shop), "10.00")
    assert refund_status(made) == "PROCESSING"

    clock.advance(60)
    assert reconcile(console)["checked"] == 0
    clock.advance(1)
    assert reconcile(console)["checked"] == 1


# --- the dashboard: a refund still processing after 30 minutes needs the creator ---------------------

def test_a_refund_processing_for_more_than_thirty_minutes_is_shown_as_stuck(console: Console, clock: FakeClock) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    clock.freeze()
    made, done = refund_in(console, paid(shop), "10.00"), settled(console, paid(shop), "1.00")

    clock.advance(30 * 60)  # exactly 30 minutes: still an ordinary wait
    assert stuck_rows(console) == []
    clock.advance(1)
    [row] = stuck_rows(console)
    assert made.out_refund_no in row
    assert done.out_refund_no not in console.page("/admin/"), "a refund that succeeded needs nobody"


# --- request_refund: what may be refunded, and how much ---------------------------------------------

def test_a_refund_of_no_money_is_refused_before_wechat_is_asked(console: Console) -> None:
    from billing.errors import BillingError
    from billing.refunds import request_refund

    shop = console.shop
    order = paid(shop)
    asked = len(shop.sandbox.requests_log())
    with models.db.connection_context():
        row = models.Order.get(models.Order.public_id == order["order_id"])
        for amount in (0, -100):  # the console's parse_yuan never sends these; the rule holds for every caller
            with pytest.raises(BillingError) as refused:
                request_refund(shop_of(shop), row, amount_fen=amount, reason="学员申请退款", revoke_license=False,
                               actor="test")
            assert refused.value.code == "bad_request"
    assert refunds_of(order) == [] and len(shop.sandbox.requests_log()) == asked


def test_a_refund_over_what_is_left_says_how_much_is_left_in_yuan(console: Console) -> None:
    order = paid(console.shop)
    settled(console, order, "50.00")
    answer = console.post(f"/admin/orders/{order['order_id']}/refund", {"amount": "49.01", "reason": "学员申请退款"})
    assert answer.status_code == 409, answer.text
    assert CATALOGUE["refund_too_large"].message_en in answer.text
    detail = problem_detail(answer.text)
    assert "最多还能退 ¥49.00" in detail and "at most ¥49.00 is left to refund" in detail, detail


def test_a_refunded_order_is_refused_as_not_refundable_not_as_too_large(console: Console) -> None:
    order = paid(console.shop)
    settled(console, order, "99.00")
    answer = console.post(f"/admin/orders/{order['order_id']}/refund", {"amount": "0.01", "reason": "学员申请退款"})
    assert answer.status_code == 409, answer.text
    assert CATALOGUE["refund_not_allowed"].message_en in answer.text, problem_detail(answer.text)


def test_a_late_payment_on_a_cancelled_order_can_be_refunded(console: Console) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    order = shop.order()
    assert shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"]).status_code == 200
    shop.sandbox.pay(order["out_trade_no"])  # still open at WeChat (closed there only after 5 minutes)
    # The cancelled order answers payment_cancelled until the late payment's notification is in.
    assert wait_until(lambda: (shop.poll(order)["error"] or {}).get("code") == "late_payment")
    made = refund_in(console, order, "99.00")
    assert (made.amount_fen, made.status) == (9900, "PROCESSING")


# --- submit_refund: which refusals are waited out and which end the refund ------------------------

REFUNDS_PATH = "/v3/refund/domestic/refunds"


def refused_by_wechat(console: Console, status: int, code: str, message: str = "refused") -> models.Refund:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    order = paid(shop)
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 10, "status": status, "code": code,
                                                    "message": message, "paths": REFUNDS_PATH}})
    made = refund_in(console, order, "10.00")
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 0}})
    with models.db.connection_context():
        return models.Refund.get_by_id(made.id)


def test_a_refund_refused_for_the_merchants_balance_waits_and_says_why(console: Console) -> None:
    # NOT_ENOUGH (403) is not retryable as an HTTP answer, but the balance fills up: the job sends it again.
    row = refused_by_wechat(console, 403, "NOT_ENOUGH", "基本账户余额不足")
    assert (row.status, row.detail) == ("PROCESSING", "will retry: NOT_ENOUGH")


def test_a_refund_refused_as_a_bad_request_fails_with_wechats_words_cut_to_the_column(console: Console) -> None:
    console.shop.sandbox.config.refund_delay = None
    waiting = refund_in(console, paid(console.shop), "1.00")  # another order's refund, still processing
    row = refused_by_wechat(console, 400, "PARAM_ERROR", "参" * 300)
    assert row.status == "FAILED" and row.settled_at is not None
    assert refund_status(waiting) == "PROCESSING", "only the refused refund fails"
    assert row.detail == ("PARAM_ERROR: " + "参" * 300)[:200]  # the detail column holds 200 characters


# --- the reason's rule, said in words the creator can act on --------------------------------------

def test_a_refund_reason_too_long_or_with_emoji_is_refused_with_the_rule_it_broke(console: Console) -> None:
    order = paid(console.shop)
    path = f"/admin/orders/{order['order_id']}/refund"
    long = console.post(path, {"amount": "1.00", "reason": "退" * 27})  # 81 bytes in UTF-8
    assert long.status_code == 400 and "the reason is 81 bytes in UTF-8" in problem_detail(long.text)
    emoji = console.post(path, {"amount": "1.00", "reason": "退款🙂"})
    assert emoji.status_code == 400 and "a character WeChat Pay does not accept" in problem_detail(emoji.text)
    assert refunds_of(order) == []


def test_a_refund_wechat_is_busy_with_keeps_a_long_code_cut_to_the_column(console: Console) -> None:
    row = refused_by_wechat(console, 500, "SYSTEM_" + "E" * 250)
    assert row.status == "PROCESSING" and row.detail == ("will retry: SYSTEM_" + "E" * 250)[:200]


def test_a_refused_resend_never_fails_a_refund_that_already_succeeded(console: Console) -> None:
    from billing.refunds import submit_refund

    shop = console.shop
    done = settled(console, paid(shop), "1.00")
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 10, "status": 400, "code": "PARAM_ERROR",
                                                    "paths": REFUNDS_PATH}})
    with models.db.connection_context():
        after = submit_refund(shop_of(shop), models.Refund.get_by_id(done.id))
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 0}})
    assert after.status == "SUCCESS" and after.detail is None


# --- a refund notification is kept with what came of it ------------------------------------------

def test_a_refund_notification_is_kept_with_a_reason_only_when_the_refund_is_unknown(
        console: Console, make_notification: Any) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    ours = refund_in(console, paid(shop), "1.00")
    strangers = "R" * 64  # an out_refund_no of another shop's order, as long as WeChat allows
    for out_trade_no, out_refund_no in (("LBNOTOURS00000000001", strangers), (None, ours.out_refund_no)):
        resource = {"mchid": "1230000109", "out_refund_no": out_refund_no, "refund_status": "SUCCESS",
                    "refund_id": "50300000000000000000000000002", "success_time": "2026-11-26T10:00:00+08:00",
                    "out_trade_no": out_trade_no or ours.order.out_trade_no,
                    "amount": {"total": 9900, "refund": 100, "payer_total": 9900, "payer_refund": 100}}
        note = make_notification(transaction=resource, event_type="REFUND.SUCCESS", associated_data="refund")
        answer = shop.session.post(shop.url + "/wechatpay/notify/refund", data=note.body, headers=note.headers,
                                   timeout=15)
        assert answer.status_code == 204
    with models.db.connection_context():
        kept = {n.result: n.reason for n in models.Notification.select().where(models.Notification.kind == "refund")}
    assert kept["unknown_order"] == "unknown refund " + "R" * 60
    assert not kept["success"], "a refund we know needs no reason"


def test_a_refund_notification_without_its_refund_number_is_answered_not_crashed_on(
        console: Console, make_notification: Any) -> None:
    shop = console.shop
    order = paid(shop)
    resource = {"mchid": "1230000109", "out_trade_no": order["out_trade_no"], "refund_status": "SUCCESS",
                "refund_id": "50300000000000000000000000003", "success_time": "2026-11-26T10:00:00+08:00",
                "amount": {"total": 9900, "refund": 100, "payer_total": 9900, "payer_refund": 100}}
    note = make_notification(transaction=resource, event_type="REFUND.SUCCESS", associated_data="refund")
    answer = shop.session.post(shop.url + "/wechatpay/notify/refund", data=note.body, headers=note.headers, timeout=15)
    assert answer.status_code == 204, answer.text
    assert refunds_of(order) == [] and shop.poll(order)["status"] == "fulfilled"


def test_only_a_matching_answer_gives_a_refund_wechat_never_took_its_refund_id(
        console: Console, make_notification: Any) -> None:
    shop = console.shop
    row = refused_by_wechat(console, 403, "NOT_ENOUGH")  # PROCESSING here, never taken by WeChat: no refund_id
    assert row.refund_id is None

    def tell(refund_fen: int, **more: Any) -> None:
        resource = {"mchid": "1230000109", "out_trade_no": row.order.out_trade_no, "out_refund_no": row.out_refund_no,
                    "refund_status": "SUCCESS", "success_time": "2026-11-26T10:00:00+08:00",
                    "amount": {"total": 9900, "refund": refund_fen, "payer_total": 9900, "payer_refund": refund_fen},
                    **more}
        note = make_notification(transaction=resource, event_type="REFUND.SUCCESS", associated_data="refund")
        answer = shop.session.post(shop.url + "/wechatpay/notify/refund", data=note.body, headers=note.headers,
                                   timeout=15)
        assert answer.status_code == 204, answer.text

    tell(999, refund_id="50300000000000000000000000004")  # another amount: a mismatch, nothing taken from it
    assert refund_status(row) == "PROCESSING"
    with models.db.connection_context():
        assert models.Refund.get_by_id(row.id).refund_id is None
    tell(1000)  # the right refund, its refund_id left out: settled all the same
    with models.db.connection_context():
        settled_row = models.Refund.get_by_id(row.id)
    assert (settled_row.status, settled_row.refund_id) == ("SUCCESS", None)


def test_a_refund_of_a_payment_never_heard_of_is_adopted_only_when_it_fits_the_order(
        shop: Any, make_notification: Any) -> None:
    def tell(order: dict[str, Any], transaction_id: str, total: int) -> None:
        resource = {"mchid": "1230000109", "out_trade_no": order["out_trade_no"], "transaction_id": transaction_id,
                    "out_refund_no": "MP" + transaction_id[-20:], "refund_id": "50300000000000000000000000005",
                    "refund_status": "SUCCESS", "success_time": "2026-11-26T10:00:00+08:00",
                    "amount": {"total": total, "refund": 100, "payer_total": total, "payer_refund": 100}}
        note = make_notification(transaction=resource, event_type="REFUND.SUCCESS", associated_data="refund")
        answer = shop.session.post(shop.url + "/wechatpay/notify/refund", data=note.body, headers=note.headers,
                                   timeout=15)
        assert answer.status_code == 204, answer.text

    wrong, right = shop.order(), shop.order()  # their payment notifications never came
    tell(wrong, "4" * 28, 100)  # another total than the order's: not adopted, the order is flagged
    tell(right, "4" * 32, 9900)  # a transaction_id of the longest length WeChat gives: adopted
    with models.db.connection_context():
        flagged = models.Order.get(models.Order.public_id == wrong["order_id"])
        adopted = models.Order.get(models.Order.public_id == right["order_id"])
    assert (flagged.flag, flagged.transaction_id) == ("REFUND_UNMATCHED", None) and refunds_of(wrong) == []
    assert adopted.transaction_id == "4" * 32 and adopted.status == "partially_refunded"
    assert "refunded at WeChat" in adopted.flag_detail  # the creator is told where: not "at Alipay"


# --- a refund WeChat closes: recorded as closed, with its event; a notification that contradicts itself is ignored

def test_a_refund_wechat_closes_is_recorded_closed_with_its_own_event_and_the_order_is_unchanged(
        console: Console) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    order = paid(shop)
    made = refund_in(console, order, "1.00")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "CLOSED"})
    assert wait_until(lambda: refund_status(made) == "CLOSED")
    with models.db.connection_context():
        closed = models.AuditEvent.select().where(models.AuditEvent.action == "refund.closed").count()
        kept = [n.result for n in models.Notification.select().where(models.Notification.kind == "refund")]
    assert closed == 1 and kept == ["closed"]
    assert shop.poll(order)["status"] == "fulfilled"


def test_a_refund_notification_whose_event_and_status_disagree_is_ignored(
        console: Console, make_notification: Any) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    order = paid(shop)
    made = refund_in(console, order, "1.00")
    resource = {"mchid": "1230000109", "out_trade_no": order["out_trade_no"], "out_refund_no": made.out_refund_no,
                "refund_id": "50300000000000000000000000009", "refund_status": "CLOSED",
                "amount": {"total": 9900, "refund": 100, "payer_total": 9900, "payer_refund": 100}}
    note = make_notification(transaction=resource, event_type="REFUND.SUCCESS", associated_data="refund")
    answer = shop.session.post(shop.url + "/wechatpay/notify/refund", data=note.body, headers=note.headers, timeout=15)
    assert answer.status_code == 204, answer.text
    assert refund_status(made) == "PROCESSING"
    with models.db.connection_context():
        kept = [n.result for n in models.Notification.select().where(models.Notification.kind == "refund")]
    assert kept == ["ignored"]


# --- check_refund ("ask WeChat again"): send a refund WeChat never took; only ask about one it took ---------

def test_asking_again_sends_a_refund_wechat_never_took_and_only_asks_about_one_it_took(console: Console) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    refunds_path = "/v3/refund/domestic/refunds"

    def sent() -> list[int]:
        return [r["status"] for r in shop.sandbox.requests_log() if r["path"] == refunds_path]

    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 10, "status": 500, "paths": [refunds_path]}})
    untaken = refund_in(console, paid(shop), "1.00")
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 0}})
    assert untaken.refund_id is None and 200 not in sent()
    assert console.post(f"/admin/refunds/{untaken.out_refund_no}/sync", {}).status_code == 303
    assert sent().count(200) == 1
    with models.db.connection_context():
        assert models.Refund.get_by_id(untaken.id).refund_id is not None

    taken = refund_in(console, paid(shop), "1.00")
    assert taken.refund_id is not None and sent().count(200) == 2
    assert console.post(f"/admin/refunds/{taken.out_refund_no}/sync", {}).status_code == 303
    assert sent().count(200) == 2, "a refund WeChat took is asked about, not sent again"
    asked = [r for r in shop.sandbox.requests_log() if r["path"] == f"{refunds_path}/{taken.out_refund_no}"]
    assert asked and refund_status(taken) == "PROCESSING"


# --- the job: the refund it asked about waits another minute (only that one); a refund WeChat lost is sent again

def test_the_job_puts_off_only_the_refund_it_asked_about(console: Console, clock: FakeClock) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    clock.freeze()
    asked, done = refund_in(console, paid(shop), "10.00"), settled(console, paid(shop), "1.00")
    with models.db.connection_context():
        done_at = models.Refund.get_by_id(done.id).updated_at
    clock.advance(61)
    assert reconcile(console)["checked"] == 1
    with models.db.connection_context():
        assert models.Refund.get_by_id(asked.id).updated_at == clock()
        assert models.Refund.get_by_id(done.id).updated_at == done_at


def test_the_job_sends_again_a_refund_wechat_says_it_does_not_have_and_counts_other_refusals(
        console: Console, clock: FakeClock) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    made = refund_in(console, paid(shop), "10.00")
    query = f"/v3/refund/domestic/refunds/{made.out_refund_no}"
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 1, "status": 400, "code": "INVALID_REQUEST",
                                                    "paths": [query]}})
    clock.advance(61)
    assert reconcile(console) == {"checked": 1, "settled": 0, "resent": 0, "errors": 1}
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 1, "status": 404, "code": "RESOURCE_NOT_EXISTS",
                                                    "paths": [query]}})
    clock.advance(61)
    assert reconcile(console) == {"checked": 1, "settled": 0, "resent": 1, "errors": 0}


# --- apply_abnormal_refund: a refund to the user's card needs every detail, each not blank --------------

@pytest.mark.parametrize("card", [{"bank_type": "ICBC_DEBIT", "bank_account": "6222020000000000001"},
                                  {"bank_type": "ICBC_DEBIT", "bank_account": "6222020000000000001",
                                   "real_name": "  "}], ids=["no name", "blank name"])
def test_a_refund_to_the_users_card_without_a_name_is_refused_before_wechat_is_asked(
        console: Console, card: dict[str, str]) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    made = refund_in(console, paid(shop), "10.00")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "ABNORMAL"})
    assert wait_until(lambda: refund_status(made) == "ABNORMAL")
    answer = console.post(f"/admin/refunds/{made.out_refund_no}/apply-abnormal", {"type": "USER_BANK_CARD", **card})
    assert answer.status_code == 400 and "needs the bank, the card number and the name" in answer.text, answer.text
    assert not [r for r in shop.sandbox.requests_log() if r["path"].endswith("/apply-abnormal-refund")]
    assert refund_status(made) == "ABNORMAL"


def test_applying_an_abnormal_refund_while_wechat_is_down_is_503_and_can_be_tried_again(console: Console) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    made = refund_in(console, paid(shop), "10.00")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "ABNORMAL"})
    assert wait_until(lambda: refund_status(made) == "ABNORMAL")
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 3, "status": 500, "code": "SYSTEM_ERROR",
                                                    "paths": [f"/v3/refund/domestic/refunds/{made.refund_id}"
                                                              "/apply-abnormal-refund"]}})
    down = console.post(f"/admin/refunds/{made.out_refund_no}/apply-abnormal", {"type": "MERCHANT_BANK_CARD"})
    assert down.status_code == 503, down.text  # not 409: nothing is wrong with the refund
    assert refund_status(made) == "ABNORMAL"
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 0}})
    again = console.post(f"/admin/refunds/{made.out_refund_no}/apply-abnormal", {"type": "MERCHANT_BANK_CARD"})
    assert again.status_code == 303 and refund_status(made) == "PROCESSING"
