"""Our WeChat Pay client over real HTTPS against the sandbox: byte limits, the key switch, probes, failover, bills."""

from __future__ import annotations

import datetime as dt
import functools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from conftest import APIV3_KEY, APPID, MCHID, PUBLIC_KEY_ID, Keys, LiveServer, Sandbox, Tls, serve_sandbox
from cryptography.hazmat.primitives.asymmetric import rsa
from servers import private_pem
from werkzeug.wrappers import Request

from wechatpay.client import WeChatPayClient
from wechatpay.errors import (
    ApiError,
    BillIntegrityError,
    BillNotReady,
    FieldError,
    NoBill,
    TransportError,
    VerificationError,
    WeChatPayError,
)
from wechatpay.notify import parse_notification
from wechatpay.verifier import CertificateStore, PlatformVerifier, PublicKeyVerifier

SHOP = "https://shop.test"
NOTIFY_URL = SHOP + "/wechatpay/notify"
CHINA = dt.timezone(dt.timedelta(hours=8))


@functools.cache
def certificate_key() -> rsa.RSAPrivateKey:
    """The platform certificate's own key: distinct from the public key's, as at WeChat."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Clock:
    """Real time plus an offset, shared by the sandbox and the client."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Merchant:
    """A notify endpoint that verifies with the same verifier as the client and answers 204 or 401."""

    verifier: Any = None
    clock: Clock = field(default_factory=Clock)
    lock: threading.Lock = field(default_factory=threading.Lock)
    verified: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if self.verifier is None:
            # A test that does not look at notifications: the sandbox's delivery is refused as a busy
            # server would, not with a traceback from verifying with no verifier.
            start_response("503 Service Unavailable", [("Content-Length", "0")])
            return [b""]
        request = Request(environ)
        try:
            note = parse_notification(request.get_data(), request.headers, self.verifier, [APIV3_KEY], self.clock())
        except WeChatPayError as exc:
            with self.lock:
                self.refused.append(str(exc))
            start_response("401 Unauthorized", [("Content-Length", "0")])
            return [b""]
        with self.lock:
            self.verified.append(note.serial)
        start_response("204 No Content", [])
        return [b""]

    def wait(self, count: int, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.verified) >= count:
                    return list(self.verified)
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.verified)} of {count} notifications verified; refused: {self.refused}")
            time.sleep(0.02)


@pytest.fixture
def merchant() -> Iterator[Merchant]:
    yield Merchant()


@pytest.fixture
def make_sandbox(keys: Keys, tls: Tls, merchant: Merchant) -> Iterator[Callable[..., Sandbox]]:
    started: list[tuple[Sandbox, LiveServer]] = []
    notify_server = LiveServer(merchant)

    def start(**overrides: Any) -> Sandbox:
        settings: dict[str, Any] = dict(
            certificate_private_key_pem=private_pem(certificate_key()),
            notify_origin_map={SHOP: notify_server.url}, retry_scale=0.001, clock=merchant.clock)
        sandbox = serve_sandbox(keys, tls, **{**settings, **overrides})
        started.append((sandbox, sandbox.server))
        return sandbox

    yield start
    for sandbox, server in started:
        sandbox.state.stop()
        server.stop()
    notify_server.stop()


def make_client(keys: Keys, api_base: str, verifier: Any, clock: Clock, **overrides: Any) -> WeChatPayClient:
    options: dict[str, Any] = dict(
        api_base=api_base, mchid=MCHID, appid=APPID, merchant_serial=keys.merchant_serial,
        merchant_key=keys.merchant, verifier=verifier, apiv3_keys=[APIV3_KEY], clock=clock,
        sleep=lambda seconds: None, connect_timeout=1.0, read_timeout=1.0)
    options.update(overrides)
    return WeChatPayClient(**options)


def public_key_verifier(keys: Keys) -> PublicKeyVerifier:
    return PublicKeyVerifier(PUBLIC_KEY_ID, keys.platform.public_key())


# One payable-until time for every order of the run: placing an order again must send identical
# parameters, and "now + 3 h" computed per call changes when a second boundary passes between calls.
EXPIRE = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(hours=3)


def place(client: WeChatPayClient, out_trade_no: str, description: str = "C++ Primer 第5版", **kw: Any) -> str:
    expire = kw.pop("time_expire", EXPIRE)
    return client.create_native_order(out_trade_no=out_trade_no, description=description, amount_fen=9900,
                                      notify_url=NOTIFY_URL, time_expire=expire, **kw)


# --- 1. byte-exact fields -----------------------------------------------------------------------


def test_a_60_character_chinese_title_with_an_emoji_is_fitted_and_accepted(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    title = "\U0001F4DA" + "零基础学习现代编程从入门到精通的完整课程" * 3  # an emoji and 60 Chinese characters

    code_url = place(client, "LBfit000001", title, attach="课" * 50)

    order = sandbox.control("GET", "orders/LBfit000001").json()
    assert code_url == order["code_url"]
    assert order["description"] == title[1:43] and len(order["description"].encode()) == 126
    assert len(order["attach"].encode()) <= 128


def test_a_refund_reason_over_80_bytes_is_refused_before_anything_is_sent(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    sandbox.control("DELETE", "log")

    with pytest.raises(FieldError) as info:
        client.create_refund(out_refund_no="RF1", out_trade_no="LB1", refund_fen=1, total_fen=9900,
                             reason="退" * 27, notify_url=NOTIFY_URL)

    assert (info.value.field, info.value.length, info.value.limit) == ("reason", 81, 80)
    assert sandbox.control("GET", "requests").json()["requests"] == []


def test_a_param_error_is_a_configuration_error_not_an_outage(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    sandbox.control("POST", "faults", {"api": {"fail_next": 1, "status": 400, "code": "PARAM_ERROR",
                                               "message": "字节数 144,大于最大值 127"}})

    with pytest.raises(ApiError) as info:
        place(client, "LBparam00001")

    assert info.value.is_config_error and info.value.kind == "config" and not info.value.retryable


def test_an_outage_and_a_closed_order_are_not_configuration_errors(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    place(client, "LBkind000001")
    sandbox.control("POST", "faults", {"api": {"fail_next": 5, "status": 500, "code": "SYSTEM_ERROR"}})

    with pytest.raises(ApiError) as outage:
        client.query_by_out_trade_no("LBkind000001")
    sandbox.control("DELETE", "faults")
    client.close_order("LBkind000001")
    with pytest.raises(ApiError) as closed:
        place(client, "LBkind000001")

    assert (outage.value.kind, outage.value.is_config_error) == ("unavailable", False)
    assert (closed.value.code, closed.value.kind) == ("ORDER_CLOSED", "rejected")


# --- 2. both keys through the gray phase --------------------------------------------------------


def both_keys(keys: Keys, clock: Clock) -> PlatformVerifier:
    return PlatformVerifier("both", public_key=public_key_verifier(keys), clock=clock)


def test_the_gray_phase_works_end_to_end_with_both_keys_switch_off_then_on(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox(key_phase="gray", refund_delay=None)
    verifier = both_keys(keys, merchant.clock)
    merchant.verifier = verifier
    client = make_client(keys, sandbox.url, verifier, merchant.clock)

    for n in range(10):
        place(client, f"LBgray{n:06d}")
        sandbox.pay(f"LBgray{n:06d}")
    client.query_by_out_trade_no("LBgray000000")
    client.create_refund(out_refund_no="RFgray1", out_trade_no="LBgray000000", refund_fen=100, total_fen=9900,
                         reason="测试", notify_url=NOTIFY_URL)
    client.query_refund("RFgray1")
    place(client, "LBgrayclose1")
    client.close_order("LBgrayclose1")
    served_by = {r["path"] for r in sandbox.control("GET", "requests").json()["requests"]}
    assert client.serial_status == "confirmed" and len(served_by) >= 4

    sandbox.control("POST", "keys", {"switch": True})
    for n in range(10, 20):
        place(client, f"LBgray{n:06d}")
        sandbox.pay(f"LBgray{n:06d}")
    client.query_by_out_trade_no("LBgray000010")

    serials = merchant.wait(20)
    certificate_serial = sandbox.state.identity.certificate_serial
    assert set(serials) == {PUBLIC_KEY_ID, certificate_serial}
    assert merchant.refused == []
    assert verifier.certificates is not None and verifier.certificates.serials() == [certificate_serial]


def test_before_the_switch_responses_stay_certificate_signed_even_when_we_name_the_public_key(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox(key_phase="gray")
    public_only = PlatformVerifier("public_key", public_key=public_key_verifier(keys))
    client = make_client(keys, sandbox.url, public_only, merchant.clock)

    with pytest.raises(VerificationError) as before:
        place(client, "LBswitch0001")
    sandbox.control("POST", "keys", {"switch": True})
    after = place(client, "LBswitch0001")

    assert before.value.reason == "unknown_serial"
    assert after.startswith("weixin://wxpay/bizpayurl?pr=")
    assert public_only.certificates is None


def test_after_the_gray_phase_public_key_mode_needs_no_certificates(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox(key_phase="public_key")
    verifier = PlatformVerifier("public_key", public_key=public_key_verifier(keys))
    merchant.verifier = verifier
    client = make_client(keys, sandbox.url, verifier, merchant.clock)

    place(client, "LBpubkey0001")
    sandbox.pay("LBpubkey0001")

    assert merchant.wait(1) == [PUBLIC_KEY_ID]
    assert verifier.certificates is None
    assert [r["path"] for r in sandbox.control("GET", "requests").json()["requests"]
            if r["path"].startswith("/v3/certificates")] == []


def test_certificate_mode_sends_no_public_key_id_and_downloads_certificates_lazily(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox(key_phase="certificate")
    verifier = PlatformVerifier("certificate", clock=merchant.clock)
    client = make_client(keys, sandbox.url, verifier, merchant.clock)

    place(client, "LBcert000001")

    paths = [r["path"] for r in sandbox.control("GET", "requests").json()["requests"]]
    assert paths == ["/v3/pay/transactions/native", "/v3/certificates"]
    assert client.serial_status == "not_sent"


# --- 3. certificates kept fresh -----------------------------------------------------------------


def test_a_rotated_certificate_is_accepted_within_one_re_delivery(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox(key_phase="certificate")
    verifier = PlatformVerifier("certificate", clock=merchant.clock)
    merchant.verifier = verifier
    client = make_client(keys, sandbox.url, verifier, merchant.clock)
    place(client, "LBrot0000001")
    old = sandbox.state.identity.certificate_serial

    rotated = sandbox.control("POST", "certificates/rotate").json()
    merchant.clock.offset += 61  # the once-a-minute limit on refreshes for unknown serials has passed
    place(client, "LBrot0000002")
    sandbox.pay("LBrot0000002")

    assert rotated["certificate_serial"] != old
    assert merchant.wait(1) == [rotated["certificate_serial"]]
    assert verifier.certificates is not None and set(verifier.certificates.serials()) == {old, rotated["certificate_serial"]}


def test_the_scheduled_refresh_downloads_new_certificates_and_raises_on_failure(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox(key_phase="certificate")
    verifier = PlatformVerifier("certificate", clock=merchant.clock)
    make_client(keys, sandbox.url, verifier, merchant.clock)
    store = verifier.certificates
    assert store is not None and store.serials() == []

    assert store.refresh() == 1
    sandbox.control("POST", "certificates/rotate", {"activate": False})
    assert store.refresh() == 2 and len(store.serials()) == 2
    sandbox.control("POST", "faults", {"api": {"fail_next": 5, "status": 500, "code": "SYSTEM_ERROR"}})
    with pytest.raises(ApiError):
        store.refresh()
    assert store.last_success is not None


# --- 6. probes and wrong serials ----------------------------------------------------------------


def test_a_probe_response_is_retried_once_and_succeeds(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    place(client, "LBprobe00001")
    sandbox.control("POST", "faults", {"api": {"probe_next": 1}})

    transaction = client.query_by_out_trade_no("LBprobe00001")

    assert transaction["trade_state"] == "NOTPAY" and client.probe_retries == 1


def test_two_probes_in_a_row_fail_verification(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    place(client, "LBprobe00002")
    sandbox.control("POST", "faults", {"api": {"probe_next": 2}})

    with pytest.raises(VerificationError) as info:
        client.query_by_out_trade_no("LBprobe00002")

    assert info.value.reason == "bad_signature"


def test_a_wrong_public_key_id_is_reported_as_a_configuration_error(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    wrong = PublicKeyVerifier("PUB_KEY_ID_0000000000000000000000000000000099", keys.platform.public_key())
    client = make_client(keys, sandbox.url, wrong, merchant.clock, public_key_id=wrong.key_id)

    with pytest.raises(ApiError) as info:
        client.query_by_out_trade_no("LBnothing001")

    assert (info.value.status, info.value.code) == (500, "SYSTEM_ERROR")
    assert info.value.is_config_error and info.value.about_serial and not info.value.retryable
    assert client.serial_status == "rejected" and "PUB_KEY_ID_0000000000000000000000000000000099" in str(
        client.serial_problem)


def test_a_4xx_about_the_serial_is_a_configuration_error(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock,
                         public_key_id="5157F09EFDC096DE15EBE81A47057A7232F1B8E1")

    with pytest.raises(ApiError) as info:
        client.query_by_out_trade_no("LBnothing002")

    assert (info.value.status, info.value.code, info.value.about_serial) == (400, "INVALID_REQUEST", True)
    assert client.serial_status == "rejected"


# --- 7. the backup host -------------------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"https://127.0.0.1:{port}"


def test_a_connection_error_on_the_main_host_fails_over_to_the_backup(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, closed_port_url(), public_key_verifier(keys), merchant.clock, backup_base=sandbox.url)

    code_url = place(client, "LBbackup0001")
    client.query_by_out_trade_no("LBbackup0001")
    client.close_order("LBbackup0001")

    assert code_url.startswith("weixin://") and client.failovers == 3


def test_a_timeout_on_the_main_host_fails_over_to_the_backup(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections in the kernel, never answers
    try:
        client = make_client(keys, f"https://127.0.0.1:{silent.getsockname()[1]}", public_key_verifier(keys),
                             merchant.clock, backup_base=sandbox.url, read_timeout=0.5, connect_timeout=0.5)
        place(client, "LBbackup0002")
    finally:
        silent.close()

    assert client.failovers == 1


def test_without_a_backup_a_connection_error_is_a_transport_error(keys: Keys) -> None:
    # A non-production api_base gets no backup by default: a test must never fail over to the Internet.
    client = make_client(keys, closed_port_url(), public_key_verifier(keys), Clock())
    explicit_off = make_client(keys, closed_port_url(), public_key_verifier(keys), Clock(), backup_base=None)

    for each in (client, explicit_off):
        with pytest.raises(TransportError):
            each.query_by_out_trade_no("LBnothing003")
        assert each.failovers == 0


# --- 8. bills -----------------------------------------------------------------------------------


def paid_day(sandbox: Sandbox, client: WeChatPayClient, count: int = 2) -> dt.date:
    sandbox.control("POST", "settings", {"bill_ready_after": -86400})
    for n in range(count):
        place(client, f"LBbill{n:06d}")
        sandbox.pay(f"LBbill{n:06d}")
    return dt.datetime.fromtimestamp(sandbox.state.now(), CHINA).date()


def test_the_trade_bill_lists_payments_and_refunds_in_fen(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox(refund_delay=None)
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    day = paid_day(sandbox, client)
    client.create_refund(out_refund_no="RFbill1", out_trade_no="LBbill000000", refund_fen=1234, total_fen=9900,
                         reason=None, notify_url=NOTIFY_URL)
    sandbox.control("POST", "refunds/RFbill1/settle", {"status": "SUCCESS"})

    for compressed in (True, False):
        bill = client.trade_bill(day, compressed=compressed)
        assert sorted((r.out_trade_no, r.total_fen) for r in bill.payments) == [
            ("LBbill000000", 9900), ("LBbill000001", 9900)]
        [refund] = bill.refunds
        assert (refund.out_refund_no, refund.refund_fen, refund.out_trade_no) == ("RFbill1", 1234, "LBbill000000")
        assert bill.summary is not None and bill.summary.count == 3 and bill.summary.refund_fen == 1234
    transaction = client.query_by_out_trade_no("LBbill000001")
    assert {r.transaction_id for r in bill.payments} >= {transaction["transaction_id"]}


def test_the_bill_carries_planted_differences(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox(refund_delay=None)
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    day = paid_day(sandbox, client, 3)
    client.create_refund(out_refund_no="RFplant1", out_trade_no="LBbill000002", refund_fen=100, total_fen=9900,
                         reason=None, notify_url=NOTIFY_URL)
    sandbox.control("POST", "refunds/RFplant1/settle", {"status": "SUCCESS"})
    for plant in ({"kind": "unknown_payment", "total": 500, "out_trade_no": "LBstranger01"},
                  {"kind": "amount", "out_trade_no": "LBbill000000", "total": 1},
                  {"kind": "missing_payment", "out_trade_no": "LBbill000001"},
                  {"kind": "missing_refund", "out_refund_no": "RFplant1"},
                  {"kind": "unknown_refund", "out_trade_no": "LBbill000002", "refund": 200}):
        assert sandbox.control("POST", "bills/plants", plant).status_code == 201

    bill = client.trade_bill(day)

    payments = {r.out_trade_no: r.total_fen for r in bill.payments}
    assert payments == {"LBstranger01": 500, "LBbill000000": 1, "LBbill000002": 9900}
    assert [(r.out_trade_no, r.refund_fen) for r in bill.refunds] == [("LBbill000002", 200)]
    assert bill.refunds[0].out_refund_no != "RFplant1"


def test_a_bill_not_yet_published_and_a_day_without_trades_are_typed(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    today = dt.datetime.fromtimestamp(sandbox.state.now(), CHINA).date()
    place(client, "LBbill000000")
    sandbox.pay("LBbill000000")

    with pytest.raises(BillNotReady) as creating:
        client.trade_bill(today)
    with pytest.raises(NoBill) as empty:
        client.trade_bill(today - dt.timedelta(days=3))

    assert (creating.value.code, creating.value.is_config_error) == ("STATEMENT_CREATING", False)
    assert empty.value.code == "NO_STATEMENT_EXIST"


def test_a_bill_that_does_not_match_its_hash_is_refused(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    day = paid_day(sandbox, client, 1)
    sandbox.control("POST", "bills/plants", {"kind": "corrupt_hash"})

    with pytest.raises(BillIntegrityError):
        client.trade_bill(day)


def test_the_bill_download_is_signed_by_us_and_unsigned_by_wechat(
    make_sandbox: Callable[..., Sandbox], keys: Keys, merchant: Merchant
) -> None:
    sandbox = make_sandbox()
    client = make_client(keys, sandbox.url, public_key_verifier(keys), merchant.clock)
    day = paid_day(sandbox, client, 1)
    url = client._call("GET", "/v3/bill/tradebill", query={"bill_date": day.isoformat(), "bill_type": "ALL"}
                       ).json_object()["download_url"]

    unsigned_request = requests.get(url, headers={"Accept": "application/json", "User-Agent": "t"}, timeout=5)
    client.trade_bill(day)

    assert unsigned_request.status_code == 401
    downloads = [r for r in sandbox.control("GET", "requests").json()["requests"]
                 if r["path"].startswith("/v3/billdownload/")]
    assert [d["status"] for d in downloads] == [401, 200]
