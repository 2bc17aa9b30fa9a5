"""The one e-mail address grammar every address we accept must follow (learners, admins, comp licenses)."""

from __future__ import annotations

import re
import unicodedata

# RFC 5322's dot-atom local part (no quoted strings, no comments) at a host name with a dotted
# alphabetic top-level label. Specials (, ; : < > [ ] \ " ( ) @ and spaces) and control characters
# never match: a comma in a To header is a second recipient, a NUL or line break a header of its own.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}", re.ASCII)
LOCAL_MAX, ADDRESS_MAX = 64, 254
# What a person reads when an address is refused (the API's error detail, the pages' field problem).
# It starts with the field's name, which the purchase page reads to mark the field.
EMAIL_WORDS = "email: 请填写有效的邮箱地址，例如 name@example.com · Give an e-mail address such as name@example.com"


def is_email_address(value: object) -> bool:
    """Whether ``value`` is one plain mailbox address (``name@host.tld``) and nothing more."""
    if not isinstance(value, str) or len(value) > ADDRESS_MAX:
        return False
    local, _, _ = value.rpartition("@")
    return len(local) <= LOCAL_MAX and _ADDRESS.fullmatch(value) is not None


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a control character (line breaks, tabs, NUL, bidi overrides are all refused)."""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)
