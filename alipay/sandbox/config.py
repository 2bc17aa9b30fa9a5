"""What the Alipay simulator knows of the merchant's app and of itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Alipay's documented re-sends after an answer other than "success": 8 notifications in 25 hours
# (4m, 10m, 10m, 1h, 2h, 6h, 15h after the first).
NOTIFY_DELAYS: tuple[float, ...] = (240, 600, 600, 3600, 7200, 21600, 54000)


@dataclass
class AlipaySandboxConfig:
    """The app's registration at the simulated Alipay, and the simulator's own signing key."""

    app_id: str
    seller_id: str
    app_public_key_pem: bytes
    alipay_private_key_pem: bytes
    # Certificate mode: the SNs every request must carry, and the SN answers name; None = public-key mode.
    app_cert_sn: str | None = None
    alipay_root_cert_sn: str | None = None
    alipay_cert_sn: str | None = None
    # {"https://pay.example.com": "http://127.0.0.1:5001"}: what a TLS-terminating proxy would do.
    notify_origin_map: dict[str, str] = field(default_factory=dict)
    retry_scale: float = 1.0
    notify_timeout: float = 5.0
    clock: Callable[[], float] = time.time
    # How far a request's timestamp may be from the gateway's clock (Alipay refuses stale requests).
    timestamp_window: float = 15 * 60
    seller_name: str = "Learning Buddy 学习伙伴"

    @property
    def cert_mode(self) -> bool:
        """Whether the app registered public-key certificates rather than a bare public key."""
        return self.app_cert_sn is not None
