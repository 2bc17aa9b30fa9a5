"""Our Alipay client against the simulator over HTTP, and against python-alipay-sdk as an independent peer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from alipay_helpers import APP_ID, SELLER_ID, AlipayKeys, AlipaySandbox, cert_pem, load_peer, peer_quiet, \
    pem_private, pem_public, sandbox_config
from conftest import LiveServer
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, request

from alipay import signing
from alipay.amounts import fen_to_yuan, yuan_to_fen
from alipay.client import AlipayClient, verify_answer
from alipay.errors import ApiError, ConfigError, MalformedError, MismatchError, VerificationError
from alipay.keys import CertMode, PublicKeyMode
from alipay.notify import ACK, parse_form, verify_notification


@pytest.fixture(scope="module")
def keys() -> AlipayKeys:
    return AlipayKeys.make()


@pytest.fixture(scope="module")
def sandbox(keys: AlipayKeys) -> Iterator[AlipaySandbox]:
    box = AlipaySandbox(sandbox_config(keys), LiveServer)
    yield box
    box.stop()


@pytest.fixture(scope="module")
def cert_sandbox(keys: AlipayKeys) -> Iterator[AlipaySandbox]:
    box = AlipaySandbox(sandbox_config(keys, cert_mode=True), LiveServer)
    yield box
    box.stop()


@pytest.fixture(autouse=True)
def _calm(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("sandbox", "cert_sandbox"):
        if name in request.fixturenames:
            request.getfixturevalue(name).control("POST", "reset")


def client_for(box: AlipaySandbox, keys: AlipayKeys, *, cert: bool = False, **kw: Any) -> AlipayClient:
    mode: Any = (CertMode.from_pem(cert_pem(keys.app_cert), keys.alipay_cert_chain_pem, keys.root_pem) if cert
                 else PublicKeyMode(keys.alipay.public_key()))
    settings: dict[str, Any] = dict(app_id=APP_ID, private_key=keys.app, keys=mode, gateway=box.gateway,
                                    seller_id=SELLER_ID, sleep=lambda s: None)
    settings.update(kw)
    return AlipayClient(**settings)


def beijing_now() -> str:
    return datetime.now(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")


_numbers = iter(range(1, 10**6))


def new_trade_no() -> str:
    return f"LB{datetime.now(timezone.utc):%Y%m%d%H%M%S}{next(_numbers):06d}"


# -- amounts and the string to sign ---------------------------------------------------------------

@pytest.mark.parametrize("fen, text", [(1, "0.01"), (10, "0.10"), (9900, "99.00"), (123456, "1234.56"), (0, "0.00")])
def test_fen_and_yuan_convert_exactly_both_ways(fen: int, text: str) -> None:
    assert fen_to_yuan(fen) == text
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["1e2", "-1.00", "0.001", "1.", ".5", " 1.00", "1,00", "0x10", "１.00", "NaN", ""])
def test_an_amount_that_is_not_plain_yuan_is_refused(text: str) -> None:
    with pytest.raises(MalformedError):
        yuan_to_fen(text)


def test_the_string_to_sign_is_sorted_without_sign_or_empty_values() -> None:
    params = {"method": "m", "app_id": "1", "sign": "x", "notify_url": "", "biz_content": '{"a":"b"}',
              "sign_type": "RSA2"}
    assert signing.content_to_sign(params) == 'app_id=1&biz_content={"a":"b"}&method=m&sign_type=RSA2'
    assert (signing.content_to_sign(params, leave_out=("sign", "sign_type"))
            == 'app_id=1&biz_content={"a":"b"}&method=m')


def test_the_response_node_is_cut_out_as_received_even_with_braces_in_strings() -> None:
    node = '{"code":"10000","subject":"a } b { \\" c","n":[1,{"x":"}"}]}'
    raw = '{"sign":"S","alipay_trade_query_response" : ' + node + ',"alipay_cert_sn":"z"}'
    assert signing.response_node(raw, "alipay_trade_query_response") == node
    assert signing.response_node(raw, "alipay_trade_close_response") is None
    # A key of that name nested inside another value is not the node.
    nested = '{"other":{"alipay_trade_query_response":{"code":"x"}},"sign":"S"}'
    assert signing.response_node(nested, "alipay_trade_query_response") is None


# -- the peer: python-alipay-sdk -------------------------------------------------------------------

def peer_client(private: rsa.RSAPrivateKey, public: rsa.RSAPublicKey) -> Any:
    peer = load_peer()
    return peer.AliPay(appid=APP_ID, app_notify_url=None, app_private_key_string=pem_private(private).decode(),
                       alipay_public_key_string=pem_public(public).decode(), sign_type="RSA2")


def test_a_request_we_sign_verifies_with_python_alipay_sdk(keys: AlipayKeys, sandbox: AlipaySandbox) -> None:
    ours = client_for(sandbox, keys)
    params = ours.signed_params("alipay.trade.precreate", {"out_trade_no": "A1", "total_amount": "99.00",
                                                          "subject": "C++ Primer 第5版 & more"})
    peer = peer_client(keys.alipay, keys.app.public_key())  # the peer checks with the app's public key
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    message = "&".join(f"{k}={v}" for k, v in peer._ordered_data(unsigned))
    assert peer._verify(message, params["sign"]) is True
    assert peer._verify(message.replace("99.00", "9.90"), params["sign"]) is False


def test_a_request_python_alipay_sdk_signs_verifies_with_ours(keys: AlipayKeys) -> None:
    peer = peer_client(keys.app, keys.alipay.public_key())
    body = peer.build_body("alipay.trade.query", {"out_trade_no": "LB-1", "subject": "订单"})
    params = dict(parse_qsl(peer.sign_data(body), keep_blank_values=True))
    signing.verify(keys.app.public_key(), signing.content_to_sign(params), params["sign"])
    params["biz_content"] = params["biz_content"].replace("LB-1", "LB-2")
    with pytest.raises(VerificationError):
        signing.verify(keys.app.public_key(), signing.content_to_sign(params), params["sign"])


def test_the_sandbox_answer_verifies_with_python_alipay_sdk_over_http(keys: AlipayKeys,
                                                                        sandbox: AlipaySandbox) -> None:
    """The peer calls the simulator itself (its own request, its own check of the answer)."""
    peer = peer_client(keys.app, keys.alipay.public_key())
    peer._gateway = sandbox.gateway
    out_trade_no = new_trade_no()
    # The peer stamps requests with the machine's local time; this machine runs in UTC, so it is told
    # Beijing time, or the gateway would refuse the request as eight hours old.
    answer = peer.server_api("alipay.trade.precreate", {"subject": "Rust 每月一课", "out_trade_no": out_trade_no,
                                                        "total_amount": "29.00"}, timestamp=beijing_now())
    assert answer["code"] == "10000" and answer["qr_code"].startswith(sandbox.url + "/qr/")
    # And ours reads the same trade back.
    assert client_for(sandbox, keys).precreate(out_trade_no, 2900, "Rust 每月一课").qr_code == answer["qr_code"]


def test_an_answer_python_alipay_sdk_signs_verifies_with_ours(keys: AlipayKeys) -> None:
    signer = peer_client(keys.alipay, keys.app.public_key())  # signing as Alipay would
    node = '{"code":"10000","msg":"Success","out_trade_no":"A1","qr_code":"https://qr.example/x"}'
    raw = '{"alipay_trade_precreate_response":' + node + ',"sign":"' + signer._sign(node) + '"}'
    got = verify_answer(raw, "alipay.trade.precreate", PublicKeyMode(keys.alipay.public_key()))
    assert got["qr_code"] == "https://qr.example/x"
    with pytest.raises(VerificationError):
        verify_answer(raw.replace("A1", "A2"), "alipay.trade.precreate", PublicKeyMode(keys.alipay.public_key()))


def test_certificate_sns_agree_with_python_alipay_sdk(keys: AlipayKeys) -> None:
    peer = load_peer()
    with peer_quiet():
        assert signing.cert_sn(keys.app_cert) == peer.DCAliPay.get_cert_sn(cert_pem(keys.app_cert))
        # The root file holds an EC root too: both leave it out of alipay_root_cert_sn.
        ours = signing.root_cert_sn([keys.root_ec, keys.root_rsa])
        assert ours == peer.DCAliPay.get_root_cert_sn(keys.root_pem)
    assert "_" not in ours  # one RSA root, so one SN


def test_python_alipay_sdk_in_certificate_mode_is_accepted_by_the_cert_sandbox(
        keys: AlipayKeys, cert_sandbox: AlipaySandbox) -> None:
    peer = load_peer()
    with peer_quiet():
        answer = _peer_cert_precreate(peer, keys, cert_sandbox)
    assert answer["code"] == "10000"


def _peer_cert_precreate(peer: Any, keys: AlipayKeys, cert_sandbox: AlipaySandbox) -> Any:
    dc = peer.DCAliPay(appid=APP_ID, app_private_key_string=pem_private(keys.app).decode(),
                       app_public_key_cert_string=cert_pem(keys.app_cert),
                       alipay_public_key_cert_string=cert_pem(keys.alipay_cert),
                       alipay_root_cert_string=keys.root_pem)
    dc._gateway = cert_sandbox.gateway
    return dc.server_api("alipay.trade.precreate", {"subject": "x", "out_trade_no": new_trade_no(),
                                                    "total_amount": "1.00"}, timestamp=beijing_now())


# -- the client over HTTP --------------------------------------------------------------------------

def test_a_trade_goes_from_qr_to_paid_to_refunded(keys: AlipayKeys, sandbox: AlipaySandbox) -> None:
    client = client_for(sandbox, keys)
    no = new_trade_no()
    qr = client.precreate(no, 9900, "C++ Primer 第5版", expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert client.precreate(no, 9900, "C++ Primer 第5版").qr_code == qr.qr_code  # a retry gets the same QR
    assert client.query(no) is None  # Alipay has no trade until the learner scans
    assert sandbox.control("POST", f"trades/{no}/scan").json()["status"] == "WAIT_BUYER_PAY"
    waiting = client.query(no)
    assert waiting is not None and waiting.trade_status == "WAIT_BUYER_PAY" and not waiting.paid
    assert sandbox.control("POST", f"trades/{no}/pay").status_code == 200
    paid = client.query(no)
    assert paid is not None and paid.paid and paid.total_fen == 9900 and paid.paid_at is not None
    assert paid.trade_no == waiting.trade_no
    with pytest.raises(ApiError) as closed:
        client.close(no)
    assert closed.value.sub_code == "ACQ.TRADE_STATUS_ERROR" and closed.value.kind == "rejected"
    part = client.refund(no, 1000, "R1", "partial")
    assert part.refund_fen == 1000 and part.fund_change
    again = client.refund(no, 1000, "R1", "partial")  # the same out_request_no: the same refund
    assert again.refund_fen == 1000 and not again.fund_change
    state = client.refund_query(no, "R1")
    assert state is not None and state.succeeded and state.refund_fen == 1000 and state.total_fen == 9900
    assert client.refund_query(no, "R-unknown") is None
    rest = client.refund(no, 8900, "R2")
    assert rest.refund_fen == 9900
    closed_trade = client.query(no)
    assert closed_trade is not None and closed_trade.trade_status == "TRADE_CLOSED"


def test_a_changed_amount_under_the_same_out_trade_no_is_refused(keys: AlipayKeys, sandbox: AlipaySandbox) -> None:
    client = client_for(sandbox, keys)
    no = new_trade_no()
    client.precreate(no, 9900, "x")
    with pytest.raises(ApiError) as refused:
        client.precreate(no, 9800, "x")
    assert refused.value.sub_code == "ACQ.CONTEXT_INCONSISTENT" and refused.value.signed


def test_closing_or_cancelling_an_unscanned_qr(keys: AlipayKeys, sandbox: AlipaySandbox) -> None:
    client = client_for(sandbox, keys)
    no = new_trade_no()
    client.precreate(no, 100, "x")
    assert client.close(no) is False  # nothing to close: Alipay never created the trade
    scanned = new_trade_no()
    client.precreate(scanned, 100, "x")
    sandbox.control("POST", f"trades/{scanned}/scan")
    assert client.close(scanned) is True
    assert sandbox.control("POST", f"trades/{scanned}/pay").status_code == 409
    paid = new_trade_no()
    client.precreate(paid, 100, "x")
    sandbox.control("POST", f"trades/{paid}/pay")
    cancelled = client.cancel(paid)
    assert cancelled.action == "refund"


def test_alipay_down_is_retried_with_the_same_out_trade_no(keys: AlipayKeys, sandbox: AlipaySandbox) -> None:
    sandbox.control("POST", "faults", {"gateway": {"alipay.trade.precreate": ["unavailable", "http_error"]}})
    before = len(sandbox.control("GET", "requests").json())
    no = new_trade_no()
    assert client_for(sandbox, keys).precreate(no, 500, "x").qr_code
    calls = sandbox.control("GET", "requests").json()[before:]
    assert [c["method"] for c in calls] == ["alipay.trade.precreate"] * 3
    sent = [json.loads(p["params"]["biz_content"])["out_trade_no"] for p in sandbox.state.requests[before:]]
    assert sent == [no] * 3


def test_alipay_down_for_longer_than_the_retries_is_unavailable(keys: AlipayKeys, sandbox: AlipaySandbox) -> None:
    sandbox.control("POST", "faults", {"gateway": {"alipay.trade.query": ["system_error"] * 3}})
    with pytest.raises(ApiError) as down:
        client_for(sandbox, keys).query(new_trade_no())
    assert down.value.kind == "unavailable" and down.value.retryable


@pytest.mark.parametrize("fault", ["unsigned", "tampered"])
def test_a_success_that_is_unsigned_or_tampered_is_not_believed(keys: AlipayKeys, sandbox: AlipaySandbox,
                                                                 fault: str) -> None:
    sandbox.control("POST", "faults", {"gateway": {"alipay.trade.refund": [fault]}})
    with pytest.raises(VerificationError):
        client_for(sandbox, keys, max_attempts=1).refund(new_trade_no(), 100, "R1")


def test_an_answer_laid_out_differently_is_verified_over_its_own_text(keys: AlipayKeys,
                                                                       sandbox: AlipaySandbox) -> None:
    sandbox.control("POST", "faults", {"spaced": True})
    client = client_for(sandbox, keys)
    no = new_trade_no()
    assert client.precreate(no, 100, "x").qr_code
    # The same answer re-serialized compactly no longer matches its signature: only the raw text does.
    raw = requests.post(sandbox.gateway, data=client.signed_params("alipay.trade.precreate", {
        "out_trade_no": no, "total_amount": "1.00", "subject": "x"}), timeout=10).text
    document = json.loads(raw)
    compact = json.dumps(document["alipay_trade_precreate_response"], ensure_ascii=False, separators=(",", ":"))
    with pytest.raises(VerificationError):
        signing.verify(keys.alipay.public_key(), compact, document["sign"])


def test_a_request_signed_with_another_key_is_refused_as_configuration(keys: AlipayKeys,
                                                                       sandbox: AlipaySandbox) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ApiError) as refused:
        client_for(sandbox, keys, private_key=other).precreate(new_trade_no(), 100, "x")
    assert refused.value.sub_code == "isv.invalid-signature" and refused.value.is_config_error


def test_an_answer_signed_by_another_key_is_refused(keys: AlipayKeys, sandbox: AlipaySandbox) -> None:
    impostor = PublicKeyMode(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    with pytest.raises(VerificationError):
        AlipayClient(app_id=APP_ID, private_key=keys.app, keys=impostor, gateway=sandbox.gateway).precreate(
            new_trade_no(), 100, "x")


def test_a_request_stamped_far_from_beijing_time_is_refused(keys: AlipayKeys, sandbox: AlipaySandbox) -> None:
    slow = client_for(sandbox, keys, clock=lambda: datetime.now(timezone.utc) - timedelta(minutes=20))
    with pytest.raises(ApiError) as refused:
        slow.precreate(new_trade_no(), 100, "x")
    assert refused.value.sub_code == "isv.invalid-timestamp" and refused.value.is_config_error


def test_certificate_mode_end_to_end(keys: AlipayKeys, cert_sandbox: AlipaySandbox) -> None:
    client = client_for(cert_sandbox, keys, cert=True)
    no = new_trade_no()
    assert client.precreate(no, 100, "x").qr_code
    cert_sandbox.control("POST", f"trades/{no}/pay")
    trade = client.query(no)
    assert trade is not None and trade.paid
    # A public-key-mode client sends no SNs: the certificate-mode gateway refuses it.
    with pytest.raises(ApiError) as refused:
        client_for(cert_sandbox, keys).query(no)
    assert refused.value.sub_code == "isv.invalid-app-cert-sn"


def test_an_answer_naming_an_alipay_certificate_we_do_not_hold_is_refused(keys: AlipayKeys) -> None:
    mode = CertMode.from_pem(cert_pem(keys.app_cert), keys.alipay_cert_chain_pem, keys.root_pem)
    node = '{"code":"10000","msg":"Success"}'
    signature = signing.sign(keys.alipay, node)
    good = next(iter(mode.alipay_certs))
    ok = '{"alipay_trade_close_response":' + node + f',"sign":"{signature}","alipay_cert_sn":"{good}"}}'
    assert verify_answer(ok, "alipay.trade.close", mode)["code"] == "10000"
    with pytest.raises(VerificationError) as refused:
        verify_answer(ok.replace(good, "0" * 32), "alipay.trade.close", mode)
    assert refused.value.reason == "unknown_cert"


def test_an_alipay_certificate_not_issued_by_the_root_is_refused_at_start(keys: AlipayKeys) -> None:
    stranger = AlipayKeys.make()
    with pytest.raises(ConfigError):
        CertMode.from_pem(cert_pem(keys.app_cert), stranger.alipay_cert_chain_pem, keys.root_pem)


# -- notifications ---------------------------------------------------------------------------------

class Receiver:
    """A merchant notify endpoint on a loopback port: verifies with our code, answers success or 400."""

    def __init__(self, keys: AlipayKeys) -> None:
        self.keys = PublicKeyMode(keys.alipay.public_key())
        self.seen: list[dict[str, str]] = []
        self.refused: list[str] = []
        self.lock = threading.Lock()
        app = Flask("receiver")
        app.add_url_rule("/notify/alipay", "notify", self.handle, methods=["POST"])
        self.server = LiveServer(app)
        self.url = self.server.url + "/notify/alipay"

    def handle(self) -> tuple[str, int]:
        try:
            note = verify_notification(parse_form(request.get_data()), self.keys, app_id=APP_ID, seller_id=SELLER_ID)
        except (VerificationError, MismatchError, MalformedError) as exc:
            with self.lock:
                self.refused.append(type(exc).__name__)
            return "fail", 400
        with self.lock:
            self.seen.append(dict(note.fields))
        return ACK, 200


@pytest.fixture(scope="module")
def receiver(keys: AlipayKeys) -> Iterator[Receiver]:
    box = Receiver(keys)
    yield box
    box.server.stop()


def paid_trade(box: AlipaySandbox, keys: AlipayKeys, receiver: Receiver, fen: int = 9900) -> str:
    client = client_for(box, keys, notify_url=receiver.url)
    no = new_trade_no()
    client.precreate(no, fen, "C++ Primer")
    assert box.control("POST", f"trades/{no}/pay").status_code == 200
    return no


def deliveries_of(box: AlipaySandbox, no: str) -> list[dict[str, Any]]:
    return [d for d in box.control("GET", "deliveries").json() if d["out_trade_no"] == no]


def test_a_payment_is_notified_and_verified(keys: AlipayKeys, sandbox: AlipaySandbox, receiver: Receiver) -> None:
    no = paid_trade(sandbox, keys, receiver)
    [delivery] = deliveries_of(sandbox, no)
    assert delivery["delivered"] and delivery["attempts"][0]["body"] == "success"
    [fields] = [f for f in receiver.seen if f["out_trade_no"] == no]
    assert fields["trade_status"] == "TRADE_SUCCESS" and fields["total_amount"] == "99.00"


def test_a_lost_notification_can_be_sent_again(keys: AlipayKeys, sandbox: AlipaySandbox, receiver: Receiver) -> None:
    sandbox.control("POST", "faults", {"lose_notifications": 1})
    no = paid_trade(sandbox, keys, receiver)
    [lost] = deliveries_of(sandbox, no)
    assert lost["lost"] and lost["attempts"] == []
    assert not [f for f in receiver.seen if f["out_trade_no"] == no]
    assert sandbox.control("POST", f"trades/{no}/resend").json()["delivered"]


def test_repeated_notifications_all_verify_with_one_notify_id(keys: AlipayKeys, sandbox: AlipaySandbox,
                                                              receiver: Receiver) -> None:
    sandbox.control("POST", "faults", {"repeat_notifications": 5})
    no = paid_trade(sandbox, keys, receiver)
    copies = [f for f in receiver.seen if f["out_trade_no"] == no]
    assert len(copies) == 5 and len({c["notify_id"] for c in copies}) == 1


def test_an_answer_other_than_success_makes_alipay_send_again(keys: AlipayKeys, sandbox: AlipaySandbox,
                                                              receiver: Receiver) -> None:
    sandbox.control("POST", "faults", {"refuse_answers": 1})
    no = paid_trade(sandbox, keys, receiver)
    from servers import wait_for
    delivery = wait_for(lambda: next((d for d in deliveries_of(sandbox, no) if d["delivered"]), None))
    assert len(delivery["attempts"]) == 2


def test_a_notification_signed_by_python_alipay_sdk_verifies_with_ours(keys: AlipayKeys) -> None:
    signer = peer_client(keys.alipay, keys.app.public_key())
    form = notice_fields()
    form["sign"] = signer._sign("&".join(f"{k}={v}" for k, v in signer._ordered_data(dict(form))))
    form["sign_type"] = "RSA2"
    note = verify_notification(form, PublicKeyMode(keys.alipay.public_key()), app_id=APP_ID, seller_id=SELLER_ID)
    assert note.total_fen == 9900 and note.paid
    # And the peer accepts what the simulator signs (its verify drops sign_type itself).
    peer = peer_client(keys.app, keys.alipay.public_key())
    from alipay.sandbox.signing import AlipayIdentity, notification_content
    ident = AlipayIdentity(pem_private(keys.alipay), pem_public(keys.app.public_key()))
    ours = notice_fields()
    signature = ident.sign(notification_content(ours))
    assert peer.verify({**ours, "sign_type": "RSA2"}, signature) is True


def notice_fields(**overrides: str) -> dict[str, str]:
    fields = {"notify_time": "2026-12-06 15:00:00", "notify_type": "trade_status_sync", "notify_id": "n1",
              "app_id": APP_ID, "charset": "utf-8", "version": "1.0", "trade_no": "2026120622001000000000000001",
              "out_trade_no": "LB1", "seller_id": SELLER_ID, "trade_status": "TRADE_SUCCESS",
              "total_amount": "99.00", "subject": "C++ Primer 第5版", "gmt_payment": "2026-12-06 14:59:58"}
    fields.update(overrides)
    return fields


def signed_notice(key: rsa.RSAPrivateKey, **overrides: str) -> dict[str, str]:
    fields = notice_fields(**overrides)
    fields["sign"] = signing.sign(key, signing.content_to_sign(fields, leave_out=("sign", "sign_type")))
    fields["sign_type"] = "RSA2"
    return fields


@pytest.mark.parametrize("change, error, word", [
    (lambda k: {**signed_notice(rsa.generate_private_key(public_exponent=65537, key_size=2048))},
     VerificationError, "bad_signature"),
    (lambda k: {**signed_notice(k), "total_amount": "0.01"}, VerificationError, "bad_signature"),
    (lambda k: {**signed_notice(k), "sign": ""}, VerificationError, "missing_signature"),
    (lambda k: {**signed_notice(k), "sign_type": "RSA"}, VerificationError, "bad_sign_type"),
    (lambda k: signed_notice(k, app_id="2021999999999999"), MismatchError, "app_id"),
    (lambda k: signed_notice(k, seller_id="2088999999999999"), MismatchError, "seller_id"),
    (lambda k: signed_notice(k, trade_status="TRADE_PENDING"), MismatchError, "trade_status"),
    (lambda k: signed_notice(k, notify_type="refund_sync"), MismatchError, "notify_type"),
    (lambda k: signed_notice(k, total_amount="99.001"), MalformedError, None),
])
def test_forged_tampered_and_mismatched_notifications_are_refused(keys: AlipayKeys, change: Any, error: type,
                                                                  word: str | None) -> None:
    with pytest.raises(error) as refused:
        verify_notification(change(keys.alipay), PublicKeyMode(keys.alipay.public_key()), app_id=APP_ID,
                            seller_id=SELLER_ID)
    if word:
        assert word in (getattr(refused.value, "reason", None), getattr(refused.value, "field", None))


def test_a_notification_about_another_order_or_price_is_refused(keys: AlipayKeys) -> None:
    note = verify_notification(signed_notice(keys.alipay), PublicKeyMode(keys.alipay.public_key()), app_id=APP_ID)
    note.check_order("LB1", 9900)
    with pytest.raises(MismatchError) as other:
        note.check_order("LB2", 9900)
    assert other.value.field == "out_trade_no"
    with pytest.raises(MismatchError) as cheaper:
        note.check_order("LB1", 9800)
    assert cheaper.value.field == "total_amount"


def test_a_form_with_a_repeated_field_is_refused() -> None:
    with pytest.raises(MalformedError):
        parse_form(b"out_trade_no=A&out_trade_no=B")


# -- the daily bill --------------------------------------------------------------------------------

def test_the_days_bill_lists_payments_and_refunds_and_adds_up(keys: AlipayKeys, sandbox: AlipaySandbox) -> None:
    from alipay.errors import NoBill

    client = client_for(sandbox, keys)
    today = datetime.now(timezone(timedelta(hours=8))).date()
    with pytest.raises(NoBill):  # today's bill is published tomorrow
        client.trade_bill(today)
    sandbox.control("POST", "faults", {"bills_same_day": True})
    paid, refunded = new_trade_no(), new_trade_no()
    for no in (paid, refunded):
        client.precreate(no, 9900, "C++ Primer, 第5版")
        sandbox.control("POST", f"trades/{no}/pay")
    client.refund(refunded, 1000, "R-bill-1")
    bill = client.trade_bill(today)
    mine = [r for r in bill.rows if r.out_trade_no in (paid, refunded)]
    assert sorted((r.out_trade_no, r.kind, r.received_fen, r.refund_request_no) for r in mine) == sorted([
        (paid, "交易", 9900, ""), (refunded, "交易", 9900, ""), (refunded, "退款", -1000, "R-bill-1")])
    assert all(r.trade_no and r.finished_at is not None for r in mine)
    with pytest.raises(NoBill):
        client.trade_bill(today + timedelta(days=1))


def test_a_bill_whose_rows_disagree_with_its_totals_is_refused(keys: AlipayKeys, sandbox: AlipaySandbox) -> None:
    import io
    import zipfile

    from alipay.bills import parse_trade_bill

    client = client_for(sandbox, keys)
    sandbox.control("POST", "faults", {"bills_same_day": True})
    no = new_trade_no()
    client.precreate(no, 500, "x")
    sandbox.control("POST", f"trades/{no}/pay")
    archive = client.download(client.bill_download_url(datetime.now(timezone(timedelta(hours=8))).date()))
    assert any(r.out_trade_no == no for r in parse_trade_bill(archive).rows)
    source = zipfile.ZipFile(io.BytesIO(archive))
    changed = io.BytesIO()
    with zipfile.ZipFile(changed, "w") as bundle:
        for name in source.namelist():
            data = source.read(name)
            if "汇总" not in name:
                data = data.decode("gbk").replace("5.00\t,5.00\t", "5.00\t,0.05\t", 1).encode("gbk")
            bundle.writestr(name, data)
    with pytest.raises(MalformedError, match="disagree"):
        parse_trade_bill(changed.getvalue())
    with pytest.raises(MalformedError):
        parse_trade_bill(b"not a zip")
