"""The learner's order history over the API carries each paid order's receipt: amount, time in Beijing, WeChat's
transaction number, our order numbers and the seller, with the link to the page where a fapiao is asked for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import pytest
import requests
from conftest import FakeClock, Keys, Sandbox, Shop
from learner_helpers import buy, start_shop
from test_openapi import check

import models

BEIJING = dt.timezone(dt.timedelta(hours=8))
TERMS = "7 天内未下载付费内容可全额退款 · Full refund within 7 days if no paid file was downloaded"


@pytest.fixture
def seller_shop(tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock) -> Iterator[Shop]:
    shop = start_shop(tmp_path, keys, sandbox, clock, SELLER_NAME="王老师的编程课", SELLER_CONTACT="微信 wang-teacher",
                      REFUND_TERMS=TERMS)
    yield shop
    shop.server.stop()


def test_a_paid_order_carries_its_receipt_and_an_unpaid_one_none(seller_shop: Shop) -> None:
    shop = seller_shop
    first = buy(shop)
    token = first["buyer_token"]
    pending = shop.order("rust-monthly", buyer_token=token)

    answer = shop.get("/api/v1/me/orders", token=token)
    check(answer, "/me/orders", "get")
    by_id = {o["order_id"]: o for o in answer.json()["orders"]}
    assert by_id[pending["order_id"]]["receipt"] is None

    receipt = by_id[first["order_id"]]["receipt"]
    with models.db.connection_context():
        order = models.Order.get(models.Order.public_id == first["order_id"])
    paid_at = order.paid_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    url = receipt.pop("url")
    assert receipt == {
        "order_id": first["order_id"], "out_trade_no": first["out_trade_no"],
        "transaction_id": first["transaction_id"], "course_title": order.course.title, "amount_fen": 9900,
        "amount": "¥99.00", "currency": "CNY", "paid_at_beijing": paid_at, "timezone": "Asia/Shanghai",
        "seller": {"name": "王老师的编程课", "contact": "微信 wang-teacher", "refund_terms": TERMS}}
    assert first["transaction_id"]
    # The link opens the receipt page, where the learner asks for a fapiao.
    page = requests.get(shop.url + url[url.index("/receipt/"):], timeout=15)
    assert page.status_code == 200 and first["transaction_id"] in page.text and paid_at in page.text
    assert TERMS in page.text  # the seller's refund terms: on the receipt, and on the buy page
    assert f'id="refund-terms">退款 <span lang="en">Refunds</span>: {TERMS}</p>' in requests.get(
        shop.url + "/buy/cpp-primer-5th", timeout=15).text
    # Another buyer's token sees none of it.
    other = buy(shop)
    assert first["order_id"] not in shop.get("/api/v1/me/orders", token=other["buyer_token"]).text
