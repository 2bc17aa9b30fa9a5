"""Signature verification of WeChat Pay responses and notifications, and key selection by serial."""

from __future__ import annotations

import functools
import json
import random
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from wechatpay import crypto
from wechatpay.errors import VerificationError
from wechatpay.verifier import CertificateStore, CombinedVerifier, PublicKeyVerifier, verify_signed

VECTORS = Path(__file__).parent / "vectors" / "wechatpay-v3"
NOW = 1_700_000_000
KEY_ID = "PUB_KEY_ID_0112345678901234567890123456789"
BODY = '{"id":"EV-1","event_type":"TRANSACTION.SUCCESS","summary":"支付成功"}'.encode()


def vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text("utf-8"))


@functools.cache
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def signed_headers(
    body: bytes = BODY,
    *,
    key: rsa.RSAPrivateKey | None = None,
    ts: int = NOW,
    nonce: str = "c5ac7061fccab6bf3e254dcf98995b8c",
    serial: str = KEY_ID,
) -> dict[str, str]:
    key = key or rsa_key("platform")
    return {
        "Wechatpay-Timestamp": str(ts),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": crypto.sign(key, crypto.response_message(str(ts), nonce, body)),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def platform_verifier() -> PublicKeyVerifier:
    return PublicKeyVerifier(KEY_ID, rsa_key("platform").public_key())


def reason(headers: Any, body: bytes = BODY, verifier: Any = None, now: float = NOW) -> str:
    with pytest.raises(VerificationError) as info:
        verify_signed(headers, body, verifier or platform_verifier(), now)
    return info.value.reason


def payscore() -> tuple[dict[str, Any], CertificateStore]:
    v = vector("go_signed_notification_payscore")
    cert = x509.load_pem_x509_certificate(v["platform_certificate_pem"].encode())
    return v, CertificateStore([cert])


class RefreshSpy:
    """A refresh callable that counts calls and returns the given certificates."""

    def __init__(self, certificates: Iterable[x509.Certificate] = (), fail: bool = False) -> None:
        self.calls = 0
        self.certificates = list(certificates)
        self.fail = fail

    def __call__(self) -> list[x509.Certificate]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("WeChat Pay unreachable")
        return self.certificates


# --- the vectors -----------------------------------------------------------------------------


def test_it_accepts_the_go_notification_through_a_certificate_store() -> None:
    v, store = payscore()
    serial = verify_signed(v["headers"], v["body"].encode(), store, now=v["test_now_unix"])
    assert serial == "D7CE59D1F522D701"


def test_it_accepts_the_public_key_mode_notification_through_a_public_key_verifier() -> None:
    v = vector("derived_public_key_mode_examples")["public_key_mode_notification"]
    key = crypto.load_public_key(vector("java_key_material")["wechatpay_public_key_pem"].encode())
    verifier = PublicKeyVerifier(v["headers"]["Wechatpay-Serial"], key)
    now = int(v["headers"]["Wechatpay-Timestamp"])
    assert verify_signed(v["headers"], v["body"].encode(), verifier, now) == v["headers"]["Wechatpay-Serial"]


def test_a_combined_verifier_accepts_both_schemes_during_migration() -> None:
    go, store = payscore()
    pk = vector("derived_public_key_mode_examples")["public_key_mode_notification"]
    key = crypto.load_public_key(vector("java_key_material")["wechatpay_public_key_pem"].encode())
    combined = CombinedVerifier(store, PublicKeyVerifier(pk["headers"]["Wechatpay-Serial"], key))
    assert verify_signed(go["headers"], go["body"].encode(), combined, go["test_now_unix"]) == "D7CE59D1F522D701"
    pk_now = int(pk["headers"]["Wechatpay-Timestamp"])
    assert verify_signed(pk["headers"], pk["body"].encode(), combined, pk_now).startswith("PUB_KEY_ID_")


def test_a_public_key_id_never_triggers_a_certificate_download() -> None:
    spy = RefreshSpy()
    combined = CombinedVerifier(CertificateStore(refresh=spy), platform_verifier())
    assert verify_signed(signed_headers(), BODY, combined, NOW) == KEY_ID
    assert reason(signed_headers(serial="PUB_KEY_ID_999"), verifier=combined) == "unknown_serial"
    assert spy.calls == 0


def test_it_accepts_both_public_keys_while_the_key_rotates() -> None:
    old, new = rsa_key("platform"), rsa_key("rotated")
    verifier = CombinedVerifier(
        PublicKeyVerifier("PUB_KEY_ID_1", old.public_key()), PublicKeyVerifier("PUB_KEY_ID_2", new.public_key())
    )
    assert verify_signed(signed_headers(key=old, serial="PUB_KEY_ID_1"), BODY, verifier, NOW) == "PUB_KEY_ID_1"
    assert verify_signed(signed_headers(key=new, serial="PUB_KEY_ID_2"), BODY, verifier, NOW) == "PUB_KEY_ID_2"
    # Each id selects its own key: the new key's signature under the old id is a forgery.
    assert reason(signed_headers(key=new, serial="PUB_KEY_ID_1"), verifier=verifier) == "bad_signature"


def test_it_looks_headers_up_case_insensitively() -> None:
    lower = {k.lower(): v for k, v in signed_headers().items()}
    assert verify_signed(lower, BODY, platform_verifier(), NOW) == KEY_ID


def test_it_accepts_a_werkzeug_headers_object() -> None:
    assert verify_signed(Headers(signed_headers()), BODY, platform_verifier(), NOW) == KEY_ID


def test_an_absent_signature_type_means_rsa() -> None:
    headers = signed_headers()
    del headers["Wechatpay-Signature-Type"]
    assert verify_signed(headers, BODY, platform_verifier(), NOW) == KEY_ID


def test_it_verifies_an_empty_body() -> None:
    assert verify_signed(signed_headers(b""), b"", platform_verifier(), NOW) == KEY_ID


# --- authenticity ----------------------------------------------------------------------------


def test_it_rejects_a_signature_from_another_key() -> None:
    assert reason(signed_headers(key=rsa_key("attacker"))) == "bad_signature"


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_it_rejects_a_body_changed_by_one_byte(position: int, flip: int) -> None:
    v, store = payscore()
    body = bytearray(v["body"].encode())
    body[position % len(body)] ^= flip
    assert reason(v["headers"], bytes(body), store, v["test_now_unix"]) == "bad_signature"


@pytest.mark.parametrize(
    "redump",
    [
        lambda d: json.dumps(d),
        lambda d: json.dumps(d, ensure_ascii=False),
        lambda d: json.dumps(d, separators=(",", ":")),
        lambda d: json.dumps(d, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
        lambda d: json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n",
    ],
    ids=["default", "unicode", "compact-escaped", "sorted", "trailing-newline"],
)
def test_it_rejects_a_re_dumped_json_body(redump: Any) -> None:
    v, store = payscore()
    body = redump(json.loads(v["body"])).encode()
    assert body != v["body"].encode()
    assert reason(v["headers"], body, store, v["test_now_unix"]) == "bad_signature"


def test_it_treats_the_signtest_probe_as_an_ordinary_bad_signature() -> None:
    headers = signed_headers()
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"][:40]
    assert reason(headers) == "bad_signature"


@settings(max_examples=80, deadline=None)
@given(signature=st.text(min_size=1).filter(lambda s: s.strip()))
def test_a_garbage_signature_is_a_bad_signature(signature: str) -> None:
    headers = signed_headers()
    headers["Wechatpay-Signature"] = signature
    assert reason(headers) == "bad_signature"


@pytest.mark.parametrize(
    "signature",
    ["====", "abc", "a" * 344, "Zm9v\nYmFy", "tJHIiIS9eB2hAYst%%%", "ＡＢＣＤ"],
)
def test_it_rejects_malformed_base64_as_a_bad_signature(signature: str) -> None:
    headers = signed_headers()
    headers["Wechatpay-Signature"] = signature
    assert reason(headers) == "bad_signature"


# --- headers ---------------------------------------------------------------------------------

REQUIRED = ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"]


@pytest.mark.parametrize("value", [None, "", "   "], ids=["absent", "empty", "blank"])
@pytest.mark.parametrize("name", REQUIRED)
def test_it_rejects_a_missing_or_empty_header(name: str, value: str | None) -> None:
    headers = signed_headers()
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    with pytest.raises(VerificationError) as info:
        verify_signed(headers, BODY, platform_verifier(), NOW)
    assert (info.value.reason, info.value.detail) == ("missing_header", name)


@pytest.mark.parametrize("name", [*REQUIRED, "Wechatpay-Signature-Type"])
def test_it_rejects_a_header_given_twice(name: str) -> None:
    headers = Headers(signed_headers())
    headers.add(name, headers[name])
    assert reason(headers) == "bad_header"


@pytest.mark.parametrize(
    "signature_type", ["", "WECHATPAY2-SM2-WITH-SM3", "wechatpay2-sha256-rsa2048", "WECHATPAY2-SHA256-RSA2048 "]
)
def test_it_rejects_a_wrong_signature_type(signature_type: str) -> None:
    headers = signed_headers()
    headers["Wechatpay-Signature-Type"] = signature_type
    assert reason(headers) == "bad_signature_type"


@pytest.mark.parametrize("nonce", ["abc\ndef", "abc\r", "a\x00b", "\ud800"])
def test_it_rejects_a_nonce_with_control_characters(nonce: str) -> None:
    headers = signed_headers()
    headers["Wechatpay-Nonce"] = nonce
    assert reason(headers) == "bad_header"


# --- freshness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(0, True), (-300, True), (300, True), (-299.5, True), (-301, False), (301, False), (300.5, False), (-86400, False)],
)
def test_it_accepts_exactly_the_five_minute_window(offset: float, accepted: bool) -> None:
    headers = signed_headers(ts=NOW)
    now = NOW + offset
    if accepted:
        assert verify_signed(headers, BODY, platform_verifier(), now) == KEY_ID
    else:
        assert reason(headers, now=now) == "stale_timestamp"


def test_it_rejects_a_stale_timestamp_even_with_a_valid_signature() -> None:
    v, store = payscore()
    assert reason(v["headers"], v["body"].encode(), store, v["test_now_unix"] + 301) == "stale_timestamp"


def test_it_honours_a_narrower_window() -> None:
    with pytest.raises(VerificationError):
        verify_signed(signed_headers(ts=NOW - 61), BODY, platform_verifier(), NOW, window=60)


@pytest.mark.parametrize(
    "timestamp",
    ["1e9", "-1", "+1700000000", "1" * 30, "1" * 13, "1700000000.0", " 1700000000", "0x10", "١٧٠٠٠٠٠٠٠٠", "１７００"],
)
def test_it_rejects_a_timestamp_that_is_not_plain_ascii_digits(timestamp: str) -> None:
    headers = signed_headers()
    headers["Wechatpay-Timestamp"] = timestamp
    assert reason(headers) == "bad_header"


@settings(max_examples=200, deadline=None)
@given(timestamp=st.text())
def test_any_timestamp_header_yields_only_a_verification_error(timestamp: str) -> None:
    headers = signed_headers()
    headers["Wechatpay-Timestamp"] = timestamp
    assert reason(headers) in {"missing_header", "bad_header", "stale_timestamp", "bad_signature"}


def test_headers_are_checked_before_the_window_and_the_window_before_the_serial() -> None:
    headers = signed_headers(ts=NOW - 1000, serial="UNKNOWN")
    headers["Wechatpay-Signature-Type"] = "SM2"
    assert reason(headers) == "bad_signature_type"
    del headers["Wechatpay-Signature-Type"]
    assert reason(headers) == "stale_timestamp"


# --- serials and the certificate store -------------------------------------------------------


def random_serial(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return "".join(rng.choice("0123456789ABCDEF") for _ in range(40))
    if kind == 1:
        return "PUB_KEY_ID_" + "".join(rng.choice(string.digits) for _ in range(rng.randrange(1, 40)))
    if kind == 2:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 100)))
    return "F" * rng.randrange(60, 5000)


def test_a_hundred_unknown_serials_cause_at_most_one_refresh() -> None:
    now = [float(NOW)]
    spy = RefreshSpy()
    store = CertificateStore(refresh=spy, min_refresh_interval=300, clock=lambda: now[0])
    rng = random.Random(3)
    for _ in range(100):
        headers = signed_headers(serial=random_serial(rng))
        assert reason(headers, verifier=store) == "unknown_serial"
        now[0] += 1
    assert spy.calls == 1
    now[0] += 300
    assert reason(signed_headers(serial="ABCDEF"), verifier=store) == "unknown_serial"
    assert spy.calls == 2


@settings(max_examples=100, deadline=None)
@given(serial=st.text(min_size=1).filter(lambda s: s.strip()))
def test_a_garbage_serial_yields_unknown_serial_and_nothing_else(serial: str) -> None:
    _, store = payscore()
    if serial == "D7CE59D1F522D701":
        return
    assert reason(signed_headers(serial=serial), verifier=store) in {"unknown_serial", "bad_signature"}


def test_a_failing_refresh_is_swallowed_and_rate_limited() -> None:
    spy = RefreshSpy(fail=True)
    store = CertificateStore(refresh=spy, clock=lambda: NOW)
    for _ in range(5):
        assert reason(signed_headers(serial="AB12"), verifier=store) == "unknown_serial"
    assert spy.calls == 1


def test_an_unknown_serial_is_found_after_one_refresh() -> None:
    v = vector("go_signed_notification_payscore")
    cert = x509.load_pem_x509_certificate(v["platform_certificate_pem"].encode())
    spy = RefreshSpy([cert])
    store = CertificateStore(refresh=spy, clock=lambda: NOW)
    assert verify_signed(v["headers"], v["body"].encode(), store, v["test_now_unix"]) == "D7CE59D1F522D701"
    assert store.serials() == ["D7CE59D1F522D701"]
    assert spy.calls == 1


@pytest.mark.parametrize("serial", ["d7ce59d1f522d701", "00D7CE59D1F522D701"])
def test_a_certificate_serial_matches_regardless_of_case_and_leading_zeros(serial: str) -> None:
    _, store = payscore()
    assert store.public_key_for(serial) is not None


def test_the_store_keeps_several_certificates_and_knows_when_they_expire() -> None:
    go = x509.load_pem_x509_certificate(vector("go_rsa_sha256_sign_source")["certificate_pem"].encode())
    java = x509.load_pem_x509_certificate(vector("java_key_material")["wechatpay_certificate_pem"].encode())
    store = CertificateStore([go])
    store.add(java)
    assert store.serials() == sorted(["F5765756002FDD77", "440024045C4A427599D09BB4E3DE0279F2E813FD"])
    assert store.public_key_for("F5765756002FDD77") is not None
    assert store.public_key_for("440024045C4A427599D09BB4E3DE0279F2E813FD") is not None
    latest = max(go.not_valid_after_utc, java.not_valid_after_utc).timestamp()
    assert store.latest_expiry() == latest
    assert not store.expiring_before(latest - 1)
    assert store.expiring_before(latest + 1)
    assert CertificateStore().expiring_before(0)


# --- issue 10: both keys, refresh cadence, probes ---------------------------------------------


def test_an_unknown_serial_refreshes_at_most_once_a_minute_by_default() -> None:
    calls: list[float] = []
    now = [NOW]
    store = CertificateStore(refresh=lambda: calls.append(now[0]) or [], clock=lambda: now[0])

    store.public_key_for("ABCDEF")
    store.public_key_for("ABCDEF")
    now[0] += 59
    store.public_key_for("ABCDEF")
    now[0] += 1
    store.public_key_for("ABCDEF")

    assert calls == [NOW, NOW + 60]


def test_the_public_refresh_raises_and_the_unknown_serial_path_does_not() -> None:
    def broken() -> list[Any]:
        raise RuntimeError("WeChat unreachable")

    store = CertificateStore(refresh=broken, clock=lambda: NOW)

    assert store.public_key_for("ABCDEF") is None
    with pytest.raises(RuntimeError):
        store.refresh()
    with pytest.raises(RuntimeError):
        CertificateStore().refresh()


def test_the_platform_verifier_picks_the_key_by_the_serial_form() -> None:
    from wechatpay.verifier import PlatformVerifier

    v, store = payscore()
    calls: list[int] = []
    store.set_source(lambda: calls.append(1) or [])
    both = PlatformVerifier("both", public_key=platform_verifier(), certificates=store)

    assert both.public_key_for(KEY_ID) is not None
    assert both.public_key_for(v["headers"]["Wechatpay-Serial"]) is not None
    assert both.public_key_for("PUB_KEY_ID_other") is None and calls == []
    assert both.request_serial == KEY_ID


def test_the_platform_verifier_modes_hold_what_they_should() -> None:
    from wechatpay.verifier import PlatformVerifier

    public_only = PlatformVerifier("public_key", public_key=platform_verifier())
    certificate_only = PlatformVerifier("certificate", public_key=platform_verifier())

    assert public_only.certificates is None and public_only.public_key_for("ABCDEF") is None
    assert certificate_only.public_key is None and certificate_only.request_serial is None
    assert certificate_only.public_key_for(KEY_ID) is None
    for mode, kwargs in (("public_key", {}), ("both", {}), ("sideways", {"public_key": platform_verifier()}),
                         ("public_key", {"public_key": platform_verifier(), "certificates": CertificateStore()})):
        with pytest.raises(ValueError):
            PlatformVerifier(mode, **kwargs)


def test_a_probe_is_recognised_by_its_prefix_in_any_header_case() -> None:
    from wechatpay.verifier import is_probe

    assert is_probe({"wechatpay-signature": "WECHATPAY/SIGNTEST/abc"})
    assert not is_probe({"Wechatpay-Signature": "abc WECHATPAY/SIGNTEST/"})
