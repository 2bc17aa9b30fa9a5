"""Peewee models and the database handle; times are stored as naive UTC and returned aware."""

from __future__ import annotations

import datetime as dt
from typing import Any

from peewee import (
    AutoField,
    BlobField,
    BooleanField,
    CharField,
    CompositeKey,
    DatabaseProxy,
    DateField,
    DateTimeField,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    PostgresqlDatabase,
    SQL,
    TextField,
)

db = DatabaseProxy()

UTC = dt.timezone.utc


class UTCDateTimeField(DateTimeField):
    """A datetime column that only accepts aware datetimes and gives them back in UTC."""

    def db_value(self, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value: Any) -> Any:
        if isinstance(value, str):
            try:  # SQLite gives text; fromisoformat is many times faster than peewee's strptime loop
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                value = super().python_value(value)
        else:
            value = super().python_value(value)
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class Course(BaseModel):
    """A course for sale; the id is the extension's kebab-case slug."""

    id = CharField(primary_key=True, max_length=64)
    title = CharField(max_length=127)
    price_fen = IntegerField()
    currency = CharField(max_length=3, default="CNY")
    plan = CharField(max_length=16, default="one_time")  # one_time | subscription
    period_days = IntegerField(null=True)  # license lifetime; None = lifetime for one-time courses
    active = BooleanField(default=True)
    created_at = UTCDateTimeField()
    download_limit = IntegerField(null=True)  # content downloads per license; new licenses carry it signed


class Buyer(BaseModel):
    """A learner known only by the secret token the extension keeps."""

    id = AutoField()
    public_id = CharField(max_length=40, unique=True)  # the buyer token is derived from it
    token_hash = CharField(max_length=64, unique=True)
    email = CharField(max_length=254, null=True)
    created_at = UTCDateTimeField()


class DiscountCode(BaseModel):
    """A code the creator hands out (percent or fen off), or a launch price (no code: everyone gets it).

    Its uses are not counted in a column: a use is an order that carries it and is paid, or still
    pending and unexpired, so an order that expires or is cancelled unpaid gives its use back by itself.
    """

    id = AutoField()
    code = CharField(max_length=32, null=True, unique=True)  # upper case; None for a launch price
    kind = CharField(max_length=8)  # percent | fixed | launch
    value = IntegerField()  # percent off (1..100), fen off, or the launch price in fen
    course = ForeignKeyField(Course, null=True, on_delete="RESTRICT")  # None: every course
    starts_at = UTCDateTimeField(null=True)
    ends_at = UTCDateTimeField(null=True)
    max_uses = IntegerField(null=True)  # None: no limit; for a launch price, the first N buyers
    once_per_buyer = BooleanField(default=False)
    paused_at = UTCDateTimeField(null=True)
    note = CharField(max_length=120, default="")
    created_at = UTCDateTimeField()
    created_by = CharField(max_length=120)


class Order(BaseModel):
    """One attempt to buy one course, paid through one WeChat Pay Native order."""

    id = AutoField()
    public_id = CharField(max_length=40, unique=True)
    out_trade_no = CharField(max_length=32, unique=True)
    course = ForeignKeyField(Course, backref="orders", on_delete="RESTRICT")
    buyer = ForeignKeyField(Buyer, backref="orders", null=True, on_delete="RESTRICT")
    email = CharField(max_length=254, null=True)
    description = CharField(max_length=127)
    amount_fen = IntegerField()
    currency = CharField(max_length=3, default="CNY")
    status = CharField(max_length=24, default="pending", index=True)
    flag = CharField(max_length=32, null=True, index=True)  # needs the creator: AMOUNT_MISMATCH, LATE_PAYMENT, ...
    flag_detail = TextField(null=True)
    token_hash = CharField(max_length=64)
    code_url = CharField(max_length=256, null=True)
    code_url_at = UTCDateTimeField(null=True)  # when WeChat issued code_url: it can be scanned for 2 hours
    # When to ask for a fresh code_url again after WeChat gave back the same one (m0010).
    code_url_retry_at = UTCDateTimeField(null=True)
    qr_svg = TextField(null=True)
    transaction_id = CharField(max_length=32, null=True, unique=True)
    trade_state = CharField(max_length=16, null=True)
    payer_openid = CharField(max_length=128, null=True)
    bank_type = CharField(max_length=32, null=True)
    success_time = CharField(max_length=32, null=True)
    created_at = UTCDateTimeField(index=True)
    expires_at = UTCDateTimeField()
    paid_at = UTCDateTimeField(null=True)
    closed_at = UTCDateTimeField(null=True)
    close_reason = CharField(max_length=32, null=True)
    last_queried_at = UTCDateTimeField(null=True)
    idempotency_key = CharField(max_length=64, null=True, unique=True)  # SHA-256 of the client's key
    # Made while the shop ran against the WeChat Pay simulator: never revenue (migration m0006).
    sandbox = BooleanField(default=False)
    # Who sent the keyed request and what it asked (billing.orders.request_fingerprint): a replay
    # by anyone else, or of another body, is refused.
    idempotency_request = CharField(max_length=64, null=True)
    # The client address that placed it, keyed with the server secret (never the address itself),
    # so that pending orders per address can be limited.
    client_key = CharField(max_length=32, null=True, index=True)
    # When WeChat confirmed the close of a cancelled or expired order; a learner's cancel closes
    # here at once and at WeChat no sooner than 5 minutes after creation (the reconcile job; m0010).
    wechat_closed_at = UTCDateTimeField(null=True)
    # The price this buyer was given: list price, what the code or launch price took off (paid = amount_fen).
    list_price_fen = IntegerField(null=True)  # None for orders placed before discounts: = amount_fen
    discount_fen = IntegerField(default=0)
    discount = ForeignKeyField(DiscountCode, backref="orders", null=True, on_delete="RESTRICT")
    # wechat or alipay (m0015): the method the order is paid through; its out_trade_no says the same (LB/LA).
    payment_method = CharField(max_length=8, default="wechat")


# The console's reads at scale (migration m0005 makes the same indexes in existing databases).
Order.add_index(SQL('CREATE INDEX IF NOT EXISTS "order_paid_at_amount" ON "order" ("paid_at", "amount_fen")'))
Order.add_index(SQL('CREATE INDEX IF NOT EXISTS "order_email_lower" ON "order" (lower("email"))'))
# The dashboard's flagged orders, newest first: a few hundred entries, not a walk down every order (m0011).
Order.add_index(SQL('CREATE INDEX IF NOT EXISTS "order_flagged_created" ON "order" ("created_at") '
                    'WHERE "flag" IS NOT NULL'))
# The simulator's orders, for its own book's pages and the live start's check (m0016): in a live
# shop they are few or none, so walking ``order_created_at`` or the table past a million live
# orders to find them is what this saves. A live order or payment writes no entry here.
Order.add_index(SQL('CREATE INDEX IF NOT EXISTS "order_sandbox_created" ON "order" ("created_at") '
                    'WHERE "sandbox" = TRUE'))
# PostgreSQL compares text in the database's collation; the console's prefix search compares byte by
# byte (COLLATE "C", billing.console), so it needs these. SQLite's own indexes already compare so.
POSTGRES_PREFIX_INDEXES = (
    'CREATE INDEX IF NOT EXISTS "order_public_id_c" ON "order" ("public_id" COLLATE "C")',
    'CREATE INDEX IF NOT EXISTS "order_out_trade_no_c" ON "order" ("out_trade_no" COLLATE "C")',
    'CREATE INDEX IF NOT EXISTS "order_transaction_id_c" ON "order" ("transaction_id" COLLATE "C")',
    'CREATE INDEX IF NOT EXISTS "order_email_lower_c" ON "order" (lower("email") COLLATE "C")',
)


class License(BaseModel):
    """A signed license issued for one paid order; renewals share ``license_id``."""

    id = AutoField()
    license_id = CharField(max_length=36, index=True)
    order = ForeignKeyField(Order, backref="licenses", unique=True, on_delete="RESTRICT")
    course = ForeignKeyField(Course, on_delete="RESTRICT", index=False)  # looked up with buyer, by buyer's index
    buyer = ForeignKeyField(Buyer, null=True, on_delete="RESTRICT")
    key = TextField()
    kid = CharField(max_length=16)
    plan = CharField(max_length=16)
    issued_at = UTCDateTimeField()
    expires_at = UTCDateTimeField()
    revoked_at = UTCDateTimeField(null=True)
    revoke_reason = CharField(max_length=64, null=True)
    downloads = IntegerField(default=0)  # paid files served to this key by /provider/content


class Notification(BaseModel):
    """A request received on a notify URL, kept raw before it is trusted."""

    id = AutoField()
    kind = CharField(max_length=16)  # transaction | refund
    received_at = UTCDateTimeField(index=True)
    headers = TextField()  # the Wechatpay-* headers as JSON
    body = TextField()
    result = CharField(max_length=24, default="received")
    reason = CharField(max_length=200, null=True)
    event_id = CharField(max_length=64, null=True)  # kept, never looked up: no index (m0011)
    event_type = CharField(max_length=32, null=True)
    out_trade_no = CharField(max_length=32, null=True)  # the order page finds them by ``order``
    order = ForeignKeyField(Order, backref="notifications", null=True, on_delete="SET NULL")


class AuditEvent(BaseModel):
    """An append-only record of a state change, chained by hash to the one before."""

    id = AutoField()
    # Every payment appends two events, so the table keeps only the indexes a query uses (m0011): the
    # order's, and two partial ones below for the only actions anything looks up. The chain itself
    # is walked by id; ``hash`` needs no index (the walk checks every link, a UNIQUE never could).
    at = UTCDateTimeField()
    actor = CharField(max_length=120)
    action = CharField(max_length=64)
    order = ForeignKeyField(Order, backref="audit_events", null=True, on_delete="RESTRICT")
    detail = TextField(default="{}")
    ip = CharField(max_length=64, null=True)
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64)


# Only these actions are ever looked up; write them as literals (AuditEvent.action == SQL("'…'")) so
# the planner can match the partial index.
AuditEvent.add_index(SQL('CREATE INDEX IF NOT EXISTS "audit_event_rejected_at" ON "audit_event" ("at") '
                         "WHERE \"action\" = 'notification.rejected'"))
AuditEvent.add_index(SQL('CREATE INDEX IF NOT EXISTS "audit_event_archived" ON "audit_event" ("id") '
                         "WHERE \"action\" = 'sandbox.archived'"))
AuditEvent.add_index(SQL('CREATE INDEX IF NOT EXISTS "audit_event_alipay_refused_at" ON "audit_event" ("at") '
                         "WHERE \"action\" = 'alipay.notification_refused'"))


class Lease(BaseModel):
    """Who may run a scheduled job right now, so that one process runs it at a time."""

    name = CharField(primary_key=True, max_length=64)
    holder = CharField(max_length=120)
    expires_at = UTCDateTimeField()


class JobRun(BaseModel):
    """One run of a scheduled job: when, by whom, and what it fixed."""

    id = AutoField()
    name = CharField(max_length=64, index=True)
    holder = CharField(max_length=120)
    started_at = UTCDateTimeField(index=True)
    finished_at = UTCDateTimeField(null=True)
    ok = BooleanField(default=False)
    summary = TextField(default="{}")


class AdminUser(BaseModel):
    """A person allowed into the creator's console."""

    id = AutoField()
    email = CharField(max_length=254, unique=True)
    password_hash = CharField(max_length=255)
    totp_secret = CharField(max_length=64, null=True)
    totp_last_step = IntegerField(default=0)  # the last time step a TOTP code was accepted for: no replays
    session_epoch = IntegerField(default=0)  # bumped at logout: every older session cookie stops working
    created_at = UTCDateTimeField()
    last_login_at = UTCDateTimeField(null=True)


class AdminSignInLink(BaseModel):
    """A one-time link mailed to an admin that makes the browser which asked for it a known device.

    Only hashes are kept: of the link's token, and of the random cookie the asking browser was
    given, so the link works in that browser alone, once, for a quarter of an hour.
    """

    id = AutoField()
    admin = ForeignKeyField(AdminUser, on_delete="CASCADE", index=True)
    token_hash = CharField(max_length=64, unique=True)
    browser_hash = CharField(max_length=64)
    created_at = UTCDateTimeField()
    expires_at = UTCDateTimeField()
    used_at = UTCDateTimeField(null=True)


class WithdrawnKey(BaseModel):
    """A license key replaced by a shorter one (a refunded subscription period): listed in /revocations
    (``revokedKeys``) until its own end, since it shares its license id with the key that replaced it."""

    digest = CharField(max_length=32, primary_key=True)  # licensing.key_digest of the replaced key
    license_id = CharField(max_length=64)
    expires_at = UTCDateTimeField(index=True)  # the replaced key's end: past it, the key is dead anyway
    withdrawn_at = UTCDateTimeField()


class OrderAttempt(BaseModel):
    """A keyed purchase attempt that WeChat did not confirm: its retry sends the very same order again.

    Written only when placing the Native order failed (in the transaction that records the
    failure), read when the same Idempotency-Key comes back, deleted with the order's creation.
    """

    idempotency_key = CharField(max_length=64, primary_key=True)  # SHA-256 of the client's key
    idempotency_request = CharField(max_length=64)  # who asked and what (billing.orders.request_fingerprint)
    out_trade_no = CharField(max_length=32, unique=True)
    expires_at = UTCDateTimeField()  # the time_expire WeChat was sent
    created_at = UTCDateTimeField(index=True)


class Refund(BaseModel):
    """One refund of part or all of a paid order through WeChat Pay's refund API."""

    id = AutoField()
    order = ForeignKeyField(Order, backref="refunds", on_delete="RESTRICT")
    out_refund_no = CharField(max_length=64, unique=True)  # ours: letters, digits, _ and - only
    amount_fen = IntegerField()
    # PROCESSING | SUCCESS | CLOSED | ABNORMAL at WeChat; FAILED when WeChat refused the request itself
    status = CharField(max_length=16, default="PROCESSING", index=True)
    reason = CharField(max_length=80)
    revoke_license = BooleanField(default=False)
    refund_id = CharField(max_length=32, null=True)
    detail = CharField(max_length=200, null=True)
    actor = CharField(max_length=120)
    created_at = UTCDateTimeField(index=True)
    updated_at = UTCDateTimeField()
    settled_at = UTCDateTimeField(null=True)
    # WeChat's success_time (RFC 3339): the day the daily bill lists the refund on (m0010).
    success_time = CharField(max_length=32, null=True)


class MailOutbox(BaseModel):
    """A mail waiting to go out, or the record that it went: the scheduler sends, retries and backs off."""

    id = AutoField()
    to = CharField(max_length=254)
    subject = CharField(max_length=200)
    text = TextField()
    html = TextField(null=True)
    kind = CharField(max_length=32, index=True)  # license | resend | renewal_reminder | alert ...
    created_at = UTCDateTimeField(index=True)
    next_attempt_at = UTCDateTimeField(null=True, index=True)  # None once sent or given up
    attempts = IntegerField(default=0)
    sent_at = UTCDateTimeField(null=True)
    last_error = CharField(max_length=300, null=True)
    dedupe_key = CharField(max_length=200, null=True, unique=True)


class RateLimit(BaseModel):
    """Every rate limit's state: per key (a limit and its subject), when its bucket is full again (billing.limits)."""

    key = CharField(primary_key=True, max_length=200)
    # Seconds since the epoch, UTC: a double everywhere (peewee's FloatField is PostgreSQL's 4-byte REAL,
    # 128 s apart at today's epoch, so no limit ever filled there).
    due = DoubleField()


class WeChatCallStat(BaseModel):
    """How many calls to one WeChat Pay endpoint ended one way within one latency bucket (for /metrics)."""

    endpoint = CharField(max_length=40)
    outcome = CharField(max_length=24)
    le = CharField(max_length=8)  # the bucket's upper bound in seconds, "+Inf" for the last
    calls = IntegerField(default=0)
    seconds = DoubleField(default=0.0)

    class Meta:
        table_name = "wechat_call_stat"
        indexes = ((("endpoint", "outcome", "le"), True),)


class OutsideService(BaseModel):
    """Whether an outside service (WeChat Pay) answers: since when it has been failing, if it is."""

    name = CharField(primary_key=True, max_length=32)
    failing_since = UTCDateTimeField(null=True)
    last_ok_at = UTCDateTimeField(null=True)
    last_failure_at = UTCDateTimeField(null=True)


class Alert(BaseModel):
    """Something the creator must look at; mailed at most once per kind per hour."""

    id = AutoField()
    kind = CharField(max_length=32, index=True)
    key = CharField(max_length=120, unique=True)  # one alert per thing (an order, an hour of failures)
    at = UTCDateTimeField(index=True)
    message = TextField()
    mailed = BooleanField(default=False)
    acknowledged_at = UTCDateTimeField(null=True)  # seen: someone is on it
    acknowledged_by = CharField(max_length=120, null=True)
    resolved_at = UTCDateTimeField(null=True)  # settled: it leaves the badge and the attention card
    resolved_by = CharField(max_length=120, null=True)


class BillDifference(BaseModel):
    """One line where WeChat's daily trade bill and our ledger disagree, kept for the creator."""

    id = AutoField()
    bill_date = DateField(index=True)  # the Beijing day of the bill
    # paid_not_licensed | unknown_to_wechat | amount_differs | refund_missing_here | refund_missing_at_wechat
    kind = CharField(max_length=32)
    out_trade_no = CharField(max_length=32, null=True)
    transaction_id = CharField(max_length=32, null=True)
    out_refund_no = CharField(max_length=64, null=True)
    wechat_fen = IntegerField(null=True)
    ours_fen = IntegerField(null=True)
    detail = CharField(max_length=300)
    found_at = UTCDateTimeField()
    key = CharField(max_length=160, unique=True)  # bill date, kind and numbers: a re-run records nothing twice
    resolved_at = UTCDateTimeField(null=True)  # settled by the creator, who says how in ``resolution``
    resolved_by = CharField(max_length=120, null=True)
    resolution = CharField(max_length=300, null=True)


# The nav badge counts the open ones on every console page.
Alert.add_index(SQL('CREATE INDEX IF NOT EXISTS "alert_open" ON "alert" ("at") WHERE "resolved_at" IS NULL'))
BillDifference.add_index(SQL('CREATE INDEX IF NOT EXISTS "bill_difference_open" ON "bill_difference" ("bill_date") '
                             'WHERE "resolved_at" IS NULL'))


class CourseDetails(BaseModel):
    """What the buy page says of a course beyond its price: a description and a cover image (a table of its
    own, so courses keep their narrow row)."""

    course = CharField(primary_key=True, max_length=64)
    description = TextField(default="")
    cover = BlobField(null=True)
    cover_type = CharField(max_length=32, null=True)  # image/png | image/jpeg | image/webp
    updated_at = UTCDateTimeField()

    class Meta:
        table_name = "course_details"


class FapiaoRequest(BaseModel):
    """A learner's request for a 发票 (a Chinese tax invoice) for one paid order; the creator issues it by hand."""

    id = AutoField()
    order = ForeignKeyField(Order, on_delete="RESTRICT", index=True)
    title = CharField(max_length=100)  # 抬头: a company's name, or 个人 (a person)
    tax_id = CharField(max_length=20, null=True)  # 纳税人识别号 (a company's unified social credit code)
    email = CharField(max_length=254)  # where the fapiao goes
    requested_at = UTCDateTimeField()
    issued_at = UTCDateTimeField(null=True, index=True)
    issued_by = CharField(max_length=120, null=True)
    note = CharField(max_length=300, null=True)  # the creator's words to the learner, sent with the fapiao
    pdf = BlobField(null=True)  # the fapiao the creator uploaded, attached to the mail

    class Meta:
        table_name = "fapiao_request"


class BillCheck(BaseModel):
    """A day whose trade bill was compared with our ledger: when, and what it held."""

    bill_date = DateField(primary_key=True)
    checked_at = UTCDateTimeField()
    lines = IntegerField(default=0)
    differences = IntegerField(default=0)


class AlipayBillCheck(BaseModel):
    """A day whose Alipay trade bill was compared with our ledger (WeChat's days are BillCheck)."""

    bill_date = DateField(primary_key=True)
    checked_at = UTCDateTimeField()
    lines = IntegerField(default=0)
    differences = IntegerField(default=0)


class DailyFigures(BaseModel):
    """What the dashboard shows for one Shanghai day, one course and one book (billing.rollup keeps it).

    ``paid_fen`` and ``refunded_fen`` count by the day money moved (payment, refund settled);
    the order counts by the day the order was created: the funnel (comps left out) and how many of
    that day's orders are in each status now (comps included).
    """

    day = DateField()
    course = CharField(max_length=64)
    sandbox = BooleanField(default=False)
    paid_fen = IntegerField(default=0)
    refunded_fen = IntegerField(default=0)
    created = IntegerField(default=0)
    paid = IntegerField(default=0)
    licensed = IntegerField(default=0)
    cancelled = IntegerField(default=0)
    expired = IntegerField(default=0)
    now_pending = IntegerField(default=0)
    now_paid = IntegerField(default=0)
    now_fulfilled = IntegerField(default=0)
    now_partially_refunded = IntegerField(default=0)
    now_refunded = IntegerField(default=0)
    now_closed = IntegerField(default=0)

    class Meta:
        table_name = "daily_figures"
        primary_key = CompositeKey("day", "course", "sandbox")


class RollupMark(BaseModel):
    """How far a rollup has read the audit trail: every event up to ``event_id`` is counted in it."""

    name = CharField(primary_key=True, max_length=32)
    event_id = IntegerField(default=0)
    updated_at = UTCDateTimeField()

    class Meta:
        table_name = "rollup_mark"


class WebhookEndpoint(BaseModel):
    """A URL of the creator's that is told of chosen events (billing/webhooks.py)."""

    id = AutoField()
    url = CharField(max_length=500)
    format = CharField(max_length=16)  # standard (signed JSON) | wecom (企业微信 group bot) | feishu (飞书 bot)
    events = CharField(max_length=300)  # space-separated event types
    # The signing secret (standard) or the bot's own signing secret (feishu, optional), sealed with a key
    # derived from the server secret: a stolen database file alone does not let anyone sign as this shop.
    sealed_secret = CharField(max_length=300, null=True)
    description = CharField(max_length=120, default="")
    enabled = BooleanField(default=True)
    created_at = UTCDateTimeField()
    created_by = CharField(max_length=120)
    after_event = IntegerField(default=0)  # the audit trail's last id when made: only later events are sent


class WebhookDelivery(BaseModel):
    """One event for one endpoint: its body, fixed when made, and how sending it went (the delivery log)."""

    id = AutoField()
    endpoint = ForeignKeyField(WebhookEndpoint, backref="deliveries", on_delete="CASCADE")
    event_id = IntegerField()  # the audit event it tells of (0: a test message from the console)
    event_type = CharField(max_length=40)
    message_id = CharField(max_length=40, unique=True)  # webhook-id: the same on every attempt
    body = TextField()
    created_at = UTCDateTimeField(index=True)
    state = CharField(max_length=12, default="pending")  # pending | delivered | failed
    next_attempt_at = UTCDateTimeField(null=True, index=True)  # None once delivered or given up
    attempts = IntegerField(default=0)
    last_attempt_at = UTCDateTimeField(null=True)
    last_status = IntegerField(null=True)  # the receiver's HTTP status; None when it never answered
    last_error = CharField(max_length=300, null=True)
    last_response = CharField(max_length=300, null=True)
    delivered_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("endpoint", "event_id"), False),)


class Complaint(BaseModel):
    """A WeChat Pay consumer complaint (消费者投诉2.0) about one of our payments, as WeChat last told it."""

    id = AutoField()
    complaint_id = CharField(max_length=64, unique=True)
    order = ForeignKeyField(Order, backref="complaints", null=True, on_delete="RESTRICT")  # None: not ours, or not known yet
    out_trade_no = CharField(max_length=64, null=True)
    transaction_id = CharField(max_length=32, null=True)
    amount_fen = IntegerField(null=True)
    # PENDING | PROCESSING | PROCESSED at WeChat; NEW while only a notification has named it
    state = CharField(max_length=16, default="NEW")
    detail = TextField(default="")
    problem_type = CharField(max_length=32, null=True)  # REFUND | SERVICE_NOT_WORK | OTHERS
    apply_refund_fen = IntegerField(null=True)
    # As WeChat sent it, encrypted with our merchant key: decrypted only when the creator opens the complaint.
    payer_phone_cipher = TextField(null=True)
    complaint_time = UTCDateTimeField()
    reply_due_at = UTCDateTimeField(index=True)  # WeChat: a first reply within 24 hours
    finish_due_at = UTCDateTimeField()  # and handled within 72 hours
    incoming_user_response = BooleanField(default=False)  # the payer wrote and waits for an answer
    full_refunded = BooleanField(default=False)
    user_complaint_times = IntegerField(default=1)
    history = TextField(default="[]")  # the negotiation history as WeChat last gave it (JSON)
    media = TextField(default="[]")  # URLs of the images the payer attached (JSON); fetched through our client
    replied_at = UTCDateTimeField(null=True)  # our first reply from this shop
    completed_at = UTCDateTimeField(null=True)
    needs_sync = BooleanField(default=True)  # a notification named it: the job fetches its detail
    received_at = UTCDateTimeField()
    synced_at = UTCDateTimeField(null=True)


ALL_MODELS: list[type[BaseModel]] = [Course, Buyer, DiscountCode, Order, License, Notification, AuditEvent, Lease, JobRun,
                                     AdminUser, Refund, MailOutbox, RateLimit,
                                     WeChatCallStat, OutsideService, Alert, BillDifference,
                                     BillCheck, DailyFigures, RollupMark, OrderAttempt,
                                     WebhookEndpoint, WebhookDelivery, Complaint, AdminSignInLink, WithdrawnKey,
                                     FapiaoRequest, CourseDetails]


def create_tables() -> None:
    """Create every table that does not exist yet, all in one transaction (one commit, not 120)."""
    with db.atomic():
        db.create_tables(ALL_MODELS, safe=True)
        if isinstance(db.obj, PostgresqlDatabase):
            for statement in POSTGRES_PREFIX_INDEXES:
                db.execute_sql(statement)


# --- classroom seats (billing.seats): a course sold in packs, one payment, a license per assigned seat ---

class SeatOffer(BaseModel):
    """How a course is sold in packs of seats: the price of a seat, and a lower one from some number on."""

    course = ForeignKeyField(Course, primary_key=True, on_delete="RESTRICT")
    seat_fen = IntegerField()
    volume_min = IntegerField(null=True)  # from this many seats on, each costs volume_fen
    volume_fen = IntegerField(null=True)
    max_seats = IntegerField(default=100)
    active = BooleanField(default=True)
    updated_at = UTCDateTimeField()

    class Meta:
        table_name = "seat_offer"


class SeatPack(BaseModel):
    """One paid (or pending) order for a number of seats; its buyer assigns them on the seat page."""

    id = AutoField()
    order = ForeignKeyField(Order, unique=True, on_delete="RESTRICT")
    seats = IntegerField()
    unit_fen = IntegerField()  # what each seat cost in this pack: a partial refund gives back whole seats
    token_hash = CharField(max_length=64, unique=True)  # the seat page's link (derived, stored hashed)
    created_at = UTCDateTimeField()

    class Meta:
        table_name = "seat_pack"


class Seat(BaseModel):
    """One seat of a pack: free, or assigned to an e-mail with a license of its own (a 0-fen order)."""

    id = AutoField()
    pack = ForeignKeyField(SeatPack, backref="seat_rows", on_delete="RESTRICT")
    number = IntegerField()
    email = CharField(max_length=254, null=True)
    email_key = CharField(max_length=254, null=True)  # lower case: one seat per address in a pack
    order = ForeignKeyField(Order, null=True, unique=True, on_delete="RESTRICT")  # the seat's license order
    assigned_at = UTCDateTimeField(null=True)
    moved_from = CharField(max_length=254, null=True)  # set once: a seat moves at most once
    moved_at = UTCDateTimeField(null=True)
    previous_order = ForeignKeyField(Order, null=True, on_delete="RESTRICT", backref="moved_seats")
    refund = ForeignKeyField(Refund, null=True, on_delete="RESTRICT")  # the seat refund that holds it
    withdrawn_at = UTCDateTimeField(null=True)  # refunded: its license revoked, never assignable again

    class Meta:
        table_name = "seat"
        indexes = ((("pack", "number"), True), (("pack", "email_key"), True))


ALL_MODELS += [SeatOffer, SeatPack, Seat, AlipayBillCheck]
