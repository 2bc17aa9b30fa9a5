"""What the simulator needs to know about the merchant it serves and about itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# WeChat's documented re-send schedule after a refused notification (15 re-sends, 24h4m in all).
RETRY_DELAYS: tuple[float, ...] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)


KEY_PHASES = ("certificate", "gray", "public_key")


@dataclass
class SandboxConfig:
    """The merchant's registration at the simulated WeChat Pay, and the simulator's own keys."""

    mchid: str
    appid: str
    merchant_public_key_pem: bytes
    merchant_serial: str
    apiv3_key: bytes
    platform_private_key_pem: bytes
    # None selects platform-certificate mode: responses then carry the self-signed certificate's serial.
    public_key_id: str | None = "PUB_KEY_ID_0114232500000000000000000000000001"
    # {"https://pay.example.com": "http://127.0.0.1:5001"}: what a TLS-terminating proxy would do.
    notify_origin_map: dict[str, str] = field(default_factory=dict)
    retry_scale: float = 1.0
    notify_timeout: float = 5.0
    clock: Callable[[], float] = time.time
    # Seconds before a refund leaves PROCESSING by itself; None leaves it to POST control/refunds/<no>/settle.
    refund_delay: float | None = 0.05
    # The refund notify URL "configured in 商户平台", used when a refund request names none.
    refund_notify_url: str | None = None
    merchant_name: str = "Learning Buddy 学习伙伴"
    # The first platform certificate's key; None uses platform_private_key_pem (one key for both).
    certificate_private_key_pem: bytes | None = None
    # certificate | gray | public_key; None: public_key when public_key_id is set, else certificate.
    key_phase: str | None = None
    # Seconds a code_url can be scanned after it was issued (WeChat: 2 hours, fixed).
    code_url_lifetime: float = 2 * 3600
    # When a day's trade bill is published, in seconds after that Beijing day ends (WeChat: about 10:00).
    bill_ready_after: float = 10 * 3600
    # False: a merchant registered since late 2024, with the public key only (GET /v3/certificates: 证书不存在).
    certificates: bool = True

    def __post_init__(self) -> None:
        if self.key_phase is None:
            self.key_phase = "public_key" if self.public_key_id else "certificate"
        if self.key_phase not in KEY_PHASES:
            raise ValueError("key_phase: must be certificate, gray or public_key")
        if self.key_phase != "certificate" and not self.public_key_id:
            raise ValueError("key_phase: gray and public_key need a public_key_id")
        if not self.certificates and self.key_phase != "public_key":
            raise ValueError("certificates: a merchant without certificates is in the public_key phase")
        if len(self.apiv3_key) != 32:
            raise ValueError("apiv3_key: must be exactly 32 bytes")
        if self.retry_scale < 0:
            raise ValueError("retry_scale: must not be negative")
        if self.notify_timeout <= 0:
            raise ValueError("notify_timeout: must be positive")
