"""The console's "Buy button" page: each course's link and the snippet for the creator's own site."""

from __future__ import annotations

from flask import render_template

from billing.courses import all_courses

from . import current_shop
from .admin import bp


@bp.get("/buy-button")
def buy_button() -> str:
    config = current_shop().config
    return render_template("admin/buy_button.html", courses=all_courses(), base=config.public_base_url.rstrip("/"),
                           origins=config.buy_button_origins)
