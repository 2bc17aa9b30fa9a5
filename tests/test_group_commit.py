"""Group commit: notifications that arrive together are written in one transaction, and each is
answered only after that transaction committed; one that fails inside the group fails alone."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import requests
from conftest import Shop, SignedNotification

import database
import models
from database import write_transaction


def groups_of_this_database() -> database.WriteGroups:
    found = getattr(models.db.obj, "groups", None)
    return found if found is not None else database._DEFAULT_GROUPS


def has_license(order_id: str) -> bool:
    """Read on a connection of this thread's own: only what is committed shows."""
    with models.db.connection_context():
        return (models.License.select().join(models.Order)
                .where(models.Order.public_id == order_id).exists())


def test_waiting_notifications_share_one_commit_and_are_answered_after_it(
        shop: Shop, make_notification: Callable[..., SignedNotification]) -> None:
    orders = [shop.order() for _ in range(6)]
    notes = [make_notification(order) for order in orders]
    # The fifth reuses the fourth's WeChat transaction: inside the group it fails (UNIQUE) and alone.
    notes[4] = make_notification(orders[4], transaction_id=notes[3].transaction["transaction_id"])
    answers: dict[int, tuple[int, bool]] = {}

    def send(i: int) -> None:
        r = requests.post(shop.url + "/wechatpay/notify/transaction", data=notes[i].body, headers=notes[i].headers,
                          timeout=30)
        answers[i] = (r.status_code, has_license(orders[i]["order_id"]))  # what was committed when answered

    groups = groups_of_this_database()
    before = groups.groups
    with models.db.connection_context():
        with write_transaction():  # every writer waits: the first to lead holds its group of one
            senders = [threading.Thread(target=send, args=(i,)) for i in range(len(notes))]
            for t in senders:
                t.start()
            deadline = time.monotonic() + 30
            while groups.waiting() < len(notes) - 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert groups.waiting() == len(notes) - 1, "the senders never lined up"
    for t in senders:
        t.join(30)

    assert groups.groups - before == 2  # six notifications, two commits: the first alone, then five
    with models.db.connection_context():
        rows = {o.public_id: o for o in models.Order.select().where(
            models.Order.public_id.in_([o["order_id"] for o in orders]))}
    reused = [orders[3]["order_id"], orders[4]["order_id"]]
    assert sorted((rows[i].status, rows[i].flag) for i in reused) == [("fulfilled", None),
                                                                      ("pending", "TRANSACTION_REUSED")]
    for i, order in enumerate(orders):
        status, licensed_when_answered = answers[i]
        if order["order_id"] in reused and rows[order["order_id"]].flag:
            assert status == 204 and not licensed_when_answered  # flagged for the creator, acknowledged
            continue
        assert status == 204 and rows[order["order_id"]].status == "fulfilled"
        assert licensed_when_answered, f"notification {i} was answered before its license was committed"


def test_a_write_inside_a_transaction_is_a_savepoint_of_it_not_a_group(shop: Shop) -> None:
    groups = groups_of_this_database()
    before = groups.groups
    with models.db.connection_context():
        with write_transaction():
            assert database.grouped_write(lambda: models.Course.select().count()) == 2
    assert groups.groups == before


def test_a_failing_commit_fails_every_piece_of_its_group(shop: Shop, monkeypatch: Any) -> None:
    pieces = database.WriteGroups()
    monkeypatch.setattr(database, "write_transaction", lambda: _failing_transaction())
    with models.db.connection_context():
        try:
            pieces.run(lambda: "written")
        except RuntimeError as exc:
            assert str(exc) == "disk full"
        else:
            raise AssertionError("a piece was answered although its group never committed")
    assert pieces.waiting() == 0 and not pieces._running


class _failing_transaction:
    """A write transaction whose commit fails (a full disk, say): a fault we cannot cause on demand."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        raise RuntimeError("disk full")
