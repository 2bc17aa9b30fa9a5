"""Buying with Alipay end to end: our app in sandbox mode, its Alipay simulator under /sandbox/alipay, real HTTP."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import MODELS_BINDING, LiveServer, database_url_for
from servers import free_port, wait_for
from werkzeug.serving import make_server

import models
from app import create_app


class PortServer(LiveServer):
    """LiveServer on a port chosen before the app is made (sandbox mode calls its own public address)."""

    def __init__(self, app: Any, port: int) -> None:  # noqa: D107 - as LiveServer, on a given port
        import threading

        self.app = app
        self.uses_models = True
        self.server = make_server("127.0.0.1", port, self._dispatch, threaded=True)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()


_addresses = iter(range(1, 10**6))


def next_address() -> str:
    n = next(_addresses)
    return f"198.51.{100 + n // 250 % 20}.{n % 250 + 1}"


class AlipayShop:
    def __init__(self, tmp: Path, settings: dict[str, Any] | None = None) -> None:
        from billing.courses import save_course

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.app = create_app({"SCHEDULER": "off", "INSTANCE_PATH": str(tmp / "instance"),
                               "DATABASE_URL": database_url_for(tmp), "PUBLIC_BASE_URL": self.url, "WECHATPAY_MODE": "sandbox",
                               # One proxy hop: each order names its own client address (TEST-NET-2), so the
                               # module's many orders stay under the per-address order limit.
                               "PROXY_HOPS": 1,
                               "SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex, **(settings or {})})
        with models.db.connection_context():
            models.create_tables()
            save_course(self.app.extensions["lbpay.shop"], course_id="cpp-primer-5th", title="C++ Primer 第5版",
                        price_fen=9900)
        self.server = PortServer(self.app, port)
        self.alipay = self.url + "/sandbox/alipay"

    @property
    def shop(self) -> Any:
        return self.app.extensions["lbpay.shop"]

    def order(self, headers: dict[str, str] | None = None, **body: Any) -> requests.Response:
        return requests.post(self.url + "/api/v1/orders", json={"course_id": "cpp-primer-5th", **body}, timeout=30,
                             headers={"X-Forwarded-For": next_address(), **(headers or {})})

    def poll(self, order: dict[str, Any]) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/api/v1/orders/{order['order_id']}", timeout=30,
                              headers={"Authorization": "Bearer " + order["order_token"]})
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def wait_for_status(self, order: dict[str, Any], status: str, timeout: float = 40) -> dict[str, Any]:
        return wait_for(lambda: (lambda view: view if view["status"] == status else None)(self.poll(order)),
                        timeout) or self.poll(order)

    def control(self, method: str, path: str, payload: Any = None) -> requests.Response:
        return requests.request(method, f"{self.alipay}/control/{path}", json=payload, timeout=30)

    def licenses_of(self, order: dict[str, Any]) -> int:
        with MODELS_BINDING.command(), models.db.connection_context():
            found = models.Order.get(models.Order.public_id == order["order_id"])
            return models.License.select().where(models.License.order == found.id).count()  # type: ignore[no-any-return]


def shop_fixtures(folder: str, **settings: Any) -> tuple[Any, Any]:
    """The module's shop (one per module, in ``folder``, with these extra settings) and an autouse fixture that
    resets the simulator after each test."""

    @pytest.fixture(scope="module")
    def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlipayShop]:
        box = AlipayShop(tmp_path_factory.mktemp(folder), settings)
        yield box
        box.app.extensions["lbpay.alipay_sandbox"].extensions["alipay_sandbox"].stop()
        box.server.stop()

    @pytest.fixture(autouse=True)
    def _calm(shop: AlipayShop) -> Iterator[None]:
        yield
        shop.control("POST", "reset")

    return shop, _calm


shop, _calm = shop_fixtures("alipay_shop")


def place(shop: AlipayShop, **body: Any) -> dict[str, Any]:
    answer = shop.order(method="alipay", **body)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_an_alipay_order_is_precreated_and_paid_through_the_notification(shop: AlipayShop) -> None:
    order = place(shop)
    assert order["method"] == "alipay" and order["out_trade_no"].startswith("LA")
    assert order["code_url"].startswith(shop.alipay + "/qr/") and "<svg" in order["qr_svg"]
    trade = shop.control("GET", f"trades/{order['out_trade_no']}").json()
    assert trade["total_amount"] == "99.00" and trade["status"] is None  # a QR: no trade until the scan
    assert shop.control("POST", f"trades/{order['out_trade_no']}/pay").status_code == 200
    [delivery] = [d for d in shop.control("GET", "deliveries").json() if d["out_trade_no"] == order["out_trade_no"]]
    assert delivery["delivered"] and delivery["attempts"][0]["body"] == "success"
    view = shop.wait_for_status(order, "fulfilled")
    assert view["license"] is not None and view["transaction_id"]
    assert shop.licenses_of(order) == 1


def test_the_phone_page_pays_the_qr(shop: AlipayShop) -> None:
    order = place(shop)
    page = requests.get(order["code_url"], timeout=30)
    assert page.status_code == 200 and "¥99.00" in page.text and "确认付款" in page.text
    paid = requests.post(order["code_url"], data={"result": "pay"}, timeout=30)
    assert paid.status_code == 200 and "支付成功" in paid.text
    assert shop.wait_for_status(order, "fulfilled")["license"] is not None


def test_every_notification_lost_the_license_comes_through_the_query(shop: AlipayShop) -> None:
    shop.control("POST", "faults", {"lose_notifications": 1})
    order = place(shop)
    shop.control("POST", f"trades/{order['out_trade_no']}/pay")
    # Only the poll's query to alipay.trade.query can tell the shop now.
    assert shop.wait_for_status(order, "fulfilled", timeout=30)["status"] == "fulfilled"
    methods = [r["method"] for r in shop.control("GET", "requests").json()]
    assert "alipay.trade.query" in methods
    assert shop.licenses_of(order) == 1


def test_thirty_copies_of_the_notification_give_one_license(shop: AlipayShop) -> None:
    shop.control("POST", "faults", {"repeat_notifications": 30})
    order = place(shop)
    shop.control("POST", f"trades/{order['out_trade_no']}/pay")
    shop.wait_for_status(order, "fulfilled")
    deliveries = [d for d in shop.control("GET", "deliveries").json() if d["out_trade_no"] == order["out_trade_no"]]
    assert len(deliveries[0]["attempts"]) == 30
    assert all(a["body"] == "success" for a in deliveries[0]["attempts"])
    assert shop.licenses_of(order) == 1


def test_alipay_down_the_order_is_retried_with_the_same_out_trade_no(shop: AlipayShop) -> None:
    shop.control("POST", "faults", {"gateway": {"alipay.trade.precreate": ["unavailable"] * 3}})
    key = {"Idempotency-Key": uuid.uuid4().hex, "X-Forwarded-For": next_address()}
    first = shop.order(headers=key, method="alipay")
    assert first.status_code == 503, first.text
    again = shop.order(headers=key, method="alipay")
    assert again.status_code == 201, again.text
    sent = [r for r in shop.app.extensions["lbpay.alipay_sandbox"].extensions["alipay_sandbox"].requests
            if r["method"] == "alipay.trade.precreate"][-4:]
    numbers = {re.search(r'"out_trade_no":"(\w+)"', r["params"]["biz_content"]).group(1) for r in sent}  # type: ignore[union-attr]
    assert numbers == {again.json()["out_trade_no"]}


def test_a_forged_notification_is_refused_and_changes_nothing(shop: AlipayShop) -> None:
    order = place(shop)
    forged = {"notify_type": "trade_status_sync", "notify_id": "x", "app_id": "9021000100000001",
              "out_trade_no": order["out_trade_no"], "trade_no": "2026120622001000000000000009",
              "trade_status": "TRADE_SUCCESS", "total_amount": "99.00", "seller_id": "2088721000000001",
              "sign_type": "RSA2", "sign": "Zm9yZ2Vk"}
    answer = requests.post(shop.url + "/alipay/notify/trade", data=forged, timeout=30)
    assert answer.status_code == 400 and answer.text != "success"
    assert shop.poll(order)["status"] == "pending"
    with MODELS_BINDING.command(), models.db.connection_context():
        assert models.AuditEvent.select().where(models.AuditEvent.action == "alipay.notification_refused").count() >= 1


def test_a_refund_goes_through_alipay_and_revokes_the_license(shop: AlipayShop) -> None:
    from billing.refunds import request_refund

    order = place(shop)
    shop.control("POST", f"trades/{order['out_trade_no']}/pay")
    shop.wait_for_status(order, "fulfilled")
    # Not under MODELS_BINDING.command(): the refund calls the simulator, which this same server answers.
    with models.db.connection_context():
        row = models.Order.get(models.Order.public_id == order["order_id"])
        refund = request_refund(shop.shop, row, amount_fen=9900, reason="不想要了", revoke_license=True, actor="test")
        assert refund.status == "SUCCESS"
        license = models.License.get(models.License.order == row.id)
        assert license.revoked_at is not None
    trade = shop.control("GET", f"trades/{order['out_trade_no']}").json()
    assert trade["status"] == "TRADE_CLOSED" and trade["refunded"] == "99.00"
    assert shop.poll(order)["status"] == "refunded"


def test_a_cancelled_alipay_order_is_closed(shop: AlipayShop) -> None:
    order = place(shop)
    answer = requests.post(f"{shop.url}/api/v1/orders/{order['order_id']}/cancel", json={}, timeout=30,
                           headers={"Authorization": "Bearer " + order["order_token"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "closed"


def test_the_method_defaults_to_wechat_and_an_unknown_one_is_refused(shop: AlipayShop) -> None:
    wechat = shop.order()
    assert wechat.status_code == 201 and wechat.json()["method"] == "wechat"
    assert wechat.json()["out_trade_no"].startswith("LB")
    refused = shop.order(method="paypal")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_request"


def test_the_buy_page_offers_both_methods_and_buys_with_alipay_without_javascript(shop: AlipayShop) -> None:
    session = requests.Session()
    page = session.get(shop.url + "/buy/cpp-primer-5th", timeout=30)
    assert 'id="pay-alipay"' in page.text and 'value="wechat"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    placed = session.post(shop.url + "/buy/cpp-primer-5th", data={"csrf_token": token, "method": "alipay"},
                          timeout=30)
    assert placed.status_code == 200, placed.text[:500]
    link = re.search(r'id="sandbox-pay" href="([^"]+)"', placed.text).group(1)  # type: ignore[union-attr]
    assert link.startswith(shop.alipay + "/qr/")
    assert requests.post(link, data={"result": "pay"}, timeout=30).status_code == 200


def test_the_console_names_the_payment_method(shop: AlipayShop) -> None:
    from test_admin import EMAIL, PASSWORD, Console

    from billing.admin_users import create_admin

    order = place(shop)
    assert shop.order().status_code == 201  # and one through WeChat Pay
    shop.app.config["SESSION_COOKIE_SECURE"] = False  # plain HTTP on loopback
    with MODELS_BINDING.command(), models.db.connection_context():
        create_admin(shop.shop, EMAIL, PASSWORD)
    console = Console(shop)  # type: ignore[arg-type]
    assert console.login().status_code == 303
    detail = console.page(f"/admin/orders/{order['order_id']}")
    assert re.search(r'id="payment-method">支付宝 Alipay<', detail)
    listing = console.page("/admin/orders")
    assert "支付宝 Alipay" in listing and "微信支付 WeChat Pay" in listing


def test_the_reconcile_job_fulfils_a_paid_order_whose_notification_was_lost_and_closes_expired_ones(
        shop: AlipayShop) -> None:
    import datetime as dt

    from billing.reconcile import reconcile

    shop.control("POST", "faults", {"lose_notifications": 1})
    paid = place(shop)
    shop.control("POST", f"trades/{paid['out_trade_no']}/pay")
    unpaid = place(shop)
    # Not under MODELS_BINDING.command(): the job calls the simulator, which this same server answers.
    with models.db.connection_context():
        summary = reconcile(shop.shop, shop.shop.now() + dt.timedelta(seconds=30))
    assert summary["fulfilled"] >= 1 and summary["errors"] == 0, summary
    assert shop.poll(paid)["status"] == "fulfilled" and shop.licenses_of(paid) == 1
    with models.db.connection_context():
        later = reconcile(shop.shop, shop.shop.now() + shop.shop.config.order_ttl + dt.timedelta(minutes=1))
    assert later["errors"] == 0, later
    assert shop.poll(unpaid)["status"] == "closed"
    # Alipay never had a trade for it: the QR was not scanned, so closing asked nothing of the learner.
    assert shop.control("GET", f"trades/{unpaid['out_trade_no']}").json()["status"] is None


def signed_by_the_simulator(shop: AlipayShop, **fields: str) -> dict[str, str]:
    """A notification signed with the simulator's Alipay key (what only Alipay could send)."""
    from alipay.sandbox.signing import AlipayIdentity, notification_content

    folder = Path(shop.app.instance_path) / "sandbox"
    app_key = (folder / "alipay_app_key.pem").read_bytes()
    from cryptography.hazmat.primitives import serialization

    app_public = serialization.load_pem_private_key(app_key, password=None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    identity = AlipayIdentity((folder / "alipay_platform_key.pem").read_bytes(), app_public)
    form = {"notify_type": "trade_status_sync", "notify_id": uuid.uuid4().hex, "app_id": "9021000100000001",
            "seller_id": "2088721000000001", "trade_status": "TRADE_SUCCESS", "charset": "utf-8",
            "version": "1.0", "notify_time": "2026-12-06 15:00:00", **fields}
    form["sign"] = identity.sign(notification_content(form))
    form["sign_type"] = "RSA2"
    return form


@pytest.mark.parametrize("change, flag", [
    ({"total_amount": "0.01"}, "AMOUNT_MISMATCH"),
    ({"seller_id": "2088999999999999"}, "MERCHANT_MISMATCH"),
    ({"app_id": "9021999999999999"}, "MERCHANT_MISMATCH"),
])
def test_an_authentic_notification_for_another_amount_or_merchant_is_flagged_never_fulfilled(
        shop: AlipayShop, change: dict[str, str], flag: str) -> None:
    order = place(shop)
    form = signed_by_the_simulator(shop, **{"out_trade_no": order["out_trade_no"], "total_amount": "99.00",
                                            "trade_no": "2026120622001" + uuid.uuid4().hex[:15], **change})
    answer = requests.post(shop.url + "/alipay/notify/trade", data=form, timeout=30)
    assert answer.status_code == 200 and answer.text == "success"  # heard, and kept for the creator
    assert shop.poll(order)["status"] == "pending" and shop.licenses_of(order) == 0
    with MODELS_BINDING.command(), models.db.connection_context():
        assert models.Order.get(models.Order.public_id == order["order_id"]).flag == flag


def test_a_notification_naming_a_wechat_order_is_not_believed(shop: AlipayShop) -> None:
    wechat = shop.order()
    assert wechat.status_code == 201
    order = wechat.json()
    form = signed_by_the_simulator(shop, out_trade_no=order["out_trade_no"], total_amount="99.00",
                                   trade_no="2026120622001" + uuid.uuid4().hex[:15])
    assert requests.post(shop.url + "/alipay/notify/trade", data=form, timeout=30).text == "success"
    assert shop.poll(order)["status"] == "pending" and shop.licenses_of(order) == 0


def test_a_shop_without_alipay_refuses_it_in_both_languages(tmp_path: Path) -> None:
    """Live mode has no Alipay settings yet: asking for it is the catalogued 422, never a WeChat order."""
    from billing.alipay_method import checked_method, offered_methods
    from billing.errors import CATALOGUE, BillingError

    class WeChatOnly:
        alipay = None

    assert offered_methods(WeChatOnly()) == ("wechat",)
    assert checked_method(WeChatOnly(), None) == "wechat"
    with pytest.raises(BillingError) as refused:
        checked_method(WeChatOnly(), "alipay")
    assert refused.value.code == "payment_method_unavailable"
    words = CATALOGUE["payment_method_unavailable"]
    assert words.status == 422 and words.message_zh and words.message_en
