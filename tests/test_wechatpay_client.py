"""The WeChat Pay client against a real local HTTP server that checks our signatures and signs its answers."""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay import crypto
from wechatpay.client import WeChatPayClient
from wechatpay.errors import ApiError, MalformedError, TransportError, VerificationError
from wechatpay.verifier import CertificateStore, PublicKeyVerifier, Verifier

VECTORS = Path(__file__).parent / "vectors" / "wechatpay-v3"
MCHID = "1900000001"
APPID = "wx0000000000000001"
MERCHANT_SERIAL = "5F1C72E2A8931B72A2E13AF8DEE92471EB397115"
KEY_ID = "PUB_KEY_ID_0112345678901234567890123456789"
APIV3_KEY = b"0123456789abcdefghijABCDEFGHIJ01"
AUTH = re.compile(r'WECHATPAY2-SHA256-RSA2048 ((?:\w+="[^"]*",?)+)')


def vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text("utf-8"))


@functools.cache
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Reply:
    """One scripted answer of the fake WeChat Pay server."""

    status: int = 200
    body: bytes | dict[str, Any] = b"{}"
    signed: bool = True
    key: rsa.RSAPrivateKey | None = None
    serial: str = KEY_ID
    hang: bool = False


@dataclass
class Seen:
    """One request as the fake server received it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    auth: dict[str, str]
    signature_ok: bool


@dataclass
class FakeWeChat:
    """A scripted stand-in for api.mch.weixin.qq.com on 127.0.0.1."""

    base: str = ""
    replies: list[Reply] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def next_reply(self) -> Reply:
        return self.replies.pop(0) if self.replies else Reply()


def _make_handler(fake: FakeWeChat) -> type[BaseHTTPRequestHandler]:
    merchant_public = rsa_key("merchant").public_key()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = AUTH.fullmatch(self.headers.get("Authorization", ""))
            auth = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))) if match else {}
            ok = bool(match) and auth.get("mchid") == MCHID and auth.get("serial_no") == MERCHANT_SERIAL
            if ok:
                message = crypto.request_message(self.command, self.path, auth["timestamp"], auth["nonce_str"], body)
                ok = crypto.signature_matches(merchant_public, message, auth["signature"])
            fake.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body, auth, ok))
            reply = fake.next_reply() if ok else Reply(401, {"code": "SIGN_ERROR", "message": "sign not match"})
            if reply.hang:
                fake.release.wait(10)
                return
            payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Date", formatdate(usegmt=True))
            if reply.signed:
                ts, nonce = str(int(time.time())), crypto.make_nonce()
                key = reply.key or rsa_key("platform")
                self.send_header("Wechatpay-Timestamp", ts)
                self.send_header("Wechatpay-Nonce", nonce)
                self.send_header("Wechatpay-Serial", reply.serial)
                self.send_header("Wechatpay-Signature", crypto.sign(key, crypto.response_message(ts, nonce, payload)))
            if reply.status != 204:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if reply.status != 204:
                self.wfile.write(payload)

    return Handler


@pytest.fixture
def wechat() -> Iterator[FakeWeChat]:
    fake = FakeWeChat()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@dataclass
class Sleeps:
    """An injected sleep that records instead of waiting."""

    calls: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(
    fake: FakeWeChat, sleeps: Sleeps | None = None, verifier: Verifier | None = None, **overrides: Any
) -> WeChatPayClient:
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment must not intercept 127.0.0.1
    options: dict[str, Any] = dict(
        api_base=fake.base,
        mchid=MCHID,
        appid=APPID,
        merchant_serial=MERCHANT_SERIAL,
        merchant_key=rsa_key("merchant"),
        verifier=verifier or PublicKeyVerifier(KEY_ID, rsa_key("platform").public_key()),
        apiv3_keys=[APIV3_KEY],
        public_key_id=KEY_ID,
        session=session,
        connect_timeout=0.5,
        read_timeout=0.5,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )
    options.update(overrides)
    return WeChatPayClient(**options)


EXPIRE = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)


def create_order(client: WeChatPayClient) -> str:
    return client.create_native_order(
        out_trade_no="LB202601010001",
        description="Learning Buddy 一年授权",
        amount_fen=9900,
        notify_url="https://pay.example.com/wechat/notify",
        time_expire=EXPIRE,
        attach="order:42",
    )


# --- success paths ---------------------------------------------------------------------------


def test_it_creates_a_native_order_with_a_signed_request(wechat: FakeWeChat) -> None:
    wechat.replies.append(Reply(body={"code_url": "weixin://wxpay/bizpayurl?pr=NwY5Mz9"}))
    assert create_order(make_client(wechat)) == "weixin://wxpay/bizpayurl?pr=NwY5Mz9"
    [seen] = wechat.seen
    assert seen.signature_ok
    assert (seen.method, seen.target) == ("POST", "/v3/pay/transactions/native")
    assert seen.body == (
        '{"appid":"wx0000000000000001","mchid":"1900000001","description":"Learning Buddy 一年授权",'
        '"out_trade_no":"LB202601010001","time_expire":"2026-01-01T10:00:00+08:00","attach":"order:42",'
        '"notify_url":"https://pay.example.com/wechat/notify","amount":{"total":9900,"currency":"CNY"}}'
    ).encode()
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == "LearningBuddyPay/0.1 (python)"
    assert seen.headers["Wechatpay-Serial"] == KEY_ID
    assert list(seen.auth) == ["mchid", "nonce_str", "signature", "timestamp", "serial_no"]
    assert re.fullmatch(r"[0-9A-Za-z]{32}", seen.auth["nonce_str"])


def test_it_sends_no_wechatpay_serial_without_a_public_key_id(wechat: FakeWeChat) -> None:
    wechat.replies.append(Reply(body={"code_url": "weixin://x"}))
    create_order(make_client(wechat, public_key_id=None))
    assert "Wechatpay-Serial" not in wechat.seen[0].headers


def test_it_queries_orders_with_escaped_path_segments(wechat: FakeWeChat) -> None:
    wechat.replies += [Reply(body={"trade_state": "NOTPAY"}), Reply(body={"trade_state": "SUCCESS"})]
    client = make_client(wechat)
    assert client.query_by_out_trade_no("LB 1/2*") == {"trade_state": "NOTPAY"}
    assert client.query_by_transaction_id("4200000000201407033233368018") == {"trade_state": "SUCCESS"}
    first, second = wechat.seen
    assert first.signature_ok and second.signature_ok
    assert (first.method, first.target, first.body) == (
        "GET",
        f"/v3/pay/transactions/out-trade-no/LB%201%2F2%2A?mchid={MCHID}",
        b"",
    )
    assert "Content-Type" not in first.headers
    assert second.target == f"/v3/pay/transactions/id/4200000000201407033233368018?mchid={MCHID}"


def test_it_closes_an_order_and_verifies_the_empty_204(wechat: FakeWeChat) -> None:
    wechat.replies.append(Reply(status=204, body=b""))
    make_client(wechat).close_order("LB202601010001")
    [seen] = wechat.seen
    assert (seen.method, seen.target, seen.body) == (
        "POST",
        "/v3/pay/transactions/out-trade-no/LB202601010001/close",
        b'{"mchid":"1900000001"}',
    )


def test_it_rejects_a_204_signed_by_another_key(wechat: FakeWeChat) -> None:
    wechat.replies.append(Reply(status=204, body=b"", key=rsa_key("attacker")))
    with pytest.raises(VerificationError) as info:
        make_client(wechat).close_order("LB202601010001")
    assert info.value.reason == "bad_signature"


def test_it_creates_and_queries_a_refund(wechat: FakeWeChat) -> None:
    refund = {"refund_id": "50000000382019052709732678859", "out_refund_no": "RF1", "status": "PROCESSING"}
    wechat.replies += [Reply(body=refund), Reply(body={**refund, "status": "SUCCESS"})]
    client = make_client(wechat)
    assert client.create_refund(
        out_refund_no="RF1", out_trade_no="LB1", refund_fen=100, total_fen=9900, reason=None, notify_url="https://n"
    ) == refund
    assert client.query_refund("RF1")["status"] == "SUCCESS"
    create, query = wechat.seen
    assert json.loads(create.body) == {
        "out_trade_no": "LB1",
        "out_refund_no": "RF1",
        "notify_url": "https://n",
        "amount": {"refund": 100, "total": 9900, "currency": "CNY"},
    }
    assert (query.method, query.target) == ("GET", "/v3/refund/domestic/refunds/RF1")


def test_it_remembers_the_date_header_for_clock_skew_alerts(wechat: FakeWeChat) -> None:
    client = make_client(wechat, clock=lambda: time.time() + 120)
    client.query_refund("RF1")
    assert client.last_response_date is not None
    assert client.last_clock_skew is not None and 115 < client.last_clock_skew < 125


def test_it_keeps_a_path_prefix_in_the_signed_url(wechat: FakeWeChat) -> None:
    client = make_client(wechat, api_base=wechat.base + "/sandbox/")
    client.query_refund("RF1")
    assert wechat.seen[0].target == "/sandbox/v3/refund/domestic/refunds/RF1"
    assert wechat.seen[0].signature_ok


# --- forged or unsigned answers --------------------------------------------------------------


def test_it_rejects_an_unsigned_200_without_retrying(wechat: FakeWeChat) -> None:
    wechat.replies.append(Reply(body={"code_url": "weixin://forged"}, signed=False))
    with pytest.raises(VerificationError) as info:
        create_order(make_client(wechat))
    assert info.value.reason == "missing_header"
    assert len(wechat.seen) == 1


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply(body={"code_url": "weixin://x"}, key=rsa_key("attacker")), "bad_signature"),
        (Reply(body={"code_url": "weixin://x"}, serial="PUB_KEY_ID_999"), "unknown_serial"),
    ],
)
def test_it_rejects_a_forged_answer(wechat: FakeWeChat, reply: Reply, why: str) -> None:
    wechat.replies.append(reply)
    with pytest.raises(VerificationError) as info:
        create_order(make_client(wechat))
    assert info.value.reason == why


def test_a_signed_200_that_is_not_a_json_object_is_malformed(wechat: FakeWeChat) -> None:
    wechat.replies.append(Reply(body=b"[]"))
    with pytest.raises(MalformedError):
        make_client(wechat).query_refund("RF1")


# --- errors and retries ----------------------------------------------------------------------

SYSTEM_ERROR = {"code": "SYSTEM_ERROR", "message": "系统错误"}


def test_it_retries_two_500s_with_the_same_body_and_succeeds(wechat: FakeWeChat) -> None:
    wechat.replies += [Reply(500, SYSTEM_ERROR), Reply(500, SYSTEM_ERROR), Reply(body={"code_url": "weixin://ok"})]
    sleeps = Sleeps()
    assert create_order(make_client(wechat, sleeps, backoff=0.2)) == "weixin://ok"
    assert len(wechat.seen) == 3
    assert all(s.signature_ok for s in wechat.seen)
    assert len({s.body for s in wechat.seen}) == 1
    assert len({s.auth["nonce_str"] for s in wechat.seen}) == 3
    assert len(sleeps.calls) == 2
    assert 0 <= sleeps.calls[0] <= 0.2 and 0 <= sleeps.calls[1] <= 0.4


def test_it_gives_up_after_max_attempts_of_500(wechat: FakeWeChat) -> None:
    wechat.replies += [Reply(500, SYSTEM_ERROR) for _ in range(5)]
    sleeps = Sleeps()
    client = make_client(wechat, sleeps)
    with pytest.raises(ApiError) as info:
        create_order(client)
    assert (info.value.status, info.value.code, info.value.message) == (500, "SYSTEM_ERROR", "系统错误")
    assert info.value.retryable and info.value.kind == "unavailable" and not info.value.is_config_error
    # Three attempts, then a harmless query without our unconfirmed public-key id: it fails too, so an outage.
    assert len(wechat.seen) == 4
    assert [("Wechatpay-Serial" in s.headers) for s in wechat.seen] == [True, True, True, False]
    assert wechat.seen[3].target == f"/v3/pay/transactions/out-trade-no/LBPAY_SERIAL_CHECK?mchid={MCHID}"
    assert len(sleeps.calls) == 2
    assert client.serial_status == "unconfirmed"


def test_once_the_public_key_id_is_confirmed_a_500_is_an_outage_without_a_diagnosis(wechat: FakeWeChat) -> None:
    wechat.replies += [Reply(body={"code_url": "weixin://ok"})] + [Reply(500, SYSTEM_ERROR) for _ in range(5)]
    client = make_client(wechat)
    create_order(client)
    assert client.serial_status == "confirmed"

    with pytest.raises(ApiError) as info:
        create_order(client)

    assert info.value.kind == "unavailable"
    assert len(wechat.seen) == 4


def test_it_retries_a_429(wechat: FakeWeChat) -> None:
    wechat.replies += [Reply(429, {"code": "FREQUENCY_LIMITED", "message": "频率超限"}), Reply(body={"status": "SUCCESS"})]
    assert make_client(wechat).query_refund("RF1") == {"status": "SUCCESS"}
    assert len(wechat.seen) == 2


def test_it_retries_a_retryable_code_even_on_a_4xx_status(wechat: FakeWeChat) -> None:
    wechat.replies += [Reply(403, {"code": "BANK_ERROR", "message": "x"}), Reply(body={"status": "SUCCESS"})]
    assert make_client(wechat).query_refund("RF1") == {"status": "SUCCESS"}


def test_it_does_not_retry_a_param_error(wechat: FakeWeChat) -> None:
    detail = {"field": "/amount/total", "issue": "must be > 0", "location": "body"}
    wechat.replies.append(Reply(400, {"code": "PARAM_ERROR", "message": "参数格式校验错误", "detail": detail}))
    sleeps = Sleeps()
    with pytest.raises(ApiError) as info:
        create_order(make_client(wechat, sleeps))
    assert (info.value.status, info.value.code, info.value.detail, info.value.retryable) == (
        400,
        "PARAM_ERROR",
        detail,
        False,
    )
    assert len(wechat.seen) == 1
    assert sleeps.calls == []


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (502, b"<html>Bad Gateway</html>", "HTTP_502", True),
        (404, b"", "HTTP_404", False),
        (404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}, "ORDER_NOT_EXIST", False),
        (403, {"code": 5}, "HTTP_403", False),
    ],
)
def test_it_maps_error_answers_to_api_errors(
    wechat: FakeWeChat, status: int, body: Any, code: str, retryable: bool
) -> None:
    wechat.replies += [Reply(status, body) for _ in range(3)]
    with pytest.raises(ApiError) as info:
        make_client(wechat, max_attempts=1).query_by_out_trade_no("LB1")
    assert (info.value.status, info.value.code, info.value.retryable) == (status, code, retryable)


def test_a_hanging_server_becomes_a_transport_error_after_the_read_timeout(wechat: FakeWeChat) -> None:
    wechat.replies += [Reply(hang=True), Reply(hang=True)]
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        make_client(wechat, read_timeout=0.3, max_attempts=2).query_by_out_trade_no("LB1")
    assert info.value.retryable
    assert time.monotonic() - started < 3
    assert len(wechat.seen) == 2


def test_a_refused_connection_is_a_transport_error() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as unused:
        port = unused.server_address[1]
    sleeps = Sleeps()
    client = make_client(FakeWeChat(base=f"http://127.0.0.1:{port}"), sleeps)
    with pytest.raises(TransportError):
        client.query_refund("RF1")
    assert len(sleeps.calls) == 2


def test_the_constructor_does_no_network_io() -> None:
    make_client(FakeWeChat(base="http://192.0.2.1:9"))


@pytest.mark.parametrize(
    "changes",
    [
        {"amount_fen": 0},
        {"amount_fen": -1},
        {"amount_fen": True},
        {"amount_fen": 99.0},
        {"time_expire": datetime(2026, 1, 1, 10, 0)},
    ],
)
def test_it_refuses_bad_order_arguments_before_calling(wechat: FakeWeChat, changes: dict[str, Any]) -> None:
    args: dict[str, Any] = dict(
        out_trade_no="LB1", description="d", amount_fen=100, notify_url="https://n", time_expire=EXPIRE
    )
    args.update(changes)
    with pytest.raises(ValueError):
        make_client(wechat).create_native_order(**args)
    assert wechat.seen == []


# --- platform certificates -------------------------------------------------------------------


def go_download_reply(**overrides: Any) -> Reply:
    go = vector("go_certificates_download_response")
    signer = vector("go_rsa_sha256_sign_source")
    options: dict[str, Any] = dict(
        body=go["response_body"].encode(),
        key=crypto.load_private_key(signer["private_key_pkcs8_pem"].encode()),
        serial="D7CE59D1F522D701",
    )
    options.update(overrides)
    return Reply(**options)


def test_it_bootstraps_the_go_certificate_download_with_the_carried_certificate(wechat: FakeWeChat) -> None:
    wechat.replies.append(go_download_reply())
    client = make_client(wechat, verifier=CertificateStore(), apiv3_keys=[b"mockAPIv3Key1234"], public_key_id=None)
    [cert] = client.download_certificates()
    assert crypto.certificate_serial(cert) == "D7CE59D1F522D701"
    assert (wechat.seen[0].method, wechat.seen[0].target) == ("GET", "/v3/certificates")


@pytest.mark.parametrize(
    ("overrides", "why"),
    [({"key": rsa_key("attacker")}, "bad_signature"), ({"serial": "ABCDEF"}, "unknown_serial"), ({"signed": False}, "missing_header")],
)
def test_it_rejects_a_certificate_download_not_signed_by_a_carried_or_known_key(
    wechat: FakeWeChat, overrides: dict[str, Any], why: str
) -> None:
    wechat.replies.append(go_download_reply(**overrides))
    client = make_client(wechat, verifier=CertificateStore(), apiv3_keys=[b"mockAPIv3Key1234"])
    with pytest.raises(VerificationError) as info:
        client.download_certificates()
    assert info.value.reason == why


def test_a_store_refreshed_by_the_client_downloads_once_for_an_unknown_serial(wechat: FakeWeChat) -> None:
    wechat.replies += [go_download_reply() for _ in range(3)]
    holder: list[WeChatPayClient] = []
    store = CertificateStore(refresh=lambda: holder[0].download_certificates())
    holder.append(make_client(wechat, verifier=store, apiv3_keys=[b"mockAPIv3Key1234"], public_key_id=None))
    for _ in range(3):
        assert store.public_key_for("D7CE59D1F522D701") is not None
    assert store.public_key_for("0123ABCD") is None
    assert len(wechat.seen) == 1
    assert store.serials() == ["D7CE59D1F522D701"]
    # The stored certificate now verifies answers without another download.
    notify = vector("go_signed_notification_payscore")
    assert isinstance(store.certificates()[0], x509.Certificate)
    assert store.public_key_for(notify["headers"]["Wechatpay-Serial"]) is not None


def test_a_caller_can_ask_for_a_single_try(wechat: FakeWeChat) -> None:
    """A status poll queries once; a worker thread never waits through WeChat's retries for it."""
    wechat.replies += [Reply(500, {"code": "SYSTEM_ERROR", "message": "系统错误"}) for _ in range(3)]
    with pytest.raises(ApiError) as info:
        make_client(wechat, max_attempts=3).query_by_out_trade_no("LB1", attempts=1)
    assert info.value.retryable and len(wechat.seen) == 1


def test_a_bill_download_url_on_another_host_is_never_called(wechat: FakeWeChat) -> None:
    wechat.replies.append(Reply(body={"hash_type": "SHA1", "hash_value": "0" * 40,
                                      "download_url": "https://evil.example/v3/billdownload/file?token=x"}))
    from datetime import date

    with pytest.raises(MalformedError) as info:
        make_client(wechat).trade_bill_text(date(2026, 11, 25))

    assert "not on a WeChat Pay host" in str(info.value)
    assert [s.target for s in wechat.seen] == ["/v3/bill/tradebill?bill_date=2026-11-25&bill_type=ALL&tar_type=GZIP"]


def test_the_production_host_fails_over_to_api2_by_default() -> None:
    client = WeChatPayClient(api_base="https://api.mch.weixin.qq.com", mchid=MCHID, appid=APPID,
                             merchant_serial=MERCHANT_SERIAL, merchant_key=rsa_key("merchant"),
                             verifier=PublicKeyVerifier(KEY_ID, rsa_key("platform").public_key()),
                             apiv3_keys=[APIV3_KEY])
    assert client._relative("https://api2.mch.weixin.qq.com/v3/billdownload/file?token=t") == (
        "/v3/billdownload/file?token=t")
