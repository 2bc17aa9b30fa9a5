"""The simulator's side of RSA2: it checks the app's requests and signs as Alipay does (written apart from our client)."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey


@functools.lru_cache(maxsize=8)
def _private_key(pem: bytes) -> object:
    """Parse a PEM private key once per process: parsing validates an RSA key, tens of milliseconds."""
    return serialization.load_pem_private_key(pem, password=None)


class AlipayIdentity:
    """Alipay's private key and the app's registered public key."""

    def __init__(self, alipay_private_key_pem: bytes, app_public_key_pem: bytes) -> None:
        private = _private_key(alipay_private_key_pem)
        public = serialization.load_pem_public_key(app_public_key_pem)
        if not isinstance(private, RSAPrivateKey) or not isinstance(public, RSAPublicKey):
            raise ValueError("the simulator signs and checks with RSA keys only")
        self._private = private
        self._app_public = public

    def sign(self, text: str) -> str:
        """SHA256withRSA over UTF-8 ``text``, base64."""
        raw = self._private.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode("ascii")

    def app_signed(self, params: Mapping[str, str]) -> bool:
        """Whether ``sign`` is the app's RSA2 signature over the other non-empty parameters, sorted."""
        try:
            raw = base64.b64decode(params.get("sign", ""), validate=True)
            self._app_public.verify(raw, request_content(params).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True


def request_content(params: Mapping[str, str]) -> str:
    """待签名字符串 of a request: every parameter but ``sign`` (``sign_type`` included), no empty ones, sorted."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")


def notification_content(params: Mapping[str, str]) -> str:
    """待签名字符串 of a notification: every parameter but ``sign`` and ``sign_type``, no empty ones, sorted."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type") and params[k] != "")


def answer_text(identity: AlipayIdentity, node_name: str, node: Mapping[str, Any], *,
                cert_sn: str | None, spaced: bool = False) -> str:
    """A gateway answer: ``{"<node_name>":{...},"sign":"…"}``, signed over the node's text exactly as sent.

    ``spaced`` writes the node with indentation and the signature first, which a client that
    re-serializes the node instead of cutting out the text it received cannot verify.
    """
    text = json.dumps(node, ensure_ascii=False, indent=1 if spaced else None,
                      separators=(", ", ": ") if spaced else (",", ":"))
    signature = identity.sign(text)
    tail = f',"alipay_cert_sn":"{cert_sn}"' if cert_sn else ""
    if spaced:
        return f'{{ "sign" : "{signature}" {tail},\n  "{node_name}" :  {text} }}'
    return f'{{"{node_name}":{text},"sign":"{signature}"{tail}}}'
