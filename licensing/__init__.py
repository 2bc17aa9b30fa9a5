"""Course licenses for the Learning Buddy extension: keys, issuing and verifying.

This package knows nothing of Flask, Peewee or WeChat Pay; it takes keys, payload
fields and a clock and returns strings or a LicenseCheck, or raises one typed error.
"""

from .keys import (
    ALGORITHM,
    KeyFileError,
    KeyRing,
    SigningKey,
    generate_private_key_pem,
    key_id,
    load_public_key_pem,
    load_signing_key,
    public_key_pem,
    write_private_key,
)
from .documents import (
    PLANS,
    LicenseCheck,
    issue_license,
    js_iso,
    parse_js_iso,
    sign_document,
    verify_license,
)

__all__ = [
    "ALGORITHM",
    "PLANS",
    "KeyFileError",
    "KeyRing",
    "LicenseCheck",
    "SigningKey",
    "generate_private_key_pem",
    "issue_license",
    "js_iso",
    "key_id",
    "load_public_key_pem",
    "load_signing_key",
    "parse_js_iso",
    "public_key_pem",
    "sign_document",
    "verify_license",
    "write_private_key",
]
