"""Status polls that hold the current answer, answered 304 before Flask builds a request for them.

Most status polls come from an extension holding a final answer, which it names in
``If-None-Match``. For those Flask built a request context, ran every request hook, matched the
URL and made a response object, all to send a bodiless 304: four fifths of such a poll's time in
our process (a profile of 1,500 polls). This layer, the outermost of the app, answers that poll
itself after the same read and digest (``billing.orders.unchanged_answer_tag``), with the headers
the app's hooks give every API answer (``web.ops``, ``web.pages``).

Everything else goes to the app untouched: another path or method, no ``If-None-Match``, a tag that
no longer holds, an unknown order or a wrong token (so guessers are still counted and throttled
there), any error, and every poll while DEBUG logging is on (the app logs each poll then).
``tests/test_unchanged_polls.py`` checks that both give the same answer.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

from peewee import Database, SqliteDatabase

from billing.errors import BillingError
from billing.orders import unchanged_answer_tag
from billing.shop import Shop

from .api import bearer_token
from .ops import choose_request_id
from .pages import API_HEADERS

POLL = re.compile(r"/api/v1/orders/([A-Za-z0-9_-]{1,40})")
requests_log = logging.getLogger("lbpay.request")


class UnchangedPolls:
    """WSGI middleware: a 304 for a status poll whose ``If-None-Match`` names its current answer."""

    def __init__(self, app: Callable[..., Any], shop: Shop, database: Database,
                 transport_security: tuple[tuple[str, str], ...]) -> None:
        self.app, self.shop, self.database = app, shop, database
        self.headers = [*transport_security, *API_HEADERS]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        offered = environ.get("HTTP_IF_NONE_MATCH")
        if offered and environ.get("REQUEST_METHOD") == "GET":
            found = POLL.fullmatch(environ.get("PATH_INFO", ""))
            if found is not None and not requests_log.isEnabledFor(logging.DEBUG):
                tag = self._held(found.group(1), environ.get("HTTP_AUTHORIZATION", ""), offered)
                if tag is not None:
                    rid = choose_request_id(environ.get("HTTP_X_REQUEST_ID") or environ.get("HTTP_FLY_REQUEST_ID"))
                    start_response("304 NOT MODIFIED", [("ETag", f'"{tag}"'), ("X-Request-Id", rid), *self.headers])
                    return []
        return self.app(environ, start_response)

    def _held(self, public_id: str, authorization: str, offered: str) -> str | None:
        """The order's tag if ``offered`` holds it; None for anything the app should answer instead."""
        database = self.database
        failed = False
        try:
            database.connect(reuse_if_open=True)
            return unchanged_answer_tag(self.shop, public_id, bearer_token(authorization), offered)
        except BillingError:
            return None  # not found, or not this token's: the app answers and counts the miss
        except Exception:
            failed = True
            return None
        finally:
            # As the app's teardown: a SQLite connection is kept for the thread's next request unless
            # something failed; PostgreSQL's goes back after each request.
            if (failed or not isinstance(database, SqliteDatabase)) and not database.is_closed() \
                    and not database.in_transaction():
                database.close()
