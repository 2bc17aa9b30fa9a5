"""Input that once got through: control characters in course titles, commas and NULs in e-mail addresses."""

from __future__ import annotations

import pytest
from conftest import Shop

import models
from billing import BillingError
from billing.addresses import is_email_address
from billing.courses import save_course

BAD_ADDRESSES = [
    "a@example.com,b@example.com", "a,b@example.com", "a\x00b@example.com", "a@example.com\x00",
    "a b@example.com", "a@example.com\r\nBcc: c@example.com", '"a"@example.com', "a;b@example.com",
    "<a@example.com>", "A <a@example.com>", "a@example", "a@-example.com", "a@example-.com", "a..b@example.com",
    ".a@example.com", "a.@example.com", "a@exa_mple.com", "a@@example.com", "a@[127.0.0.1]", "a(b)@example.com",
    "x" * 65 + "@example.com", "a@" + "b" * 250 + ".com", "", "@example.com", "a@", "用户@example.com",
]
GOOD_ADDRESSES = ["learner@example.com", "Learner.Private+tag@mail.example.com", "o'brien@example.com",
                  "3Ass@mail.example.com", "a_b-c@sub.domain-1.example.org"]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_the_address_grammar_refuses_specials_and_control_characters(address: str) -> None:
    assert not is_email_address(address)


@pytest.mark.parametrize("address", GOOD_ADDRESSES)
def test_the_address_grammar_takes_plain_mailboxes(address: str) -> None:
    assert is_email_address(address)


@pytest.mark.parametrize("address", ["a@example.com,b@example.com", "a\x00b@example.com"])
def test_an_order_with_a_comma_or_nul_in_its_address_is_refused(shop: Shop, address: str) -> None:
    response = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": address})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"
    resend = shop.post("/api/v1/licenses/resend", {"email": address})
    assert resend.status_code == 400


@pytest.mark.parametrize("title", ["C++ Primer\nBcc: everyone@example.com", "Tab\there", "NUL\x00", "line\u2028sep",
                                   "bidi\u202eoverride"])
def test_a_course_title_with_control_characters_is_refused(shop: Shop, title: str) -> None:
    with models.db.connection_context():
        with pytest.raises(BillingError) as refused:
            save_course(shop.app.extensions["lbpay.shop"], course_id="cpp-primer-5th", title=title, price_fen=9900)
        assert refused.value.code == "bad_request"
        assert models.Course.get_by_id("cpp-primer-5th").title == "C++ Primer 第5版"
