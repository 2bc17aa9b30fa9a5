"""The business: orders, payments, fulfilment and the audit trail; knows nothing of HTTP."""

from .errors import CATALOGUE, BillingError, error_body
from .shop import Shop

__all__ = ["CATALOGUE", "BillingError", "Shop", "error_body"]
