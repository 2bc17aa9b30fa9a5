"""Parsing and decrypting notifications and certificate downloads."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from wechatpay import crypto
from wechatpay.errors import DecryptError, MalformedError, UnexpectedPlaintextError, VerificationError
from wechatpay.notify import Notification, decrypt_certificates, parse_notification
from wechatpay.verifier import CertificateStore, PublicKeyVerifier

VECTORS = Path(__file__).parent / "vectors" / "wechatpay-v3"
NOW = 1_700_000_000
KEY_ID = "PUB_KEY_ID_0112345678901234567890123456789"
APIV3_KEY = b"0123456789abcdefghijABCDEFGHIJ01"
OTHER_KEY = b"zyxwvutsrqponmlkjihgfedcba987654"


def vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text("utf-8"))


@functools.cache
def platform_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def forger_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def verifier() -> PublicKeyVerifier:
    return PublicKeyVerifier(KEY_ID, platform_key().public_key())


TRANSACTION = {"mchid": "1900000001", "out_trade_no": "LB202601010001", "trade_state": "SUCCESS", "amount": {"total": 100}}


def make_notification(
    *,
    plaintext: bytes | None = None,
    key: bytes = APIV3_KEY,
    resource_overrides: dict[str, Any] | None = None,
    envelope_overrides: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    raw_body: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Return a correctly signed notification body and headers; any field can be overridden."""
    nonce, ad = "fdasflkja484", "transaction"
    plain = plaintext if plaintext is not None else json.dumps(TRANSACTION).encode()
    resource: dict[str, Any] = {
        "original_type": "transaction",
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": crypto.aead_encrypt(key, nonce, ad, plain),
        "associated_data": ad,
        "nonce": nonce,
    }
    resource.update(resource_overrides or {})
    envelope: dict[str, Any] = {
        "id": "EV-2018022511223320873",
        "create_time": "2026-01-01T10:00:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": resource,
    }
    envelope.update(envelope_overrides or {})
    for field in drop:
        envelope.pop(field, None)
    body = raw_body if raw_body is not None else json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
    ts, wnonce = str(NOW), "c5ac7061fccab6bf3e254dcf98995b8c"
    headers = {
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": wnonce,
        "Wechatpay-Serial": KEY_ID,
        "Wechatpay-Signature": crypto.sign(platform_key(), crypto.response_message(ts, wnonce, body)),
    }
    return body, headers


def parse(body: bytes, headers: dict[str, str], keys: tuple[bytes, ...] = (APIV3_KEY,)) -> Notification:
    return parse_notification(body, headers, verifier(), keys, now=NOW)


# --- the vectors -----------------------------------------------------------------------------


def test_it_parses_the_go_payscore_notification_with_a_16_byte_key() -> None:
    v = vector("go_signed_notification_payscore")
    store = CertificateStore([x509.load_pem_x509_certificate(v["platform_certificate_pem"].encode())])
    note = parse_notification(
        v["body"].encode(), v["headers"], store, [v["apiv3_key_utf8"].encode()], now=v["test_now_unix"]
    )
    assert note.resource == json.loads(v["decrypted_resource_plaintext"])
    assert note.serial == "D7CE59D1F522D701"
    assert (note.id, note.event_type, note.original_type) == (
        "3119dfba-e649-5eec-ab1e-3412bc4d2e17",
        "PAYSCORE.USER_OPEN_SERVICE",
        "payscore",
    )
    assert note.summary == "签约成功"
    assert note.resource_type == "encrypt-resource"


def test_it_parses_the_public_key_mode_payment_notification() -> None:
    v = vector("derived_public_key_mode_examples")["public_key_mode_notification"]
    key = crypto.load_public_key(vector("java_key_material")["wechatpay_public_key_pem"].encode())
    note = parse_notification(
        v["body"].encode(),
        v["headers"],
        PublicKeyVerifier(v["headers"]["Wechatpay-Serial"], key),
        [v["apiv3_key_utf8"].encode()],
        now=int(v["headers"]["Wechatpay-Timestamp"]),
    )
    assert note == Notification(
        id="EV-2018022511223320873",
        create_time="2018-06-08T10:34:56+08:00",
        event_type="TRANSACTION.SUCCESS",
        resource_type="encrypt-resource",
        summary="支付成功",
        original_type="transaction",
        resource=json.loads(v["decrypted_resource_plaintext"]),
        serial=v["headers"]["Wechatpay-Serial"],
    )


def test_a_notification_is_immutable() -> None:
    note = parse(*make_notification())
    with pytest.raises(AttributeError):
        note.id = "other"  # type: ignore[misc]


# --- verify before parse ---------------------------------------------------------------------


def test_it_verifies_the_signature_before_looking_at_the_body() -> None:
    body, headers = make_notification(raw_body=b"not json")
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/AAAA"
    with pytest.raises(VerificationError):
        parse(body, headers)


def test_it_rejects_a_notification_signed_by_another_key() -> None:
    body, headers = make_notification()
    other = forger_key()
    headers["Wechatpay-Signature"] = crypto.sign(other, crypto.response_message(str(NOW), headers["Wechatpay-Nonce"], body))
    with pytest.raises(VerificationError) as info:
        parse(body, headers)
    assert info.value.reason == "bad_signature"


def test_a_replay_after_the_window_is_rejected() -> None:
    body, headers = make_notification()
    with pytest.raises(VerificationError) as info:
        parse_notification(body, headers, verifier(), [APIV3_KEY], now=NOW + 301)
    assert info.value.reason == "stale_timestamp"


# --- envelope shape --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"raw_body": b"not json"},
        {"raw_body": b""},
        {"raw_body": b"[1,2]"},
        {"raw_body": b'"a string"'},
        {"raw_body": b"\xff\xfe"},
        {"raw_body": b"[" * 100_000},
        {"drop": ("id",)},
        {"drop": ("event_type",)},
        {"drop": ("resource",)},
        {"drop": ("resource_type",)},
        {"envelope_overrides": {"id": 7}},
        {"envelope_overrides": {"resource": "ciphertext"}},
        {"envelope_overrides": {"resource": None}},
        {"envelope_overrides": {"summary": ["x"]}},
        {"resource_overrides": {"ciphertext": 12}},
        {"resource_overrides": {"nonce": None}},
        {"resource_overrides": {"associated_data": {"a": 1}}},
        {"resource_overrides": {"algorithm": None}},
    ],
    ids=lambda o: json.dumps(o, default=lambda b: b[:8].decode("latin-1"))[:60],
)
def test_it_rejects_a_malformed_envelope(overrides: dict[str, Any]) -> None:
    with pytest.raises(MalformedError):
        parse(*make_notification(**overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        {"envelope_overrides": {"resource_type": "plain-resource"}},
        {"envelope_overrides": {"resource_type": ""}},
        {"resource_overrides": {"algorithm": "AEAD_AES_128_GCM"}},
        {"resource_overrides": {"algorithm": "aead_aes_256_gcm"}},
        {"resource_overrides": {"algorithm": "AEAD_SM4_GCM"}},
    ],
)
def test_it_rejects_an_unexpected_resource_type_or_algorithm(overrides: dict[str, Any]) -> None:
    with pytest.raises(MalformedError):
        parse(*make_notification(**overrides))


def test_optional_envelope_fields_may_be_absent() -> None:
    note = parse(*make_notification(drop=("summary", "create_time"), resource_overrides={"original_type": None}))
    assert (note.summary, note.create_time, note.original_type) == ("", "", "")


# --- decryption ------------------------------------------------------------------------------


def _tampered_ciphertext() -> dict[str, Any]:
    ct = crypto.aead_encrypt(APIV3_KEY, "fdasflkja484", "transaction", json.dumps(TRANSACTION).encode())
    flipped = ("B" if ct[0] == "A" else "A") + ct[1:]
    return {"ciphertext": flipped}


@pytest.mark.parametrize(
    "resource_overrides",
    [
        _tampered_ciphertext(),
        {"associated_data": "x"},
        {"associated_data": ""},
        {"nonce": "fdasflkja485"},
        {"nonce": ""},
        {"ciphertext": "%%%"},
        {"ciphertext": ""},
    ],
    ids=["ciphertext", "aad", "empty-aad", "nonce", "empty-nonce", "bad-base64", "empty-ciphertext"],
)
def test_it_refuses_a_tampered_resource_in_a_correctly_signed_envelope(resource_overrides: dict[str, Any]) -> None:
    body, headers = make_notification(resource_overrides=resource_overrides)
    with pytest.raises(DecryptError) as info:
        parse(body, headers)
    assert not isinstance(info.value, UnexpectedPlaintextError)


def test_a_wrong_apiv3_key_fails_until_the_right_one_is_deployed() -> None:
    body, headers = make_notification()
    with pytest.raises(DecryptError):
        parse(body, headers, keys=(OTHER_KEY,))
    assert parse(body, headers, keys=(APIV3_KEY,)).resource == TRANSACTION


@pytest.mark.parametrize("keys", [(APIV3_KEY, OTHER_KEY), (OTHER_KEY, APIV3_KEY), (b"short", APIV3_KEY)])
def test_either_apiv3_key_works_during_a_key_switch(keys: tuple[bytes, ...]) -> None:
    assert parse(*make_notification(), keys=keys).resource == TRANSACTION


def test_no_configured_key_is_a_decrypt_error() -> None:
    with pytest.raises(DecryptError):
        parse(*make_notification(), keys=())


@pytest.mark.parametrize("plaintext", [b"garbage", b"[1,2,3]", b'"SUCCESS"', b"null", b"\xff\xfe\xfd", b""])
def test_a_plaintext_that_is_not_a_json_object_is_an_unexpected_plaintext_error(plaintext: bytes) -> None:
    with pytest.raises(UnexpectedPlaintextError):
        parse(*make_notification(plaintext=plaintext))


# --- certificate downloads -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["go_certificates_download_response", "java_certificates_download_response"]
)
def test_it_decrypts_both_certificate_download_vectors(name: str) -> None:
    v = vector(name)
    certs = decrypt_certificates(v["response_body"].encode(), [v["apiv3_key_utf8"].encode()])
    assert [crypto.certificate_serial(c) for c in certs] == [v["decrypted_certificate_serial_hex"]]
    expected = x509.load_pem_x509_certificate(v["decrypted_certificate_pem"].encode())
    assert certs[0] == expected


def test_the_go_downloaded_certificate_carries_the_go_signing_key() -> None:
    v = vector("go_certificates_download_response")
    cert = decrypt_certificates(v["response_body"].encode(), [v["apiv3_key_utf8"].encode()])[0]
    sign = vector("go_rsa_sha256_sign_source")
    assert crypto.signature_matches(cert.public_key(), b"source", sign["signature_b64"])  # type: ignore[arg-type]


def test_it_accepts_an_already_parsed_body_and_the_effective_time_typo_key() -> None:
    v = vector("java_certificates_download_response")
    document = json.loads(v["response_body"])
    entry = document["data"][0]
    entry["effective_time "] = entry.pop("effective_time")
    certs = decrypt_certificates(document, [OTHER_KEY, v["apiv3_key_utf8"].encode()])
    assert crypto.certificate_serial(certs[0]) == "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC"


def test_it_rejects_a_certificate_whose_serial_differs_from_serial_no() -> None:
    v = vector("go_certificates_download_response")
    document = json.loads(v["response_body"])
    document["data"][0]["serial_no"] = "F5765756002FDD77"
    with pytest.raises(MalformedError):
        decrypt_certificates(document, [v["apiv3_key_utf8"].encode()])


def test_a_certificate_download_with_the_wrong_key_is_a_decrypt_error() -> None:
    v = vector("go_certificates_download_response")
    with pytest.raises(DecryptError):
        decrypt_certificates(v["response_body"].encode(), [OTHER_KEY])


def test_a_ciphertext_that_is_not_a_certificate_is_an_unexpected_plaintext_error() -> None:
    ct = crypto.aead_encrypt(APIV3_KEY, "14b16c03dc1b", "certificate", b"hello")
    entry = {
        "serial_no": "AB",
        "encrypt_certificate": {"algorithm": "AEAD_AES_256_GCM", "nonce": "14b16c03dc1b", "associated_data": "certificate", "ciphertext": ct},
    }
    with pytest.raises(UnexpectedPlaintextError):
        decrypt_certificates({"data": [entry]}, [APIV3_KEY])


def _go_document() -> dict[str, Any]:
    return json.loads(vector("go_certificates_download_response")["response_body"])


def _mutated(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(_go_document())
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        {"data": {}},
        {},
        {"data": ["x"]},
        _mutated(("data", 0, "serial_no"), 5),
        _mutated(("data", 0, "serial_no"), "not hex"),
        _mutated(("data", 0, "encrypt_certificate"), "x"),
        _mutated(("data", 0, "encrypt_certificate", "algorithm"), "RSA"),
        _mutated(("data", 0, "encrypt_certificate", "nonce"), 1),
    ],
)
def test_it_rejects_a_malformed_certificate_download(body: Any) -> None:
    with pytest.raises(MalformedError):
        decrypt_certificates(body, [b"mockAPIv3Key1234"])


def test_an_empty_certificate_list_is_empty() -> None:
    assert decrypt_certificates(b'{"data":[]}', [APIV3_KEY]) == []
