"""The creator's hand for the Node tests: revoke a license, let an order's time run out, or age its QR code.

usage: python tests/node/creator.py revoke|expire|age-qr ORDER_ID   (with the server's LBPAY_INSTANCE_PATH
and LBPAY_PUBLIC_BASE_URL; run from the checkout). A running gunicorn cannot be given a fake clock, so
`expire` moves the order's own times back past its end and then runs the real reconcile pass, which
asks the sandbox, closes the order there and here, and audits it, as it would after 30 real minutes;
`age-qr` moves the time its code_url was issued back past the server's refresh age, so the next poll
asks the sandbox for a current code_url, as it would after 100 real minutes of a long order.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

import models
from app import create_app


def main(command: str, order_id: str) -> None:
    """Do `command` to the order and print what changed."""
    from billing.licenses import revoke_license
    from billing.orders import CODE_URL_REFRESH_AFTER
    from operations.scheduler import holder_id, run_job

    app = create_app({"SCHEDULER": "off"})
    shop = app.extensions["lbpay.shop"]
    with app.app_context(), models.db.connection_context():
        order = models.Order.get(models.Order.public_id == order_id)
        if command == "revoke":
            revoke_license(shop, order, reason="refunded (test)", actor="creator")
            print(json.dumps({"revoked": order_id}))
        elif command == "expire":
            past = order.expires_at - order.created_at + dt.timedelta(minutes=1)
            models.Order.update(created_at=order.created_at - past, expires_at=order.expires_at - past).where(
                models.Order.id == order.id).execute()
            print(json.dumps(run_job(shop, "reconcile", holder_id())))
        elif command == "age-qr":
            issued = order.code_url_at - CODE_URL_REFRESH_AFTER - dt.timedelta(minutes=1)
            models.Order.update(code_url_at=issued).where(models.Order.id == order.id).execute()
            print(json.dumps({"code_url_at": issued.isoformat()}))
        else:
            raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
