"""Every answer the running server gives under /api/v1 matches openapi.yaml."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import requests
import yaml
from conftest import Shop

SPEC = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())


def pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check(response: requests.Response, path: str, method: str) -> None:
    """Validate a response against the schema the spec documents for its path, method and status."""
    documented = SPEC["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {path} answered undocumented {status}: {response.text}"
    answer = documented[status]
    if "$ref" in answer:
        schema_ref = pointer("components", "responses", answer["$ref"].rsplit("/", 1)[1],
                             "content", "application/json", "schema")
    else:
        schema_ref = pointer("paths", path, method, "responses", status, "content", "application/json", "schema")
    jsonschema.Draft202012Validator({**SPEC, "$ref": schema_ref}).validate(response.json())


def test_the_spec_names_every_api_route(shop: Shop) -> None:
    # Provider paths name their own server ("/"); a <path:...> converter is just a parameter in the spec.
    routes = {re.sub(r"<\w+:", "<", r.rule) for r in shop.app.url_map.iter_rules()
              if r.rule.startswith(("/api/v1", "/provider")) and r.endpoint != "provider.unknown"}
    documented = {item.get("servers", SPEC["servers"])[0]["url"].rstrip("/") + p.replace("{", "<").replace("}", ">")
                  for p, item in SPEC["paths"].items()}
    assert routes == documented


def test_the_purchase_answers_match_the_spec(shop: Shop) -> None:
    check(shop.get("/api/v1/courses"), "/courses", "get")
    check(shop.get("/api/v1/license-keys"), "/license-keys", "get")
    created = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": "a@example.com"})
    check(created, "/orders", "post")
    order: dict[str, Any] = created.json()
    check(shop.get(f"/api/v1/orders/{order['order_id']}", token=order["order_token"]), "/orders/{order_id}", "get")
    shop.sandbox.pay(order["out_trade_no"])
    shop.wait_for_status(order, "fulfilled")
    paid = shop.get(f"/api/v1/orders/{order['order_id']}", token=order["order_token"])
    assert paid.json()["license"] is not None
    check(paid, "/orders/{order_id}", "get")
    check(shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"]),
          "/orders/{order_id}/cancel", "post")
    other = shop.order()
    check(shop.post(f"/api/v1/orders/{other['order_id']}/cancel", token=other["order_token"]),
          "/orders/{order_id}/cancel", "post")


def test_the_error_answers_match_the_spec(shop: Shop) -> None:
    check(shop.post("/api/v1/orders", {"course_id": "nope"}), "/orders", "post")
    check(shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "buyer_token": "bt_unknown_token"}),
          "/orders", "post")
    check(shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": "x"}), "/orders", "post")
    check(shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": "x" * 70000}), "/orders", "post")
    check(shop.get("/api/v1/orders/ord_missing", token="t"), "/orders/{order_id}", "get")
    check(shop.post("/api/v1/orders/ord_missing/cancel", token="t"), "/orders/{order_id}/cancel", "post")
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 10, "status": 500, "code": "SYSTEM_ERROR"}})
    check(shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"}), "/orders", "post")


def test_the_no_double_charge_answers_match_the_spec(shop: Shop) -> None:
    first = shop.order()
    shop.sandbox.pay(first["out_trade_no"])
    shop.wait_for_status(first, "fulfilled")
    check(shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "buyer_token": first["buyer_token"]}),
          "/orders", "post")
    shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"}, headers={"Idempotency-Key": "k-openapi-1-abcdefgh"})
    check(shop.post("/api/v1/orders", {"course_id": "rust-monthly"}, headers={"Idempotency-Key": "k-openapi-1-abcdefgh"}),
          "/orders", "post")


def test_the_guessing_guard_answer_matches_the_spec(shop: Shop) -> None:
    shop.clock.freeze()  # one miss refills each 2 s: none may while the 31 are made
    for _ in range(31):
        response = shop.get("/api/v1/orders/ord_guess", token="guess")
    assert response.status_code == 429
    check(response, "/orders/{order_id}", "get")


def test_the_specs_email_schema_is_the_servers_address_grammar() -> None:
    """Both e-mail fields take exactly what billing.addresses takes; written without lookahead, so fuzzers can generate it."""
    from billing.addresses import is_email_address

    body = "application/json"
    schemas = [SPEC["paths"][path]["post"]["requestBody"]["content"][body]["schema"]["properties"]["email"]
               for path in ("/orders", "/licenses/resend")]
    addresses = ["a@b.cn", "learner.one+tag@mail.example.com", "a" * 64 + "@x.com", "a" * 65 + "@x.com",
                 "a..b@x.com", ".a@x.com", "a.@x.com", "a,b@x.com", "a b@x.com", "a@b", "a@-b.com", "a@b-.com",
                 "a@b.c0m", "a@b.c", "a@@b.com", "\u00e9@b.com", "x@" + "b" * 63 + ".com",
                 "x@" + "b" * 64 + ".com", "a@b.com@c.com", ""]
    # (No trailing line break: Python's $ matches before one, ECMA-262's, which the spec means, does not.)
    for schema in schemas:
        assert "(?=" not in str(schema) and "(?!" not in str(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for address in addresses:
            assert validator.is_valid(address) == is_email_address(address), address
