"""The buy button on the creator's own site: /buy/<course>/embed, framed only by the origins the creator lists.

The snippet (console page "Buy button") is a plain link to /buy/<course> and our static/buy-button.js:
with scripts, a click opens this page in an overlay on the creator's site; without them, or with the
script blocked, the link opens the purchase page itself. Framing is allowed by ``frame-ancestors`` for
the origins in ``LBPAY_BUY_BUTTON_ORIGINS`` only (none set: no one may frame it); every other page keeps
``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``. In the frame the purchase runs on the JSON
API (no cookie, so a browser that blocks third-party cookies still sells).
"""

from __future__ import annotations

from flask import Response, make_response

from . import current_shop
from .pages import CSP, _buy_page, _course_or_404, bp


def frame_ancestors(origins: tuple[str, ...]) -> str:
    """The CSP of the framed page: the page's own policy with the creator's origins as its only ancestors."""
    return CSP.replace("frame-ancestors 'none'", "frame-ancestors " + (" ".join(origins) if origins else "'none'"))


@bp.get("/buy/<course_id>/embed")
def buy_embed(course_id: str) -> Response:
    course = _course_or_404(course_id)
    response = make_response(_buy_page(course, embed=True))
    response.headers["Content-Security-Policy"] = frame_ancestors(current_shop().config.buy_button_origins)
    return response
