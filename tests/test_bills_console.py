"""The bills page acts: a button checks a day's bill now, each difference links its order, shows money in
yuan, and is settled from the same page with a note."""

from __future__ import annotations

import datetime as dt
import re

from conftest import FakeClock, Shop
from test_admin import Console, console, paid_order  # noqa: F401 (the console fixture)

CHINA = dt.timezone(dt.timedelta(hours=8))


def test_a_creator_checks_a_day_from_the_page_and_settles_what_it_found(console: Console, clock: FakeClock) -> None:
    shop: Shop = console.shop
    order = paid_order(shop)
    shop.sandbox.control("POST", "bills/plants", {"kind": "amount", "out_trade_no": order["out_trade_no"], "total": 1})
    shop.sandbox.control("POST", "settings", {"bill_ready_after": -86400})
    clock.advance(86400)  # the day of the payment is now yesterday; WeChat has published its bill
    assert console.login().status_code == 303
    day = dt.datetime.now(CHINA).date()  # the sandbox's day, the shop's yesterday

    page = console.page("/admin/bills")
    assert 'id="check-form"' in page and "lbpay bill check" not in page
    for wrong in ("", "yesterday", (day + dt.timedelta(days=1)).isoformat(), "2020-01-01"):
        refused = console.post("/admin/bills/check", {"date": wrong})
        assert refused.status_code == 400 and 'id="check-problem"' in refused.text, wrong

    checked = console.post("/admin/bills/check", {"date": day.isoformat()})
    assert checked.status_code == 303 and checked.headers["Location"].endswith("/admin/bills")
    page = console.page("/admin/bills")
    assert f"Checked {day}: 1 difference(s)" in page
    row = re.search(r'<tr data-kind="amount_differs" class="bill-difference open">.*?</tr>', page, re.S)
    assert row, page[-3000:]
    assert f'href="/admin/orders?q={order["out_trade_no"]}"' in row.group(0)
    assert "¥0.01" in row.group(0) and "¥99.00" in row.group(0) and "金额不一致" in row.group(0)
    ident = re.search(r'/admin/bill-differences/(\d+)/resolve', row.group(0)).group(1)  # type: ignore[union-attr]

    settled = console.post(f"/admin/bill-differences/{ident}/resolve",
                           {"note": "已联系微信支付 asked WeChat Pay", "next": "/admin/bills"})
    assert settled.status_code == 303 and settled.headers["Location"] == "/admin/bills"
    page = console.page("/admin/bills")
    assert 'class="bill-difference settled"' in page and "已联系微信支付" in page

    again = console.post("/admin/bills/check", {"date": day.isoformat()})
    assert again.status_code == 303  # checking a day twice keeps each difference once
    assert console.page("/admin/bills").count('data-kind="amount_differs"') == 1
