"""Webhooks (issue 22, item 3), end to end: endpoints added in the console, a sale paid in the WeChat Pay
sandbox, the ``webhooks`` job posting to real HTTP receivers on loopback (never anywhere else), signatures
checked with the ``standardwebhooks`` package as a creator's receiver would, a receiver that was down
getting the event later, 企业微信 and 飞书 bot messages, the delivery log and "send again"."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
import standardwebhooks
import screens
from conftest import Shop
from test_admin import Console, console, paid_order, shop_of  # noqa: F401  (the signed-in console fixture)
from test_console_browser import settled

import models
from billing import BillingError, webhooks
from operations.scheduler import holder_id, run_job



@pytest.fixture
def shop_settings() -> dict[str, Any]:
    return {"WEBHOOK_TARGETS": "loopback"}  # the receivers are on this machine; nothing else is ever reached


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A creator's endpoint on loopback: records every request, answers with ``status`` and ``answer``."""

    port: int = 0
    status: int = 200
    answer: bytes = b"ok"
    got: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", "0"))
                receiver.got.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                             self.rfile.read(length)))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def free_port() -> int:
    """A loopback port nobody listens on (a receiver that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_webhooks(shop: Shop) -> dict[str, Any]:
    with models.db.connection_context():
        summary = run_job(shop_of(shop), "webhooks", holder_id())
    assert summary is not None and "error" not in summary, summary
    return summary


def add_endpoint(console: Console, url: str, fmt: str = "standard", events: tuple[str, ...] = ("order.paid",),
                 **extra: str) -> str:
    made = console.post("/admin/webhooks/new", {"url": url, "format": fmt, "events": list(events), **extra})
    assert made.status_code == 303, made.text
    return str(made.headers["Location"])


def secret_on(console: Console, path: str) -> str:
    page = console.page(path)
    start = page.index('id="webhook-secret">') + len('id="webhook-secret">')
    return page[start:page.index("</code>", start)]


def deliveries() -> list[models.WebhookDelivery]:
    with models.db.connection_context():
        return list(models.WebhookDelivery.select().order_by(models.WebhookDelivery.id))


def test_a_sale_reaches_a_local_receiver_signed_so_that_standardwebhooks_verifies_it(
        console: Console, receiver: Receiver) -> None:
    path = add_endpoint(console, receiver.url + "/hooks/lbpay", events=("order.paid", "license.issued"))
    secret = secret_on(console, path)
    assert secret.startswith("whsec_")
    sold = paid_order(console.shop, email="learner@example.com")
    assert run_webhooks(console.shop)["delivered"] == 2

    verifier = standardwebhooks.Webhook(secret)
    bodies = [verifier.verify(r.body, r.headers) for r in receiver.got]
    assert [b["type"] for b in bodies] == ["order.paid", "license.issued"]
    assert {r.path for r in receiver.got} == {"/hooks/lbpay"}
    order = bodies[0]["data"]["order"]
    assert (order["id"], order["amount_fen"], order["course_title"], order["email"]) == (
        sold["order_id"], 9900, "C++ Primer 第5版", "learner@example.com")
    assert bodies[1]["data"]["license"]["id"] == sold["license"]["id"]
    # A body changed in transit, another endpoint's secret, or an old timestamp (a replay) is refused.
    first = receiver.got[0]
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(first.body.replace(b"9900", b"9901"), first.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(webhooks.new_secret()).verify(first.body, first.headers)
    stale = dict(first.headers, **{"webhook-timestamp": str(int(first.headers["webhook-timestamp"]) - 600)})
    stale["webhook-signature"] = webhooks.standard_signature(secret, stale["webhook-id"],
                                                             int(stale["webhook-timestamp"]), first.body)
    with pytest.raises(standardwebhooks.WebhookVerificationError, match="too old"):
        verifier.verify(first.body, stale)

    assert run_webhooks(console.shop) == {"made": 0}  # each event once
    log = console.page(path)
    assert log.count('data-state="delivered"') == 2 and "HTTP 200" in log


def test_a_receiver_that_was_down_gets_the_event_when_it_is_back_with_the_same_id(console: Console) -> None:
    port = free_port()
    add_endpoint(console, f"http://127.0.0.1:{port}/in")
    paid_order(console.shop)
    assert run_webhooks(console.shop) == {"made": 1, "retrying": 1}
    [waiting] = deliveries()
    assert waiting.state == "pending" and waiting.attempts == 1 and "Connection" in (waiting.last_error or "")
    assert run_webhooks(console.shop) == {"made": 0}  # not before its backoff (5 s)

    back = Receiver(port=port).start()
    try:
        console.shop.clock.advance(6)
        assert run_webhooks(console.shop) == {"made": 0, "delivered": 1}
        [got] = back.got
        assert got.headers["webhook-id"] == waiting.message_id  # a receiver drops a repeat by this id
        [done] = deliveries()
        assert done.state == "delivered" and done.attempts == 2 and done.last_status == 200
    finally:
        back.stop()


def test_a_receiver_answering_errors_is_retried_with_backoff_then_given_up(console: Console, receiver: Receiver) -> None:
    receiver.status = 503
    add_endpoint(console, receiver.url)
    paid_order(console.shop)
    waits = []
    for _ in range(webhooks.MAX_ATTEMPTS):
        run_webhooks(console.shop)
        [d] = deliveries()
        if d.next_attempt_at is not None:
            waits.append(round((d.next_attempt_at - d.last_attempt_at).total_seconds()))
            console.shop.clock.advance((d.next_attempt_at - d.last_attempt_at).total_seconds() + 1)
    assert waits == [b.total_seconds() for b in webhooks.BACKOFF]
    [given_up] = deliveries()
    assert (given_up.state, given_up.attempts, given_up.last_status) == ("failed", webhooks.MAX_ATTEMPTS, 503)
    assert len(receiver.got) == webhooks.MAX_ATTEMPTS


def test_send_again_in_the_console_replays_a_delivery_signed_anew(console: Console, receiver: Receiver) -> None:
    path = add_endpoint(console, receiver.url)
    secret = secret_on(console, path)
    paid_order(console.shop)
    run_webhooks(console.shop)
    [d] = deliveries()
    console.shop.clock.advance(30)
    again = console.post(f"/admin/webhooks/deliveries/{d.id}/again")
    assert again.status_code == 303 and again.headers["Location"].endswith(f"{path}#d{d.id}")
    assert run_webhooks(console.shop)["delivered"] == 1
    first, second = receiver.got
    assert first.body == second.body and first.headers["webhook-id"] == second.headers["webhook-id"]
    assert int(second.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"]) + 30
    standardwebhooks.Webhook(secret).verify(second.body, second.headers)
    with models.db.connection_context():
        assert models.AuditEvent.select().where(models.AuditEvent.action == "webhook.resent").count() == 1


def test_a_wecom_group_bot_shows_the_new_order_and_a_refusal_by_the_bot_is_retried(console: Console,
                                                                                  receiver: Receiver) -> None:
    receiver.answer = json.dumps({"errcode": 0, "errmsg": "ok"}).encode()
    add_endpoint(console, receiver.url + "/cgi-bin/webhook/send?key=693a91f6-7xxx", fmt="wecom",
                 events=("order.paid", "refund.succeeded"))
    paid_order(console.shop)
    assert run_webhooks(console.shop)["delivered"] == 1
    [got] = receiver.got
    assert got.path == "/cgi-bin/webhook/send?key=693a91f6-7xxx"
    assert json.loads(got.body) == {"msgtype": "text", "text": {"content": "新订单 ¥99.00 C++ Primer 第5版"}}
    assert "webhook-signature" not in got.headers  # the bot's key is in its URL

    receiver.answer = json.dumps({"errcode": 93000, "errmsg": "invalid webhook url"}).encode()
    paid_order(console.shop)
    assert run_webhooks(console.shop) == {"made": 1, "retrying": 1}
    refused = deliveries()[-1]
    assert refused.state == "pending" and "93000" in (refused.last_error or "")


def test_a_discounted_order_reads_with_its_list_price_in_the_group(console: Console, receiver: Receiver) -> None:
    receiver.answer = b'{"errcode":0,"errmsg":"ok"}'
    made = console.post("/admin/codes/new", {"kind": "percent", "code": "study20", "percent": "20"})
    assert made.status_code == 303, made.text
    add_endpoint(console, receiver.url + "/cgi-bin/webhook/send?key=k", fmt="wecom")
    paid_order(console.shop, code="STUDY20")
    run_webhooks(console.shop)
    assert json.loads(receiver.got[0].body)["text"]["content"] == "新订单 ¥79.20 C++ Primer 第5版（原价 ¥99.00，优惠 STUDY20）"


def test_a_feishu_bot_with_signing_on_gets_its_timestamp_and_sign(console: Console, receiver: Receiver) -> None:
    receiver.answer = json.dumps({"code": 0, "msg": "success", "data": {}}).encode()
    add_endpoint(console, receiver.url + "/open-apis/bot/v2/hook/abc", fmt="feishu", bot_secret="feishu-bot-secret")
    paid_order(console.shop)
    assert run_webhooks(console.shop)["delivered"] == 1
    body = json.loads(receiver.got[0].body)
    assert body["msg_type"] == "text" and body["content"]["text"] == "新订单 ¥99.00 C++ Primer 第5版"
    # 飞书's documented check: HMAC-SHA256 keyed with "timestamp\nsecret" over an empty message, base64.
    expected = base64.b64encode(hmac.new(f"{body['timestamp']}\nfeishu-bot-secret".encode(), b"",
                                         hashlib.sha256).digest()).decode()
    assert body["sign"] == expected


def test_only_later_events_and_only_chosen_ones_are_sent_and_a_paused_endpoint_waits(console: Console,
                                                                                    receiver: Receiver) -> None:
    paid_order(console.shop)  # before the endpoint: never sent
    path = add_endpoint(console, receiver.url, events=("refund.succeeded",))
    paid_order(console.shop)  # order.paid is not chosen
    assert run_webhooks(console.shop) == {"made": 0}
    assert receiver.got == []
    assert console.post(path + "/enabled", {"enabled": "0"}).status_code == 303
    assert console.post(path + "/test").status_code == 303
    assert run_webhooks(console.shop) == {"made": 0}  # paused: the test message waits
    assert receiver.got == []
    assert console.post(path + "/enabled", {"enabled": "1"}).status_code == 303
    assert run_webhooks(console.shop)["delivered"] == 1
    assert json.loads(receiver.got[0].body)["type"] == "webhook.test"


@pytest.mark.parametrize("url, targets", [
    ("http://10.0.0.5/hook", "loopback"), ("http://169.254.169.254/latest/meta-data", "private"),
    ("http://[::ffff:127.0.0.1]/x", "public"), ("http://127.0.0.1:8080/x", "public"),
    ("http://localhost/x", "public"), ("http://0.0.0.0/x", "private"), ("http://192.168.1.1/x", "loopback"),
    ("http://[fe80::1]/x", "private"), ("ftp://example.com/x", "public"), ("http://example.com/x", "public"),
    ("https://user:pw@example.com/x", "public"), ("https://example.com/cgi-bin/webhook/send", "wecom-public"),
])
def test_an_endpoint_inside_the_servers_network_is_refused_when_added(url: str, targets: str) -> None:
    fmt, targets = ("wecom", "public") if targets == "wecom-public" else ("standard", targets)
    with pytest.raises(BillingError) as refused:
        webhooks.check_url(url, fmt, targets)
    assert refused.value.code == "bad_request" and refused.value.detail


def test_a_public_only_server_never_connects_to_a_name_that_resolves_to_itself(receiver: Receiver) -> None:
    """A hostname checked only when added could later resolve to 127.0.0.1: each send checks the address."""
    outcome = webhooks.post(f"http://localhost:{receiver.port}/x", b"{}", {}, targets="public")
    assert not outcome.ok and outcome.permanent and "not a public address" in (outcome.error or "")
    assert receiver.got == []
    assert webhooks.post(f"http://localhost:{receiver.port}/x", b"{}", {}, targets="loopback").ok
    assert len(receiver.got) == 1


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.status = 302
    outcome = webhooks.post(receiver.url, b"{}", {}, targets="loopback")
    assert not outcome.ok and outcome.status == 302 and len(receiver.got) == 1


def test_refused_endpoints_in_the_console_say_why_and_leave_nothing(console: Console) -> None:
    response = console.post("/admin/webhooks/new", {"url": "http://10.1.2.3/hook", "format": "standard",
                                                    "events": ["order.paid"]})
    assert response.status_code == 400 and "not a public address" in response.text
    with models.db.connection_context():
        assert models.WebhookEndpoint.select().count() == 0


def test_secrets_are_sealed_in_the_database(console: Console, receiver: Receiver) -> None:
    secret = secret_on(console, add_endpoint(console, receiver.url))
    with models.db.connection_context():
        stored = models.WebhookEndpoint.get().sealed_secret
    assert secret not in stored and secret.removeprefix("whsec_") not in stored


@pytest.mark.browser
def test_the_webhook_pages_on_a_phone_and_a_desktop(console: Console, receiver: Receiver, browser: Any) -> None:
    receiver.answer = b'{"errcode":0,"errmsg":"ok"}'
    add_endpoint(console, receiver.url + "/cgi-bin/webhook/send?key=6f1c", fmt="wecom", description="销售群 Sales group")
    path = add_endpoint(console, f"http://127.0.0.1:{free_port()}/crm/lbpay-events-with-a-long-path",
                        events=("order.paid", "license.issued", "refund.succeeded"), description="CRM")
    paid_order(console.shop, email="learner@example.com")
    run_webhooks(console.shop)
    from test_admin import EMAIL, PASSWORD
    console.shop.app.config.update(SESSION_COOKIE_NAME="lbpay_session")  # __Host- cookies need HTTPS
    for name, size in (("phone", {"width": 390, "height": 844}), ("desktop", {"width": 1280, "height": 800})):
        context = browser.new_context(viewport=size, locale="zh-CN", timezone_id="Asia/Shanghai")
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto(console.shop.url + "/admin/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_load_state()
        assert page.url == console.shop.url + "/admin/", (page.url, page.inner_text("body")[:600])
        for target, shot in (("/admin/webhooks", "webhooks"), ("/admin/webhooks/new", "webhook-new"),
                             (path, "webhook")):
            page.goto(console.shop.url + target)
            if shot == "webhook":
                page.click("#webhook-secret-box summary")
            assert page.locator("main").is_visible()
            settled(page)  # measured once its stylesheet applies
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (target, name, overflow)  # nothing wider than the screen
            screens.shot(page, f"admin-{shot}-{name}.png")
        context.close()


def test_the_job_makes_each_delivery_once_however_often_it_looks_back(console: Console, receiver: Receiver) -> None:
    add_endpoint(console, receiver.url, events=("order.paid",))
    for _ in range(3):
        paid_order(console.shop)
    shop = shop_of(console.shop)
    with models.db.connection_context():
        first = webhooks.fan_out(shop, shop.now())
        models.RollupMark.update(event_id=0).where(models.RollupMark.name == webhooks.MARK).execute()
        again = webhooks.fan_out(shop, shop.now() + dt.timedelta(seconds=1))  # the mark lost: looked at again
    assert first == 3 and again == 0 and len(deliveries()) == 3


def test_finished_deliveries_are_forgotten_after_the_retention_period(console: Console, receiver: Receiver) -> None:
    add_endpoint(console, receiver.url)
    paid_order(console.shop, email="learner@example.com")
    run_webhooks(console.shop)
    assert len(deliveries()) == 1
    days = shop_of(console.shop).config.retention_days
    console.shop.clock.advance((days - 1) * 86400)
    run_webhooks(console.shop)
    assert len(deliveries()) == 1  # kept while younger than the period
    console.shop.clock.advance(2 * 86400)
    assert run_webhooks(console.shop).get("forgotten") == 1 and deliveries() == []


def test_a_sale_while_an_endpoint_is_paused_waits_for_it(console: Console, receiver: Receiver) -> None:
    path = add_endpoint(console, receiver.url)
    assert console.post(path + "/enabled", {"enabled": "0"}).status_code == 303
    sold = paid_order(console.shop)
    assert run_webhooks(console.shop) == {"made": 1}
    assert receiver.got == []
    assert console.post(path + "/enabled", {"enabled": "1"}).status_code == 303
    assert run_webhooks(console.shop) == {"made": 0, "delivered": 1}
    assert json.loads(receiver.got[0].body)["data"]["order"]["id"] == sold["order_id"]


def test_a_wechat_complaint_reaches_the_group_as_complaint_created(console: Console, receiver: Receiver) -> None:
    """The complaint notification's audit event (complaint.received) is the webhook event complaint.created."""
    from test_complaints import file_on_phone, wait_for_row

    add_endpoint(console, receiver.url + "/hooks/lbpay", events=("complaint.created",))
    order = paid_order(console.shop)
    assert console.post("/admin/complaints/register-url").status_code == 303
    complaint_id = file_on_phone(console.shop, order["out_trade_no"], "课程打不开", "13912345678")
    wait_for_row(complaint_id)
    assert run_webhooks(console.shop)["delivered"] == 1
    [sent] = receiver.got
    body = json.loads(sent.body)
    assert body["type"] == "complaint.created" and body["data"]["detail"]["complaint_id"] == complaint_id
    assert b"13912345678" not in sent.body  # the payer's phone never leaves the shop

