"""The payment notification endpoint against forged, stale, tampered and mismatched input."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

import pytest
import requests
from conftest import APIV3_KEY, Shop, SignedNotification, db_counts

import models

NOTIFY = "/wechatpay/notify/transaction"


def rejected_events() -> list[dict[str, Any]]:
    with models.db.connection_context():
        return [json.loads(e.detail) for e in
                models.AuditEvent.select().where(models.AuditEvent.action == "notification.rejected")]


def assert_nothing_changed(shop: Shop, order: dict[str, Any]) -> None:
    assert shop.poll(order)["status"] == "pending"
    assert db_counts() == {"licenses": 0, "paid": 0, "flagged": 0}


def test_a_genuine_notification_fulfils_the_order_without_calling_wechat(shop: Shop, make_notification) -> None:
    order = shop.order()
    calls_before = len(shop.sandbox.requests_log())
    response = shop.notify(make_notification(order))
    assert response.status_code == 204
    assert shop.poll(order)["status"] == "fulfilled"
    assert len(shop.sandbox.requests_log()) == calls_before  # THREATS #32: no outbound call


@pytest.mark.parametrize("case, build, status, result", [
    ("forged signature", lambda mk, o, k, c: mk(o, signing_key=k.forger), 401, "bad_signature"),
    ("unknown serial", lambda mk, o, k, c: mk(o, serial="PUB_KEY_ID_999"), 401, "unknown_serial"),
    ("garbage serial", lambda mk, o, k, c: mk(o, serial="zz\u00e9!<script>"), 401, "unknown_serial"),
    ("stale timestamp", lambda mk, o, k, c: mk(o, timestamp=str(c.timestamp() - 301)),
     401, "stale_timestamp"),
    ("future timestamp", lambda mk, o, k, c: mk(o, timestamp=str(c.timestamp() + 301)),
     401, "stale_timestamp"),
    ("non-numeric timestamp", lambda mk, o, k, c: mk(o, timestamp="1e9"), 401, "bad_header"),
    ("huge timestamp", lambda mk, o, k, c: mk(o, timestamp="9" * 30), 401, "bad_header"),
    ("signtest probe", lambda mk, o, k, c: mk(o, signature="WECHATPAY/SIGNTEST/" + "QUJD" * 10), 401, "probe"),
    ("bad base64 signature", lambda mk, o, k, c: mk(o, signature="not base64!!"), 401, "bad_signature"),
    ("wrong signature type", lambda mk, o, k, c: mk(o, signature_type="WECHATPAY2-SM2-WITH-SM3"),
     401, "bad_signature_type"),
    ("tampered ciphertext", lambda mk, o, k, c: mk(o, tamper="ciphertext"), 500, "undecryptable"),
    ("tampered tag", lambda mk, o, k, c: mk(o, tamper="tag"), 500, "undecryptable"),
    ("tampered nonce", lambda mk, o, k, c: mk(o, tamper="nonce"), 500, "undecryptable"),
    ("tampered associated data", lambda mk, o, k, c: mk(o, decrypt_aad="x"), 500, "undecryptable"),
    ("wrong APIv3 key", lambda mk, o, k, c: mk(o, apiv3_key=b"0" * 32), 500, "undecryptable"),
    ("plaintext not JSON", lambda mk, o, k, c: mk(o, plaintext=b"not json"), 500, "undecryptable"),
    ("wrong algorithm", lambda mk, o, k, c: mk(o, envelope={
        "id": "EV-1", "event_type": "TRANSACTION.SUCCESS", "resource_type": "encrypt-resource",
        "resource": {"algorithm": "AEAD_AES_128_GCM", "ciphertext": "AAAA", "nonce": "abcdefabcdef",
                     "associated_data": "transaction", "original_type": "transaction"}}), 400, "malformed"),
    ("wrong resource type", lambda mk, o, k, c: mk(o, envelope={
        "id": "EV-1", "event_type": "TRANSACTION.SUCCESS", "resource_type": "plain",
        "resource": {"algorithm": "AEAD_AES_256_GCM", "ciphertext": "AAAA", "nonce": "abcdefabcdef",
                     "associated_data": "transaction", "original_type": "transaction"}}), 400, "malformed"),
    ("ciphertext is a number", lambda mk, o, k, c: mk(o, envelope={
        "id": "EV-1", "event_type": "TRANSACTION.SUCCESS", "resource_type": "encrypt-resource",
        "resource": {"algorithm": "AEAD_AES_256_GCM", "ciphertext": 5, "nonce": "abcdefabcdef",
                     "associated_data": "transaction", "original_type": "transaction"}}), 400, "malformed"),
    ("resource missing", lambda mk, o, k, c: mk(o, envelope={"id": "EV-1", "event_type": "TRANSACTION.SUCCESS"}),
     400, "malformed"),
])
def test_it_refuses_what_it_cannot_verify_and_changes_nothing(
        shop: Shop, make_notification: Callable[..., SignedNotification],
        case: str, build: Callable[..., SignedNotification], status: int, result: str) -> None:
    order = shop.order()
    shop.clock.freeze()  # the stale and future cases sit one second past the window: no wall clock may move it
    response = shop.notify(build(make_notification, order, shop.keys, shop.clock))
    assert response.status_code == status, (case, response.text)
    assert response.json()["code"] == "FAIL" and response.json()["message"]
    assert_nothing_changed(shop, order)
    assert [e["result"] for e in rejected_events()] == [result]
    with models.db.connection_context():
        kept = models.Notification.get()
    assert kept.result == result  # the raw request was kept before it was judged


def test_a_body_that_is_not_json_is_refused_after_the_signature(shop: Shop, make_notification, keys) -> None:
    from wechatpay import crypto

    order = shop.order()
    note = make_notification(order)
    body = b"{not json"
    ts, nonce = note.headers["Wechatpay-Timestamp"], note.headers["Wechatpay-Nonce"]
    headers = {**note.headers, "Wechatpay-Signature": crypto.sign(keys.platform, crypto.response_message(ts, nonce, body))}
    response = requests.post(shop.url + NOTIFY, data=body, headers=headers, timeout=10)
    assert response.status_code == 400
    assert_nothing_changed(shop, order)


@pytest.mark.parametrize("header", ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature",
                                    "Wechatpay-Serial"])
@pytest.mark.parametrize("how", ["absent", "empty", "twice"])
def test_missing_empty_or_doubled_headers_are_refused(shop: Shop, make_notification, header: str, how: str) -> None:
    order = shop.order()
    note = make_notification(order)
    headers: Any = dict(note.headers)
    if how == "absent":
        del headers[header]
    elif how == "empty":
        headers[header] = ""
    else:
        headers = list(headers.items()) + [(header, note.headers[header])]
    # http.client sends a list of pairs as given, so a header can appear twice on the wire.
    import http.client
    from urllib.parse import urlsplit

    conn = http.client.HTTPConnection(urlsplit(shop.url).netloc, timeout=10)
    conn.putrequest("POST", NOTIFY)
    for name, value in (headers.items() if isinstance(headers, dict) else headers):
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(len(note.body)))
    conn.endheaders(note.body)
    reply = conn.getresponse()
    answer = json.loads(reply.read())
    assert reply.status in (400, 401), reply.status
    assert answer["code"] == "FAIL"
    if how == "twice":  # told apart from a bad signature: the server joins the two values with a comma
        assert reply.status == 400 and "more than once" in answer["message"], answer
    assert_nothing_changed(shop, order)


def test_a_body_over_64_kib_is_refused_before_anything_is_kept(shop: Shop, make_notification) -> None:
    order = shop.order()
    note = make_notification(order)
    response = requests.post(shop.url + NOTIFY, data=note.body + b" " * (64 * 1024), headers=note.headers,
                             timeout=10)
    assert response.status_code == 413
    with models.db.connection_context():
        assert models.Notification.select().count() == 0
    assert_nothing_changed(shop, order)


def test_a_replayed_notification_is_acknowledged_and_issues_no_second_license(shop: Shop, make_notification) -> None:
    order = shop.order()
    note = make_notification(order)
    assert shop.notify(note).status_code == 204
    assert shop.notify(note).status_code == 204
    assert db_counts()["licenses"] == 1
    with models.db.connection_context():
        results = [n.result for n in models.Notification.select().order_by(models.Notification.id)]
    assert results == ["fulfilled", "duplicate"]


def test_a_replay_after_the_time_window_is_refused(shop: Shop, make_notification) -> None:
    order = shop.order()
    note = make_notification(order)
    assert shop.notify(note).status_code == 204
    shop.clock.advance(301)
    assert shop.notify(note).status_code == 401
    assert db_counts()["licenses"] == 1


@pytest.mark.parametrize("offset, status", [(-301, 401), (-300, 204), (300, 204), (301, 401)])
def test_the_window_is_five_minutes_either_way(shop: Shop, make_notification, offset: int, status: int) -> None:
    order = shop.order()
    shop.clock.freeze()
    note = make_notification(order, timestamp=str(shop.clock.timestamp() + offset))
    assert shop.notify(note).status_code == status


@pytest.mark.parametrize("field, value, flag", [
    ("amount", {"total": 1, "payer_total": 1, "currency": "CNY", "payer_currency": "CNY"}, "AMOUNT_MISMATCH"),
    ("amount", {"total": 9900, "payer_total": 9900, "currency": "USD", "payer_currency": "USD"},
     "AMOUNT_MISMATCH"),
    ("mchid", "1900000001", "MERCHANT_MISMATCH"),
    ("appid", "wx0000000000000000", "MERCHANT_MISMATCH"),
])
def test_an_authentic_payment_that_does_not_match_the_order_is_flagged_not_fulfilled(
        shop: Shop, make_notification, field: str, value: Any, flag: str) -> None:
    order = shop.order()
    response = shop.notify(make_notification(order, **{field: value}))
    assert response.status_code == 204  # authentic: WeChat must stop re-sending it
    view = shop.poll(order)
    assert view["status"] == "pending" and view["license"] is None
    assert view["error"]["code"] == "amount_mismatch"
    with models.db.connection_context():
        assert models.Order.get().flag == flag
        assert models.License.select().count() == 0
        assert models.AuditEvent.select().where(models.AuditEvent.action.startswith("payment.")).count() == 1


def test_a_payment_for_an_unknown_order_is_kept_and_acknowledged(shop: Shop, make_notification) -> None:
    response = shop.notify(make_notification({"out_trade_no": "LB_NOT_OURS_123", "amount_fen": 100}))
    assert response.status_code == 204
    with models.db.connection_context():
        note = models.Notification.get()
        assert note.result == "unknown_order"
        event = models.AuditEvent.get(models.AuditEvent.action == "payment.unknown_order")
    assert "LB_NOT_OURS_123" in event.detail
    assert db_counts()["licenses"] == 0


def test_a_transaction_id_reused_on_another_order_is_flagged(shop: Shop, make_notification) -> None:
    first, second = shop.order(), shop.order()
    assert shop.notify(make_notification(first, transaction_id="4200000000000000000000000000001")).status_code == 204
    assert shop.notify(make_notification(second, transaction_id="4200000000000000000000000000001")).status_code == 204
    assert shop.poll(first)["status"] == "fulfilled"
    second_view = shop.poll(second)
    assert second_view["status"] == "pending" and second_view["license"] is None
    with models.db.connection_context():
        assert models.Order.get(models.Order.public_id == second["order_id"]).flag == "TRANSACTION_REUSED"


def test_a_payment_after_the_order_was_cancelled_is_kept_and_flagged(shop: Shop, make_notification) -> None:
    order = shop.order()
    assert shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"]).status_code == 200
    assert shop.notify(make_notification(order)).status_code == 204
    view = shop.poll(order)
    assert view["status"] == "closed" and view["license"] is None
    assert view["error"]["code"] == "late_payment"
    with models.db.connection_context():
        row = models.Order.get()
        assert row.flag == "LATE_PAYMENT" and row.transaction_id is not None


def test_a_notification_that_is_not_a_payment_success_changes_nothing(shop: Shop, make_notification) -> None:
    order = shop.order()
    assert shop.notify(make_notification(order, event_type="REFUND.SUCCESS")).status_code == 204
    assert shop.notify(make_notification(order, trade_state="NOTPAY")).status_code == 204
    assert_nothing_changed(shop, order)


def test_fifty_copies_at_once_give_one_license_and_all_get_204(shop: Shop, make_notification) -> None:
    order = shop.order()
    note = make_notification(order)
    barrier = threading.Barrier(50)
    statuses: list[int] = []

    def send() -> None:
        session = requests.Session()
        barrier.wait()
        statuses.append(session.post(shop.url + NOTIFY, data=note.body, headers=note.headers, timeout=30).status_code)

    threads = [threading.Thread(target=send) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [204] * 50
    assert db_counts()["licenses"] == 1
    with models.db.connection_context():
        assert models.AuditEvent.select().where(models.AuditEvent.action == "order.paid").count() == 1
        assert models.Notification.select().where(models.Notification.result == "fulfilled").count() == 1


def test_the_second_apiv3_key_is_accepted_during_a_switch(tmp_path, keys, sandbox, clock, make_notification) -> None:
    """An APIv3 key rotation: notifications under the new key decrypt while the old one still works."""
    from conftest import live_config
    from app import create_app

    app = create_app({**live_config(tmp_path, keys, sandbox.url), "CLOCK": clock,
                      "WECHATPAY_APIV3_KEY_NEXT": "N" * 32})
    shop_ = app.extensions["lbpay.shop"]
    assert shop_.apiv3_keys == [APIV3_KEY, b"N" * 32]


def test_a_failure_while_signing_the_license_rolls_the_payment_back_and_the_retry_completes_it(
        shop: Shop, make_notification, monkeypatch: pytest.MonkeyPatch) -> None:
    """THREATS #27/#28: paid and licensed together or not at all; WeChat's re-send finishes the job."""
    import billing.payments

    def broken_signer(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("signing key unavailable")

    order = shop.order()
    note = make_notification(order)
    monkeypatch.setattr(billing.payments, "issue_license", broken_signer)
    assert shop.notify(note).status_code == 500
    assert_nothing_changed(shop, order)
    with models.db.connection_context():
        assert models.AuditEvent.select().where(models.AuditEvent.action == "order.paid").count() == 0
    monkeypatch.undo()
    assert shop.notify(note).status_code == 204
    assert shop.poll(order)["status"] == "fulfilled"
    assert db_counts()["licenses"] == 1


def test_a_full_disk_during_fulfilment_leaves_no_partial_license(
        shop: Shop, make_notification, monkeypatch: pytest.MonkeyPatch) -> None:
    """THREATS #33: the write fails as SQLite would, and nothing of the payment persists."""
    from peewee import OperationalError

    from billing import rows

    insert = rows.Statement.insert
    table = f'INSERT INTO "{models.License._meta.table_name}" '

    def full(statement: rows.Statement) -> Any:
        if statement.sql.startswith(table):  # the license row is written after the order was marked paid
            raise OperationalError("database or disk is full")
        return insert(statement)

    order = shop.order()
    monkeypatch.setattr(rows.Statement, "insert", full)
    response = shop.notify(make_notification(order))
    assert response.status_code == 500 and response.json()["code"] == "FAIL"
    monkeypatch.undo()
    assert_nothing_changed(shop, order)


def test_a_failed_payment_reported_by_wechat_is_shown_with_what_to_do(shop: Shop, make_notification) -> None:
    order = shop.order()
    assert shop.notify(make_notification(order, trade_state="PAYERROR")).status_code == 204
    view = shop.poll(order)
    assert view["status"] == "pending" and view["final"] is False
    assert view["error"]["code"] == "payment_failed" and view["error"]["action"] == "retry"
