"""The creator's console over real HTTP: sign-in, its defences, search, provisioning, courses and exports."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
from argon2 import PasswordHasher
from conftest import Shop, command_line

import models
from billing.admin_users import create_admin, enrol_totp
from billing.limits import SIGN_IN_UNKNOWN_DEVICES

# Open to anyone: signing in, and asking for (or using) a mailed link that makes a browser known.
OPEN_ENDPOINTS = ("admin.login", "admin.login_totp", "admin.login_link", "admin.use_login_link")
EMAIL = "creator@example.com"
PASSWORD = "correct horse battery staple"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    """A browser-like client of /admin: one cookie jar, CSRF tokens read from the pages."""

    shop: Shop
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        # Close pooled sockets when the console goes away, not at some later garbage collection.
        weakref.finalize(self, self.session.close)

    def url(self, path: str) -> str:
        return self.shop.url + path

    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("allow_redirects", False)
        return self.session.get(self.url(path), timeout=15, **kw)

    def token(self, path: str = "/admin/login") -> str:
        page = self.session.get(self.url(path), timeout=15)
        match = TOKEN.search(page.text)
        assert match, page.text[:500]
        return match.group(1)

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
             **kw: Any) -> requests.Response:
        data = dict(data or {})
        if csrf:
            data["csrf_token"] = self.token("/admin/" if self.signed_in() else "/admin/login")
        kw.setdefault("allow_redirects", False)
        return self.session.post(self.url(path), data=data, timeout=30, **kw)

    def signed_in(self) -> bool:
        return self.session.get(self.url("/admin/"), allow_redirects=False, timeout=15).status_code == 200

    def login(self, email: str = EMAIL, password: str = PASSWORD, **extra: str) -> requests.Response:
        data = {"email": email, "password": password, "csrf_token": self.token("/admin/login"), **extra}
        return self.session.post(self.url("/admin/login"), data=data, allow_redirects=False, timeout=30)

    def page(self, path: str) -> str:
        response = self.get(path)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        return response.text


def shop_of(shop: Shop) -> Any:
    return shop.app.extensions["lbpay.shop"]


@pytest.fixture
def console(shop: Shop) -> Console:
    """A creator signed in to the console of the live-mode shop."""
    # The test server speaks plain HTTP on loopback; a Secure cookie would never come back.
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
    c = Console(shop)
    response = c.login()
    assert response.status_code == 303 and response.headers["Location"].endswith("/admin/"), response.text
    return c


def paid_order(shop: Shop, **fields: Any) -> dict[str, Any]:
    order = shop.order(**fields)
    shop.sandbox.pay(order["out_trade_no"])
    view = shop.wait_for_status(order, "fulfilled")
    assert view["status"] == "fulfilled", view
    return {**order, **view}


def _sample(rule: Any) -> str:
    values = {"public_id": "ord_nothing", "out_refund_no": "RFnothing", "course_id": "cpp-primer-5th",
              "alert_id": "1", "difference_id": "1", "discount_id": "1", "token": "nothing", "request_id": "1",
              "endpoint_id": "1", "delivery_id": "1", "complaint_id": "2000nothing", "index": "0"}
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule).format(**values)


def admin_rules(shop: Shop) -> list[Any]:
    return [r for r in shop.app.url_map.iter_rules()
            if r.rule.startswith("/admin") and r.endpoint not in OPEN_ENDPOINTS]


# --- who may come in ------------------------------------------------------------------------

def test_every_admin_route_refuses_an_anonymous_request(shop: Shop) -> None:
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    anonymous = Console(shop)
    token = anonymous.token()  # a valid CSRF token, so the sign-in check itself is what refuses
    rules = admin_rules(shop)
    assert len(rules) >= 15
    for rule in rules:
        path = _sample(rule)
        if "GET" in rule.methods:
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["Location"].startswith("/admin/login"), path
        if "POST" in rule.methods:
            response = anonymous.session.post(anonymous.url(path), data={"csrf_token": token},
                                              allow_redirects=False, timeout=15)
            assert response.status_code == 303, path
            assert response.headers["Location"].startswith("/admin/login"), path
            assert anonymous.session.post(anonymous.url(path), allow_redirects=False,
                                          timeout=15).status_code == 400, path


def test_every_state_changing_request_without_a_csrf_token_is_refused(console: Console) -> None:
    order = paid_order(console.shop)
    with models.db.connection_context():
        events = models.AuditEvent.select().count()
    posts = [r for r in admin_rules(console.shop) if "POST" in r.methods]
    assert len(posts) >= 9
    for rule in posts:
        path = _sample(rule).replace("ord_nothing", order["order_id"])
        for data in ({}, {"csrf_token": "forged"}):
            response = console.session.post(console.url(path), data={**data, "reason": "x", "amount": "1.00"},
                                            allow_redirects=False, timeout=15)
            assert response.status_code == 400, path
    good = console.token("/admin/")
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        response = console.session.post(console.url(f"/admin/orders/{order['order_id']}/revoke"),
                                        data={"csrf_token": good, "reason": "x"}, headers=headers,
                                        allow_redirects=False, timeout=15)
        assert response.status_code == 400
    with models.db.connection_context():
        assert models.AuditEvent.select().count() == events
    assert console.shop.poll(order)["license"]["state"] == "active"
    # The notify endpoints and the token-authenticated API need no CSRF token.
    assert console.shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"}).status_code == 201


def test_login_brute_force_is_throttled_before_the_password_hash(shop: Shop,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
    checks: list[str] = []
    verify = PasswordHasher.verify

    def counted(self: PasswordHasher, hash: str, password: str) -> bool:
        checks.append(password)
        return verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counted)
    shop.clock.freeze()  # no refill while the hashes run, however busy the machine
    attacker = Console(shop)
    for n in range(10):
        response = attacker.login(password=f"guess-{n}")
        assert response.status_code == 401
        assert "Wrong e-mail or password" in response.text
    assert len(checks) == 10
    refused = attacker.login(password=PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "Try again in" in refused.text and "Asia/Shanghai" in refused.text
    assert len(checks) == 10, "the hash was checked although the attempt was throttled"
    # Time refills the bucket; the right password then works.
    shop.clock.advance(120)
    assert attacker.login().status_code == 303


def test_one_address_is_throttled_across_many_accounts(shop: Shop) -> None:
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    # No refill between attempts: on a busy machine 31 password hashes took longer than one refill
    # (20 s) and the 31st was let through (issue 24, seen under load).
    shop.clock.freeze()
    stuffer = Console(shop)
    statuses = [stuffer.login(email=f"user{n}@example.com", password="123456").status_code for n in range(31)]
    assert statuses[:30] == [401] * 30
    assert statuses[30] == 429


def test_an_unknown_account_is_answered_like_a_wrong_password(console: Console) -> None:
    other = Console(console.shop)
    unknown = other.login(email="nobody@example.com")
    wrong = other.login(password="not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.text.count("Wrong e-mail or password") == wrong.text.count("Wrong e-mail or password") == 1


def test_sign_in_makes_a_new_session_and_sign_out_kills_the_old_cookie(shop: Shop) -> None:
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
    c = Console(shop)
    c.token()
    before = dict(c.session.cookies)
    assert c.login().status_code == 303
    after = dict(c.session.cookies)
    assert before != after
    assert c.get("/admin/").status_code == 200
    stolen = dict(c.session.cookies)
    assert c.post("/admin/logout").status_code == 303
    with requests.Session() as thief:
        thief.cookies.update(stolen)
        replay = thief.get(shop.url + "/admin/", allow_redirects=False, timeout=15)
    assert replay.status_code == 303 and replay.headers["Location"].startswith("/admin/login")


def test_the_session_cookie_is_secure_httponly_and_samesite(shop: Shop) -> None:
    response = requests.get(shop.url + "/admin/login", timeout=15)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-lbpay=")
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "SameSite=Lax" in cookie and "; Path=/" in cookie
    for name in ("Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"):
        assert name in response.headers
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"].split("script-src")[1]


def test_an_idle_session_expires(console: Console) -> None:
    assert console.get("/admin/").status_code == 200
    console.shop.clock.advance(29 * 60)
    assert console.get("/admin/").status_code == 200
    console.shop.clock.advance(31 * 60)
    response = console.get("/admin/")
    assert response.status_code == 303 and response.headers["Location"].startswith("/admin/login")


def test_sign_in_with_totp_refuses_a_wrong_or_reused_code(shop: Shop) -> None:
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
        uri = enrol_totp(shop_of(shop), EMAIL)
    totp = pyotp.parse_uri(uri)
    c = Console(shop)
    first = c.login()
    assert first.status_code == 303 and first.headers["Location"].endswith("/admin/login/totp")
    assert c.get("/admin/").status_code == 303  # a password alone is not a sign-in
    wrong = c.session.post(c.url("/admin/login/totp"), allow_redirects=False, timeout=15,
                           data={"code": "000000" if totp.now() != "000000" else "111111",
                                 "csrf_token": c.token("/admin/login/totp")})
    assert wrong.status_code == 401
    code = totp.at(shop.clock())
    ok = c.session.post(c.url("/admin/login/totp"), data={"code": code, "csrf_token": c.token("/admin/login/totp")},
                        allow_redirects=False, timeout=15)
    assert ok.status_code == 303 and ok.headers["Location"].endswith("/admin/")
    assert c.get("/admin/").status_code == 200
    again = Console(shop)
    again.login()
    replay = again.session.post(again.url("/admin/login/totp"), allow_redirects=False, timeout=15,
                                data={"code": code, "csrf_token": again.token("/admin/login/totp")})
    assert replay.status_code == 401


def test_next_after_sign_in_stays_inside_the_console(shop: Shop) -> None:
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
    for target, expected in (("https://evil.example/", "/admin/"), ("//evil.example", "/admin/"),
                             ("/admin/courses", "/admin/courses")):
        c = Console(shop)
        response = c.login(next=target)
        assert response.headers["Location"] == expected


# --- learner data cannot script the console -------------------------------------------------

def test_learner_and_course_text_is_escaped_in_every_page(console: Console) -> None:
    from billing.courses import save_course

    evil = '<script>alert(1)</script>" hx-get="/x'
    with models.db.connection_context():
        save_course(shop_of(console.shop), course_id="evil", title=evil, price_fen=100)
    order = paid_order(console.shop, course_id="evil", email="learner@example.com")
    # The API refuses such an address; the page must stay safe even if one reached the database.
    with models.db.connection_context():
        models.Order.update(email="\"><img src=x onerror=alert(1)>@x.io").where(
            models.Order.public_id == order["order_id"]).execute()
    pages = [console.page(p) for p in (f"/admin/orders/{order['order_id']}", "/admin/orders", "/admin/courses",
                                       "/admin/", "/admin/orders?q=" + requests.utils.quote(evil))]
    for text in pages:
        assert "<script>alert(1)" not in text and 'hx-get="/x' not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    assert "&lt;img src=x onerror=alert(1)&gt;@x.io" in pages[0]
    assert "<script" not in re.sub(r'<script src="/static/(vendor/htmx\.min|admin)\.js" defer></script>', "", pages[0])


# --- finding and fixing orders --------------------------------------------------------------

def test_one_search_box_finds_an_order_by_any_id_the_learner_has(console: Console) -> None:
    order = paid_order(console.shop, email="Learner@Example.com")
    other = paid_order(console.shop)
    with models.db.connection_context():
        license_id = models.License.get(models.License.order == models.Order.get(
            models.Order.public_id == order["order_id"]).id).license_id
    for q in (order["order_id"], order["out_trade_no"], order["transaction_id"], license_id,
              "learner@example.com"):
        response = console.get("/admin/orders", params={"q": q})
        assert response.status_code == 303, q
        assert response.headers["Location"] == f"/admin/orders/{order['order_id']}"
    listing = console.page("/admin/orders?status=fulfilled&course=cpp-primer-5th")
    assert order["order_id"] in listing and other["order_id"] in listing
    assert order["order_id"] not in console.page("/admin/orders?status=pending")
    assert order["order_id"] not in console.page("/admin/orders?since=2001-01-01&until=2001-01-02")


def test_the_order_page_shows_amounts_times_wechat_fields_and_the_timeline(console: Console) -> None:
    order = paid_order(console.shop)
    page = console.page(f"/admin/orders/{order['order_id']}")
    assert "¥99.00" in page and order["transaction_id"] in page and order["out_trade_no"] in page
    assert "北京时间" in page
    for action in ("order.created", "order.wechat_created", "order.paid", "license.issued"):
        assert f'data-action="{action}"' in page, action  # the code stays in the raw record, folded away
    # The timeline in words, money in yuan: never a key like "order.created amount_fen=9900".
    for words in ("创建订单", "Order created", "amount ¥99.00", "已付款", "微信支付付款通知", "paid and licensed",
                  f"WeChat transaction {order['transaction_id']}", "发放许可证", "来自微信通知"):
        assert words in page, words
    assert "amount_fen=" not in page and "result=fulfilled" not in page


def test_revoke_and_reinstate_need_a_reason_and_show_in_the_poll(console: Console) -> None:
    order = paid_order(console.shop)
    path = f"/admin/orders/{order['order_id']}"
    assert console.post(path + "/revoke", {"reason": "  "}).status_code == 400
    assert console.post(path + "/revoke", {"reason": "chargeback"}).status_code == 303
    assert console.shop.poll(order)["license"]["state"] == "revoked"
    assert console.post(path + "/reinstate", {"reason": "resolved"}).status_code == 303
    assert console.shop.poll(order)["license"]["state"] == "active"
    page = console.page(path)
    assert "license.revoked" in page and "license.reinstated" in page and "admin:creator@example.com" in page


def test_a_comp_grants_a_license_without_payment(console: Console) -> None:
    assert console.post("/admin/comp", {"course": "cpp-primer-5th", "reason": ""}).status_code == 400
    response = console.post("/admin/comp", {"course": "cpp-primer-5th", "email": "friend@example.com",
                                            "reason": "beta tester"})
    assert response.status_code == 303
    page = console.page(response.headers["Location"])
    assert "Comp: granted without payment" in page and "license.comped" in page and "¥0.00" in page
    with models.db.connection_context():
        order = models.Order.get(models.Order.email == "friend@example.com")
        license = models.License.get(models.License.order == order.id)
    assert order.amount_fen == 0 and order.status == "fulfilled" and order.transaction_id is None
    assert license.key in page.replace("&#43;", "+")
    assert not any(r["path"].endswith(order.out_trade_no) for r in console.shop.sandbox.requests_log())


def test_mark_paid_asks_wechat_first_and_fulfils_only_a_paid_order(console: Console) -> None:
    shop = console.shop
    order = shop.order()
    path = f"/admin/orders/{order['order_id']}"
    # Not paid yet: WeChat says NOTPAY and marking paid is refused.
    check = console.post(path + "/check")
    assert check.status_code == 200 and "NOTPAY" in check.text and "Mark paid" not in check.text
    assert console.post(path + "/mark-paid", {"reason": "learner says paid"}).status_code == 409
    # Paid, but the notification never reaches us.
    assert shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}}).status_code == 200
    shop.sandbox.pay(order["out_trade_no"])
    check = console.post(path + "/check")
    assert "SUCCESS" in check.text and "Mark paid" in check.text
    assert console.post(path + "/mark-paid", {"reason": "learner wrote in"}).status_code == 303
    view = shop.poll(order)
    assert view["status"] == "fulfilled" and view["license"]["state"] == "active"
    page = console.page(path)
    assert "admin.mark_paid" in page and "source: admin" in page


def test_wechat_failing_under_the_console_is_a_503_page_with_the_code(console: Console) -> None:
    # Billing turns the client's errors into wechat_unavailable (web/ imports nothing from wechatpay/).
    from test_refunds import refund, refunds_of

    shop = console.shop
    order = paid_order(shop)
    shop.sandbox.config.refund_delay = None
    assert refund(console, order, "1.00").status_code == 303
    [made] = refunds_of(order)
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 100, "status": 500, "code": "SYSTEM_ERROR"}})
    path = f"/admin/orders/{order['order_id']}"
    for answer in (console.post(path + "/check"), console.post(path + "/mark-paid", {"reason": "learner wrote in"}),
                   console.post(f"/admin/refunds/{made.out_refund_no}/sync")):
        assert answer.status_code == 503, answer.text
        assert "WeChat Pay is unavailable" in answer.text and "SYSTEM_ERROR" in answer.text


# --- courses, dashboard, exports ------------------------------------------------------------

@pytest.mark.parametrize("price", ["0", "-1", "12.345", "1e3", "abc", "0.1+0.2", "NaN", ""])
def test_a_course_price_that_is_not_yuan_and_fen_is_refused(console: Console, price: str) -> None:
    response = console.post("/admin/courses/new", {"id": "bad-price", "title": "t", "price": price,
                                                   "plan": "one_time", "active": "on"})
    assert response.status_code == 400
    with models.db.connection_context():
        assert models.Course.get_or_none(models.Course.id == "bad-price") is None


def test_courses_are_added_edited_and_deactivated_with_prices_in_yuan(console: Console) -> None:
    response = console.post("/admin/courses/new", {"id": "go-weekly", "title": "Go 每周一课", "price": "19.90",
                                                   "plan": "subscription", "period_days": "7", "active": "on"})
    assert response.status_code == 303
    courses = {c["id"]: c for c in console.shop.get("/api/v1/courses").json()["courses"]}
    assert courses["go-weekly"]["price_fen"] == 1990 and courses["go-weekly"]["period_days"] == 7
    response = console.post("/admin/courses/go-weekly/edit", {"title": "Go 每周一课", "price": "1000000",
                                                             "plan": "subscription", "period_days": "7"})
    assert response.status_code == 303
    with models.db.connection_context():
        course = models.Course.get_by_id("go-weekly")
    assert course.price_fen == 100_000_000 and course.active is False
    assert "go-weekly" not in {c["id"] for c in console.shop.get("/api/v1/courses").json()["courses"]}


def test_the_dashboard_shows_sales_statuses_attention_and_a_whole_chain(console: Console) -> None:
    paid_order(console.shop)
    late = console.shop.order()
    with models.db.connection_context():
        models.Order.update(flag="AMOUNT_MISMATCH", flag_detail="paid 1 CNY, order is 9900 CNY").where(
            models.Order.public_id == late["order_id"]).execute()
    page = console.page("/admin/")
    assert "¥99.00" in page and "Audit chain whole" in page
    assert "AMOUNT_MISMATCH" in page and late["order_id"] in page
    assert "<svg" in page and "<rect" in page


def test_csv_exports_are_utf8_with_a_bom_and_defuse_formulas(console: Console) -> None:
    from billing.courses import save_course

    with models.db.connection_context():
        save_course(shop_of(console.shop), course_id="formula", title="=HYPERLINK(\"x\") 课程", price_fen=500)
    order = paid_order(console.shop, course_id="formula")
    response = console.get("/admin/export/orders.csv", params={"since": "2000-01-01", "until": "2099-12-31"})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][1] == "order"
    row = next(r for r in rows if r[1] == order["order_id"])
    assert row[5] == "'=HYPERLINK(\"x\") 课程" and row[7] == "5.00" and row[8] == "fulfilled"
    empty = console.get("/admin/export/orders.csv", params={"since": "2001-01-01", "until": "2001-01-01"})
    assert len(list(csv.reader(io.StringIO(empty.content.decode("utf-8-sig"))))) == 1
    refunds = console.get("/admin/export/refunds.csv")
    assert refunds.status_code == 200 and refunds.content.startswith(b"\xef\xbb\xbf")


# --- the command line -----------------------------------------------------------------------

@pytest.fixture
def run(tmp_path: Path) -> Any:
    """`lbpay` in this process, each command building its own app as a new process would."""
    lbpay = command_line(tmp_path / "instance")

    def run_(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = lbpay(*args, input=stdin)
        return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)

    return run_


def test_admin_create_reads_the_password_file_without_its_newline(run: Any, tmp_path: Path) -> None:
    assert run("init").returncode == 0
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    made = run("admin", "create", "Creator@Example.com", "--password-file", str(secret))
    assert made.returncode == 0, made.stderr
    assert "creator@example.com" in made.stdout
    assert run("admin", "create", EMAIL, "--password", PASSWORD).returncode != 0
    no_tty = run("admin", "create", EMAIL, stdin="")
    assert no_tty.returncode != 0 and "--password-file" in no_tty.stderr
    short = tmp_path / "short"
    short.write_text("abc\n")
    assert run("admin", "create", EMAIL, "--password-file", str(short)).returncode != 0
    from argon2 import PasswordHasher as Hasher

    from app import create_app

    create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SCHEDULER": "off"})
    with models.db.connection_context():
        user = models.AdminUser.get(models.AdminUser.email == EMAIL)
    assert user.password_hash.startswith("$argon2id$")
    assert Hasher().verify(user.password_hash, PASSWORD)


def test_a_process_of_the_app_hashes_passwords_at_rfc_9106s_low_memory_profile() -> None:
    """The shipped argon2id cost (conftest gives this process's apps the cheapest one, to save CPU)."""
    done = subprocess.run([sys.executable, "-c", "from billing.admin_users import hash_password; "
                           "print(hash_password('a long enough password'))"],
                          cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), done.stdout


def test_admin_totp_prints_an_otpauth_uri_and_a_qr_code(run: Any, tmp_path: Path) -> None:
    run("init")
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD)
    run("admin", "create", EMAIL, "--password-file", str(secret))
    svg = tmp_path / "qr.svg"
    shown = run("admin", "totp", EMAIL, "--svg", str(svg))
    assert shown.returncode == 0, shown.stderr
    uri = next(line for line in shown.stdout.splitlines() if line.startswith("otpauth://totp/"))
    assert "issuer=Learning%20Buddy%20Pay" in uri and "secret=" in uri
    assert "█" in shown.stdout or "▀" in shown.stdout
    assert svg.read_text().startswith("<svg") and svg.stat().st_mode & 0o077 == 0
    assert run("admin", "totp", "nobody@example.com").returncode != 0


def test_audit_verify_names_the_first_tampered_event(run: Any, tmp_path: Path) -> None:
    run("init")
    run("courses", "add", "cpp-primer-5th", "--title", "C++", "--price-fen", "9900")
    run("courses", "add", "cpp-primer-5th", "--title", "C++ Primer", "--price-fen", "9900")
    run("courses", "add", "rust", "--title", "Rust", "--price-fen", "100")
    whole = run("audit", "verify")
    assert whole.returncode == 0 and "audit chain whole: 3 events" in whole.stdout
    import sqlite3

    with sqlite3.connect(tmp_path / "instance" / "lbpay.db") as db:
        db.execute("UPDATE audit_event SET detail = replace(detail, '9900', '1') WHERE id = 2")
    broken = run("audit", "verify")
    assert broken.returncode == 1
    assert "BROKEN at event 2 (course.saved" in broken.stderr


def test_the_dashboard_badge_shows_a_tampered_chain(console: Console) -> None:
    paid_order(console.shop)
    with models.db.connection_context():
        first = models.AuditEvent.select().order_by(models.AuditEvent.id).first()
        models.AuditEvent.update(actor="someone else").where(models.AuditEvent.id == first.id).execute()
    page = console.page("/admin/")
    assert f"Audit chain BROKEN at event {first.id}" in page


def test_a_license_is_re_sent_by_mail_to_the_address_of_the_order(console: Console) -> None:
    order = paid_order(console.shop, email="learner@example.com")
    with models.db.connection_context():
        before = models.MailOutbox.select().where(models.MailOutbox.to == "learner@example.com").count()
    assert console.post(f"/admin/orders/{order['order_id']}/resend").status_code == 303
    with models.db.connection_context():
        mails = list(models.MailOutbox.select().where(models.MailOutbox.to == "learner@example.com"))
    assert len(mails) == before + 1 and mails[-1].kind == "resend"
    assert order["license"]["key"] in mails[-1].text
    assert "license.resent" in console.page(f"/admin/orders/{order['order_id']}")
    no_mail = paid_order(console.shop)
    assert console.post(f"/admin/orders/{no_mail['order_id']}/resend").status_code == 400


def test_a_large_trail_is_walked_in_full_by_the_job_and_incrementally_by_the_dashboard(
        console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the dashboard's walking limit the hourly job's full walk plus the events since then decide."""
    import billing.reports as reports
    from operations.scheduler import holder_id, run_job

    paid_order(console.shop)
    monkeypatch.setattr(reports, "FULL_WALK_LIMIT", 2)
    with models.db.connection_context():
        summary = run_job(console.shop.app.extensions["lbpay.shop"], "audit_verify", holder_id())
        assert summary["whole"] and summary["last_id"]
        assert reports.chain_status()["whole"] is True
        newest = models.AuditEvent.select().order_by(models.AuditEvent.id.desc()).first()
        models.AuditEvent.update(actor="someone else").where(models.AuditEvent.id == newest.id).execute()
        assert reports.chain_status() == {**reports.chain_status(), "whole": False, "bad": newest.id}
        oldest = models.AuditEvent.select().order_by(models.AuditEvent.id).first()
        models.AuditEvent.update(actor="someone else").where(models.AuditEvent.id == oldest.id).execute()
        assert run_job(console.shop.app.extensions["lbpay.shop"], "audit_verify", holder_id()) == {}  # walked < 1 h ago
        console.shop.clock.advance(3600)
        broken = run_job(console.shop.app.extensions["lbpay.shop"], "audit_verify", holder_id())
    assert broken["whole"] is False and broken["bad"] == oldest.id
    with models.db.connection_context():
        assert reports.chain_status()["bad"] == oldest.id


# --- HEAD, CSRF on the sign-in forms, lockout, odd filters (issue 15) -----------------------

def _head_body() -> dict[str, str]:
    """A form that would change something on every admin POST route, if HEAD ran the POST branch."""
    return {"reason": "head attack", "amount": "0.01", "price": "0.01", "title": "HEAD 改价", "plan": "one_time",
            "id": "head-course", "course": "cpp-primer-5th", "email": EMAIL, "password": PASSWORD,
            "active": "on", "code": "123456", "revoke": "on"}


def test_head_with_a_form_body_changes_nothing_on_any_admin_route(console: Console) -> None:
    """HEAD is GET: a HEAD carrying a form (and even a valid CSRF token) never signs in or changes data."""
    order = paid_order(console.shop)
    with models.db.connection_context():
        events = models.AuditEvent.select().count()
        price = models.Course.get_by_id("cpp-primer-5th").price_fen
        orders = models.Order.select().count()
    posts = [r for r in console.shop.app.url_map.iter_rules() if r.rule.startswith("/admin") and "POST" in r.methods]
    assert len(posts) >= 11 and {"admin.login", "admin.login_totp", "admin.comp"} <= {r.endpoint for r in posts}
    stranger = Console(console.shop)
    for who in (console, stranger):
        token = who.token("/admin/" if who is console else "/admin/login")
        for rule in posts:
            path = _sample(rule).replace("ord_nothing", order["order_id"])
            response = who.session.head(who.url(path), data={**_head_body(), "csrf_token": token},
                                        allow_redirects=False, timeout=15)
            assert response.status_code in (200, 303, 404, 405), (path, response.status_code)
    assert not stranger.signed_in()
    with models.db.connection_context():
        assert models.AuditEvent.select().count() == events
        assert models.Course.get_by_id("cpp-primer-5th").price_fen == price
        assert models.Course.get_or_none(models.Course.id == "head-course") is None
        assert models.Order.select().count() == orders
    assert console.shop.poll(order)["license"]["state"] == "active"


def test_every_unsafe_method_needs_the_csrf_token(console: Console) -> None:
    for method in ("PUT", "PATCH", "DELETE"):
        response = console.session.request(method, console.url("/admin/courses/new"), allow_redirects=False,
                                           data={"id": "x", "title": "x", "price": "1"}, timeout=15)
        assert response.status_code == 400, method


def test_the_sign_in_forms_refuse_a_post_without_a_csrf_token(shop: Shop) -> None:
    """Login CSRF: a foreign page must not sign the creator's browser in (or into the attacker's account)."""
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
        totp = pyotp.parse_uri(enrol_totp(shop_of(shop), EMAIL))
    c = Console(shop)
    for extra in ({}, {"csrf_token": "forged"}):
        refused = c.session.post(c.url("/admin/login"), data={"email": EMAIL, "password": PASSWORD, **extra},
                                 allow_redirects=False, timeout=15)
        assert refused.status_code == 400
    assert c.login().headers["Location"].endswith("/admin/login/totp")
    for extra in ({}, {"csrf_token": "forged"}):
        refused = c.session.post(c.url("/admin/login/totp"), data={"code": totp.at(shop.clock()), **extra},
                                 allow_redirects=False, timeout=15)
        assert refused.status_code == 400
    assert not c.signed_in()
    ok = c.session.post(c.url("/admin/login/totp"), allow_redirects=False, timeout=15,
                        data={"code": totp.at(shop.clock()), "csrf_token": c.token("/admin/login/totp")})
    assert ok.status_code == 303 and c.signed_in()


def _from(console: Console, address: str) -> Console:
    console.session.headers["X-Forwarded-For"] = address
    return console


@pytest.fixture
def behind_one_proxy(tmp_path: Path, keys: Any, sandbox: Any, clock: Any) -> Any:
    """The live shop behind one proxy hop, so each test client can speak from its own address."""
    from conftest import start_shop

    clock.freeze()  # no refill between attempts, however slow the hashing
    started = start_shop(tmp_path, keys, sandbox, clock, PROXY_HOPS=1)
    started.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop_of(started), EMAIL, PASSWORD)
    yield started
    started.server.stop()


def test_wrong_passwords_from_another_address_do_not_lock_the_creator_out(behind_one_proxy: Shop) -> None:
    shop = behind_one_proxy
    attacker = _from(Console(shop), "203.0.113.7")
    assert [attacker.login(password=f"guess-{n}").status_code for n in range(11)] == [401] * 10 + [429]
    creator = _from(Console(shop), "198.51.100.20")
    assert creator.login().status_code == 303


def test_a_browser_that_signed_in_before_is_not_locked_out_by_a_distributed_attack(behind_one_proxy: Shop) -> None:
    shop = behind_one_proxy
    known = _from(Console(shop), "198.51.100.20")
    assert known.login().status_code == 303
    assert known.post("/admin/logout").status_code == 303
    # Guesses spread over many addresses: each address stays under its own limits ...
    shop.clock.freeze()  # the account's limit refills one each 30 s: no refill while 60 guesses are made
    statuses = [_from(Console(shop), f"203.0.113.{n // 5}").login(password=f"guess-{n}").status_code
                for n in range(60)]
    # (the known browser's own first sign-in, before it had a cookie, took one attempt of the account's)
    assert statuses.count(401) == SIGN_IN_UNKNOWN_DEVICES.count - 1 and statuses[-1] == 429
    # ... so the account is closed to browsers it never saw, even at the creator's own address,
    assert _from(Console(shop), "198.51.100.20").login().status_code == 429
    # but the browser holding the signed device cookie still signs in.
    assert known.login().status_code == 303
    # A forged device cookie is no key: it counts as an unknown browser.
    forger = _from(Console(shop), "192.0.2.9")
    forger.session.cookies.set("lbpay_device", known.session.cookies.get("lbpay_device") + "x", path="/admin")
    assert forger.login().status_code == 429


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1999-12-31", "2026-02-30"])
def test_an_odd_date_filter_is_a_clear_400(console: Console, day: str) -> None:
    for path in ("/admin/orders", "/admin/export/orders.csv", "/admin/export/refunds.csv"):
        for name in ("since", "until"):
            response = console.get(path, params={name: day})
            assert response.status_code == 400, (path, name, response.status_code)
            assert "YYYY-MM-DD" in response.text or "dates run from" in response.text
