"""The APIv3 primitives against the upstream and derived vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from wechatpay import crypto
from wechatpay.client import authorization_header
from wechatpay.errors import DecryptError

VECTORS = Path(__file__).parent / "vectors" / "wechatpay-v3"


def vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text("utf-8"))


def test_it_reproduces_the_go_signature_byte_for_byte() -> None:
    v = vector("go_rsa_sha256_sign_source")
    key = crypto.load_private_key(v["private_key_pkcs8_pem"].encode())
    assert crypto.sign(key, v["message_utf8"].encode()) == v["signature_b64"]


@pytest.mark.parametrize("field", ["public_key_spki_pem", "certificate_pem"])
def test_it_verifies_the_go_signature_with_the_key_and_the_certificate(field: str) -> None:
    v = vector("go_rsa_sha256_sign_source")
    public_key = crypto.load_public_key(v[field].encode())
    assert crypto.signature_matches(public_key, b"source", v["signature_b64"])
    assert not crypto.signature_matches(public_key, b"sourcE", v["signature_b64"])


def test_the_go_certificate_serial_is_upper_case_hex() -> None:
    v = vector("go_rsa_sha256_sign_source")
    cert = x509.load_pem_x509_certificate(v["certificate_pem"].encode())
    assert crypto.certificate_serial(cert) == v["certificate_serial_hex"]


def test_it_builds_and_signs_the_derived_native_order_request() -> None:
    v = vector("derived_public_key_mode_examples")["request_signing"]
    material = vector("java_key_material")
    key = crypto.load_private_key(material["merchant_private_key_pem"].encode())
    message = crypto.request_message(
        v["method"], v["canonical_url"], v["timestamp"], v["nonce_str"], v["body"].encode()
    )
    assert message == v["message"].encode()
    assert crypto.sign(key, message) == v["signature_b64"]
    header = authorization_header(
        mchid=material["merchant_id"],
        serial_no=material["merchant_certificate_serial_hex"],
        private_key=key,
        method=v["method"],
        canonical_url=v["canonical_url"],
        body=v["body"].encode(),
        timestamp=v["timestamp"],
        nonce=v["nonce_str"],
    )
    assert header == v["authorization_header"]


def test_it_signs_the_derived_get_request_with_an_empty_body_line() -> None:
    v = vector("derived_public_key_mode_examples")["request_signing"]
    g = v["get_example"]
    key = crypto.load_private_key(vector("java_key_material")["merchant_private_key_pem"].encode())
    message = crypto.request_message(g["method"], g["canonical_url"], v["timestamp"], v["nonce_str"], b"")
    assert message == g["message"].encode()
    assert message.endswith(b"\n\n")
    assert crypto.sign(key, message) == g["signature_b64"]


def test_it_appends_a_newline_even_when_the_body_ends_with_one() -> None:
    assert crypto.request_message("post", "/x", "1", "n", b"Hello World!\n").endswith(b"Hello World!\n\n")


def test_the_response_message_of_an_empty_body_ends_with_two_newlines() -> None:
    assert crypto.response_message("1624523846", "abc", b"") == b"1624523846\nabc\n\n"


def test_it_rebuilds_the_notification_verification_messages() -> None:
    for name, part in [("go_signed_notification_payscore", None), ("derived_public_key_mode_examples", "public_key_mode_notification")]:
        v = vector(name) if part is None else vector(name)[part]
        h = v["headers"]
        message = crypto.response_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], v["body"].encode())
        assert message == v["verification_message"].encode()


def test_it_decrypts_and_re_encrypts_the_go_aead_vector_with_a_16_byte_key() -> None:
    v = vector("go_aead_gcm_hello_world")
    key = v["key_utf8"].encode()
    assert len(key) == 16
    plain = crypto.aead_decrypt(key, v["nonce_utf8"], v["associated_data_utf8"], v["ciphertext_b64"])
    assert plain == v["plaintext_utf8"].encode()
    assert crypto.aead_encrypt(key, v["nonce_utf8"], v["associated_data_utf8"], plain) == v["ciphertext_b64"]


def test_it_encrypts_the_java_aes_256_gcm_vector_exactly() -> None:
    v = vector("java_aead_aes256gcm_message")
    key = v["key_utf8"].encode()
    assert len(key) == 32
    ct = crypto.aead_encrypt(key, v["nonce_utf8"], v["associated_data_utf8"], v["plaintext_utf8"].encode())
    assert ct == v["ciphertext_b64"]
    assert crypto.aead_decrypt(key, v["nonce_utf8"], v["associated_data_utf8"], ct) == b"message"


def _flip_last_byte(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "change",
    [
        {"key": b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gc"},
        {"key": b"short"},
        {"nonce": "uluk4a9R25RX"},
        {"nonce": ""},
        {"ad": "associatedDatA"},
        {"ct": _flip_last_byte("ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=")},
        {"ct": "not base64!"},
        {"ct": ""},
    ],
    ids=["wrong-key", "bad-key-length", "nonce", "empty-nonce", "aad", "tag", "bad-base64", "empty"],
)
def test_it_refuses_a_tampered_or_wrongly_keyed_resource(change: dict[str, Any]) -> None:
    v = vector("java_aead_aes256gcm_message")
    args = {"key": v["key_utf8"].encode(), "nonce": v["nonce_utf8"], "ad": v["associated_data_utf8"], "ct": v["ciphertext_b64"]}
    args.update(change)
    with pytest.raises(DecryptError):
        crypto.aead_decrypt(args["key"], args["nonce"], args["ad"], args["ct"])


@pytest.mark.parametrize("signature", ["", "!!!!", "WECHATPAY/SIGNTEST/abcd", "QUJD", "é"])
def test_a_garbage_signature_simply_does_not_match(signature: str) -> None:
    v = vector("go_rsa_sha256_sign_source")
    public_key = crypto.load_public_key(v["public_key_spki_pem"].encode())
    assert crypto.signature_matches(public_key, b"source", signature) is False


def test_nonces_are_32_alphanumerics_and_differ() -> None:
    nonces = {crypto.make_nonce() for _ in range(20)}
    assert len(nonces) == 20
    assert all(len(n) == 32 and n.isascii() and n.isalnum() for n in nonces)


def test_loading_refuses_non_rsa_or_garbage_pem() -> None:
    with pytest.raises(ValueError):
        crypto.load_private_key(b"-----BEGIN " b"PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError):
        crypto.load_public_key(b"not a key")
