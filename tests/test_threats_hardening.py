"""THREATS rows #45, #48, #52 and #53, over real HTTP against the live-mode shop."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Keys, LiveServer, Shop, live_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peewee import SqliteDatabase
from test_admin import EMAIL, PASSWORD, Console, console, paid_order, shop_of  # noqa: F401  (the fixture)

import models
from app import create_app
from billing.admin_users import create_admin
from settings import ConfigError

TRACE_WORDS = ("Traceback", 'File "', "OperationalError", "ProgrammingError", "no such table", "peewee", "sqlite3",
               "psycopg2", ".py")


def test_52_a_production_500_shows_no_traceback(tmp_path: Path, keys: Keys, sandbox: Any, clock: Any) -> None:
    """A real fault (the course table gone) in live mode: the catalogue's words, never the exception."""
    import requests

    app = create_app({**live_config(tmp_path, keys, sandbox.url), "CLOCK": clock})
    with models.db.connection_context():
        models.create_tables()
    assert app.debug is False and app.config["PROPAGATE_EXCEPTIONS"] in (None, False)
    server = LiveServer(app)
    try:
        with models.db.connection_context():
            if isinstance(models.db.obj, SqliteDatabase):
                models.db.execute_sql("PRAGMA foreign_keys = OFF")
                models.db.execute_sql("DROP TABLE course")
            else:
                models.db.execute_sql("DROP TABLE course CASCADE")  # and the foreign keys pointing at it
        api = requests.get(server.url + "/api/v1/courses", timeout=15)
        page = requests.get(server.url + "/", timeout=15)
    finally:
        server.stop()
    assert api.status_code == 500 and api.json()["error"]["code"] == "internal_error"
    assert page.status_code == 500 and "text/html" in page.headers["Content-Type"]
    for answer in (api, page):
        for word in TRACE_WORDS:
            assert word not in answer.text, (word, answer.text[:800])


def test_45_unknown_and_known_accounts_take_the_same_time_to_refuse(shop: Shop) -> None:
    """Timing does not tell which e-mail addresses have a console account (a dummy hash for unknown ones)."""
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
    prober = Console(shop)
    # Warm both paths once (the first unknown address makes the dummy hash).
    assert prober.login(email="warm-up@example.com", password="wrong password 0").status_code == 401
    assert prober.login(password="wrong password 0").status_code == 401
    unknown: list[float] = []
    known: list[float] = []
    for n in range(8):  # within both sign-in buckets (10 per account, 30 per address)
        for times, email in ((unknown, f"nobody{n}@example.com"), (known, EMAIL)):
            data = {"email": email, "password": f"wrong password {n}", "csrf_token": prober.token()}
            started = time.perf_counter()
            answer = prober.session.post(prober.url("/admin/login"), data=data, allow_redirects=False, timeout=30)
            times.append(time.perf_counter() - started)
            assert answer.status_code == 401, answer.status_code
    # Without the dummy hash an unknown address answers many times faster than a checked password.
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 1 / 3 < ratio < 3, (unknown, known)


ADVERSARIAL = ["' OR '1'='1", "'; DROP TABLE \"order\"; --", "\" OR 1=1 --", "%", "_", "\\", "\x00",
               "1 UNION SELECT * FROM admin_user", "created_at DESC; DELETE FROM license", "status",
               "a" * 5000, "ord_' || (SELECT token_hash FROM buyer) || '", "😀", "%00", "@", "@'--"]
FILTERS = ("q", "status", "course", "since", "until", "page", "sort", "order", "dir")


def _tables(shop: Shop) -> dict[str, int]:
    with models.db.connection_context():
        return {name: models.db.obj.execute_sql(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]  # noqa: S608
                for name in ("order", "license", "buyer", "audit_event", "admin_user", "course")}


def test_48_adversarial_search_and_sort_strings_leave_every_table_intact(console: Console) -> None:
    """Classic injection strings, then generated ones, in every filter of the orders list: a page or a 4xx, no change."""
    paid_order(console.shop, email="learner@example.com")
    before = _tables(console.shop)

    def ask(name: str, value: str) -> None:
        answer = console.get("/admin/orders", params={name: value})
        assert answer.status_code in (200, 303, 400, 414), (name, value, answer.status_code)

    for value in ADVERSARIAL:
        for name in FILTERS:
            ask(name, value)

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(FILTERS), value=st.text(st.characters(codec="utf-8"), max_size=300))
    def generated(name: str, value: str) -> None:
        ask(name, value)

    generated()
    assert _tables(console.shop) == before
    with models.db.connection_context():
        from billing.audit import verify_chain

        assert verify_chain()[0]
    # And the search still works.
    assert console.get("/admin/orders", params={"q": "learner@example.com"}).status_code == 303


@pytest.mark.parametrize("setting", ["SMTP_URL", "SECRET_KEY", "METRICS_TOKEN", "WECHATPAY_APIV3_KEY_NEXT"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_53_every_secret_file_must_be_private(tmp_path: Path, keys: Keys, setting: str, mode: int) -> None:
    """The 0600 rule of the PEM files holds for every ``*_FILE`` secret: SMTP URL, session key, tokens."""
    value = {"SMTP_URL": "smtps://user:pass@mail.example.com:465", "SECRET_KEY": "x" * 64,
             "METRICS_TOKEN": "m" * 32, "WECHATPAY_APIV3_KEY_NEXT": "n" * 32}[setting]
    config = live_config(tmp_path, keys, "https://127.0.0.1:9", MAIL_FROM="Shop <shop@example.com>")
    config.pop(setting, None)
    secret = tmp_path / setting.lower()
    secret.write_text(value + "\n")
    secret.chmod(mode)
    config[setting + "_FILE"] = str(secret)
    with pytest.raises(ConfigError) as refused:
        create_app(config)
    [problem] = refused.value.problems
    assert problem.name == f"LBPAY_{setting}_FILE" and f"chmod 600 {secret}" in problem.rule
    assert value not in str(refused.value)
    secret.chmod(0o600)
    assert create_app(config).extensions["lbpay.shop"].config is not None


@pytest.mark.parametrize("setting", ["LICENSE_KEY_FILE", "WECHATPAY_MERCHANT_KEY_FILE"])
def test_53_private_keys_readable_by_the_group_are_refused(tmp_path: Path, keys: Keys, setting: str) -> None:
    config = live_config(tmp_path, keys, "https://127.0.0.1:9")
    os.chmod(config[setting], 0o640)
    with pytest.raises(ConfigError) as refused:
        create_app(config)
    assert f"chmod 600 {config[setting]}" in str(refused.value) and "LBPAY_" + setting in str(refused.value)


def test_caddy_reads_whole_requests_before_gunicorn_does(tmp_path: Path) -> None:
    """Slow clients stall gunicorn's threads: deploy/Caddyfile buffers every body the app would accept."""
    import re

    caddy = (Path(__file__).parent.parent / "deploy" / "Caddyfile").read_text()
    limit = create_app({"INSTANCE_PATH": str(tmp_path), "SCHEDULER": "off"}).config["MAX_CONTENT_LENGTH"]
    kib = {name: int(value) * 1024 for name, value in
           re.findall(r"^\s*(request_buffers|max_size)\s+(\d+)KiB\s*$", caddy, re.M)}
    assert kib == {"request_buffers": limit, "max_size": limit}, caddy
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "buffering proxy in front" in readme
