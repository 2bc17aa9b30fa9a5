"""Behaviour of the licensing package: keys, issuing, and verifying `DATA|SIG` licenses."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from licensing import (
    KeyFileError,
    KeyRing,
    LicenseCheck,
    SigningKey,
    generate_private_key_pem,
    issue_license,
    js_iso,
    key_id,
    load_public_key_pem,
    load_signing_key,
    sign_document,
    verify_license,
    write_private_key,
)

VECTORS = Path(__file__).parent / "vectors" / "learning-buddy-license"
SAMPLE_FILES = ["test-license-valid.txt", "test-license-expired.txt", "test-license-invalid.txt"]
# The sample key's kid, computed independently with:
#   openssl pkey -pubin -in public-key.txt -outform DER | sha256sum | cut -c1-16
SAMPLE_KID = "b5c8bbb8b3f50d3a"

CREATED = datetime(2026, 11, 26, 14, 5, 1, 340123, tzinfo=timezone.utc)
EXPIRES = datetime(2027, 11, 26, 14, 5, 1, 340999, tzinfo=timezone.utc)
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


@cache
def signing_key(name: str = "main") -> SigningKey:
    """Return a test key generated once per run and name (RSA key generation is slow)."""
    return SigningKey.from_pem(generate_private_key_pem())


def sample_public_key() -> rsa.RSAPublicKey:
    return load_public_key_pem((VECTORS / "public-key.txt").read_bytes())


def make_license(key: SigningKey | None = None, **overrides: Any) -> str:
    """Issue a license with sensible defaults; any keyword argument of issue_license may be overridden."""
    fields: dict[str, Any] = {
        "license_id": "5b0c9a8e-2f47-4d1a-9c3e-7a1b2c3d4e5f",
        "course_id": "cpp-primer",
        "order_id": "LB20261126140501ab12",
        "plan": "one_time",
        "created_at": CREATED,
        "expires_at": EXPIRES,
    }
    fields.update(overrides)
    return issue_license(key or signing_key(), **fields)


def make_document(key: SigningKey | None = None, **overrides: Any) -> str:
    """Sign an arbitrary payload: our usual fields with ``overrides`` applied (None deletes a field)."""
    key = key or signing_key()
    payload: dict[str, Any] = {
        "typ": "license",
        "id": "5b0c9a8e-2f47-4d1a-9c3e-7a1b2c3d4e5f",
        "createdAt": js_iso(CREATED),
        "expiresAt": js_iso(EXPIRES),
        "contentPermissions": ["all_chapters"],
        "v": 1,
        "kid": key.kid,
        "courseId": "cpp-primer",
        "orderId": "LB20261126140501ab12",
        "plan": "one_time",
    }
    for name, value in overrides.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    return sign_document(key, payload)


def sign_raw(key: SigningKey, body: bytes) -> str:
    """Sign arbitrary bytes as a license body, bypassing sign_document's JSON encoding."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    data = base64.b64encode(body)
    signature = key.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return data.decode() + "|" + base64.b64encode(signature).decode()


def check(text: str, key: SigningKey | None = None, now: datetime = NOW, **kwargs: Any) -> LicenseCheck:
    return verify_license(text, [(key or signing_key()).public_key], now, **kwargs)


# --- issuing -----------------------------------------------------------------------------------


def test_an_issued_license_verifies_with_its_key() -> None:
    result = check(make_license())

    assert result == LicenseCheck("valid", "ok", result.payload, signing_key().kid)
    assert result.ok


def test_an_issued_license_carries_exactly_the_fields_the_extension_reads_and_ours() -> None:
    key = signing_key()
    data, _signature = make_license().split("|")
    body = base64.b64decode(data, validate=True)

    assert json.loads(body) == {
        "typ": "license",
        "id": "5b0c9a8e-2f47-4d1a-9c3e-7a1b2c3d4e5f",
        "createdAt": "2026-11-26T14:05:01.340Z",
        "expiresAt": "2027-11-26T14:05:01.340Z",
        "contentPermissions": ["all_chapters"],
        "v": 1,
        "kid": key.kid,
        "courseId": "cpp-primer",
        "orderId": "LB20261126140501ab12",
        "plan": "one_time",
    }
    assert body == json.dumps(json.loads(body), separators=(",", ":")).encode(), "JSON must be compact"
    assert base64.b64encode(body).decode() == data, "DATA must be padded standard base64"


def test_it_writes_non_ascii_fields_as_utf8_not_escapes() -> None:
    data, _ = make_license(course_id="C++ 入门").split("|")

    assert "C++ 入门".encode() in base64.b64decode(data)
    assert check(make_license(course_id="C++ 入门"), expected_course="C++ 入门").ok


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 26, 14, 5, 1, 340000, tzinfo=timezone.utc), "2026-11-26T14:05:01.340Z"),
        (datetime(2026, 11, 26, 14, 5, 1, tzinfo=timezone.utc), "2026-11-26T14:05:01.000Z"),
        # JS dates hold whole milliseconds: microseconds are dropped, never rounded up.
        (datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc), "2026-12-31T23:59:59.999Z"),
        (datetime(2026, 11, 27, 0, 30, tzinfo=timezone(timedelta(hours=8))), "2026-11-26T16:30:00.000Z"),
        (datetime(1, 1, 1, tzinfo=timezone.utc), "0001-01-01T00:00:00.000Z"),
    ],
)
def test_js_iso_writes_what_javascript_toisostring_writes(moment: datetime, expected: str) -> None:
    assert js_iso(moment) == expected


def test_js_iso_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError):
        js_iso(datetime(2026, 11, 26, 14, 5))


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"plan": "lifetime"}, ValueError),
        ({"license_id": "not-a-uuid"}, ValueError),
        ({"license_id": "5B0C9A8E-2F47-4D1A-9C3E-7A1B2C3D4E5F"}, ValueError),
        ({"license_id": str(uuid.uuid1())}, ValueError),
        ({"course_id": ""}, ValueError),
        ({"order_id": ""}, ValueError),
        ({"created_at": datetime(2026, 11, 26)}, ValueError),
        ({"expires_at": CREATED}, ValueError),
        ({"expires_at": CREATED - timedelta(days=1)}, ValueError),
        ({"permissions": "all_chapters"}, TypeError),
    ],
)
def test_it_refuses_to_issue_a_malformed_license(overrides: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        make_license(**overrides)


def test_it_refuses_to_sign_a_payload_naming_another_key() -> None:
    with pytest.raises(ValueError, match="kid"):
        sign_document(signing_key(), {"typ": "license", "kid": signing_key("other").kid})


@pytest.mark.parametrize("payload", [{}, {"typ": ""}, {"typ": "License"}, {"typ": "a\nb"}, {"typ": 1}])
def test_it_refuses_to_sign_a_document_without_a_plain_typ(payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="typ"):
        sign_document(signing_key(), payload)


# --- key ids -----------------------------------------------------------------------------------


def test_kid_is_the_start_of_the_sha256_of_the_der_public_key() -> None:
    key = signing_key()
    # Independently of public_bytes(DER): the base64 body of an SPKI PEM is the DER itself.
    pem_body = "".join(line for line in key.public_pem().splitlines() if not line.startswith("-----"))
    expected = hashlib.sha256(base64.b64decode(pem_body)).hexdigest()[:16]

    assert key.kid == key_id(key.public_key) == expected
    assert len(key.kid) == 16 and key.kid == key.kid.lower()


def test_the_sample_public_keys_kid_matches_openssl() -> None:
    assert key_id(sample_public_key()) == SAMPLE_KID


# --- the extension's samples -------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_it_accepts_the_extensions_sample_licenses_before_they_expire(name: str) -> None:
    text = (VECTORS / name).read_text()
    payload = json.loads(base64.b64decode(text.split("|")[0]))
    before_expiry = datetime.fromisoformat(payload["expiresAt"]) - timedelta(milliseconds=1)

    result = verify_license(text, [sample_public_key()], before_expiry)

    assert result == LicenseCheck("valid", "ok", payload, SAMPLE_KID)


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_the_extensions_samples_have_expired_by_now(name: str) -> None:
    now = datetime(2026, 11, 26, tzinfo=timezone.utc)

    result = verify_license((VECTORS / name).read_text(), [sample_public_key()], now)

    assert (result.status, result.reason, result.kid) == ("expired", "expired", SAMPLE_KID)
    assert not result.ok


def test_the_sample_key_does_not_verify_our_licenses_nor_ours_the_samples() -> None:
    sample = (VECTORS / "test-license-valid.txt").read_text()

    assert check(sample).reason == "bad signature"
    assert verify_license(make_license(), [sample_public_key()], NOW).reason == "unknown key"


# --- verification outcomes ---------------------------------------------------------------------


def test_it_reports_expiry_from_the_expiry_millisecond_on() -> None:
    text = make_license()
    expires = datetime(2027, 11, 26, 14, 5, 1, 340000, tzinfo=timezone.utc)

    assert check(text, now=expires - timedelta(microseconds=1)).status == "valid"
    assert check(text, now=expires).status == "expired"
    assert check(text, now=expires + timedelta(days=400)).status == "expired"


def test_it_reads_now_in_any_zone() -> None:
    expires_in_beijing = datetime(2027, 11, 26, 22, 5, 1, 340000, tzinfo=timezone(timedelta(hours=8)))

    assert check(make_license(), now=expires_in_beijing).status == "expired"


def test_it_never_treats_a_signed_license_without_expiry_as_perpetual() -> None:
    result = check(make_document(expiresAt=None), now=NOW)

    assert (result.status, result.reason) == ("invalid", "no expiry")


def test_it_ignores_surrounding_whitespace() -> None:
    assert check("\n  " + make_license() + "\r\n").ok


def test_it_checks_the_course_when_asked() -> None:
    text = make_license(course_id="cpp-primer")

    assert check(text, expected_course="cpp-primer").ok
    assert check(text, expected_course="rust-book").reason == "wrong course"
    assert check(make_document(courseId=None), expected_course="cpp-primer").reason == "wrong course"


def test_a_retired_key_still_verifies_through_the_key_ring() -> None:
    old, new = signing_key("old"), signing_key("new")
    ring = KeyRing(new, [old.public_key])

    result = verify_license(make_license(old), ring.public_keys(), NOW)

    assert result.ok and result.kid == old.kid


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"v": 2}, "unsupported version"),
        ({"v": "1"}, "unsupported version"),
        ({"v": True}, "unsupported version"),
        ({"v": 1.0}, "unsupported version"),
        ({"expiresAt": "2027-11-26"}, "bad expiresAt"),
        ({"expiresAt": "2027-11-26T14:05:01.340"}, "bad expiresAt"),
        ({"expiresAt": "2027-02-30T14:05:01.340Z"}, "bad expiresAt"),
        ({"expiresAt": "next year"}, "bad expiresAt"),
        ({"expiresAt": "0001-01-01T00:00:00.000+05:00"}, "bad expiresAt"),
        ({"expiresAt": "2027-11-26T14:05:01.340Z\n"}, "bad expiresAt"),
        ({"expiresAt": "２０２７-11-26T14:05:01.340Z"}, "bad expiresAt"),
        ({"expiresAt": 1827151501340}, "bad expiresAt"),
        ({"kid": ["a"]}, "unknown key"),
    ],
)
def test_it_rejects_a_correctly_signed_license_with_bad_fields(overrides: dict[str, Any], reason: str) -> None:
    key = signing_key()
    # sign_document refuses a foreign kid, so sign a payload with a bad kid by hand.
    if "kid" in overrides:
        body = json.dumps({"kid": overrides["kid"], "expiresAt": js_iso(EXPIRES)}).encode()
        text = sign_raw(key, body)
    else:
        text = make_document(key, **overrides)

    result = check(text, key)

    assert (result.status, result.reason, result.kid) == ("invalid", reason, key.kid)


def test_it_rejects_a_license_whose_kid_names_another_known_key() -> None:
    signer, named = signing_key("signer"), signing_key("named")
    body = json.dumps({"kid": named.kid, "expiresAt": js_iso(EXPIRES)}).encode()

    result = verify_license(sign_raw(signer, body), [signer.public_key, named.public_key], NOW)

    assert result.reason == "key mismatch" and not result.ok


def test_it_rejects_a_license_signed_by_a_key_it_does_not_hold() -> None:
    assert check(make_license(signing_key("stranger"))).reason == "unknown key"
    assert check(make_document(signing_key("stranger"), kid=None)).reason == "bad signature"


@pytest.mark.parametrize(
    "body",
    [b"[1,2]", b'"text"', b"null", b"{", b"\xff\xfe{}", b'{"a":NaN}', b'{"a":1,"a":2}'],
)
def test_it_rejects_a_signed_body_that_is_not_a_json_object(body: bytes) -> None:
    assert check(sign_raw(signing_key(), body)).reason == "not a JSON object"


def _flip_last_zero_bits(b64: str) -> str:
    """Re-encode with the unused low bits of the last base64 digit set: same bytes, non-canonical text."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stripped = b64.rstrip("=")
    last = alphabet.index(stripped[-1])
    return stripped[:-1] + alphabet[last | 1] + b64[len(stripped) :]


def _padded_license() -> str:
    """Return a license whose DATA ends in base64 padding, so dropping the padding changes the text."""
    for extra in range(3):
        text = make_license(order_id="LB2026112614050" + "1" * extra)
        if text.split("|")[0].endswith("="):
            return text
    raise AssertionError("unreachable: one of three consecutive lengths needs padding")


def _tampered_forms() -> list[tuple[str, str]]:
    data, sig = _padded_license().split("|")
    return [
        ("halves swapped", f"{sig}|{data}"),
        ("extra part", f"{data}|{sig}|x"),
        ("extra empty part", f"{data}|{sig}|"),
        ("no signature", f"{data}|"),
        ("no separator", data + sig),
        ("only data", data),
        ("empty", ""),
        ("JWT-style dots", f"{data}.{sig}"),
        ("unpadded data", f"{data.rstrip('=')}|{sig}"),
        ("unpadded signature", f"{data}|{sig.rstrip('=')}"),
        ("url-safe alphabet", f"{data}|{sig.replace('+', '-').replace('/', '_')}"),
        ("newline inside", f"{data[:40]}\n{data[40:]}|{sig}"),
        ("space inside", f"{data}| {sig}"),
        ("non-canonical signature", f"{data}|{_flip_last_zero_bits(sig)}"),
        ("non-ascii", f"{data}|{sig[:-3]}é=="),
        ("signature of the empty document", f"|{sig}"),
        ("huge", f"{data * 100}|{sig}"),
    ]


@pytest.mark.parametrize(("label", "text"), _tampered_forms(), ids=[label for label, _ in _tampered_forms()])
def test_it_rejects_reshaped_licenses(label: str, text: str) -> None:
    assert check(_padded_license()).ok, "the untouched license must verify"

    result = check(text)

    assert (result.status, result.payload, result.kid) == ("invalid", None, None), label


def test_it_refuses_a_naive_now_or_no_keys() -> None:
    with pytest.raises(ValueError):
        verify_license(make_license(), [signing_key().public_key], datetime(2026, 12, 1))
    with pytest.raises(ValueError):
        verify_license(make_license(), [], NOW)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=2000))
def test_it_never_accepts_nor_crashes_on_arbitrary_text(text: str) -> None:
    result = check(text)

    assert result.status == "invalid"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_license_fields = st.sampled_from(["v", "kid", "expiresAt", "courseId", "id", "createdAt", "plan"])


@settings(max_examples=200, deadline=None)
@given(payload=st.dictionaries(_license_fields | st.text(max_size=10), _json_values, max_size=8))
def test_it_never_crashes_on_a_correctly_signed_but_odd_payload(payload: dict[str, Any]) -> None:
    key = signing_key()
    text = sign_raw(key, json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass"))

    result = check(text, key, expected_course="cpp-primer")

    assert result.status in {"valid", "expired", "invalid"}
    assert result.kid == key.kid or result.reason == "not a JSON object"


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600), sig=st.binary(min_size=250, max_size=260))
def test_it_never_accepts_well_formed_halves_that_were_not_signed(data: bytes, sig: bytes) -> None:
    text = base64.b64encode(data).decode() + "|" + base64.b64encode(sig).decode()

    assert check(text).status == "invalid"


@settings(max_examples=400, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_it_rejects_any_bit_flip_in_the_license_text(position: int, bit: int) -> None:
    raw = bytearray(make_license().encode("ascii"))
    raw[position % len(raw)] ^= 1 << bit

    assert check(raw.decode("latin-1")).status == "invalid"


@settings(max_examples=400, deadline=None)
@given(half=st.sampled_from([0, 1]), position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_it_rejects_any_bit_flip_in_the_decoded_data_or_signature(half: int, position: int, bit: int) -> None:
    # Flipping decoded bytes and re-encoding gets past the base64 checks and reaches the signature.
    halves = [bytearray(base64.b64decode(part)) for part in make_license().split("|")]
    halves[half][position % len(halves[half])] ^= 1 << bit
    text = "|".join(base64.b64encode(part).decode() for part in halves)

    result = check(text)

    # A flip inside the kid makes it name a key we do not hold; anywhere else the signature fails.
    assert result.status == "invalid"
    assert result.reason in {"bad signature", "unknown key"}


@settings(max_examples=100, deadline=None)
@given(replacement=st.characters(codec="ascii"), position=st.integers(min_value=0))
def test_only_the_identical_text_is_valid(replacement: str, position: int) -> None:
    original = make_license()
    index = position % len(original)
    text = original[:index] + replacement + original[index + 1 :]

    assert check(text).ok == (text == original)


# --- key files ---------------------------------------------------------------------------------


def write_file(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


def rsa_pem(bits: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_it_loads_a_private_key_file_with_mode_0600(tmp_path: Path) -> None:
    path = write_file(tmp_path / "license.pem", generate_private_key_pem())

    key = load_signing_key(path)

    assert key.private_key.key_size == 2048
    assert check(make_license(key), key).ok


def test_it_loads_a_pkcs1_private_key(tmp_path: Path) -> None:
    pkcs1 = signing_key().private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )

    assert load_signing_key(write_file(tmp_path / "k.pem", pkcs1)).kid == signing_key().kid


def _bad_key_files() -> list[tuple[str, bytes, int, str]]:
    good = generate_private_key_pem()
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encrypted = signing_key().private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    return [
        ("world-readable", good, 0o644, "chmod 600"),
        ("group-readable", good, 0o640, "chmod 600"),
        ("group-writable", good, 0o620, "chmod 600"),
        ("garbage", b"-----BEGIN " b"PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", 0o600, "RSA-2048"),
        ("empty", b"", 0o600, "RSA-2048"),
        ("1024-bit", rsa_pem(1024), 0o600, "1024 bits"),
        ("3072-bit", rsa_pem(3072), 0o600, "3072 bits"),
        ("EC key", ec_pem, 0o600, "not an RSA private key"),
        ("public key", signing_key().public_pem().encode(), 0o600, "RSA-2048"),
        ("encrypted", encrypted, 0o600, "encrypted"),
    ]


@pytest.mark.parametrize(
    ("label", "content", "mode", "hint"), _bad_key_files(), ids=[row[0] for row in _bad_key_files()]
)
def test_it_refuses_an_unusable_key_file_naming_the_setting(
    tmp_path: Path, label: str, content: bytes, mode: int, hint: str
) -> None:
    path = write_file(tmp_path / "license.pem", content, mode)

    with pytest.raises(KeyFileError) as caught:
        load_signing_key(path, setting="LBPAY_TEST_KEY")

    assert caught.value.setting == "LBPAY_TEST_KEY"
    assert str(caught.value).startswith("LBPAY_TEST_KEY: ")
    assert hint in str(caught.value)
    assert str(path) in str(caught.value)


def test_the_permission_message_gives_the_exact_command(tmp_path: Path) -> None:
    path = write_file(tmp_path / "license.pem", generate_private_key_pem(), 0o644)

    with pytest.raises(KeyFileError, match=f"chmod 600 {path}"):
        load_signing_key(path)


def test_it_refuses_a_missing_key_file_naming_the_default_setting(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as caught:
        load_signing_key(tmp_path / "absent.pem")

    assert caught.value.setting == "LBPAY_LICENSE_KEY_FILE"
    assert "does not exist" in str(caught.value) and "openssl genpkey" in str(caught.value)


def test_it_refuses_a_directory_as_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_signing_key(tmp_path)


def test_it_refuses_an_unreadable_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, who reads any file; simulate the refusal the kernel gives others.
    path = write_file(tmp_path / "license.pem", generate_private_key_pem(), 0o000)

    def refuse(*args: Any, **kwargs: Any) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(KeyFileError, match="Permission denied") as caught:
        load_signing_key(path)
    assert caught.value.setting == "LBPAY_LICENSE_KEY_FILE"


def test_write_private_key_creates_a_0600_file_the_loader_accepts(tmp_path: Path) -> None:
    pem = generate_private_key_pem()
    path = tmp_path / "license.pem"
    old_umask = os.umask(0)  # even with a permissive umask the file must be private
    try:
        write_private_key(path, pem)
    finally:
        os.umask(old_umask)

    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes() == pem
    assert load_signing_key(path).kid == SigningKey.from_pem(pem).kid


def test_write_private_key_never_overwrites(tmp_path: Path) -> None:
    path = write_file(tmp_path / "license.pem", b"existing key\n")

    with pytest.raises(FileExistsError):
        write_private_key(path, generate_private_key_pem())
    assert path.read_bytes() == b"existing key\n"


def test_write_private_key_does_not_follow_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.pem"
    (tmp_path / "license.pem").symlink_to(target)

    with pytest.raises(FileExistsError):
        write_private_key(tmp_path / "license.pem", generate_private_key_pem())
    assert not target.exists()


def test_write_private_key_refuses_what_is_not_a_signing_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_private_key(tmp_path / "license.pem", rsa_pem(1024))
    assert not (tmp_path / "license.pem").exists()


def test_generated_keys_are_unencrypted_pkcs8_rsa_2048() -> None:
    pem = generate_private_key_pem()
    key = serialization.load_pem_private_key(pem, password=None)

    assert pem.startswith(b"-----BEGIN " b"PRIVATE KEY-----")
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048


# --- signing keys and the key ring -------------------------------------------------------------


def test_a_signing_key_refuses_parts_that_do_not_belong_together() -> None:
    key, other = signing_key(), signing_key("other")

    with pytest.raises(ValueError, match="public half"):
        SigningKey(kid=key.kid, private_key=key.private_key, public_key=other.public_key)
    with pytest.raises(ValueError, match="kid"):
        SigningKey(kid=other.kid, private_key=key.private_key, public_key=key.public_key)


def test_a_signing_keys_repr_shows_only_its_kid() -> None:
    key = signing_key()

    assert repr(key) == f"SigningKey(kid={key.kid!r})"


def test_public_pem_is_spki() -> None:
    pem = signing_key().public_pem()

    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert key_id(load_public_key_pem(pem.encode())) == signing_key().kid


def test_the_key_ring_describes_one_active_key_first() -> None:
    active, old = signing_key("new"), signing_key("old")
    ring = KeyRing(active, [old, active.public_key, old.public_key])

    described = ring.describe()

    assert list(ring.public_keys()) == [active.kid, old.kid]
    assert [(d["kid"], d["active"]) for d in described] == [(active.kid, True), (old.kid, False)]
    assert all(d["algorithm"] == "RSA-PKCS1v15-SHA256" for d in described)
    assert described[0]["public_key_pem"] == active.public_pem()
    assert ring.active is active


def test_the_key_ring_loads_retired_public_keys_from_a_directory(tmp_path: Path) -> None:
    active_path = tmp_path / "license.pem"
    write_private_key(active_path, generate_private_key_pem())
    retired = tmp_path / "retired"
    retired.mkdir()
    (retired / "2026-01.pem").write_text(signing_key("old").public_pem())
    (retired / "notes.txt").write_text("ignored")

    ring = KeyRing.from_directory(active_path, retired)

    assert list(ring.public_keys())[1:] == [signing_key("old").kid]
    assert verify_license(make_license(signing_key("old")), ring.public_keys(), NOW).ok


def test_the_key_ring_refuses_a_private_key_among_retired_keys(tmp_path: Path) -> None:
    active_path = tmp_path / "license.pem"
    write_private_key(active_path, generate_private_key_pem())
    retired = tmp_path / "retired"
    retired.mkdir()
    write_file(retired / "old.pem", generate_private_key_pem())

    with pytest.raises(KeyFileError, match="-pubout") as caught:
        KeyRing.from_directory(active_path, retired)
    assert caught.value.setting == "LBPAY_LICENSE_OLD_KEYS_DIR"


# --- boundaries --------------------------------------------------------------------------------


def test_the_package_imports_no_framework_nor_payment_code() -> None:
    code = (
        "import sys, licensing; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'flask', 'peewee', 'wechatpay', 'billing', 'web'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr
