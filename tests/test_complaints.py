"""WeChat Pay consumer complaints end to end: the sandbox's phone files one, it reaches the console by
notification (verified like a payment one) or by the listing job, and the creator answers, refunds and completes."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

import screens
from conftest import PUBLIC_KEY_ID, SHOP_ORIGIN, Lbpay, Shop
from servers import wait_for
from test_admin import EMAIL, PASSWORD, Console, console, paid_order  # noqa: F401  (the signed-in console fixture)

import models
from operations.scheduler import holder_id, run_job

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOTIFY_URL = SHOP_ORIGIN + "/wechatpay/notify/complaint"


def desk(shop: Shop) -> Any:
    return shop.sandbox.app.extensions["wechatpay_sandbox_complaints"]


def job(shop: Shop, name: str) -> dict[str, Any]:
    with models.db.connection_context():
        summary = run_job(shop.app.extensions["lbpay.shop"], name, holder_id())
    assert summary is not None and "error" not in summary, summary
    return summary


def row(complaint_id: str) -> models.Complaint | None:
    with models.db.connection_context():
        return models.Complaint.get_or_none(models.Complaint.complaint_id == complaint_id)


def wait_for_row(complaint_id: str, timeout: float = 10) -> models.Complaint:
    deadline = time.monotonic() + timeout
    while True:
        found = row(complaint_id)
        if found is not None or time.monotonic() > deadline:
            assert found is not None, "the complaint notification never arrived"
            return found
        time.sleep(0.05)


def actions() -> list[str]:
    with models.db.connection_context():
        return [e.action for e in models.AuditEvent.select().order_by(models.AuditEvent.id)]


def file_on_phone(shop: Shop, out_trade_no: str, detail: str, phone: str, refund: bool = False) -> str:
    """The payer opens the paid order on the sandbox's phone page and complains; returns the complaint id."""
    pr = shop.sandbox.control("GET", f"orders/{out_trade_no}").json()["pr"]
    page = requests.get(f"{shop.sandbox.url}/pay/{pr}", timeout=10)
    assert f"/pay/{pr}/complain" in page.text  # a paid order offers the complaint link
    form = {"detail": detail, "phone": phone, **({"refund": "on"} if refund else {})}
    sent = requests.post(f"{shop.sandbox.url}/pay/{pr}/complain", data=form, timeout=10)
    assert sent.status_code == 200, sent.text
    marker = 'data-complaint-id="'
    return sent.text.split(marker, 1)[1].split('"', 1)[0]


def test_a_complaint_reaches_the_console_by_notification_and_is_answered_refunded_and_completed(
        console: Console) -> None:
    shop = console.shop
    order = paid_order(shop)
    registered = console.post("/admin/complaints/register-url")
    assert registered.status_code == 303, registered.text
    assert desk(shop).notify_url == NOTIFY_URL
    assert console.post("/admin/complaints/register-url").status_code == 303  # a second press changes nothing

    complaint_id = file_on_phone(shop, order["out_trade_no"], "课程打不开，要求退款", "13912345678", refund=True)
    first = wait_for_row(complaint_id)
    assert first.state == "NEW" and first.needs_sync
    with models.db.connection_context():
        kept = models.Notification.get(models.Notification.kind == "complaint")
        assert kept.result == "complaint" and complaint_id in kept.reason and "13912345678" not in kept.body

    assert job(shop, "complaints")["synced"] == 1
    fetched = row(complaint_id)
    assert fetched is not None and fetched.state == "PENDING" and fetched.order_id is not None
    assert fetched.detail == "课程打不开，要求退款" and fetched.problem_type == "REFUND"
    assert fetched.apply_refund_fen == 9900 and "13912345678" not in (fetched.payer_phone_cipher or "")
    with models.db.connection_context():
        assert models.Alert.get(models.Alert.key == f"complaint:{complaint_id}:new").kind == "complaint_new"

    due = fetched.reply_due_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    assert fetched.reply_due_at - fetched.complaint_time == dt.timedelta(hours=24)
    listing = console.page("/admin/complaints")
    assert complaint_id in listing and due in listing and "待回复 waiting for you" in listing

    detail = console.page(f"/admin/complaints/{complaint_id}")
    assert "13912345678" in detail and order["out_trade_no"] in detail and "USER_CREATE_COMPLAINT" in detail
    assert f"/admin/orders/{order['order_id']}" in detail
    assert "complaint.phone_viewed" in actions()

    answered = console.post(f"/admin/complaints/{complaint_id}/reply", {"text": "您好，已为您退款，请查收。"})
    assert answered.status_code == 303, answered.text
    at_wechat = shop.sandbox.control("GET", f"complaints/{complaint_id}").json()
    assert at_wechat["complaint_state"] == "PROCESSING"
    assert [h["operate_type"] for h in at_wechat["history"]][-1] == "MERCHANT_RESPONSE"
    replied = row(complaint_id)
    assert replied is not None and replied.state == "PROCESSING" and replied.replied_at is not None
    assert "MERCHANT_RESPONSE" in console.page(f"/admin/complaints/{complaint_id}")

    approved = console.post(f"/admin/complaints/{complaint_id}/refund-answer", {"action": "approve", "days": "0"})
    assert approved.status_code == 303, approved.text
    refunded = console.post(f"/admin/complaints/{complaint_id}/refund", {"amount": "99.00", "reason": "投诉退款"})
    assert refunded.status_code == 303, refunded.text
    assert shop.wait_for_status(order, "refunded")["status"] == "refunded"  # the normal refund path settled it
    with models.db.connection_context():
        license_row = models.License.get(models.License.order == fetched.order_id)
        assert license_row.revoked_at is not None

    done = console.post(f"/admin/complaints/{complaint_id}/complete")
    assert done.status_code == 303, done.text
    assert shop.sandbox.control("GET", f"complaints/{complaint_id}").json()["complaint_state"] == "PROCESSED"
    final = row(complaint_id)
    assert final is not None and final.state == "PROCESSED" and final.completed_at is not None
    assert final.full_refunded
    trail = actions()
    for action in ("complaint.notify_url_set", "complaint.received", "complaint.replied", "complaint.refund_approved",
                   "complaint.refund_requested", "refund.requested", "refund.succeeded", "complaint.completed"):
        assert action in trail, action


def test_a_complaint_whose_notification_never_came_is_found_by_the_listing_and_alerted_before_its_deadline(
        console: Console) -> None:
    shop = console.shop
    order = paid_order(shop)
    filed = shop.sandbox.control("POST", "complaints", {"out_trade_no": order["out_trade_no"],
                                                         "detail": "没有收到许可证"})
    assert filed.status_code == 201 and filed.json()["notified"] is False  # no URL registered: nothing is sent
    complaint_id = filed.json()["complaint_id"]
    assert row(complaint_id) is None

    summary = job(shop, "complaints.list")
    assert (summary["listed"], summary["found"]) == (1, 1)
    found = row(complaint_id)
    assert found is not None and found.state == "PENDING" and found.detail == "没有收到许可证"
    assert job(shop, "complaints.list")["found"] == 0  # listed again: nothing new, nothing fetched twice
    with models.db.connection_context():
        assert not models.Alert.select().where(models.Alert.kind == "complaint_due").exists()

    shop.clock.advance(21 * 3600)  # three hours before the reply deadline, still unanswered
    job(shop, "complaints")
    with models.db.connection_context():
        alert = models.Alert.get(models.Alert.key == f"complaint:{complaint_id}:due")
        assert alert.kind == "complaint_due" and complaint_id in alert.message
    assert console.login().status_code == 303  # the session idled out over the 21 hours
    dashboard = console.page("/admin/")
    assert "COMPLAINT_UNANSWERED" in dashboard and complaint_id in dashboard


def test_the_payer_writing_again_reaches_the_console_as_a_state_change(console: Console) -> None:
    shop = console.shop
    order = paid_order(shop)
    console.post("/admin/complaints/register-url")
    filed = shop.sandbox.control("POST", "complaints", {"out_trade_no": order["out_trade_no"], "detail": "打不开"})
    complaint_id = filed.json()["complaint_id"]
    wait_for_row(complaint_id)
    job(shop, "complaints")
    assert console.post(f"/admin/complaints/{complaint_id}/reply", {"text": "请重启 VS Code 再试"}).status_code == 303
    wrote = shop.sandbox.control("POST", f"complaints/{complaint_id}/message", {"text": "还是不行"})
    assert wrote.status_code == 200, wrote.text
    deadline = time.monotonic() + 10
    while not (row(complaint_id) or models.Complaint()).needs_sync and time.monotonic() < deadline:
        time.sleep(0.05)  # the STATE_CHANGE notification marks it for the job
    assert job(shop, "complaints")["synced"] == 1
    waiting = row(complaint_id)
    assert waiting is not None and waiting.state == "PROCESSING" and waiting.incoming_user_response
    assert "用户新留言 payer wrote again" in console.page("/admin/complaints")
    assert "还是不行" in console.page(f"/admin/complaints/{complaint_id}")
    deliveries = [d["event_type"] for d in shop.sandbox.deliveries() if d["ok"]]
    assert deliveries.count("COMPLAINT.CREATE") == 1 and deliveries.count("COMPLAINT.STATE_CHANGE") == 1


def test_a_tampered_complaint_notification_is_refused_and_the_resent_one_is_believed(shop: Shop) -> None:
    order = paid_order(shop)
    with models.db.connection_context():
        from billing.complaints import register_notification_url

        register_notification_url(shop.app.extensions["lbpay.shop"], actor="test")
    armed = shop.sandbox.control("POST", "faults", {"notify": {"tamper_next": 1, "what": "signature"}})
    assert armed.status_code == 200, armed.text
    filed = shop.sandbox.control("POST", "complaints", {"out_trade_no": order["out_trade_no"], "detail": "重复扣费"})
    complaint_id = filed.json()["complaint_id"]
    wait_for_row(complaint_id)

    def sent() -> list[tuple[str, int]]:
        return [(d["kind"], d["status"]) for d in shop.sandbox.deliveries() if d["event_type"] == "COMPLAINT.CREATE"]

    # The row is written before our answer reaches the sandbox, which logs the delivery after it: wait for the log.
    assert wait_for(lambda: len(sent()) == 2) and sent() == [("tamper-signature", 401), ("normal", 204)]
    with models.db.connection_context():
        assert models.Complaint.select().count() == 1
        assert models.Notification.select().where(models.Notification.result == "bad_signature").count() == 1


def test_a_reply_wechat_refuses_or_too_long_changes_nothing_and_says_why(console: Console) -> None:
    shop = console.shop
    order = paid_order(shop)
    filed = shop.sandbox.control("POST", "complaints", {"out_trade_no": order["out_trade_no"], "detail": "无法登录"})
    complaint_id = filed.json()["complaint_id"]
    job(shop, "complaints.list")

    too_long = console.post(f"/admin/complaints/{complaint_id}/reply", {"text": "长" * 201})
    assert too_long.status_code == 400 and "200" in too_long.text
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 1, "status": 400, "code": "INVALID_REQUEST",
                                                    "message": "投诉单状态不允许回复",
                                                    "paths": ["/v3/merchant-service/complaints-v2/"]}})
    refused = console.post(f"/admin/complaints/{complaint_id}/reply", {"text": "您好"})
    assert refused.status_code == 400 and "投诉单状态不允许回复" in refused.text
    still = row(complaint_id)
    assert still is not None and still.state == "PENDING" and still.replied_at is None
    assert shop.sandbox.control("GET", f"complaints/{complaint_id}").json()["complaint_state"] == "PENDING"
    assert "complaint.replied" not in actions() and "wechat.call_failed" in actions()


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # what WeChat checks of an image: its kind and size


def test_images_travel_both_ways_through_the_signed_client(console: Console) -> None:
    import base64

    shop = console.shop
    order = paid_order(shop)
    screenshot = PNG + b"payer"
    filed = shop.sandbox.control("POST", "complaints", {"out_trade_no": order["out_trade_no"], "detail": "看截图",
                                                         "images": [base64.b64encode(screenshot).decode()]})
    complaint_id = filed.json()["complaint_id"]
    job(shop, "complaints.list")
    page = console.page(f"/admin/complaints/{complaint_id}")
    assert f"/admin/complaints/{complaint_id}/images/0" in page
    shown = console.get(f"/admin/complaints/{complaint_id}/images/0")
    assert shown.status_code == 200 and shown.content == screenshot and shown.headers["Content-Type"] == "image/png"
    assert console.get(f"/admin/complaints/{complaint_id}/images/5").status_code == 404

    ours = PNG * 700  # about 700 KB: more than the console's usual 64 KiB form limit
    sent = console.post(f"/admin/complaints/{complaint_id}/reply", {"text": "请看处理结果截图"},
                        files={"image": ("result.png", ours, "image/png")})
    assert sent.status_code == 303, sent.text[:500]
    history = shop.sandbox.control("GET", f"complaints/{complaint_id}").json()["history"]
    assert history[-1]["operate_type"] == "MERCHANT_RESPONSE" and len(history[-1]["image_list"]) == 1
    assert console.get(f"/admin/complaints/{complaint_id}/images/1").content == ours
    not_an_image = console.post(f"/admin/complaints/{complaint_id}/reply", {"text": "再看"},
                                files={"image": ("x.png", b"GIF89a....", "image/png")})
    assert not_an_image.status_code == 400 and "2 MB" in not_an_image.text
    uploads = [r for r in shop.sandbox.requests_log() if r["path"].startswith("/v3/merchant-service/images/upload")]
    assert [r["status"] for r in uploads] == [200]  # the signature over meta alone was accepted, once


def test_the_command_line_registers_the_url_syncs_and_lists(shop: Shop) -> None:
    lbpay = Lbpay(lambda: shop.app)
    assert lbpay("complaints", "register-url").stdout == f"created\t{NOTIFY_URL}\n"
    assert lbpay("complaints", "register-url").stdout == f"unchanged\t{NOTIFY_URL}\n"
    refused = lbpay("complaints", "register-url", "--url", "http://shop.test/wechatpay/notify/complaint")
    assert refused.exit_code != 0 and "https" in refused.output
    order = paid_order(shop)
    filed = shop.sandbox.control("POST", "complaints", {"out_trade_no": order["out_trade_no"], "detail": "无法激活"})
    complaint_id = filed.json()["complaint_id"]
    wait_for_row(complaint_id)
    assert lbpay("complaints", "sync").stdout == "1 listed, 0 new, 1 changed\n"
    listed = lbpay("complaints", "list").stdout.split("\t")
    assert listed[0] == complaint_id and listed[1] == "PENDING" and listed[3] == order["out_trade_no"]
    moved = lbpay("complaints", "register-url", "--url", SHOP_ORIGIN + "/elsewhere")
    assert moved.stdout == f"updated\t{SHOP_ORIGIN}/elsewhere\t(was {NOTIFY_URL})\n"
    assert desk(shop).notify_url == SHOP_ORIGIN + "/elsewhere"


@pytest.mark.browser
def test_the_complaint_pages_on_a_phone_and_a_desktop(console: Console, browser: Any) -> None:
    shop = console.shop
    order = paid_order(shop, email="learner@example.com")
    console.post("/admin/complaints/register-url")
    complaint_id = file_on_phone(shop, order["out_trade_no"], "付款后课程一直显示未购买，请尽快处理，谢谢！",
                                 "13912345678", refund=True)
    wait_for_row(complaint_id)
    job(shop, "complaints")
    console.post(f"/admin/complaints/{complaint_id}/reply", {"text": "您好，我们已核实，许可证已重新发送到您的邮箱。"})
    other = paid_order(shop, course_id="rust-monthly")
    shop.sandbox.control("POST", "complaints", {"out_trade_no": other["out_trade_no"], "detail": "扣了两次钱"})
    job(shop, "complaints")
    shop.app.config.update(SESSION_COOKIE_NAME="lbpay_session")  # __Host- cookies need HTTPS
    for name, size in (("phone", {"width": 390, "height": 844}), ("desktop", {"width": 1280, "height": 800})):
        context = browser.new_context(viewport=size, locale="zh-CN", timezone_id="Asia/Shanghai")
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto(shop.url + "/admin/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_load_state()
        assert page.url == shop.url + "/admin/", (page.url, page.inner_text("body")[:600])
        for path, shot in (("/admin/complaints", "complaints"), (f"/admin/complaints/{complaint_id}", "complaint")):
            page.goto(shop.url + path)
            assert page.locator("main").is_visible()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, name, overflow)  # nothing wider than the screen
            screens.shot(page, f"admin-{shot}-{name}.png")
        context.close()
    # The payer's side: the sandbox's phone page (its own self-signed TLS certificate).
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", ignore_https_errors=True)
    page = phone.new_page()
    pr = shop.sandbox.control("GET", f"orders/{other['out_trade_no']}").json()["pr"]
    page.goto(f"{shop.sandbox.url}/pay/{pr}/complain")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    screens.shot(page, "sandbox-complain-phone.png")
    phone.close()


def test_an_unsigned_complaint_notification_is_refused_and_leaves_only_a_stub(shop: Shop) -> None:
    body = b'{"id":"x","event_type":"COMPLAINT.CREATE","resource_type":"encrypt-resource","resource":{}}'
    refused = requests.post(shop.url + "/wechatpay/notify/complaint", data=body, timeout=10,
                            headers={"Content-Type": "application/json", "Wechatpay-Timestamp": str(int(time.time())),
                                     "Wechatpay-Nonce": "n" * 32, "Wechatpay-Signature": "c2lnbmF0dXJl",
                                     "Wechatpay-Serial": PUBLIC_KEY_ID})
    assert refused.status_code == 401 and refused.json()["code"] == "FAIL"
    with models.db.connection_context():
        assert models.Complaint.select().count() == 0
        stub = models.Notification.get()
        assert stub.kind == "complaint" and stub.body == "" and stub.result == "bad_signature"
    too_big = requests.post(shop.url + "/wechatpay/notify/complaint", data=b"x" * 100_000, timeout=10)
    assert too_big.status_code == 413


@pytest.mark.parametrize(("call", "problem"), [
    (lambda api: api.respond("2000", " "), "must not be empty"),
    (lambda api: api.respond("2000", "字" * 201), "at most 200"),
    (lambda api: api.update_refund_progress("2000", "MAYBE"), "APPROVE or REJECT"),
    (lambda api: api.update_refund_progress("2000", "APPROVE"), "working days"),
    (lambda api: api.list_complaints(dt.date(2026, 1, 1), dt.date(2026, 1, 31)), "30 days"),
    (lambda api: api.upload_image(b"GIF89a"), "JPG, PNG or BMP"),
])
def test_the_client_refuses_what_wechat_would_before_sending_it(shop: Shop, call: Any, problem: str) -> None:
    from billing.complaints import complaints_api

    before = len(shop.sandbox.requests_log())
    with pytest.raises(ValueError, match=problem):
        call(complaints_api(shop.app.extensions["lbpay.shop"]))
    assert len(shop.sandbox.requests_log()) == before  # nothing went to WeChat


def test_a_phone_number_that_does_not_decrypt_is_not_shown(shop: Shop) -> None:
    from billing.complaints import complaints_api
    from wechatpay.errors import DecryptError

    with pytest.raises(DecryptError):
        complaints_api(shop.app.extensions["lbpay.shop"]).decrypt_phone("bm90IGVuY3J5cHRlZA==")


def test_retention_forgets_a_handled_complaints_phone_and_images_and_keeps_what_was_said(console: Console) -> None:
    import base64

    from operations.retention import purge

    shop = console.shop
    order = paid_order(shop)
    filed = shop.sandbox.control("POST", "complaints", {"out_trade_no": order["out_trade_no"], "detail": "重复扣费",
                                                         "images": [base64.b64encode(PNG).decode()]})
    complaint_id = filed.json()["complaint_id"]
    job(shop, "complaints.list")
    assert console.post(f"/admin/complaints/{complaint_id}/complete").status_code == 303
    shop.clock.advance(401 * 86400)
    core = shop.app.extensions["lbpay.shop"]
    with models.db.connection_context():
        assert purge(core, core.now())["complaints"] == 1
    kept = row(complaint_id)
    assert kept is not None and kept.payer_phone_cipher is None and kept.media == "[]"
    assert kept.detail == "重复扣费" and "MERCHANT_CONFIRM_COMPLETE" in kept.history
