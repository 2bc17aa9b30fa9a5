"""HTTP only: one blueprint per audience, each parsing input and calling billing."""

from __future__ import annotations

from flask import current_app

from billing import Shop


def current_shop() -> Shop:
    """The running app's shop: its keys, WeChat client and clock."""
    shop: Shop = current_app.extensions["lbpay.shop"]
    return shop
