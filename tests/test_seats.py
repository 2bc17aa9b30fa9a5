"""Classroom seats end to end (issue 22, item 2): a pack paid once through the WeChat Pay sandbox, seats
assigned by e-mail on the seat page, one license per seat whatever races, a seat moved once, refunds by
seats and in full; every refusal a 4xx with zh/en words, an audit event and nothing written."""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Iterator

import pytest
import requests
import screens
from conftest import Shop
from learner_helpers import SmtpServer, plain_text, run, smtp_server
from servers import BROWSER_WAIT_MS, wait_for
from test_admin import TOKEN, Console, console, shop_of  # noqa: F401  (the signed-in console fixture)
from test_console_browser import settled
from test_openapi import check
from test_refunds import wait_for_refund

import models
from billing import seats
from licensing.documents import verify_revocations
from operations.logs import redact_path

COURSE = "cpp-primer-5th"  # list price 9900 fen
TEACHER = "teacher@school.example"
SEAT_LINK = re.compile(r"https://shop\.test(/seats/st_[A-Za-z0-9_-]+)")


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    yield from smtp_server()


@pytest.fixture
def shop_settings(smtp: SmtpServer) -> dict[str, Any]:
    smtp.inbox.messages.clear()
    # Real mail through a local SMTP server; each racing client may come from an address of its own.
    return {"SMTP_URL": smtp.url, "MAIL_FROM": "courses@learning-buddy.test", "PROXY_HOPS": "1"}


def offer(shop: Shop, **fields: Any) -> None:
    """Sell the course in packs: ¥50 a seat, ¥40 from 10 seats on, at most 50 seats."""
    settings = {"seat_fen": 5000, "volume_min": 10, "volume_fen": 4000, "max_seats": 50, **fields}
    with models.db.connection_context():
        seats.save_offer(shop_of(shop), course_id=COURSE, actor="creator@example.com", **settings)


def buy_pack(shop: Shop, count: int, email: str = TEACHER) -> dict[str, Any]:
    placed = shop.post("/api/v1/orders", {"course_id": COURSE, "email": email, "seats": count})
    assert placed.status_code == 201, placed.text
    check(placed, "/orders", "post")
    order = placed.json()
    shop.sandbox.pay(order["out_trade_no"])
    view = shop.wait_for_status(order, "fulfilled")
    assert view["status"] == "fulfilled", view
    return {**order, **view}


class SeatPage:
    """The buyer's browser on the seat page, without JavaScript: forms posted with the page's CSRF token."""

    def __init__(self, shop: Shop, path: str) -> None:
        shop.app.config["SESSION_COOKIE_SECURE"] = False  # plain HTTP on loopback
        self.shop, self.path, self.session = shop, path, requests.Session()

    def get(self) -> requests.Response:
        return self.session.get(self.shop.url + self.path, timeout=15)

    def post(self, action: str, data: dict[str, Any]) -> requests.Response:
        page = self.get()
        # A page with nothing left to change has no form: the session's token is on the buy page too.
        token = TOKEN.search(page.text) or TOKEN.search(self.session.get(self.shop.url + f"/buy/{COURSE}", timeout=15).text)
        assert token, page.text[:500]
        return self.session.post(self.shop.url + self.path + "/" + action, data={**data, "csrf_token": token.group(1)},
                                 timeout=60, allow_redirects=False)


def seat_rows(order_id: str) -> list[models.Seat]:
    with models.db.connection_context():
        pack = models.SeatPack.select().join(models.Order).where(models.Order.public_id == order_id).get()
        return list(models.Seat.select().where(models.Seat.pack == pack.id).order_by(models.Seat.number))


def seat_licenses(order_id: str) -> list[models.License]:
    """Every license issued for a seat of the pack, moved-away ones included."""
    with models.db.connection_context():
        ids = [s.order_id for s in seat_rows(order_id) if s.order_id] + \
              [s.previous_order_id for s in seat_rows(order_id) if s.previous_order_id]
        return list(models.License.select().where(models.License.order.in_(ids)))


def refusals() -> list[dict[str, Any]]:
    with models.db.connection_context():
        return [json.loads(e.detail) for e in models.AuditEvent.select().where(
            models.AuditEvent.action == "seats.refused").order_by(models.AuditEvent.id)]


def revoked_ids(shop: Shop) -> frozenset[str]:
    answer = shop.get("/api/v1/revocations")
    assert answer.status_code == 200
    found = verify_revocations(answer.text.strip(), shop_of(shop).license_keys.public_keys(), shop.clock())
    assert found.ok, found.reason
    return found.revoked


def send_all_mail(shop: Shop) -> int:
    """Run the mail job until the outbox is empty (it sends a batch a run); how many went."""
    sent = total = 1
    total = 0
    while sent:
        sent = run(shop, "mail")["sent"]
        total += sent
    return total


def mails_to(smtp: SmtpServer, address: str) -> list[str]:
    return [plain_text(m) for m in smtp.inbox.messages if m["To"] == address]


def test_a_30_seat_pack_is_paid_once_assigned_by_email_and_one_seat_moved(shop: Shop, smtp: SmtpServer) -> None:
    offer(shop)
    pack = buy_pack(shop, 30)
    # One WeChat payment for all 30 seats at the volume price: list, discount and paid like any order.
    assert (pack["list_price_fen"], pack["discount_fen"], pack["amount_fen"]) == (150000, 30000, 120000)
    assert shop.sandbox.control("GET", f"orders/{pack['out_trade_no']}").json()["total"] == 120000
    assert pack["seats"]["count"] == 30 and pack["seats"]["unit_fen"] == 4000
    assert pack["license"] is None  # the pack's licenses are per seat

    # The teacher gets the seat page link by mail (real SMTP), the same link the API gave.
    assert run(shop, "mail")["sent"] == 1
    [mail] = mails_to(smtp, TEACHER)
    path = SEAT_LINK.search(mail).group(1)
    assert pack["seats"]["page_url"] == "https://shop.test" + path
    page = SeatPage(shop, path)
    assert 'id="seats-free">30<' in page.get().text

    learners = [f"learner{n:02d}@school.example" for n in range(1, 31)]
    assigned = page.post("assign", {"emails": "\n".join(learners)})
    assert assigned.status_code == 303, assigned.text[:800]
    shown = page.get().text
    assert 'id="seats-free">0<' in shown and 'id="seats-assigned">30<' in shown and "learner30@school.example" in shown
    licenses = seat_licenses(pack["order_id"])
    assert len(licenses) == 30 and len({lic.license_id for lic in licenses}) == 30
    # Each learner gets a license mail of their own, carrying their own key.
    assert send_all_mail(shop) == 30
    smtp.inbox.wait_for(31)
    by_order = {lic.order_id: lic for lic in licenses}
    for seat in seat_rows(pack["order_id"]):
        [text] = mails_to(smtp, seat.email)
        assert by_order[seat.order_id].key in text.splitlines()

    # Seat 3 moves to another address: its old license is revoked and listed, the new one mailed.
    old = by_order[seat_rows(pack["order_id"])[2].order_id]
    moved = page.post("move", {"seat": "3", "email": "newcomer@school.example"})
    assert moved.status_code == 303, moved.text[:800]
    assert old.license_id in revoked_ids(shop)
    seat3 = seat_rows(pack["order_id"])[2]
    assert (seat3.email, seat3.moved_from) == ("newcomer@school.example", "learner03@school.example")
    assert run(shop, "mail")["sent"] == 1
    smtp.inbox.wait_for(32)
    [text] = mails_to(smtp, "newcomer@school.example")
    with models.db.connection_context():
        new = models.License.get(models.License.order == seat3.order_id)
    assert new.key in text.splitlines() and new.license_id != old.license_id and new.revoked_at is None

    # Once only: a second move is refused with its reason in both languages, and nothing changes.
    again = page.post("move", {"seat": "3", "email": "third@school.example"})
    assert again.status_code == 409 and "该座位已转让过一次" in again.text and "moved once already" in again.text
    assert refusals()[-1]["error"] == "seat_already_moved"
    assert seat_rows(pack["order_id"])[2].email == "newcomer@school.example"
    assert len(seat_licenses(pack["order_id"])) == 31


def test_buyers_racing_for_the_last_seat_get_exactly_one_license(shop: Shop) -> None:
    offer(shop)
    pack = buy_pack(shop, 2)
    path = "/seats/" + seats.seat_token(shop_of(shop), _order(pack["order_id"]))
    first = SeatPage(shop, path)
    assert first.post("assign", {"emails": "first@school.example"}).status_code == 303
    # Ten browsers of the same teacher (or ten teachers sharing the link) take the last seat at once.
    pages = [SeatPage(shop, path) for _ in range(10)]
    tokens = [TOKEN.search(p.get().text).group(1) for p in pages]
    start = threading.Barrier(len(pages))
    answers: list[requests.Response] = []

    def take(n: int) -> None:
        start.wait()
        answers.append(pages[n].session.post(shop.url + path + "/assign", timeout=60, allow_redirects=False,
                                             data={"emails": f"racer{n}@school.example", "csrf_token": tokens[n]}))

    threads = [threading.Thread(target=take, args=(n,)) for n in range(len(pages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [303] + [409] * 9, [a.text[:300] for a in answers]
    assert all("空余座位不够了" in a.text for a in answers if a.status_code == 409)
    assert len(seat_licenses(pack["order_id"])) == 2
    assert [s.email is not None for s in seat_rows(pack["order_id"])] == [True, True]
    assert [r["error"] for r in refusals()].count("seats_full") == 9


def _order(public_id: str) -> models.Order:
    with models.db.connection_context():
        return models.Order.get(models.Order.public_id == public_id)


def test_a_batch_with_one_bad_address_or_too_many_assigns_nothing(shop: Shop) -> None:
    offer(shop)
    pack = buy_pack(shop, 3)
    page = SeatPage(shop, "/seats/" + seats.seat_token(shop_of(shop), _order(pack["order_id"])))
    for emails, status, code, words in (
            ("a@school.example\nnot-an-address", 400, "seat_email_invalid", "邮箱地址无效"),
            ("a@school.example b@school.example c@school.example d@school.example", 409, "seats_full", "空余座位不够了"),
            ("", 400, "seat_email_invalid", "An e-mail address is not valid")):
        answer = page.post("assign", {"emails": emails})
        assert answer.status_code == status and words in answer.text, answer.text[:500]
        assert refusals()[-1]["error"] == code
        assert all(s.email is None for s in seat_rows(pack["order_id"]))
        assert seat_licenses(pack["order_id"]) == []
    assert page.post("assign", {"emails": "A@school.example"}).status_code == 303
    taken = page.post("assign", {"emails": "a@SCHOOL.example"})  # one seat per address, in any case
    assert taken.status_code == 409 and "已经有一个座位" in taken.text
    unknown = SeatPage(shop, "/seats/st_" + "x" * 43).get()
    assert unknown.status_code == 404 and "座位页面不存在" in unknown.text


BAD_PACKS = [
    ({"seats": 1}, 400, "seats_invalid"),
    ({"seats": 51}, 400, "seats_invalid"),
    ({"seats": "30"}, 400, "seats_invalid"),
    ({"seats": 2.5}, 400, "seats_invalid"),
    ({"seats": True}, 400, "seats_invalid"),
    ({"seats": 5, "email": None}, 400, "seats_need_email"),
    ({"seats": 5, "code": "STUDYGROUP"}, 400, "seats_no_code"),
    ({"seats": 5, "course_id": "rust-monthly"}, 409, "seats_not_offered"),
]


@pytest.mark.parametrize("fields,status,code", BAD_PACKS, ids=[c for _, _, c in BAD_PACKS[:1]] +
                         ["too_many", "string", "fraction", "boolean", "no_email", "with_code", "not_offered"])
def test_a_bad_pack_request_is_a_4xx_in_both_languages_audited_and_writes_no_order(
        shop: Shop, fields: dict[str, Any], status: int, code: str) -> None:
    offer(shop)
    answer = shop.post("/api/v1/orders", {"course_id": COURSE, "email": TEACHER, **fields})
    assert answer.status_code == status, answer.text
    check(answer, "/orders", "post")
    error = answer.json()["error"]
    assert error["code"] == code and error["message_zh"] and error["message_en"]
    assert refusals()[-1]["error"] == code
    with models.db.connection_context():
        assert models.Order.select().count() == 0 and models.SeatPack.select().count() == 0


def test_the_buy_page_sells_packs_without_javascript(shop: Shop) -> None:
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    browser = requests.Session()
    assert "class-seats" not in browser.get(shop.url + f"/buy/{COURSE}", timeout=15).text  # no offer yet
    offer(shop)
    page = browser.get(shop.url + f"/buy/{COURSE}", timeout=15).text
    assert 'id="seats-form"' in page and "¥50.00" in page and "¥40.00" in page
    token = TOKEN.search(page).group(1)
    refused = browser.post(shop.url + f"/buy/{COURSE}/seats", data={"seats": "abc", "email": TEACHER,
                                                                    "csrf_token": token}, timeout=15)
    assert refused.status_code == 400 and "座位数必须是整数" in refused.text and "whole number" in refused.text
    placed = browser.post(shop.url + f"/buy/{COURSE}/seats", data={"seats": "12", "email": TEACHER,
                                                                   "csrf_token": token}, timeout=30)
    assert placed.status_code == 200 and 'data-status="pending"' in placed.text, placed.text[:800]
    assert "12 个座位 × ¥40.00" in placed.text and "¥480.00" in placed.text and 'http-equiv="refresh"' in placed.text
    with models.db.connection_context():
        order = models.Order.select().order_by(models.Order.id.desc()).get()
    shop.sandbox.pay(order.out_trade_no)
    # The page reloads itself until WeChat's notification has come: so does this browser.
    paid = wait_for(lambda: (lambda r: r if 'data-status="fulfilled"' in r.text else None)(
        browser.get(placed.url, timeout=15)))
    assert paid and 'id="seat-page-link"' in paid.text
    link = re.search(r'id="seat-page-link" href="([^"]+)"', paid.text).group(1)
    assert 'id="seats-free">12<' in browser.get(shop.url + link, timeout=15).text


def test_refunds_by_seats_and_in_full_revoke_the_seats_licenses(console: Console) -> None:
    shop = console.shop
    offer(shop)
    pack = buy_pack(shop, 3)
    path = f"/admin/seats/{pack['order_id']}"
    assert console.post(path + "/assign", {"emails": "a@school.example\nb@school.example"}).status_code == 303
    licenses = {lic.order_id: lic for lic in seat_licenses(pack["order_id"])}
    seat_a = seat_rows(pack["order_id"])[0]

    # A partial refund by amount alone is refused: a pack is refunded by seats.
    plain = console.post(f"/admin/orders/{pack['order_id']}/refund", {"amount": "50.00", "reason": "one left"})
    assert plain.status_code == 409 and "按座位" in plain.text

    # Seats 1 (a's) and 3 (free) go back: 2 × ¥50; a's license is revoked once WeChat says SUCCESS.
    made = console.post(path + "/refund", {"seat": ["1", "3"], "reason": "两位学员退课"})
    assert made.status_code == 303, made.text[:800]
    refund = wait_for_refund({"order_id": pack["order_id"]}, "SUCCESS")
    assert refund.amount_fen == 10000
    assert _order(pack["order_id"]).status == "partially_refunded"
    assert licenses[seat_a.order_id].license_id in revoked_ids(shop)
    states = [s.withdrawn_at is not None for s in seat_rows(pack["order_id"])]
    assert states == [True, False, True]
    page = console.page(path)
    assert 'data-seat="1" data-state="withdrawn"' in page and 'data-seat="2" data-state="assigned"' in page
    # A refunded seat can be neither refunded again nor given to someone else.
    twice = console.post(path + "/refund", {"seat": ["1"], "reason": "again"})
    assert twice.status_code == 409 and "已退款或正在退款" in twice.text
    assert console.post(path + "/assign", {"emails": "c@school.example\nd@school.example"}).status_code == 409

    # The rest refunded in full on the order page: every seat's license is revoked.
    rest = console.post(f"/admin/orders/{pack['order_id']}/refund", {"amount": "50.00", "reason": "课程取消"})
    assert rest.status_code == 303
    wait_for_refund({"order_id": pack["order_id"]}, "SUCCESS")
    assert _order(pack["order_id"]).status == "refunded"
    assert {lic.license_id for lic in licenses.values()} <= revoked_ids(shop)
    assert all(s.withdrawn_at is not None for s in seat_rows(pack["order_id"]))
    seat_page = SeatPage(shop, "/seats/" + seats.seat_token(shop_of(shop), _order(pack["order_id"])))
    closed = seat_page.get()
    assert 'id="pack-not-usable" data-status="refunded"' in closed.text
    refused = seat_page.post("move", {"seat": "2", "email": "z@school.example"})
    assert refused.status_code == 409 and "座位包已全额退款" in refused.text
    assert refusals()[-1]["error"] == "seat_pack_refunded"


def test_the_pack_shows_in_the_console_exports_and_revenue_like_any_order(console: Console) -> None:
    shop = console.shop
    offer(shop)
    pack = buy_pack(shop, 10)
    assert "¥400.00" in console.page("/admin/seats") and pack["out_trade_no"] in console.page("/admin/seats")
    assert pack["out_trade_no"] in console.page("/admin/orders")
    order_page = console.page(f"/admin/orders/{pack['order_id']}")
    assert "¥400.00" in order_page and "¥500.00" in order_page
    export = console.get("/admin/export/orders.csv").content.decode("utf-8-sig")
    assert any(pack["out_trade_no"] in line and ",400.00" in line for line in export.splitlines())
    assert "¥400.00" in console.page("/admin/")  # the dashboard's revenue counts it
    # The funnel counts the pack as one order, paid and licensed; its seats' ¥0 orders are left out.
    assert console.post(f"/admin/seats/{pack['order_id']}/assign", {"emails": "x@school.example"}).status_code == 303
    with models.db.connection_context():
        from billing import reports, rollup
        day = rollup.shanghai_day(shop.clock())
        total = reports.funnel(day, day)["total"]
    assert (total.created, total.paid, total.licensed) == (1, 1, 1)
    # Paid without a license of its own is right for a pack: no alert, no attention item.
    run(shop, "alerts")
    with models.db.connection_context():
        assert models.Alert.select().where(models.Alert.kind == "paid_unlicensed").count() == 0


def test_a_seat_page_link_never_reaches_a_log() -> None:
    assert redact_path("/seats/st_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG/assign") == "/seats/[redacted]/assign"


# --- the pages in Chromium: phone and desktop, with and without JavaScript --------------------------

SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}


def _looked_at(page: Any, name: str) -> None:
    """Nothing wider than the screen, measured once its stylesheet applies; the screenshot kept for a person."""
    assert page.locator("main").is_visible()
    settled(page)  # a busy machine once measured the page before style.css arrived (42 px too wide)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, (name, overflow)
    screens.shot(page, f"{name}.png")


@pytest.mark.browser
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
def test_a_teacher_buys_and_assigns_seats_in_a_browser(console: Console, browser: Any, javascript: bool) -> None:
    from playwright.sync_api import expect

    from test_admin import EMAIL, PASSWORD

    shop = console.shop
    shop.app.config.update(SESSION_COOKIE_NAME="lbpay_session")  # __Host- cookies need HTTPS
    offer(shop)
    suffix = "js" if javascript else "nojs"
    # The pages are rendered by the server either way; without JavaScript the phone (the tighter
    # screen) is walked, with it both sizes and the console.
    for device, size in (SIZES.items() if javascript else [("phone", SIZES["phone"])]):
        context = browser.new_context(viewport=size, locale="zh-CN", timezone_id="Asia/Shanghai",
                                      java_script_enabled=javascript)
        context.set_default_timeout(BROWSER_WAIT_MS)
        page = context.new_page()
        page.goto(shop.url + f"/buy/{COURSE}")
        expect(page.locator("#seats-form")).to_be_visible()
        _looked_at(page, f"seats-buy-{device}-{suffix}")
        page.fill("#seats-count", "1")
        page.fill("#seats-email", f"teacher-{device}@school.example")
        page.click("#buy-seats")
        expect(page.locator("#error")).to_have_attribute("data-code", "seats_invalid")
        _looked_at(page, f"seats-refused-{device}-{suffix}")
        page.goto(shop.url + f"/buy/{COURSE}")
        page.fill("#seats-count", "12")
        page.fill("#seats-email", f"teacher-{device}@school.example")
        page.click("#buy-seats")
        expect(page.locator("#status")).to_have_attribute("data-status", "pending")
        expect(page.locator("#qr")).to_be_visible()
        _looked_at(page, f"seats-qr-{device}-{suffix}")
        shop.sandbox.pay(_newest_pack_trade_no())
        # No reload here: the waiting page reloads itself (a meta refresh) until the payment is known.
        expect(page.locator("#seat-page-link")).to_be_visible()
        _looked_at(page, f"seats-paid-{device}-{suffix}")
        page.click("#seat-page-link")
        page.fill("#assign-emails", "\n".join(f"{device}{n}@school.example" for n in range(1, 6)))
        page.click("#assign")
        expect(page.locator("#done")).to_be_visible()
        expect(page.locator("#seats-assigned")).to_have_text("5")
        page.fill("#move-email", f"{device}-new@school.example")
        page.click("#move")
        expect(page.locator("#done")).to_contain_text("已转让")
        _looked_at(page, f"seats-page-{device}-{suffix}")
        page.fill("#assign-emails", f"{device}2@school.example")
        page.click("#assign")
        expect(page.locator("#error")).to_have_attribute("data-code", "seat_email_taken")
        _looked_at(page, f"seats-page-refused-{device}-{suffix}")
        if not javascript:
            context.close()
            continue

        page.goto(shop.url + "/admin/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_url(shop.url + "/admin/")
        page.goto(shop.url + "/admin/seats")
        _looked_at(page, f"admin-seats-{device}-{suffix}")
        page.click("#packs a")
        expect(page.locator("#seats")).to_be_visible()
        _looked_at(page, f"admin-seat-pack-{device}-{suffix}")
        context.close()


def _newest_pack_trade_no() -> str:
    with models.db.connection_context():
        return models.Order.select().where(models.Order.out_trade_no.startswith("LP")).order_by(
            models.Order.id.desc()).get().out_trade_no


def test_a_seat_refund_that_closes_gives_its_seats_back_and_an_unpaid_pack_assigns_nothing(console: Console) -> None:
    shop = console.shop
    offer(shop)
    unpaid = shop.post("/api/v1/orders", {"course_id": COURSE, "email": TEACHER, "seats": 2}).json()
    early = SeatPage(shop, unpaid["seats"]["page_url"].removeprefix("https://shop.test"))
    assert 'data-status="pending"' in early.get().text
    refused = early.post("assign", {"emails": "early@school.example"})
    assert refused.status_code == 409 and "尚未付款" in refused.text
    assert refusals()[-1]["error"] == "seat_pack_not_paid" and seat_licenses(unpaid["order_id"]) == []

    shop.sandbox.config.refund_delay = None  # the refund waits until the test settles it
    pack = buy_pack(shop, 2)
    path = f"/admin/seats/{pack['order_id']}"
    assert console.post(path + "/assign", {"emails": "a@school.example"}).status_code == 303
    assert console.post(path + "/refund", {"seat": ["1"], "reason": "退课"}).status_code == 303
    [made] = [r for r in _refunds(pack["order_id"])]
    # While WeChat processes it, the seat can be neither moved nor refunded again.
    moving = console.post(path + "/move", {"seat": "1", "email": "b@school.example"})
    assert moving.status_code == 409 and "正在退款" in moving.text
    settled = shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "CLOSED"})
    assert settled.status_code == 200, settled.text
    assert wait_for_refund({"order_id": pack["order_id"]}, "CLOSED").status == "CLOSED"
    # The money did not go back: the seat and its license stay, and it can move again.
    assert [s.withdrawn_at for s in seat_rows(pack["order_id"])] == [None, None]
    assert console.post(path + "/move", {"seat": "1", "email": "b@school.example"}).status_code == 303
    assert seat_rows(pack["order_id"])[0].email == "b@school.example"


def _refunds(order_id: str) -> list[models.Refund]:
    with models.db.connection_context():
        return list(models.Refund.select().join(models.Order).where(models.Order.public_id == order_id))


def test_guessing_seat_page_links_is_refused_for_a_while(shop: Shop) -> None:
    shop.clock.freeze()  # the limit refills one miss each 2 s: hold time still while the guesses are spent
    guesses = [shop.get(f"/seats/st_{n:043d}") for n in range(seats_misses_allowed() + 1)]
    assert {g.status_code for g in guesses[:-1]} == {404}
    assert guesses[-1].status_code == 429 and "请求过于频繁" in guesses[-1].text


def seats_misses_allowed() -> int:
    from web.seats import SEAT_MISSES_PER_CLIENT
    return SEAT_MISSES_PER_CLIENT.count
