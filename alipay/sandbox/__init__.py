"""A local Alipay OpenAPI gateway simulator: a separate Flask app with its own Alipay keys.

The production code never imports this package; it lets the whole Alipay purchase (precreate,
scan, pay, notification, query, refund, close) run on a laptop with no merchant account. It
follows Alipay's documentation, not our client: a trade exists only once its QR is scanned,
amounts are yuan strings, answers are signed over the ``…_response`` text, notifications are
form posts re-sent until the merchant answers ``success``.
"""

from .app import create_alipay_sandbox
from .config import NOTIFY_DELAYS, AlipaySandboxConfig

__all__ = ["NOTIFY_DELAYS", "AlipaySandboxConfig", "create_alipay_sandbox"]
