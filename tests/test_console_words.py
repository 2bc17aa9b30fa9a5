"""Internal words never reach people: WeChat's codes, fen, raw validation sentences and the purchase
thanks in a gift's mail are all said in words, Chinese and English."""

from __future__ import annotations

import requests
from test_admin import Console, console, paid_order, shop_of  # noqa: F401 (the console fixture)

import models
from billing.addresses import EMAIL_WORDS
from billing.licenses import comp_license
from billing.mail import render_queued_license
from billing.reports import refund_detail_words


def test_a_refund_waiting_on_wechat_reads_as_words() -> None:
    assert refund_detail_words("will retry: SYSTEM_ERROR")[1] == "WeChat Pay had a passing fault; it is retried by itself"
    assert "余额不足" in refund_detail_words("will retry: NOT_ENOUGH")[0]
    assert refund_detail_words("will retry: ConnectTimeout")[1].startswith("WeChat Pay could not take it now")
    assert refund_detail_words("INVALID_REQUEST: refused") == ("", "")


def test_too_large_a_refund_says_what_is_left_in_yuan(console: Console) -> None:
    order = paid_order(console.shop)
    answer = console.post(f"/admin/orders/{order['order_id']}/refund", {"amount": "100.00", "reason": "too much"})
    assert answer.status_code == 409 or answer.status_code == 400, answer.status_code
    assert "¥99.00" in answer.text and "fen" not in answer.text


def test_a_refused_address_is_said_in_words(console: Console) -> None:
    answer = requests.post(console.shop.url + "/api/v1/orders", json={"course_id": "cpp-primer-5th", "email": "nope"},
                           timeout=15)
    assert answer.status_code == 400 and answer.json()["error"]["detail"] == EMAIL_WORDS
    assert "is not a valid address" not in answer.text


def test_a_gift_mail_does_not_thank_for_a_purchase(console: Console) -> None:
    with models.db.connection_context():
        order = comp_license(shop_of(console.shop), course_id="cpp-primer-5th", email="friend@example.com",
                             reason="a gift", actor="admin:creator@example.com")
        mail = models.MailOutbox.get(models.MailOutbox.to == "friend@example.com")
        _, text, html = render_queued_license(mail, shop=shop_of(console.shop)) or ("", "", "")
    assert order.amount_fen == 0
    assert "free of charge" in text and "赠送" in text and "Thank you for your purchase" not in text
    assert "感谢购买" not in (html or "") and "Receipt" not in text  # nobody paid: no receipt, no fapiao


def test_english_in_the_console_is_marked_as_english(console: Console) -> None:
    import re

    order = paid_order(console.shop)
    for path in ("/admin/", "/admin/orders", f"/admin/orders/{order['order_id']}", "/admin/courses",
                 "/admin/courses/cpp-primer-5th/edit", "/admin/bills", "/admin/alerts", "/admin/audit",
                 "/admin/customers", "/admin/fapiao", "/admin/comp", "/admin/codes", "/admin/export"):
        page = console.page(path)
        assert not re.search(r'class="en"(?! lang="en")', page), path
        for word in ("Dashboard", "Orders", "Courses", "Bills", "Alerts", "Sign out"):
            assert f'<span lang="en">{word}</span>' in page, (path, word)


def test_the_qr_says_in_words_to_scan_it_with_wechat(console: Console) -> None:
    page = requests.get(console.shop.url + "/buy/cpp-primer-5th", timeout=15).text
    assert '<p class="scan-words" id="scan-words">请使用微信扫一扫 · <span lang="en">Scan with WeChat</span></p>' in page
