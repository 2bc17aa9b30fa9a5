"""A local WeChat Pay APIv3 simulator: a separate Flask app with its own platform keys.

The production code never imports this package; it exists so the whole
purchase (order, scan, pay, notification, refund) works on a laptop.
"""

from .app import create_sandbox_app
from .config import RETRY_DELAYS, SandboxConfig

__all__ = ["RETRY_DELAYS", "SandboxConfig", "create_sandbox_app"]
