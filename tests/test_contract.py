"""One contract for the clients (issue 18, item 6): the kit's error catalogue, next steps and status words
are generated from billing/errors.py and openapi.yaml, and the extension client's types are checked against
openapi.yaml, so neither can drift from the server unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients"))

import contract  # noqa: E402

from billing.errors import CATALOGUE  # noqa: E402


def test_the_kits_error_catalogue_and_status_words_are_the_generated_ones() -> None:
    current = contract.ERRORS_TS.read_text()
    assert contract.errors_ts_with_part(current) == current, "clients/vscode/src/errors.ts drifted: run `make contract`"


def test_the_generated_part_names_every_code_and_every_word_of_the_spec() -> None:
    part = contract.errors_ts_part()
    for code, text in CATALOGUE.items():
        assert f"  {code}: {{ status: {text.status}," in part and text.message_en in part
    spec = contract.spec()["components"]["schemas"]
    for status in spec["Order"]["properties"]["status"]["enum"]:
        assert f"'{status}'" in part.split("export type OrderStatus")[1].split("\n")[0]
    assert "export type LicenseState = 'active' | 'expired' | 'revoked';" in part


def test_a_code_added_on_the_server_makes_the_kit_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    current = contract.ERRORS_TS.read_text()
    monkeypatch.setitem(CATALOGUE, "brand_new_code", CATALOGUE["bad_request"])
    assert contract.errors_ts_with_part(current) != current


def test_the_extension_clients_types_match_the_spec() -> None:
    assert contract.typedef_drift() == []


def test_the_type_check_sees_a_missing_field_and_a_wrong_word() -> None:
    source = contract.EXTENSION_JS.read_text()
    dropped = source.replace(", poll_after_ms: number|null}} Order", "}} Order", 1)
    assert dropped != source
    assert "Order.poll_after_ms: in openapi.yaml, missing from the typedef" in contract.typedef_drift(dropped)
    renamed = source.replace("'active'|'expired'|'revoked'}} OrderLicense", "'active'|'lapsed'|'revoked'}} OrderLicense")
    assert renamed != source
    assert any(line.startswith("OrderLicense.state:") for line in contract.typedef_drift(renamed))


def test_the_check_command_agrees() -> None:
    done = subprocess.run([sys.executable, "clients/contract.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
