"""Course licenses for the Learning Buddy extension: keys, issuing and verifying typed signed documents.

This package knows nothing of Flask, Peewee or WeChat Pay; it takes keys, payload fields and a
clock and returns strings, a LicenseCheck or a RevocationsCheck, or raises one typed error.
"""

from .keys import (
    ALGORITHM,
    KeyFileError,
    KeyRing,
    SigningKey,
    export_public_keys,
    generate_private_key_pem,
    key_id,
    load_public_key_pem,
    load_signing_key,
    public_key_pem,
    write_private_key,
)
from .documents import (
    LICENSE,
    PLANS,
    REVOCATIONS,
    REVOCATIONS_MAX_AGE,
    LicenseCheck,
    RevocationsCheck,
    issue_license,
    js_iso,
    key_digest,
    parse_js_iso,
    sign_document,
    sign_revocations,
    signed_message,
    verify_license,
    verify_revocations,
)

__all__ = [
    "ALGORITHM",
    "LICENSE",
    "PLANS",
    "REVOCATIONS",
    "REVOCATIONS_MAX_AGE",
    "KeyFileError",
    "KeyRing",
    "LicenseCheck",
    "RevocationsCheck",
    "SigningKey",
    "export_public_keys",
    "generate_private_key_pem",
    "issue_license",
    "js_iso",
    "key_digest",
    "key_id",
    "load_public_key_pem",
    "load_signing_key",
    "parse_js_iso",
    "public_key_pem",
    "sign_document",
    "sign_revocations",
    "signed_message",
    "verify_license",
    "verify_revocations",
    "write_private_key",
]
