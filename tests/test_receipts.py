"""Receipts and 发票 requests: the license mail carries a receipt and a link; the learner asks for a fapiao on
a form that names each mistake; the creator sees the request in the console, marks it issued with the PDF,
and the learner's mailbox (a real SMTP server on loopback) gets it attached."""

from __future__ import annotations

import html as htmllib
import re
from pathlib import Path
from typing import Iterator

import pytest
import requests
from conftest import FakeClock, Keys, Sandbox, Shop
from learner_helpers import SmtpServer, buy, html_text, plain_text, run, smtp_server, start_shop
from test_admin import EMAIL, PASSWORD, Console

import models
from billing.admin_users import create_admin
from billing.receipts import check_form, FapiaoInvalid

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
LINK = re.compile(r"https?://[^\s/]+(/receipt/[^\s]+)")
PDF = b"%PDF-1.4\n% a stand-in fapiao\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from smtp_server()


@pytest.fixture
def mail_shop(tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock, smtp: SmtpServer) -> Iterator[Shop]:
    shop = start_shop(tmp_path, keys, sandbox, clock, SMTP_URL=smtp.url,
                      MAIL_FROM="Learning Buddy <courses@learning-buddy.test>",
                      SELLER_NAME="王老师的编程课", SELLER_CONTACT="微信 wang-teacher · help@learning-buddy.test")
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop.app.extensions["lbpay.shop"], EMAIL, PASSWORD)
    yield shop
    shop.server.stop()


def receipt_link(shop: Shop, smtp: SmtpServer) -> tuple[str, str, str]:
    """Buy, send the license mail, and return the receipt link, the mail's text and its HTML."""
    view = buy(shop, email="learner@example.com")
    assert run(shop, "mail")["sent"] == 1
    [message] = smtp.inbox.wait_for(1)
    text, html = plain_text(message), html_text(message)
    links = LINK.findall(text)
    assert links and view["order_id"] in links[0], text
    return shop.url + links[0], text, html


def test_the_license_mail_carries_a_receipt_and_a_fapiao_link(mail_shop: Shop, smtp: SmtpServer) -> None:
    link, text, html = receipt_link(mail_shop, smtp)
    with models.db.connection_context():
        order = models.Order.get(models.Order.email == "learner@example.com")
    paid_at = order.paid_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    for words in ("¥99.00", paid_at, "北京时间", order.transaction_id, "王老师的编程课", "help@learning-buddy.test",
                  "Receipt", "WeChat Pay transaction number", "fapiao"):
        assert words in text, words
    assert order.transaction_id in html and "王老师的编程课" in html and 'class="fapiao-link"' in html
    path = link.removeprefix(mail_shop.url)
    assert htmllib.escape(path) in html


def test_a_fapiao_goes_from_the_learners_form_to_the_console_and_back_with_the_pdf(
        mail_shop: Shop, smtp: SmtpServer) -> None:
    link, _, _ = receipt_link(mail_shop, smtp)
    learner = requests.Session()
    page = learner.get(link, timeout=15)
    assert page.status_code == 200 and "¥99.00" in page.text and "王老师的编程课" in page.text
    token = TOKEN.search(page.text).group(1)  # type: ignore[union-attr]

    # A company title without a tax id and a broken address: the same form again, each mistake by its field.
    wrong = learner.post(link, data={"csrf_token": token, "title": "某某科技有限公司", "tax_id": "",
                                     "email": "not-an-address"}, timeout=15, allow_redirects=False)
    assert wrong.status_code == 400
    assert 'id="fapiao-tax_id-problem"' in wrong.text and "纳税人识别号" in wrong.text
    assert 'id="fapiao-email-problem"' in wrong.text and "name@example.com" in wrong.text
    assert 'value="某某科技有限公司"' in wrong.text  # what was typed stays
    assert "malformed" not in wrong.text

    right = learner.post(link, data={"csrf_token": token, "title": "某某科技有限公司", "tax_id": "91110108MA01ABCD2X",
                                     "email": "finance@example.com"}, timeout=15, allow_redirects=False)
    assert right.status_code == 303
    after = learner.get(mail_shop.url + right.headers["Location"], timeout=15)
    assert 'id="fapiao-asked"' in after.text and 'data-state="waiting"' in after.text
    assert 'id="fapiao-form"' not in after.text  # one open request per order
    again = learner.post(link, data={"csrf_token": token, "title": "个人", "email": "finance@example.com"},
                         timeout=15, allow_redirects=False)
    assert again.status_code == 400

    console = Console(mail_shop)
    assert console.login().status_code == 303
    listing = console.page("/admin/fapiao")
    assert "某某科技有限公司" in listing and "91110108MA01ABCD2X" in listing and 'id="fapiao-badge"' in listing
    request_id = re.search(r'class="fapiao-request" data-id="(\d+)"', listing).group(1)  # type: ignore[union-attr]
    not_pdf = console.post(f"/admin/fapiao/{request_id}/issued", {"note": ""},
                           files={"pdf": ("fapiao.pdf", b"<html>not a pdf</html>", "application/pdf")})
    assert not_pdf.status_code == 400
    big_pdf = PDF + b"0" * 200_000  # bigger than the console's other forms may be, within the PDF limit
    done = console.post(f"/admin/fapiao/{request_id}/issued", {"note": "已开具电子发票 e-fapiao issued"},
                        files={"pdf": ("fapiao.pdf", big_pdf, "application/pdf")})
    assert done.status_code == 303
    assert 'id="no-fapiao"' in console.page("/admin/fapiao")
    twice = console.post(f"/admin/fapiao/{request_id}/issued", {"note": ""})
    assert twice.status_code == 400

    assert run(mail_shop, "mail")["sent"] == 1
    message = smtp.inbox.wait_for(2)[1]
    assert message["To"] == "finance@example.com" and "发票" in message["Subject"]
    assert "已开具电子发票" in plain_text(message)
    [pdf] = [part for part in message.iter_attachments()]
    assert pdf.get_content_type() == "application/pdf" and pdf.get_content() == big_pdf
    assert 'data-state="issued"' in learner.get(link, timeout=15).text
    audit = console.page("/admin/audit?kind=fapiao")
    assert "Fapiao requested" in audit and "Fapiao issued" in audit


def test_a_receipt_link_with_a_wrong_token_shows_nothing(mail_shop: Shop, smtp: SmtpServer) -> None:
    link, _, _ = receipt_link(mail_shop, smtp)
    forged = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    assert requests.get(forged, timeout=15).status_code == 404
    assert requests.get(link.split("?")[0], timeout=15).status_code == 404


@pytest.mark.parametrize(("title", "tax_id", "email", "fields"), [
    ("", "", "a@example.com", {"title": "title_missing"}),
    ("某某公司", "", "a@example.com", {"tax_id": "tax_id_missing"}),
    ("某某公司", "91110108MA01ABCD2I", "a@example.com", {"tax_id": "tax_id_bad"}),  # I is never in the code
    ("个人", "", "a@example", {"email": "email_bad"}),
    ("x" * 101, "", "a@example.com", {"title": "title_long"}),
    ("A\u202eB", "", "a@example.com", {"title": "title_bad"}),
])
def test_each_form_mistake_is_named_by_its_field(title: str, tax_id: str, email: str, fields: dict[str, str]) -> None:
    with pytest.raises(FapiaoInvalid) as caught:
        check_form(title, tax_id, email)
    assert caught.value.fields == fields


def test_a_person_needs_no_tax_id_and_spaces_in_a_tax_id_are_dropped() -> None:
    assert check_form(" 个人 ", "", "a@example.com").tax_id == ""
    assert check_form("某某公司", "9111 0108 ma01 abcd 2x", "a@example.com").tax_id == "91110108MA01ABCD2X"


def test_the_license_page_opens_the_receipt_with_the_order_token_never_in_a_url(mail_shop: Shop) -> None:
    view = buy(mail_shop, email="page@example.com")
    learner = requests.Session()
    token = TOKEN.search(learner.get(mail_shop.url + "/buy/cpp-primer-5th", timeout=15).text).group(1)  # type: ignore[union-attr]
    path = f"/receipt/{view['order_id']}/open"
    wrong = learner.post(mail_shop.url + path, data={"csrf_token": token, "order_token": "not-it"}, timeout=15,
                         allow_redirects=False)
    assert wrong.status_code == 404
    right = learner.post(mail_shop.url + path, data={"csrf_token": token, "order_token": view["order_token"]},
                         timeout=15, allow_redirects=False)
    assert right.status_code == 303 and view["order_token"] not in right.headers["Location"]
    page = learner.get(mail_shop.url + right.headers["Location"], timeout=15)
    assert page.status_code == 200 and 'id="fapiao-form"' in page.text and "page@example.com" in page.text
