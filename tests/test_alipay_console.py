"""The console on an Alipay order speaks of Alipay: its errors when Alipay is down, its refund words, its bill
actions, its outage alert and its bills page (Alipay's checked days beside WeChat Pay's, at 390 px and desktop).

One shop for the module (test_alipay_billing.shop_fixtures): our app on a loopback port, its Alipay simulator
under /sandbox/alipay, a console signed in over real HTTP, Chromium for the page.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from conftest import MODELS_BINDING
from playwright.sync_api import Browser, expect
from screens import shot
from servers import wait_for
from test_admin import EMAIL, PASSWORD, Console
from test_alipay_bill import paid
from test_alipay_billing import AlipayShop, place, shop_fixtures
from test_console_browser import SIZES, axe_check, fits, open_console

import models
from billing import CATALOGUE

ALERTS_TO = "owner@example.com"
shop, _calm = shop_fixtures("alipay_console_shop", ALERT_EMAIL=ALERTS_TO)
BEIJING = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module", autouse=True)
def _no_backoff(shop: AlipayShop) -> None:
    """The client still tries each call three times while Alipay is down; it just does not wait in between
    (the waits were most of this module's time)."""
    shop.shop.alipay.client.sleep = lambda seconds: None


@pytest.fixture(scope="module")
def console(shop: AlipayShop) -> Console:
    from billing.admin_users import create_admin

    shop.app.config["SESSION_COOKIE_SECURE"] = False  # plain HTTP on loopback
    with MODELS_BINDING.command(), models.db.connection_context():
        create_admin(shop.shop, EMAIL, PASSWORD)
    signed_in = Console(shop)  # type: ignore[arg-type]
    assert signed_in.login().status_code == 303
    return signed_in


def alipay_down(shop: AlipayShop) -> None:
    # Every call to the gateway meets 系统繁忙 (the client tries each call three times).
    shop.control("POST", "faults", {"gateway": {"*": ["unavailable"] * 60}})


def names_alipay_only(text: str) -> bool:
    return "Alipay" in text and "WeChat" not in text and "微信" not in text


def problem_of(page: str) -> str:
    """The error page's words (admin/problem.html), without the console's navigation around them."""
    found = re.search(r"<main.*?</main>", page, re.S)
    assert found, page[:500]
    return found.group(0)


def test_a_console_call_about_an_alipay_order_that_fails_says_alipay_is_down(
        shop: AlipayShop, console: Console) -> None:
    order = paid(shop)
    path = f"/admin/orders/{order['order_id']}"
    assert console.post(path + "/refund", {"amount": "1.00", "reason": "部分退款"}).status_code == 303
    with MODELS_BINDING.command(), models.db.connection_context():
        [first] = models.Refund.select().join(models.Order).where(models.Order.public_id == order["order_id"])
    assert first.status == "SUCCESS"
    alipay_down(shop)
    down = CATALOGUE["alipay_unavailable"]

    for action, form in (("/check", {}), ("/mark-paid", {"reason": "learner sent a receipt"})):
        answer = console.post(path + action, form)
        assert answer.status_code == 503, (action, answer.status_code)
        words = problem_of(answer.text)
        assert down.message_zh in words and down.message_en in words, action
        assert "微信" not in words and "WeChat" not in words, (action, words)

    checked = console.post(f"/admin/refunds/{first.out_refund_no}/sync")
    assert checked.status_code == 503
    assert down.message_en in checked.text and "WeChat" not in problem_of(checked.text)

    # A refund asked for while Alipay is down waits, and its row says whom it waits for.
    assert console.post(path + "/refund", {"amount": "2.00", "reason": "再退一点"}).status_code == 303
    page = console.page(path)
    row = re.search(r'<tr class="refund-processing".*?</tr>', page, re.S)
    assert row, page[-3000:]
    assert "waiting for Alipay" in row.group(0) and "Alipay could not take it now" in row.group(0)
    assert "WeChat" not in row.group(0) and "微信" not in row.group(0)
    timeline = page[page.index('id="timeline"'):]
    assert "调用支付宝失败" in timeline and "调用微信支付失败" not in timeline


def test_the_order_page_of_an_alipay_order_asks_alipay_and_refunds_through_it(
        shop: AlipayShop, console: Console) -> None:
    unpaid = place(shop)
    path = f"/admin/orders/{unpaid['order_id']}"
    card = re.search(r'<section class="card" id="wechat".*?</section>', console.page(path), re.S)
    assert card and 'data-method="alipay"' in card.group(0) and names_alipay_only(card.group(0))
    answer = console.post(path + "/check")
    assert answer.status_code == 200 and "NOTPAY" in answer.text
    refused = console.post(path + "/mark-paid", {"reason": "learner sent a receipt"})
    assert refused.status_code == 409
    assert CATALOGUE["not_paid_at_alipay"].message_en in refused.text
    assert names_alipay_only(problem_of(refused.text))

    order = paid(shop)
    path = f"/admin/orders/{order['order_id']}"
    form = re.search(r'<form[^>]*id="refund-form"[^>]*>', console.page(path))
    assert form and "through Alipay" in form.group(0) and "WeChat" not in form.group(0)
    confirm = console.post(path + "/refund", {"amount": "99.00", "reason": "不想要了", "ask": "1"})
    assert confirm.status_code == 200 and "back to the learner through Alipay" in confirm.text
    assert "through WeChat Pay" not in confirm.text


def test_alipay_unreachable_for_ten_minutes_raises_one_alert_and_one_mail(shop: AlipayShop) -> None:
    from operations.alerts import look_for_trouble

    def check(after_minutes: int) -> list[models.Alert]:
        with MODELS_BINDING.command(), models.db.connection_context():
            look_for_trouble(shop.shop, shop.shop.now() + dt.timedelta(minutes=after_minutes))
            return list(models.Alert.select().where(models.Alert.kind.in_(("alipay_unreachable",
                                                                             "wechat_unreachable"))))

    def mails() -> list[models.MailOutbox]:
        with MODELS_BINDING.command(), models.db.connection_context():
            return list(models.MailOutbox.select().where(models.MailOutbox.subject.contains("Alipay has not")))

    alipay_down(shop)
    assert shop.order(method="alipay").status_code == 503
    assert shop.order().status_code == 201  # WeChat Pay answers all along
    assert check(0) == []  # not ten minutes yet
    [alert] = check(11)
    assert alert.kind == "alipay_unreachable" and "Calls to Alipay have failed since" in alert.message
    assert [a.id for a in check(12)] == [alert.id]  # the same outage: no second alert
    [mail] = mails()
    assert mail.to == ALERTS_TO and "Alipay" in mail.subject
    shop.control("POST", "reset")
    assert shop.order(method="alipay").status_code == 201  # Alipay answers again
    assert [a.id for a in check(13)] == [alert.id]
    with MODELS_BINDING.command(), models.db.connection_context():
        assert models.OutsideService.get_by_id("alipay").failing_since is None
    assert len(mails()) == 1


def check_today(shop: AlipayShop) -> dict[str, Any]:
    """The bill job for today (the simulator is told to publish today's bill), as test_alipay_bill does."""
    from operations.jobs import check_daily_bills

    shop.control("POST", "faults", {"bills_same_day": True})
    with models.db.connection_context():  # the job calls the simulator this same server answers
        return check_daily_bills(shop.shop, shop.shop.now(), days=[dt.datetime.now(BEIJING).date()])


def open_difference(order: dict[str, Any], kind: str) -> int:
    with MODELS_BINDING.command(), models.db.connection_context():
        row = models.BillDifference.get((models.BillDifference.out_trade_no == order["out_trade_no"])
                                        & (models.BillDifference.kind == kind))
        return int(row.id)


def test_an_alipay_bill_difference_is_settled_by_asking_alipay(shop: AlipayShop, console: Console) -> None:
    unheard = paid(shop, lose=True)  # Alipay took the money; we never heard of it
    assert check_today(shop)["alipay"]["differences"] >= 1
    ident = open_difference(unheard, "alipay_paid_not_licensed")
    page = console.page("/admin/bills")
    row = re.search(rf'<tr data-kind="alipay_paid_not_licensed"[^>]*>(?:(?!</tr>).)*'
                    rf'id="difference-{ident}".*?</tr>', page, re.S)
    assert row, page[-4000:]
    assert f'id="issue-license-{ident}"' in row.group(0) and "Ask Alipay, then issue the license" in row.group(0)
    assert 'data-method="alipay"' in row.group(0) and 'data-label="支付宝账单 Alipay&#39;s bill"' in row.group(0)
    assert "WeChat" not in row.group(0)

    alipay_down(shop)
    refused = console.post(f"/admin/bills/differences/{ident}/issue-license")
    assert refused.status_code == 503
    problem = re.search(r'<p class="problem" id="action-problem".*?</p>', refused.text, re.S)
    assert problem and 'data-reason="alipay_unavailable"' in problem.group(0)
    assert names_alipay_only(problem.group(0))
    shop.control("POST", "reset")

    done = console.post(f"/admin/bills/differences/{ident}/issue-license")
    assert done.status_code == 303, done.text[-2000:]
    assert "Alipay confirmed the payment; the license is issued." in console.page("/admin/bills")
    assert shop.licenses_of(unheard) == 1
    timeline = console.page(f"/admin/orders/{unheard['order_id']}")
    assert "license issued after asking Alipay" in timeline and "after asking WeChat" not in timeline


@pytest.mark.browser
def test_the_bills_page_lists_alipays_checked_days_beside_wechats(
        shop: AlipayShop, console: Console, browser: Browser) -> None:
    paid(shop, lose=True)  # a difference in Alipay's bill of today
    check_today(shop)
    day = dt.datetime.now(BEIJING).date().isoformat()
    with MODELS_BINDING.command(), models.db.connection_context():
        checked = models.AlipayBillCheck.get_by_id(day)
    page = console.page("/admin/bills")
    alipay_days = re.search(r'<table class="list cards" id="alipay-bill-checks">.*?</table>', page, re.S)
    assert alipay_days, page[-3000:]
    row = re.search(rf'<tr class="bill-check" data-date="{day}">.*?</tr>', alipay_days.group(0), re.S)
    assert row and f">{checked.differences}</td>" in row.group(0) and checked.differences >= 1
    assert 'id="bill-checks"' in page and 'id="wechat-days"' in page

    for size in SIZES:
        context, view, problems = open_console(browser, shop, size, True)  # type: ignore[arg-type]
        try:
            view.goto("/admin/bills")
            expect(view.locator(f'#alipay-bill-checks tr[data-date="{day}"]')).to_be_visible()
            expect(view.locator('tr.bill-difference td[data-method="alipay"]').first).to_be_visible()
            fits(view, size)
            axe_check(view)
            # Each note field shows its whole example: what the placeholder says is not cut off.
            notes = view.locator('tr.bill-difference.open input[name="note"]')
            assert notes.count() >= 1
            cut = view.evaluate("""() => [...document.querySelectorAll('tr.bill-difference.open input[name=note]')]
                .filter((input) => { const was = input.value; input.value = input.placeholder;
                                     const over = input.scrollWidth > input.clientWidth; input.value = was;
                                     return over; }).length""")
            shot(view, f"console-bills-alipay-{size}.png")
            assert cut == 0, f"{cut} note field(s) cut their placeholder off at {size}"
            assert problems == [], problems
        finally:
            context.close()


def test_the_timeline_of_an_alipay_order_names_alipay(shop: AlipayShop, console: Console) -> None:
    order = paid(shop)
    page = console.page(f"/admin/orders/{order['order_id']}")
    timeline = page[page.index('id="timeline"'):]
    assert "Alipay made the payment code" in timeline and "支付宝已生成付款码" in timeline
    assert "Alipay trade number" in timeline and "from Alipay&#39;s notification" in timeline
    assert "WeChat" not in timeline and "微信" not in timeline, timeline[:3000]
    audit = console.page(f"/admin/audit?order={order['order_id']}")
    rows = re.search(r'<table class="list cards" id="audit-rows">.*?</table>', audit, re.S)
    assert rows and "Alipay made the payment code" in rows.group(0) and "WeChat" not in rows.group(0)


def test_alipay_refusing_the_shops_app_raises_an_alert_the_learner_was_promised(shop: AlipayShop) -> None:
    """alipay_setup_error tells the learner "the shop has been told": an alipay_config alert (and mail) tells it."""
    simulator = shop.app.extensions["lbpay.alipay_sandbox"].extensions["alipay_sandbox"]
    real_clock = simulator.config.clock
    simulator.config.clock = lambda: real_clock() + 3600  # every timestamp we sign is an hour stale: isv.invalid-timestamp
    try:
        refused = shop.order(method="alipay")
    finally:
        simulator.config.clock = real_clock
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "alipay_setup_error"
    with MODELS_BINDING.command(), models.db.connection_context():
        [alert] = models.Alert.select().where(models.Alert.kind == "alipay_config")
        mails = list(models.MailOutbox.select().where(models.MailOutbox.subject.contains("Alipay refuses")))
        wechat = models.Alert.select().where(models.Alert.kind == "wechat_config").count()
    assert "isv.invalid-timestamp" in alert.message and "LBPAY_ALIPAY_" in alert.message
    assert [m.to for m in mails] == [ALERTS_TO] and wechat == 0


def test_the_exports_say_which_method_took_each_order_and_refund(shop: AlipayShop, console: Console) -> None:
    import csv
    import io

    order = paid(shop)
    assert console.post(f"/admin/orders/{order['order_id']}/refund", {"amount": "1.00", "reason": "部分退款"}
                        ).status_code == 303
    wechat = shop.order()
    assert wechat.status_code == 201

    def rows(path: str) -> list[dict[str, str]]:
        answer = console.get(path, params={"since": "2000-01-01", "until": "2099-12-31"})
        assert answer.status_code == 200
        return list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))

    methods = {row["order"]: row["method"] for row in rows("/admin/export/orders.csv")}
    assert methods[order["order_id"]] == "alipay" and methods[wechat.json()["order_id"]] == "wechat"
    [refund] = [row for row in rows("/admin/export/refunds.csv") if row["order"] == order["order_id"]]
    assert refund["method"] == "alipay" and refund["amount (yuan)"] == "1.00"


def test_the_dashboard_says_when_alipays_bill_could_not_be_checked(shop: AlipayShop, console: Console) -> None:
    from operations.scheduler import run_job

    shop.control("POST", "faults", {"gateway": {"alipay.data.dataservice.bill.downloadurl.query": ["unavailable"] * 30}})
    with models.db.connection_context():  # the real job, which calls the simulator this same server answers
        summary = run_job(shop.shop, "bill_compare", "test")
    assert summary is not None and summary["alipay"]["failed"], summary
    card = re.search(r'<section class="card" id="bill">.*?</section>', console.page("/admin/"), re.S)
    assert card, "no bill card"
    assert "不一致或失败 Differences or failed" in card.group(0)
    words = re.search(r'<span id="alipay-bill-words">.*?</p>', card.group(0), re.S)
    assert words and "Could not be checked" in words.group(0) and summary["alipay"]["failed"][0] in words.group(0)


def test_an_alipay_order_is_found_by_its_alipay_trade_number(shop: AlipayShop, console: Console) -> None:
    order = paid(shop)
    trade_no = shop.poll(order)["transaction_id"]
    found = console.page(f"/admin/customers?q={trade_no}")
    assert "WeChat or Alipay transaction id" in found  # the search box says what it finds
    assert '<span class="en" lang="en">Orders</span> (1)' in found
    assert console.get(f"/admin/orders?q={trade_no}").headers["Location"] == f"/admin/orders/{order['order_id']}"


def test_a_refund_alipays_bill_lists_and_we_never_heard_of_is_adopted_by_asking_alipay(
        shop: AlipayShop, console: Console) -> None:
    order = paid(shop)
    shop.control("POST", "faults", {"lose_notifications": 1})  # its refund notification never arrives
    made = shop.control("POST", f"trades/{order['out_trade_no']}/refund", {"refund_amount": "9.00"})
    assert made.status_code == 200, made.text
    check_today(shop)
    with MODELS_BINDING.command(), models.db.connection_context():
        row = models.BillDifference.get((models.BillDifference.out_trade_no == order["out_trade_no"])
                                        & (models.BillDifference.kind == "alipay_refund_missing_here"))
    page = console.page("/admin/bills")
    assert f'id="adopt-refund-{row.id}"' in page and "Ask Alipay, then record the refund" in page
    done = console.post(f"/admin/bills/differences/{row.id}/adopt-refund")
    assert done.status_code == 303, done.text[-2000:]
    assert "The refund is recorded as Alipay made it." in console.page("/admin/bills")
    with MODELS_BINDING.command(), models.db.connection_context():
        [refund] = models.Refund.select().join(models.Order).where(models.Order.public_id == order["order_id"])
    assert (refund.out_refund_no, refund.status, refund.amount_fen, refund.actor) == (row.out_refund_no, "SUCCESS",
                                                                                      900, "alipay")
    assert shop.poll(order)["status"] == "partially_refunded"


def test_a_learner_whose_alipay_payment_was_refunded_before_we_heard_of_it_reads_alipay(shop: AlipayShop) -> None:
    """Paid (its notification lost), then refunded in Alipay's merchant centre: the refund's notification is the
    first word of the payment. The learner's answer says the money went back through Alipay, not WeChat Pay."""
    order = place(shop)
    shop.control("POST", "faults", {"lose_notifications": 1})
    assert shop.control("POST", f"trades/{order['out_trade_no']}/pay").status_code == 200
    shop.control("POST", "reset")  # the refund's notification arrives
    made = shop.control("POST", f"trades/{order['out_trade_no']}/refund", {"refund_amount": "99.00"})
    assert made.status_code == 200, made.text
    view = wait_for(lambda: (lambda v: v if v.get("error") else None)(shop.poll(order)), 30) or shop.poll(order)
    assert view["error"]["code"] == "payment_refunded_at_alipay", view
    assert names_alipay_only(view["error"]["message_en"]) and "支付宝" in view["error"]["message_zh"]
    assert shop.licenses_of(order) == 0


@pytest.mark.parametrize("case", ["unpaid", "not_ours"])
def test_an_alipay_difference_that_cannot_be_settled_says_so_in_alipays_name(
        shop: AlipayShop, console: Console, case: str) -> None:
    from billing import daily_bill

    number = place(shop)["out_trade_no"] if case == "unpaid" else "LA20261203NOTOURS" + case
    planted = daily_bill.Difference("alipay_paid_not_licensed", "planted by the test", out_trade_no=number,
                                    wechat_fen=9900)
    day = dt.date(2026, 12, 3)
    with MODELS_BINDING.command(), models.db.connection_context():
        daily_bill.record(day, [planted], shop.shop.now(), lines=1, checks=models.AlipayBillCheck, method="alipay")
        ident = models.BillDifference.get(models.BillDifference.key == planted.key(day)).id
    answer = console.post(f"/admin/bills/differences/{ident}/issue-license")
    problem = re.search(r'<p class="problem" id="action-problem".*?</p>', answer.text, re.S)
    assert answer.status_code == 409 and problem, answer.text[-2000:]
    reason = "not_paid_at_alipay" if case == "unpaid" else "not_our_order"
    assert f'data-reason="{reason}"' in problem.group(0) and names_alipay_only(problem.group(0))
    if case == "not_ours":
        assert "支付宝商家中心" in problem.group(0)


def test_alipay_notifications_failing_verification_raise_one_alert_an_hour(shop: AlipayShop) -> None:
    """As WeChat Pay's: three refused in 15 minutes means a wrong key or app id deployed, or someone forging."""
    import requests

    from operations.alerts import alipay_refused_since, look_for_trouble
    from test_console_pages import _plan

    def check(after_minutes: int) -> list[models.Alert]:
        with MODELS_BINDING.command(), models.db.connection_context():
            look_for_trouble(shop.shop, shop.shop.now() + dt.timedelta(minutes=after_minutes))
            return list(models.Alert.select().where(models.Alert.kind == "alipay_notify_failing"))

    order = place(shop)
    forged = {"notify_type": "trade_status_sync", "notify_id": "x", "app_id": "9021000100000001",
              "out_trade_no": order["out_trade_no"], "trade_no": "2026120622001000000000000009",
              "trade_status": "TRADE_SUCCESS", "total_amount": "99.00", "seller_id": "2088721000000001",
              "sign_type": "RSA2", "sign": "Zm9yZ2Vk"}
    def send() -> None:
        assert requests.post(shop.url + "/alipay/notify/trade", data=forged, timeout=30).status_code == 400

    send()
    send()
    assert check(0) == []  # two refused are not yet a pattern
    send()
    [alert] = check(1)
    assert "3 Alipay notifications were refused" in alert.message and "LBPAY_ALIPAY_PUBLIC_KEY_FILE" in alert.message
    assert [a.id for a in check(2)] == [alert.id]  # the same hour: no second alert
    assert [a.id for a in check(20)] == [alert.id]  # 15 minutes on, the refused ones are no longer counted
    assert shop.poll(order)["status"] == "pending"
    with MODELS_BINDING.command(), models.db.connection_context():  # the minute job reads an index, not the table
        plan = _plan(*alipay_refused_since(shop.shop.now()).sql())
    assert "audit_event_alipay_refused_at" in plan, plan
