"""The WeChat Pay simulator, driven over real HTTP the way a merchant server and a learner's phone would."""

from __future__ import annotations

import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.wrappers import Request

from wechatpay.crypto import (
    aead_decrypt,
    certificate_serial,
    make_nonce,
    request_message,
    response_message,
    sign,
    signature_matches,
)
from wechatpay.errors import DecryptError
from wechatpay.sandbox import SandboxConfig, create_sandbox_app

MCHID = "1900009191"
APPID = "wxd678efh567hg6787"
MERCHANT_SERIAL = "5F1C72E2A8931B72A2E13AF8DEE92471EB397115"
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232500000000000000000000000001"
MERCHANT_ORIGIN = "https://pay.learning-buddy.test"
NOTIFY_URL = MERCHANT_ORIGIN + "/wechatpay/notify"
REFUND_NOTIFY_URL = MERCHANT_ORIGIN + "/wechatpay/refund-notify"
CHINA = timezone(timedelta(hours=8))
FAST_RETRIES = 0.001  # 15 s becomes 15 ms


# --- keys, servers, a merchant-side signer ------------------------------------------------------


def _rsa_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Keys:
    merchant: rsa.RSAPrivateKey
    stranger: rsa.RSAPrivateKey
    platform: rsa.RSAPrivateKey
    apiv3: bytes


@pytest.fixture(scope="module")
def keys() -> Keys:
    def make() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    alphabet = string.ascii_letters + string.digits
    apiv3 = "".join(secrets.choice(alphabet) for _ in range(32)).encode("ascii")
    return Keys(merchant=make(), stranger=make(), platform=make(), apiv3=apiv3)


class LiveServer:
    """A WSGI app served by werkzeug on a free local port, in a thread."""

    def __init__(self, wsgi_app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str
    verdict: str  # ok | bad_signature | bad_ciphertext
    plaintext: dict[str, Any] | None


class Receiver:
    """A minimal merchant notify endpoint: verifies, decrypts, records, answers 204 (or a queued status)."""

    def __init__(self, keys: Keys) -> None:
        self.platform_key = keys.platform.public_key()
        self.apiv3 = keys.apiv3
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.answers: list[int] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        request = Request(environ)
        body = request.get_data()
        headers = dict(request.headers)
        verdict, plaintext = "ok", None
        message = response_message(headers.get("Wechatpay-Timestamp", ""), headers.get("Wechatpay-Nonce", ""), body)
        if not signature_matches(self.platform_key, message, headers.get("Wechatpay-Signature", "")):
            verdict = "bad_signature"
        else:
            resource = json.loads(body)["resource"]
            try:
                plaintext = json.loads(aead_decrypt(
                    self.apiv3, resource["nonce"], resource["associated_data"], resource["ciphertext"]))
            except DecryptError:
                verdict = "bad_ciphertext"
        with self.lock:
            self.received.append(Received(headers, body, request.path, verdict, plaintext))
            status = self.answers.pop(0) if self.answers else (204 if verdict == "ok" else 400)
        start_response(f"{status} {HTTPStatus(status).phrase}", [("Content-Length", "0")])
        return [b""]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        return wait_until(lambda: self.snapshot() if len(self.snapshot()) >= count else None, timeout)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


class Clock:
    """Real time plus an adjustable offset, so a test can move the simulator into the future."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.frozen: float | None = None

    def __call__(self) -> float:
        return (time.time() if self.frozen is None else self.frozen) + self.offset


class Sandbox:
    """A running simulator plus a merchant-side request signer (the real client lives elsewhere)."""

    def __init__(self, app: Flask, server: LiveServer, prefix: str, keys: Keys, config: SandboxConfig) -> None:
        self.app = app
        self.state = app.extensions["wechatpay_sandbox"]
        self.server = server
        self.prefix = prefix
        self.base = server.url + prefix
        self.keys = keys
        self.config = config

    def authorization(
        self, method: str, url: str, body: bytes, *, key: rsa.RSAPrivateKey | None = None,
        scheme: str = "WECHATPAY2-SHA256-RSA2048", omit: tuple[str, ...] = (), **params: str,
    ) -> str:
        stamp = params.pop("timestamp", str(int(self.config.clock())))
        nonce = params.pop("nonce_str", make_nonce())
        signature = sign(key or self.keys.merchant, request_message(method, url, stamp, nonce, body))
        values = {"mchid": MCHID, "nonce_str": nonce, "signature": signature, "timestamp": stamp,
                  "serial_no": MERCHANT_SERIAL, **params}
        return scheme + " " + ",".join(f'{k}="{v}"' for k, v in values.items() if k not in omit)

    def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, signed_body: bytes | None = None,
        headers: dict[str, str] | None = None, expect_signed: bool = True, timeout: float = 5.0, **auth: Any,
    ) -> requests.Response:
        """Send a signed API call and check the platform signature of whatever comes back."""
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        url = self.prefix + path
        all_headers = {
            "Accept": "application/json",
            "User-Agent": "learning-buddy-tests/1.0",
            "Authorization": self.authorization(method, url, data if signed_body is None else signed_body, **auth),
        }
        if data:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        all_headers = {k: v for k, v in all_headers.items() if v is not None}
        response = requests.request(method, self.server.url + url, data=data, headers=all_headers, timeout=timeout)
        if expect_signed:
            assert_platform_signed(response, self.keys.platform.public_key())
        return response

    def order(self, **overrides: Any) -> dict[str, Any]:
        body = order_body(**overrides)
        response = self.call("POST", "/v3/pay/transactions/native", body)
        assert response.status_code == 200, response.text
        body["code_url"] = response.json()["code_url"]
        body["pr"] = body["code_url"].rpartition("pr=")[2]
        return body

    def query(self, out_trade_no: str) -> requests.Response:
        return self.call("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={MCHID}")

    def control(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, f"{self.base}/control/{path}", json=body, timeout=5)

    def pay(self, out_trade_no: str, result: str = "success") -> requests.Response:
        return self.control("POST", f"orders/{out_trade_no}/pay", {"result": result})

    def deliveries(self) -> list[dict[str, Any]]:
        return self.control("GET", "deliveries").json()["deliveries"]


def assert_platform_signed(response: requests.Response, platform_key: rsa.RSAPublicKey) -> None:
    headers = response.headers
    for name in ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial", "Request-ID"):
        assert headers.get(name), f"{name} missing on {response.status_code} {response.request.path_url}"
    message = response_message(headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], response.content)
    assert signature_matches(platform_key, message, headers["Wechatpay-Signature"])


def order_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "appid": APPID,
        "mchid": MCHID,
        "description": "Learning Buddy 一年许可 annual licence",
        "out_trade_no": "LB" + make_nonce(16),
        "notify_url": NOTIFY_URL,
        "amount": {"total": 9900, "currency": "CNY"},
        "attach": "plan:annual",
    }
    for name, value in overrides.items():
        if value is _DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


_DROP = object()


@pytest.fixture
def receiver(keys: Keys) -> Iterator[Receiver]:
    receiver = Receiver(keys)
    server = LiveServer(receiver)
    receiver.url = server.url  # type: ignore[attr-defined]
    yield receiver
    server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_sandbox(keys: Keys, receiver: Receiver, clock: Clock) -> Iterator[Callable[..., Sandbox]]:
    started: list[Sandbox] = []

    def start(prefix: str = "", **overrides: Any) -> Sandbox:
        settings: dict[str, Any] = {
            "mchid": MCHID,
            "appid": APPID,
            "merchant_public_key_pem": keys.merchant.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            "merchant_serial": MERCHANT_SERIAL,
            "apiv3_key": keys.apiv3,
            "platform_private_key_pem": _rsa_pem(keys.platform),
            "notify_origin_map": {MERCHANT_ORIGIN: receiver.url},  # type: ignore[attr-defined]
            "retry_scale": FAST_RETRIES,
            "notify_timeout": 2.0,
            "clock": clock,
            **overrides,
        }
        config = SandboxConfig(**settings)
        app = create_sandbox_app(config)
        wsgi: Any = app
        if prefix:
            root = Flask("merchant")
            root.add_url_rule("/", "home", lambda: "merchant home")
            wsgi = DispatcherMiddleware(root, {prefix: app})
        sandbox = Sandbox(app, LiveServer(wsgi), prefix, keys, config)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.state.stop()
        sandbox.server.close()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


# --- Native order -------------------------------------------------------------------------------


def test_a_valid_native_order_returns_a_code_url(sandbox: Sandbox) -> None:
    response = sandbox.call("POST", "/v3/pay/transactions/native", order_body())

    assert response.status_code == 200
    assert re.fullmatch(r"weixin://wxpay/bizpayurl\?pr=[0-9A-Za-z]{7,10}", response.json()["code_url"])
    assert response.headers["Wechatpay-Serial"] == PUBLIC_KEY_ID
    assert response.headers["Content-Type"] == "application/json"


def test_a_new_order_queries_as_notpay(sandbox: Sandbox) -> None:
    order = sandbox.order()

    response = sandbox.query(order["out_trade_no"])

    assert response.status_code == 200
    assert response.json() == {
        "appid": APPID, "mchid": MCHID, "out_trade_no": order["out_trade_no"],
        "trade_state": "NOTPAY", "trade_state_desc": "订单未支付",
        "amount": {"total": 9900, "currency": "CNY"},
    }


def _stale(clock: Clock) -> dict[str, str]:
    return {"timestamp": str(int(clock()) - 301)}


def _future(clock: Clock) -> dict[str, str]:
    return {"timestamp": str(int(clock()) + 301)}


@pytest.mark.parametrize(
    ("case", "auth"),
    [
        ("signed by another key", lambda k, c: {"key": k.stranger}),
        ("stale timestamp", lambda k, c: _stale(c)),
        ("timestamp from the future", lambda k, c: _future(c)),
        ("non-numeric timestamp", lambda k, c: {"timestamp": "yesterday"}),
        ("wrong serial_no", lambda k, c: {"serial_no": "0123456789ABCDEF0123456789ABCDEF01234567"}),
        ("unknown mchid", lambda k, c: {"mchid": "1230000109"}),
        ("wrong scheme", lambda k, c: {"scheme": "WECHATPAY2-SHA256-RSA4096"}),
        ("missing nonce_str", lambda k, c: {"omit": ("nonce_str",)}),
        ("missing signature", lambda k, c: {"omit": ("signature",)}),
        ("body changed after signing", lambda k, c: {"signed_body": b'{"different":"body"}'}),
    ],
)
def test_it_rejects_a_request_that_is_not_properly_signed(
    sandbox: Sandbox, keys: Keys, clock: Clock, case: str, auth: Callable[[Keys, Clock], dict[str, Any]]
) -> None:
    clock.frozen = float(int(time.time()))  # one second past the window must stay past it: no wall clock
    response = sandbox.call("POST", "/v3/pay/transactions/native", order_body(), **auth(keys, clock))

    assert response.status_code == 401, case
    body = response.json()
    assert body["code"] == "SIGN_ERROR"
    assert body["message"] == "错误的签名，验签失败"
    assert body["detail"]["location"] == "authorization"


def test_it_rejects_a_request_without_authorization(sandbox: Sandbox) -> None:
    response = sandbox.call("GET", f"/v3/pay/transactions/out-trade-no/LB123456?mchid={MCHID}",
                            headers={"Authorization": None})  # type: ignore[dict-item]

    assert response.status_code == 401
    assert response.json()["code"] == "SIGN_ERROR"


def test_a_signature_failure_names_the_signed_message(sandbox: Sandbox, keys: Keys) -> None:
    response = sandbox.call("POST", "/v3/pay/transactions/native", order_body(), key=keys.stranger)

    info = response.json()["detail"]["sign_information"]
    assert info["method"] == "POST"
    assert info["url"] == "/v3/pay/transactions/native"
    assert response.json()["detail"]["detail"] == {"issue": "sign not match"}


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"appid": _DROP}, "PARAM_ERROR", "/body/appid"),
        ({"appid": 12345}, "PARAM_ERROR", "/body/appid"),
        ({"appid": "wx0000000000000000"}, "APPID_MCHID_NOT_MATCH", None),
        ({"mchid": _DROP}, "PARAM_ERROR", "/body/mchid"),
        ({"mchid": "1230000109"}, "PARAM_ERROR", "/body/mchid"),
        ({"description": ""}, "PARAM_ERROR", "/body/description"),
        ({"description": "课" * 43}, "PARAM_ERROR", "/body/description"),
        ({"description": "a" * 128}, "PARAM_ERROR", "/body/description"),
        ({"description": "课程 \U0001F4DA"}, "PARAM_ERROR", "/body/description"),
        ({"attach": "课" * 43}, "PARAM_ERROR", "/body/attach"),
        ({"out_trade_no": "LB123"}, "PARAM_ERROR", "/body/out_trade_no"),
        ({"out_trade_no": "L" * 33}, "PARAM_ERROR", "/body/out_trade_no"),
        ({"out_trade_no": "LB.123456"}, "PARAM_ERROR", "/body/out_trade_no"),
        ({"out_trade_no": "订单123456"}, "PARAM_ERROR", "/body/out_trade_no"),
        ({"notify_url": _DROP}, "PARAM_ERROR", "/body/notify_url"),
        ({"notify_url": "http://pay.learning-buddy.test/notify"}, "PARAM_ERROR", "/body/notify_url"),
        ({"notify_url": "/wechatpay/notify"}, "PARAM_ERROR", "/body/notify_url"),
        ({"notify_url": NOTIFY_URL + "?order=1"}, "PARAM_ERROR", "/body/notify_url"),
        ({"notify_url": MERCHANT_ORIGIN + "/" + "n" * 256}, "PARAM_ERROR", "/body/notify_url"),
        ({"amount": _DROP}, "PARAM_ERROR", "/body/amount"),
        ({"amount": {"total": 0}}, "PARAM_ERROR", "/body/amount/total"),
        ({"amount": {"total": -100}}, "PARAM_ERROR", "/body/amount/total"),
        ({"amount": {"total": "9900"}}, "PARAM_ERROR", "/body/amount/total"),
        ({"amount": {"total": 99.5}}, "PARAM_ERROR", "/body/amount/total"),
        ({"amount": {"total": True}}, "PARAM_ERROR", "/body/amount/total"),
        ({"amount": {"total": 9900, "currency": "USD"}}, "PARAM_ERROR", "/body/amount/currency"),
        ({"time_expire": "2030-01-01 10:00:00"}, "PARAM_ERROR", "/body/time_expire"),
        ({"time_expire": "2030-01-01T10:00:00"}, "PARAM_ERROR", "/body/time_expire"),
        ({"time_expire": "2030-13-01T10:00:00+08:00"}, "PARAM_ERROR", "/body/time_expire"),
        ({"attach": "a" * 129}, "PARAM_ERROR", "/body/attach"),
    ],
)
def test_it_refuses_an_invalid_native_order(
    sandbox: Sandbox, overrides: dict[str, Any], code: str, field: str | None
) -> None:
    response = sandbox.call("POST", "/v3/pay/transactions/native", order_body(**overrides))

    assert response.status_code == 400
    assert response.json()["code"] == code
    if field is not None:
        assert response.json()["detail"]["field"] == field


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_a_param_error(sandbox: Sandbox, raw: bytes) -> None:
    response = sandbox.call("POST", "/v3/pay/transactions/native", raw=raw)

    assert response.status_code == 400
    assert response.json()["code"] == "PARAM_ERROR"


def test_it_accepts_the_longest_description_and_a_time_expire_with_offset(sandbox: Sandbox) -> None:
    expire = (datetime.now(CHINA) + timedelta(hours=1)).isoformat(timespec="seconds")

    # 42 three-byte characters and one ASCII letter: exactly 127 UTF-8 bytes.
    sandbox.order(description="课" * 42 + "a", time_expire=expire, out_trade_no="LB_-*" + "9" * 27)
    sandbox.order(description="a" * 127, attach="课" * 42 + "ab")


def test_a_description_over_127_bytes_is_refused_counting_bytes_as_wechat_does(sandbox: Sandbox) -> None:
    response = sandbox.call("POST", "/v3/pay/transactions/native", order_body(description="课" * 48))

    assert response.status_code == 400
    assert response.json()["code"] == "PARAM_ERROR"
    assert "字节数 144,大于最大值 127" in response.json()["message"]


def test_a_refund_reason_over_80_bytes_or_with_an_emoji_is_refused(sandbox: Sandbox) -> None:
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])
    base = {"out_trade_no": order["out_trade_no"], "amount": {"refund": 100, "total": 9900, "currency": "CNY"}}

    long_reason = sandbox.call("POST", "/v3/refund/domestic/refunds",
                               {**base, "out_refund_no": "RF-long", "reason": "退" * 27})
    emoji = sandbox.call("POST", "/v3/refund/domestic/refunds",
                         {**base, "out_refund_no": "RF-emoji", "reason": "不想要了\U0001F622"})
    fits = sandbox.call("POST", "/v3/refund/domestic/refunds",
                        {**base, "out_refund_no": "RF-fits", "reason": "退" * 26 + "ab"})

    assert (long_reason.status_code, long_reason.json()["detail"]["field"]) == (400, "/body/reason")
    assert "字节数 81,大于最大值 80" in long_reason.json()["message"]
    assert (emoji.status_code, emoji.json()["code"]) == (400, "PARAM_ERROR")
    assert fits.status_code == 200


def test_headers_accept_user_agent_and_wechatpay_serial_are_checked(sandbox: Sandbox) -> None:
    path = f"/v3/pay/transactions/out-trade-no/LB12345678?mchid={MCHID}"

    no_accept = sandbox.call("GET", path, headers={"Accept": "text/html"})
    no_agent = sandbox.call("GET", path, headers={"User-Agent": ""})
    bad_key_id = sandbox.call("GET", path, headers={"Wechatpay-Serial": "PUB_KEY_ID_0000"})
    bad_serial = sandbox.call("GET", path, headers={"Wechatpay-Serial": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"})
    good_serial = sandbox.call("GET", path, headers={"Wechatpay-Serial": PUBLIC_KEY_ID})

    # What production answers a request breaking the APIv3 rules on headers (issue 24).
    assert (no_accept.status_code, no_accept.json()["code"]) == (400, "INVALID_REQUEST")
    assert (no_agent.status_code, no_agent.json()["code"]) == (400, "INVALID_REQUEST")
    assert "Accept" in no_accept.json()["message"] and "User-Agent" in no_agent.json()["message"]
    # A public-key id WeChat does not know gets a bare 500, as merchants report of production.
    assert (bad_key_id.status_code, bad_key_id.json()["code"]) == (500, "SYSTEM_ERROR")
    assert (bad_serial.status_code, bad_serial.json()["code"]) == (400, "INVALID_REQUEST")
    assert (good_serial.status_code, good_serial.json()["code"]) == (404, "ORDER_NOT_EXIST")


def test_repeating_an_order_with_the_same_parameters_returns_a_current_code_url(sandbox: Sandbox) -> None:
    body = order_body(time_expire=(datetime.now(CHINA) + timedelta(hours=3)).isoformat(timespec="seconds"))

    first = sandbox.call("POST", "/v3/pay/transactions/native", body)
    again = sandbox.call("POST", "/v3/pay/transactions/native", body)

    assert first.status_code == again.status_code == 200
    assert first.json()["code_url"] != again.json()["code_url"]
    assert sandbox.control("GET", f"orders/{body['out_trade_no']}").json()["code_url"] == again.json()["code_url"]


def test_repeating_an_order_with_another_time_expire_is_refused(sandbox: Sandbox) -> None:
    soon = datetime.now(CHINA) + timedelta(hours=3)
    body = order_body(time_expire=soon.isoformat(timespec="seconds"))
    sandbox.call("POST", "/v3/pay/transactions/native", body)

    moved = sandbox.call("POST", "/v3/pay/transactions/native",
                         {**body, "time_expire": (soon + timedelta(minutes=1)).isoformat(timespec="seconds")})

    assert (moved.status_code, moved.json()["code"]) == (400, "INVALID_REQUEST")


def test_a_code_url_dies_after_its_lifetime_and_a_re_placed_order_gives_a_payable_one(
    sandbox: Sandbox, clock: Clock
) -> None:
    assert sandbox.control("POST", "settings", {"code_url_lifetime": 60}).status_code == 200
    body = order_body(time_expire=(datetime.now(CHINA) + timedelta(hours=3)).isoformat(timespec="seconds"))
    old = sandbox.call("POST", "/v3/pay/transactions/native", body).json()["code_url"].rpartition("pr=")[2]

    clock.offset = 61
    dead = requests.post(f"{sandbox.base}/pay/{old}", data={"result": "success"}, timeout=5)
    fresh = sandbox.call("POST", "/v3/pay/transactions/native", body).json()["code_url"].rpartition("pr=")[2]
    paid = requests.post(f"{sandbox.base}/pay/{fresh}", data={"result": "success"}, timeout=5)

    assert dead.status_code == 409 and "二维码已过期" in dead.text
    assert fresh != old and 'data-outcome="paid"' in paid.text
    assert sandbox.query(body["out_trade_no"]).json()["trade_state"] == "SUCCESS"


def test_the_default_code_url_lifetime_is_two_hours(sandbox: Sandbox, clock: Clock) -> None:
    body = order_body(time_expire=(datetime.now(CHINA) + timedelta(hours=5)).isoformat(timespec="seconds"))
    pr = sandbox.call("POST", "/v3/pay/transactions/native", body).json()["code_url"].rpartition("pr=")[2]

    clock.offset = 2 * 3600 - 5
    alive = "<form" in requests.get(f"{sandbox.base}/pay/{pr}", timeout=5).text
    clock.offset = 2 * 3600 + 5
    dead = "<form" not in requests.get(f"{sandbox.base}/pay/{pr}", timeout=5).text

    assert alive and dead


def test_repeating_an_order_with_different_parameters_is_refused(sandbox: Sandbox) -> None:
    body = sandbox.order()
    body.pop("code_url"), body.pop("pr")

    response = sandbox.call("POST", "/v3/pay/transactions/native", {**body, "amount": {"total": 1}})

    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_REQUEST"


def test_repeating_a_paid_or_closed_order_is_refused(sandbox: Sandbox) -> None:
    paid, closed = sandbox.order(), sandbox.order()
    sandbox.pay(paid["out_trade_no"])
    sandbox.call("POST", f"/v3/pay/transactions/out-trade-no/{closed['out_trade_no']}/close", {"mchid": MCHID})

    again_paid = sandbox.call("POST", "/v3/pay/transactions/native", order_body(out_trade_no=paid["out_trade_no"]))
    again_closed = sandbox.call(
        "POST", "/v3/pay/transactions/native", order_body(out_trade_no=closed["out_trade_no"]))

    # ORDERPAID is a v2 code no v3 table lists: v3 merchants report "201 商户订单号重复" for a used number.
    assert (again_paid.status_code, again_paid.json()["code"]) == (400, "INVALID_REQUEST")
    assert "ORDERPAID" not in again_paid.text
    assert (again_closed.status_code, again_closed.json()["code"]) == (400, "ORDER_CLOSED")


# --- the learner's phone ------------------------------------------------------------------------


def test_the_pay_page_shows_the_order_and_paying_there_marks_it_paid(sandbox: Sandbox) -> None:
    order = sandbox.order()
    page = requests.get(f"{sandbox.base}/pay/{order['pr']}", timeout=5)

    assert page.status_code == 200
    assert "Learning Buddy 一年许可 annual licence" in page.text
    assert "¥99.00" in page.text
    assert MCHID in page.text
    assert f'action="/pay/{order["pr"]}"' in page.text
    for label in ("支付", "取消", "余额不足"):
        assert label in page.text

    paid = requests.post(f"{sandbox.base}/pay/{order['pr']}", data={"result": "success"}, timeout=5)

    assert paid.status_code == 200
    assert 'data-outcome="paid"' in paid.text
    tx = sandbox.query(order["out_trade_no"]).json()
    assert tx["trade_state"] == "SUCCESS"
    assert tx["trade_state_desc"] == "支付成功"
    assert re.fullmatch(r"4200\d{28}", tx["transaction_id"])
    assert tx["trade_type"] == "NATIVE"
    assert tx["success_time"].endswith("+08:00")
    assert tx["payer"]["openid"].startswith("o")
    assert tx["amount"] == {"total": 9900, "payer_total": 9900, "currency": "CNY", "payer_currency": "CNY"}
    assert tx["attach"] == "plan:annual"
    by_id = sandbox.call("GET", f"/v3/pay/transactions/id/{tx['transaction_id']}?mchid={MCHID}")
    assert by_id.json() == tx


@pytest.mark.parametrize(("result", "outcome", "words"), [
    ("cancel", "cancelled", "取消"),
    ("insufficient", "insufficient", "余额不足"),
])
def test_cancelling_or_lacking_balance_leaves_the_order_unpaid(
    sandbox: Sandbox, receiver: Receiver, result: str, outcome: str, words: str
) -> None:
    order = sandbox.order()

    page = requests.post(f"{sandbox.base}/pay/{order['pr']}", data={"result": result}, timeout=5)

    assert f'data-outcome="{outcome}"' in page.text and words in page.text
    assert sandbox.query(order["out_trade_no"]).json()["trade_state"] == "NOTPAY"
    assert sandbox.control("GET", f"orders/{order['out_trade_no']}").json()["last_attempt"] == result
    assert sandbox.deliveries() == [] and receiver.snapshot() == []


def test_a_closed_order_cannot_be_paid(sandbox: Sandbox) -> None:
    order = sandbox.order()

    closed = sandbox.call("POST", f"/v3/pay/transactions/out-trade-no/{order['out_trade_no']}/close", {"mchid": MCHID})

    assert closed.status_code == 204 and closed.content == b""
    assert sandbox.query(order["out_trade_no"]).json()["trade_state"] == "CLOSED"
    page = requests.post(f"{sandbox.base}/pay/{order['pr']}", data={"result": "success"}, timeout=5)
    assert page.status_code == 409 and 'data-outcome="refused"' in page.text
    assert sandbox.pay(order["out_trade_no"]).json()["outcome"] == "refused"
    assert "<form" not in requests.get(f"{sandbox.base}/pay/{order['pr']}", timeout=5).text


def test_an_order_past_its_time_expire_cannot_be_paid(sandbox: Sandbox, clock: Clock) -> None:
    expire = (datetime.now(CHINA) + timedelta(minutes=5)).isoformat(timespec="seconds")
    order = sandbox.order(time_expire=expire)

    clock.offset = 600
    response = sandbox.pay(order["out_trade_no"])

    assert response.status_code == 409
    assert response.json()["outcome"] == "refused"
    assert sandbox.query(order["out_trade_no"]).json()["trade_state"] == "NOTPAY"


# --- close and query ----------------------------------------------------------------------------


def test_closing_a_paid_order_answers_204_and_leaves_it_paid_and_unknown_orders_close_quietly(
        sandbox: Sandbox) -> None:
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])
    close = "/v3/pay/transactions/out-trade-no/{}/close"

    paid = sandbox.call("POST", close.format(order["out_trade_no"]), {"mchid": MCHID})
    unknown = sandbox.call("POST", close.format("LB_never_created"), {"mchid": MCHID})
    no_mchid = sandbox.call("POST", close.format("LB_never_created"), {})

    # v3 documents no answer for this (ORDERPAID is v2): a 204 is what a merchant may get, so a close proves nothing.
    assert paid.status_code == 204
    assert sandbox.query(order["out_trade_no"]).json()["trade_state"] == "SUCCESS"
    assert unknown.status_code == 204
    assert (no_mchid.status_code, no_mchid.json()["code"]) == (400, "PARAM_ERROR")


def test_closing_twice_answers_204_again(sandbox: Sandbox) -> None:
    order = sandbox.order()
    path = f"/v3/pay/transactions/out-trade-no/{order['out_trade_no']}/close"

    sandbox.call("POST", path, {"mchid": MCHID})
    second = sandbox.call("POST", path, {"mchid": MCHID})

    assert (second.status_code, second.content) == (204, b"")
    assert sandbox.query(order["out_trade_no"]).json()["trade_state"] == "CLOSED"


def test_a_query_needs_the_right_mchid_and_a_known_order(sandbox: Sandbox) -> None:
    order = sandbox.order()
    base = f"/v3/pay/transactions/out-trade-no/{order['out_trade_no']}"

    missing = sandbox.call("GET", base)
    wrong = sandbox.call("GET", base + "?mchid=1230000109")
    unknown = sandbox.call("GET", f"/v3/pay/transactions/out-trade-no/LB_unknown_1?mchid={MCHID}")
    unknown_id = sandbox.call("GET", f"/v3/pay/transactions/id/4200000000000000000000000000000?mchid={MCHID}")

    assert (missing.status_code, missing.json()["code"]) == (400, "PARAM_ERROR")
    assert (wrong.status_code, wrong.json()["code"]) == (400, "PARAM_ERROR")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "ORDER_NOT_EXIST")
    assert (unknown_id.status_code, unknown_id.json()["code"]) == (404, "ORDER_NOT_EXIST")


# --- notifications ------------------------------------------------------------------------------


def test_a_payment_sends_a_signed_notification_that_decrypts_to_the_transaction(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])

    [note] = receiver.wait_for(1)

    assert note.path == "/wechatpay/notify"
    assert note.verdict == "ok"
    assert note.headers["Content-Type"] == "application/json"
    assert note.headers["Wechatpay-Serial"] == PUBLIC_KEY_ID
    assert note.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    envelope = json.loads(note.body)
    assert note.body == json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
    assert re.fullmatch(r"[0-9a-f-]{36}", envelope["id"])
    assert envelope["event_type"] == "TRANSACTION.SUCCESS"
    assert envelope["resource_type"] == "encrypt-resource"
    assert envelope["summary"] == "支付成功"
    assert envelope["create_time"].endswith("+08:00")
    resource = envelope["resource"]
    assert resource["original_type"] == "transaction" and resource["associated_data"] == "transaction"
    assert resource["algorithm"] == "AEAD_AES_256_GCM" and len(resource["nonce"]) == 12
    assert note.plaintext == sandbox.query(order["out_trade_no"]).json()
    wait_until(lambda: sandbox.deliveries())
    assert sandbox.deliveries()[0]["status"] == 204 and sandbox.deliveries()[0]["attempt"] == 1


def test_a_refused_notification_is_resent_freshly_signed_until_accepted(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    receiver.answers = [500, 500]
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])

    notes = receiver.wait_for(3)

    assert [json.loads(n.body)["id"] for n in notes] == [json.loads(notes[0].body)["id"]] * 3
    assert len({n.headers["Wechatpay-Nonce"] for n in notes}) == 3
    assert all(n.verdict == "ok" for n in notes)
    log = wait_until(lambda: sandbox.deliveries() if len(sandbox.deliveries()) == 3 else None)
    assert [(d["attempt"], d["status"], d["ok"]) for d in log] == [(1, 500, False), (2, 500, False), (3, 204, True)]
    time.sleep(0.1)
    assert len(receiver.snapshot()) == 3


def test_an_unreachable_notify_url_is_retried_and_finally_abandoned(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(notify_origin_map={MERCHANT_ORIGIN: "http://127.0.0.1:9"}, retry_scale=0.0)
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])

    log = wait_until(lambda: sandbox.deliveries() if len(sandbox.deliveries()) == 16 else None)

    assert [d["attempt"] for d in log] == list(range(1, 17))
    assert all(d["status"] is None and d["error"] for d in log)
    time.sleep(0.05)
    assert len(sandbox.deliveries()) == 16
    assert sandbox.state.notifications[log[0]["notification_id"]].abandoned


def test_a_probe_signature_is_refused_by_the_merchant_and_then_sent_correctly(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    sandbox.control("POST", "faults", {"notify": {"probe_next": 1}})
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])

    probe, real = receiver.wait_for(2)

    assert probe.headers["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    assert probe.verdict == "bad_signature" and real.verdict == "ok"
    log = wait_until(lambda: sandbox.deliveries() if len(sandbox.deliveries()) == 2 else None)
    assert [(d["kind"], d["status"], d["accepted_forgery"]) for d in log] == [
        ("probe", 400, False), ("normal", 204, False)]


@pytest.mark.parametrize(("what", "verdict"), [("ciphertext", "bad_ciphertext"), ("signature", "bad_signature")])
def test_a_tampered_notification_is_refused_and_then_sent_intact(
    sandbox: Sandbox, receiver: Receiver, what: str, verdict: str
) -> None:
    sandbox.control("POST", "faults", {"notify": {"tamper_next": 1, "what": what}})
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])

    tampered, intact = receiver.wait_for(2)

    assert (tampered.verdict, intact.verdict) == (verdict, "ok")


def test_dropped_notifications_never_arrive_until_replayed(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])

    time.sleep(0.2)
    assert receiver.snapshot() == []
    assert sandbox.query(order["out_trade_no"]).json()["trade_state"] == "SUCCESS"
    assert [d["kind"] for d in sandbox.deliveries()] == ["dropped"]

    replay = sandbox.control("POST", f"notifications/{order['out_trade_no']}/resend")

    assert replay.status_code == 202
    [note] = receiver.wait_for(1)
    assert json.loads(note.body)["id"] == replay.json()["notification_id"]
    assert note.verdict == "ok"


def test_duplicate_mode_sends_several_copies_at_once(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.control("POST", "faults", {"notify": {"mode": "duplicate", "copies": 3}})
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])

    notes = receiver.wait_for(3)

    assert len({json.loads(n.body)["id"] for n in notes}) == 1
    assert all(n.verdict == "ok" for n in notes)
    time.sleep(0.1)
    assert len(receiver.snapshot()) == 3


def test_resending_needs_a_paid_order(sandbox: Sandbox) -> None:
    order = sandbox.order()

    assert sandbox.control("POST", f"notifications/{order['out_trade_no']}/resend").status_code == 409
    assert sandbox.control("POST", "notifications/LB_unknown_1/resend").status_code == 404


# --- API fault injection ------------------------------------------------------------------------


def test_fail_next_answers_signed_errors_without_side_effects(sandbox: Sandbox) -> None:
    armed = sandbox.control("POST", "faults", {"api": {"fail_next": 2, "status": 503, "code": "SYSTEM_ERROR"}})
    assert armed.json()["api"]["fail_next"] == 2
    body = order_body()

    first = sandbox.call("POST", "/v3/pay/transactions/native", body)
    second = sandbox.call("POST", "/v3/pay/transactions/native", body)
    third = sandbox.call("POST", "/v3/pay/transactions/native", body)

    assert [r.status_code for r in (first, second, third)] == [503, 503, 200]
    assert first.json() == {"code": "SYSTEM_ERROR", "message": "系统错误"}
    statuses = [(r["path"], r["status"], r["code"]) for r in sandbox.control("GET", "requests").json()["requests"]]
    assert statuses[-3:] == [("/v3/pay/transactions/native", 503, "SYSTEM_ERROR")] * 2 + [
        ("/v3/pay/transactions/native", 200, None)]


def test_fail_next_can_be_limited_to_a_path_prefix(sandbox: Sandbox) -> None:
    sandbox.control("POST", "faults", {"api": {"fail_next": 1, "paths": "/v3/refund"}})

    sandbox.order()
    refund = sandbox.call("POST", "/v3/refund/domestic/refunds", {"out_refund_no": "R1"})

    assert (refund.status_code, refund.json()["code"]) == (500, "SYSTEM_ERROR")


def test_a_hung_call_still_takes_effect(sandbox: Sandbox) -> None:
    sandbox.control("POST", "faults", {"api": {"hang_next": 1, "seconds": 0.6}})
    body = order_body()

    with pytest.raises(requests.Timeout):
        sandbox.call("POST", "/v3/pay/transactions/native", body, timeout=0.2)

    assert wait_until(lambda: sandbox.query(body["out_trade_no"]).status_code == 200)


def test_unsigned_next_answers_without_signature_headers(sandbox: Sandbox) -> None:
    sandbox.control("POST", "faults", {"api": {"unsigned_next": 1}})

    unsigned = sandbox.call("POST", "/v3/pay/transactions/native", order_body(), expect_signed=False)
    signed = sandbox.call("POST", "/v3/pay/transactions/native", order_body())

    assert unsigned.status_code == 200
    assert "Wechatpay-Signature" not in unsigned.headers and "Wechatpay-Serial" not in unsigned.headers
    assert signed.status_code == 200


def test_bad_fault_payloads_are_refused_and_faults_reset(sandbox: Sandbox) -> None:
    assert sandbox.control("POST", "faults", {"notify": {"mode": "sometimes"}}).status_code == 400
    assert sandbox.control("POST", "faults", {"api": {"fail_nxt": 1}}).status_code == 400
    sandbox.control("POST", "faults", {"api": {"fail_next": 3}, "notify": {"mode": "drop"}})

    assert sandbox.control("DELETE", "faults").status_code == 204

    faults = sandbox.control("GET", "faults").json()
    assert faults["api"]["fail_next"] == 0 and faults["notify"]["mode"] == "normal"


def test_the_control_log_can_be_cleared(sandbox: Sandbox) -> None:
    sandbox.order()
    assert sandbox.control("GET", "requests").json()["requests"]

    sandbox.control("DELETE", "log")

    assert sandbox.control("GET", "requests").json()["requests"] == []


# --- refunds ------------------------------------------------------------------------------------


def _refund(sandbox: Sandbox, order: dict[str, Any], amount: int, number: str, **extra: Any) -> requests.Response:
    body = {"out_trade_no": order["out_trade_no"], "out_refund_no": number, "notify_url": REFUND_NOTIFY_URL,
            "amount": {"refund": amount, "total": order["amount"]["total"], "currency": "CNY"}, **extra}
    return sandbox.call("POST", "/v3/refund/domestic/refunds", body)


def test_a_refund_is_processing_then_succeeds_and_notifies(sandbox: Sandbox, receiver: Receiver) -> None:
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])
    receiver.wait_for(1)

    response = _refund(sandbox, order, 3000, "RF-" + order["out_trade_no"])

    assert response.status_code == 200
    refund = response.json()
    assert refund["status"] == "PROCESSING"
    assert refund["amount"]["refund"] == 3000 and refund["amount"]["total"] == 9900
    note = receiver.wait_for(2)[1]
    assert note.path == "/wechatpay/refund-notify" and note.verdict == "ok"
    envelope = json.loads(note.body)
    assert envelope["event_type"] == "REFUND.SUCCESS"
    assert envelope["resource"]["original_type"] == "refund" == envelope["resource"]["associated_data"]
    assert note.plaintext is not None
    assert note.plaintext["refund_status"] == "SUCCESS"
    assert note.plaintext["refund_id"] == refund["refund_id"]
    assert note.plaintext["amount"] == {"total": 9900, "refund": 3000, "payer_total": 9900, "payer_refund": 3000}
    queried = sandbox.call("GET", f"/v3/refund/domestic/refunds/{refund['out_refund_no']}").json()
    assert queried["status"] == "SUCCESS" and queried["success_time"].endswith("+08:00")
    assert sandbox.query(order["out_trade_no"]).json()["trade_state"] == "REFUND"


def test_the_same_out_refund_no_refunds_only_once(sandbox: Sandbox) -> None:
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])

    first = _refund(sandbox, order, 5000, "RF_once@1")
    again = _refund(sandbox, order, 5000, "RF_once@1")

    assert again.status_code == 200
    assert again.json()["refund_id"] == first.json()["refund_id"]
    assert len(sandbox.control("GET", f"orders/{order['out_trade_no']}").json()["refunds"]) == 1
    changed = _refund(sandbox, order, 100, "RF_once@1")
    assert (changed.status_code, changed.json()["code"]) == (400, "INVALID_REQUEST")


def test_refunds_beyond_the_order_total_are_refused(sandbox: Sandbox) -> None:
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])
    assert _refund(sandbox, order, 6000, "RF-a").status_code == 200

    over = _refund(sandbox, order, 4000, "RF-b")
    rest = _refund(sandbox, order, 3900, "RF-c")

    assert over.status_code == 400
    assert over.json() == {"code": "INVALID_REQUEST", "message": "退款金额超过订单可退金额"}
    assert rest.status_code == 200


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"amount": {"refund": 100, "total": 9800, "currency": "CNY"}}, 400, "INVALID_REQUEST"),
    ({"amount": {"refund": 100, "total": 9900, "currency": "USD"}}, 400, "PARAM_ERROR"),
    ({"amount": {"refund": 0, "total": 9900, "currency": "CNY"}}, 400, "PARAM_ERROR"),
    ({"out_refund_no": "RF#1"}, 400, "PARAM_ERROR"),
    ({"out_refund_no": "R" * 65}, 400, "PARAM_ERROR"),
    ({"out_trade_no": "LB_unknown_order"}, 404, "RESOURCE_NOT_EXISTS"),
    ({"out_trade_no": None}, 400, "PARAM_ERROR"),
    ({"notify_url": "http://insecure.test/refund"}, 400, "PARAM_ERROR"),
])
def test_it_refuses_an_invalid_refund(sandbox: Sandbox, change: dict[str, Any], status: int, code: str) -> None:
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])
    body = {"out_trade_no": order["out_trade_no"], "out_refund_no": "RF-1",
            "amount": {"refund": 100, "total": 9900, "currency": "CNY"}, **change}
    body = {k: v for k, v in body.items() if v is not None}

    response = sandbox.call("POST", "/v3/refund/domestic/refunds", body)

    assert (response.status_code, response.json()["code"]) == (status, code)


def test_an_unpaid_order_cannot_be_refunded_and_unknown_refunds_are_not_found(sandbox: Sandbox) -> None:
    order = sandbox.order()

    response = _refund(sandbox, order, 100, "RF-unpaid")
    unknown = sandbox.call("GET", "/v3/refund/domestic/refunds/RF-nobody")

    assert (response.status_code, response.json()["code"]) == (404, "RESOURCE_NOT_EXISTS")
    assert (unknown.status_code, unknown.json()) == (404, {"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"})


def test_refunds_are_refused_a_year_after_payment(sandbox: Sandbox, clock: Clock) -> None:
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])
    clock.offset = 366 * 86400

    response = _refund(sandbox, order, 100, "RF-late")

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")


def test_a_refund_can_be_held_and_closed_from_the_control_api(
    make_sandbox: Callable[..., Sandbox], receiver: Receiver
) -> None:
    sandbox = make_sandbox(refund_delay=None)
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])
    _refund(sandbox, order, 9900, "RF-held")
    time.sleep(0.1)
    assert sandbox.control("GET", "refunds/RF-held").json()["status"] == "PROCESSING"

    closed = sandbox.control("POST", "refunds/RF-held/settle", {"status": "CLOSED"})

    assert closed.json()["status"] == "CLOSED"
    event = wait_until(lambda: [json.loads(n.body)["event_type"] for n in receiver.snapshot()][1:])
    assert event == ["REFUND.CLOSED"]
    assert sandbox.query(order["out_trade_no"]).json()["trade_state"] == "SUCCESS"
    assert _refund(sandbox, order, 9900, "RF-again").status_code == 200  # a closed refund frees the amount


# --- certificate mode, mounting -----------------------------------------------------------------


def test_certificate_mode_serves_the_platform_certificate_it_signs_with(
    make_sandbox: Callable[..., Sandbox], keys: Keys
) -> None:
    sandbox = make_sandbox(public_key_id=None)

    response = sandbox.call("GET", "/v3/certificates")

    assert response.status_code == 200
    [entry] = response.json()["data"]
    encrypted = entry["encrypt_certificate"]
    assert encrypted["algorithm"] == "AEAD_AES_256_GCM" and encrypted["associated_data"] == "certificate"
    assert len(encrypted["nonce"]) == 12
    pem = aead_decrypt(keys.apiv3, encrypted["nonce"], encrypted["associated_data"], encrypted["ciphertext"])
    cert = x509.load_pem_x509_certificate(pem)
    serial = response.headers["Wechatpay-Serial"]
    assert re.fullmatch(r"[0-9A-F]{40}", serial)
    assert certificate_serial(cert) == entry["serial_no"] == serial
    cert_key = cert.public_key()
    assert isinstance(cert_key, rsa.RSAPublicKey)
    assert_platform_signed(response, cert_key)
    assert entry["effective_time"].endswith("+08:00") and entry["expire_time"].endswith("+08:00")


def test_certificate_mode_signs_notifications_with_the_certificate_serial(
    make_sandbox: Callable[..., Sandbox], receiver: Receiver
) -> None:
    sandbox = make_sandbox(public_key_id=None)
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])

    [note] = receiver.wait_for(1)

    assert note.headers["Wechatpay-Serial"] == sandbox.state.identity.certificate_serial
    assert note.verdict == "ok"


def test_mounted_under_a_prefix_its_links_stay_under_the_prefix(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(prefix="/sandbox")
    order = sandbox.order()

    page = requests.get(f"{sandbox.base}/pay/{order['pr']}", timeout=5)
    index = requests.get(f"{sandbox.base}/", timeout=5)
    details = sandbox.control("GET", f"orders/{order['out_trade_no']}").json()

    assert f'action="/sandbox/pay/{order["pr"]}"' in page.text
    assert 'href="/sandbox/"' in page.text
    assert f'href="/sandbox/pay/{order["pr"]}"' in index.text
    assert details["pay_page"] == f"{sandbox.server.url}/sandbox/pay/{order['pr']}"
    paid = requests.post(f"{sandbox.base}/pay/{order['pr']}", data={"result": "success"}, timeout=5)
    assert 'data-outcome="paid"' in paid.text
    assert requests.get(sandbox.server.url + "/", timeout=5).text == "merchant home"


def test_mounted_it_accepts_the_signature_over_the_wire_path(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(prefix="/sandbox")
    order = sandbox.order()
    path = f"/v3/pay/transactions/out-trade-no/{order['out_trade_no']}?mchid={MCHID}"
    headers = {"Accept": "application/json", "User-Agent": "t/1",
               "Authorization": sandbox.authorization("GET", "/sandbox" + path, b"")}

    response = requests.get(f"{sandbox.base}{path}", headers=headers, timeout=5)

    assert response.status_code == 200
    assert sandbox.call("GET", "/v3/nothing-here").json()["code"] == "NOT_FOUND"


def test_stopping_the_sandbox_stops_pending_retries(make_sandbox: Callable[..., Sandbox], receiver: Receiver) -> None:
    sandbox = make_sandbox(retry_scale=1.0)
    receiver.answers = [500]
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])
    receiver.wait_for(1)

    started = time.monotonic()
    sandbox.state.stop()

    assert time.monotonic() - started < 2
    assert not sandbox.state.courier.running


# --- issue 10: key phases, probes, bills --------------------------------------------------------


def test_in_the_gray_phase_notifications_alternate_between_the_certificate_and_the_public_key(
    make_sandbox: Callable[..., Sandbox], receiver: Receiver
) -> None:
    sandbox = make_sandbox(key_phase="gray")
    for _ in range(4):
        sandbox.pay(sandbox.order()["out_trade_no"])

    notes = receiver.wait_for(4)

    serials = sorted(n.headers["Wechatpay-Serial"] for n in notes)
    assert serials == sorted([PUBLIC_KEY_ID, PUBLIC_KEY_ID] + [sandbox.state.identity.certificate_serial] * 2)


def test_in_the_gray_phase_responses_use_the_public_key_only_after_the_switch(
    make_sandbox: Callable[..., Sandbox]
) -> None:
    sandbox = make_sandbox(key_phase="gray")
    path = f"/v3/pay/transactions/out-trade-no/LB12345678?mchid={MCHID}"
    named = {"Wechatpay-Serial": PUBLIC_KEY_ID}

    before = sandbox.call("GET", path, headers=named).headers["Wechatpay-Serial"]
    switched = sandbox.control("POST", "keys", {"switch": True}).json()
    after = sandbox.call("GET", path, headers=named).headers["Wechatpay-Serial"]
    unnamed = sandbox.call("GET", path).headers["Wechatpay-Serial"]

    assert before == unnamed == sandbox.state.identity.certificate_serial
    assert switched["switch"] is True and after == PUBLIC_KEY_ID


def test_an_armed_probe_signs_the_next_2xx_answer_with_signtest(sandbox: Sandbox) -> None:
    order = sandbox.order()
    sandbox.control("POST", "faults", {"api": {"probe_next": 1}})

    probed = sandbox.call(
        "GET", f"/v3/pay/transactions/out-trade-no/{order['out_trade_no']}?mchid={MCHID}", expect_signed=False)
    normal = sandbox.query(order["out_trade_no"])

    assert probed.status_code == 200 and probed.headers["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    assert normal.status_code == 200


def test_a_rotated_certificate_is_listed_with_the_old_one(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(public_key_id=None)
    old = sandbox.state.identity.certificate_serial

    listed = sandbox.control("POST", "certificates/rotate", {"activate": False}).json()
    entries = sandbox.call("GET", "/v3/certificates").json()["data"]

    assert listed["certificate_serial"] == old and len(listed["certificate_serials"]) == 2
    assert {e["serial_no"] for e in entries} == set(listed["certificate_serials"])


def _bill(sandbox: Sandbox, day: str, **query: str) -> requests.Response:
    params = "&".join(f"{k}={v}" for k, v in {"bill_date": day, "bill_type": "ALL", **query}.items())
    return sandbox.call("GET", f"/v3/bill/tradebill?{params}")


def test_the_trade_bill_is_published_after_ten_and_empty_days_have_none(
    sandbox: Sandbox, clock: Clock
) -> None:
    order = sandbox.order()
    sandbox.pay(order["out_trade_no"])
    today = datetime.fromtimestamp(clock(), CHINA).date()
    tomorrow_ten = datetime.combine(today + timedelta(days=1), datetime.min.time(), CHINA) + timedelta(hours=10)

    creating = _bill(sandbox, today.isoformat())
    future = _bill(sandbox, (today + timedelta(days=1)).isoformat())
    empty = _bill(sandbox, (today - timedelta(days=5)).isoformat())
    bad = _bill(sandbox, "2026-13-01")
    clock.offset = tomorrow_ten.timestamp() - time.time() + 1
    ready = _bill(sandbox, today.isoformat())

    assert (creating.status_code, creating.json()["code"]) == (400, "STATEMENT_CREATING")
    assert (future.status_code, future.json()["code"]) == (400, "INVALID_REQUEST")
    assert (empty.status_code, empty.json()["code"]) == (400, "NO_STATEMENT_EXIST")
    assert (bad.status_code, bad.json()["code"]) == (400, "PARAM_ERROR")
    assert ready.status_code == 200 and ready.json()["hash_type"] == "SHA1"


def test_the_bill_file_is_gzip_unsigned_and_hashed_before_compression(sandbox: Sandbox) -> None:
    import gzip
    import hashlib

    sandbox.control("POST", "settings", {"bill_ready_after": -86400})
    order = sandbox.order(description="C++ Primer, 第5版")
    sandbox.pay(order["out_trade_no"])
    today = datetime.now(CHINA).date().isoformat()
    answer = _bill(sandbox, today, tar_type="GZIP").json()
    path = answer["download_url"].removeprefix(sandbox.server.url)

    download = sandbox.call("GET", path, expect_signed=False)

    text = gzip.decompress(download.content)
    assert "Wechatpay-Signature" not in download.headers
    assert hashlib.sha1(text).hexdigest() == answer["hash_value"]
    lines = text.decode().split("\r\n")
    assert lines[0].startswith("交易时间,公众账号ID,商户号,特约商户号")
    assert lines[1].startswith("`") and f"`{order['out_trade_no']}," in lines[1] and "`99.00," in lines[1]
    assert "`C++ Primer, 第5版," in lines[1]
    assert lines[2].startswith("总交易单数") and lines[3].startswith("`1,`99.00,")
