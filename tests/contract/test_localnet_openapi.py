"""Every localnet yagna endpoint answers as the ya-client OpenAPI definitions say.

Plain httpx requests drive the whole requestor API; an httpx response hook validates each
request and response (status, body schema, security) with openapi-core against
/work/shared/reference/ya-client-specs. Where the real daemon (yagna 0.17.6) differs from its
definitions, the localnet follows the daemon (docs/localnet.md) and this test maps the answer
back onto the documented one before validating it: 200 for createActivity, counterProposal
and createAgreement (spec: 201, same body), 200 with an empty body for terminate (spec: 204),
GET for terminate/reason (spec: POST), 408 for exec-result long polls (not in the spec;
validated as ErrorMessage), 404 `{"message": null}` for unknown payment documents (checked
as exactly that), empty 403s and 504s from the net API, problem JSON for refused
allocations (checked for `type` and `detail`) and plain-text 401s (checked for yagna's two
texts).

The definitions are loaded with three mechanical fixes of spec defects that the real daemon's
answers violate too: a nullable enum gets null in its list (ActivityState `["Ready", null]`),
an empty `content: {}` means "no body", and PaymentPlatform gets `type: object` (without it a
plain string platform matches both branches of `oneOf`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import pytest_asyncio
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from golem_operator.localnet import LocalNetwork
from localnet_fixture import collect, demand_body, localnet, localnet_config, negotiate

__all__ = ["localnet"]

SPECS = Path("/work/shared/reference/ya-client-specs")
PREFIXES = {
    "/market-api/v1": "market-api.yaml",
    "/activity-api/v1": "activity-api.yaml",
    "/payment-api/v1": "payment-api.yaml",
    "/net-api/v1": "net-api.yaml",
    "/me": "identity-api.yaml",
}
ERROR_MESSAGE = {"type": "object", "properties": {"message": {"type": "string"}}}
PROBLEM = {
    "type": "object",
    "required": ["type", "detail"],
    "properties": {"type": {"type": "string"}, "detail": {"type": "string"}},
}
# (method, path pattern, yagna's status) -> the status the spec documents for that answer.
STATUS_AS_DOCUMENTED = {
    ("post", "/activity-api/v1/activity", 200): 201,
    ("post", "/market-api/v1/demands/{id}/proposals/{id}", 200): 201,
    ("post", "/market-api/v1/agreements", 200): 201,
    ("post", "/market-api/v1/agreements/{id}/terminate", 200): 204,
}


def _fix_spec_defects(node: Any) -> Any:
    if isinstance(node, dict):
        for key in [k for k in node if not isinstance(k, str)]:
            node[str(key)] = node.pop(key)  # YAML reads status codes as ints
        if node.get("nullable") is True and isinstance(node.get("enum"), list):
            node["enum"] = [*node["enum"], None]
        if node.get("content") == {}:
            del node["content"]
        for value in node.values():
            _fix_spec_defects(value)
    elif isinstance(node, list):
        for value in node:
            _fix_spec_defects(value)
    return node


def load_spec(name: str) -> OpenAPI:
    data = _fix_spec_defects(yaml.safe_load((SPECS / name).read_text()))
    platform = data.get("components", {}).get("schemas", {}).get("PaymentPlatform")
    if platform is not None:
        platform["type"] = "object"
    return OpenAPI.from_dict(data, base_uri=SPECS.as_uri() + "/")


class Validator:
    def __init__(self) -> None:
        self.specs = {prefix: load_spec(name) for prefix, name in PREFIXES.items()}
        self.seen: set[tuple[str, str, int]] = set()
        self.failures: list[str] = []

    def spec_for(self, path: str) -> OpenAPI | None:
        return next((s for prefix, s in self.specs.items() if path.startswith(prefix)), None)

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        path = request.url.path
        spec = self.spec_for(path)
        if spec is None:
            return
        method = request.method.lower()
        status = response.status_code
        documented = STATUS_AS_DOCUMENTED.get((method, _pattern(path), status))
        if documented is not None:
            if documented == 204:
                assert response.content == b"", (path, response.content)
            status = documented
        spec_method = method
        if method == "get" and path.endswith("/terminate/reason"):
            spec_method = "post"  # yagna serves GET; the spec documents POST
        if "/exec/" in path and status == 408:
            jsonschema.validate(response.json(), ERROR_MESSAGE)
            self.seen.add((method, path, 408))
            return
        if status == 401:
            # yagna answers 401 in plain text, not as the spec's ErrorMessage
            assert response.headers["content-type"].startswith("text/plain"), path
            assert response.text in ("Missing application key", "Invalid application key")
            self.seen.add((method, path, 401))
            return
        if status in (403, 504) and path.startswith("/net-api/"):
            # yagna's net API refuses a network it does not own, and a tunnel to nothing,
            # with an empty body (the spec's Forbidden has an ErrorMessage)
            assert response.content == b"", (path, response.text)
            self.seen.add((method, path, status))
            return
        if status == 404 and path.startswith("/payment-api/") and response.content:
            # yagna's body for an unknown allocation, debit note or invoice
            assert response.json() == {"message": None}, (path, response.text)
            self.seen.add((method, path, 404))
            return
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            jsonschema.validate(response.json(), PROBLEM)
            self.seen.add((method, path, response.status_code))
            return
        mock_request = MockRequest(
            "http://127.0.0.1",
            spec_method,
            path,
            args=dict(request.url.params),
            headers=dict(request.headers),
            data=request.content or None,
            content_type=request.headers.get("content-type", "application/json"),
        )
        content_type = response.headers.get("content-type", "").split(";")[0] or None
        mock_response = MockResponse(
            response.content, status_code=status, content_type=content_type or ""
        )
        try:
            if status < 400:
                spec.validate_request(mock_request)
            spec.validate_response(mock_request, mock_response)
        except Exception as error:
            self.failures.append(f"{method.upper()} {path} -> {response.status_code}: {error!r}")
        self.seen.add((method, path, response.status_code))


@pytest_asyncio.fixture
async def checked(localnet: LocalNetwork) -> AsyncIterator[tuple[httpx.AsyncClient, Validator]]:
    validator = Validator()
    async with httpx.AsyncClient(
        base_url=str(localnet.url),
        headers={"Authorization": f"Bearer {localnet.app_key}"},
        event_hooks={"response": [validator]},
        timeout=30,
    ) as client:
        yield client, validator


def assert_clean(validator: Validator) -> None:
    assert validator.failures == [], "\n".join(validator.failures)


@pytest.mark.parametrize(
    "localnet",
    [
        localnet_config(
            debit_note_interval_seconds=0.2, providers=[{"count": 2, "name_prefix": "p"}]
        )
    ],
    indirect=True,
)
async def test_every_endpoint_matches_the_openapi_definitions(
    localnet: LocalNetwork, checked: tuple[httpx.AsyncClient, Validator]
) -> None:
    client, validator = checked
    start = datetime.now(UTC).isoformat()
    M, A, P = "/market-api/v1", "/activity-api/v1", "/payment-api/v1"

    assert (await client.get("/me")).status_code == 200
    # payment: allocation + decorations
    allocation = (await client.post(f"{P}/allocations", json={"totalAmount": "10"})).json()
    alloc_id = allocation["allocationId"]
    await client.get(f"{P}/allocations")
    await client.get(f"{P}/allocations/{alloc_id}")
    await client.put(f"{P}/allocations/{alloc_id}", json={"totalAmount": "20"})
    await client.get(f"{P}/demandDecorations", params={"allocationIds": alloc_id})
    await client.post(f"{P}/allocations", json={"totalAmount": "nonsense"})

    # market: demands, events, proposals
    body = await demand_body(client)
    spare = (await client.post(f"{M}/demands", json=body)).json()
    await client.get(f"{M}/demands")
    events = await collect(client, spare, want=2)
    offer_id = events[0]["proposal"]["proposalId"]
    await client.get(f"{M}/demands/{spare}/proposals/{offer_id}")
    await client.post(
        f"{M}/demands/{spare}/proposals/{events[1]['proposal']['proposalId']}/reject",
        json={"message": "no"},
    )
    await client.post(f"{M}/demands/{spare}/proposals/nope", json=body)
    counter = (await client.post(f"{M}/demands/{spare}/proposals/{offer_id}", json=body)).json()
    draft = (await collect(client, spare, want=1))[0]["proposal"]
    assert draft["prevProposalId"] == counter
    cancelled = (
        await client.post(
            f"{M}/agreements",
            json={"proposalId": draft["proposalId"], "validTo": "2099-01-01T00:00:00Z"},
        )
    ).json()
    await client.post(
        f"{M}/agreements",
        json={"proposalId": draft["proposalId"], "validTo": "2099-01-01T00:00:00Z"},
    )  # 409: a second agreement for the proposal
    await client.post(f"{M}/agreements/{cancelled}/wait", params={"timeout": 0.1})  # 400
    await client.post(
        f"{M}/agreements/{cancelled}/terminate",
        content=b"null",
        headers={"Content-Type": "application/json"},
    )  # 409: still a Proposal
    await client.post(f"{M}/agreements/{cancelled}/cancel", json={"message": "changed my mind"})
    await client.post(f"{M}/agreements/{cancelled}/terminate", json={"message": "x"})  # 410
    await client.get(f"{M}/demands/{spare}/events", params={"timeout": 0.1})
    await client.delete(f"{M}/demands/{spare}")
    await client.delete(f"{M}/demands/{spare}")  # 404
    await client.get(f"{M}/demands/{spare}/events", params={"timeout": 0.1})  # 404

    deal = await negotiate(client, extra={"golem.com.scheme.payu.payment-timeout-sec?": 30})
    await client.get(f"{M}/agreements/{deal.agreement_id}")
    await client.get(f"{M}/agreements/missing")  # 400: not an agreement id
    await client.get(f"{M}/agreements/{'ab' * 32}")  # 404
    await client.get(f"{M}/agreementEvents", params={"afterTimestamp": start, "timeout": 0.1})

    # activity
    activity_id = (
        await client.post(f"{A}/activity", json={"agreementId": deal.agreement_id})
    ).json()["activityId"]
    script = [
        {"deploy": {}},
        {"start": {}},
        {
            "run": {
                "entry_point": "/bin/sh",
                "args": ["-c", "sleep 0.3; echo hi"],
                "capture": {"stdout": {"atEnd": {}}},
            }
        },
    ]
    batch = (
        await client.post(f"{A}/activity/{activity_id}/exec", json={"text": json.dumps(script)})
    ).json()
    await client.get(
        f"{A}/activity/{activity_id}/exec/{batch}", params={"timeout": 0.01, "commandIndex": 2}
    )
    await asyncio.sleep(0.05)
    await client.get(f"{A}/activity/{activity_id}/command")
    await client.get(
        f"{A}/activity/{activity_id}/exec/{batch}", params={"timeout": 5, "commandIndex": 2}
    )
    await client.get(f"{A}/activity/{activity_id}/exec/{batch}", params={"timeout": 5})
    await client.post(f"{A}/activity/{activity_id}/exec", json={"text": "not json"})  # 400
    await client.get(f"{A}/activity/{activity_id}/state")
    await client.get(f"{A}/activity/{activity_id}/usage")
    await client.get(f"{A}/activity/{activity_id}/agreement")
    await client.get(f"{A}/activity/missing/state")  # 500, as yagna answers
    await asyncio.sleep(0.5)

    # debit notes
    notes = (
        await client.get(f"{P}/debitNoteEvents", params={"afterTimestamp": start, "timeout": 1})
    ).json()
    await client.get(f"{P}/debitNotes")
    first = (await client.get(f"{P}/debitNotes/{notes[0]['debitNoteId']}")).json()
    await client.post(
        f"{P}/debitNotes/{first['debitNoteId']}/accept",
        json={"totalAmountAccepted": first["totalAmountDue"], "allocationId": alloc_id},
    )
    await client.post(
        f"{P}/debitNotes/{notes[1]['debitNoteId']}/reject",
        json={"rejectionReason": "BAD_SERVICE", "totalAmountAccepted": "0"},
    )
    await client.post(
        f"{P}/debitNotes/missing/accept",
        json={"totalAmountAccepted": "1", "allocationId": alloc_id},
    )

    await client.delete(f"{A}/activity/{activity_id}")
    await client.post(f"{M}/agreements/{deal.agreement_id}/terminate", json={"message": "done"})
    await client.get(f"{M}/agreements/{deal.agreement_id}/terminate/reason")
    invoice_events = (
        await client.get(f"{P}/invoiceEvents", params={"afterTimestamp": start, "timeout": 1})
    ).json()
    invoice = (await client.get(f"{P}/invoices/{invoice_events[0]['invoiceId']}")).json()
    await client.get(f"{P}/invoices")
    await client.post(
        f"{P}/invoices/{invoice['invoiceId']}/reject",
        json={
            "rejectionReason": "INCORRECT_AMOUNT",
            "totalAmountAccepted": "0",
            "message": "check",
        },
    )
    await client.post(
        f"{P}/invoices/{invoice['invoiceId']}/accept",
        json={"totalAmountAccepted": invoice["amount"], "allocationId": alloc_id},
    )
    await client.get(f"{P}/invoiceEvents", params={"afterTimestamp": start, "timeout": 0.1})
    await client.delete(f"{P}/allocations/{alloc_id}")
    await client.delete(f"{P}/allocations/{alloc_id}")  # 410
    await client.get(f"{P}/allocations/{alloc_id}")  # 404

    assert_clean(validator)
    covered = {(m, s) for m, _, s in validator.seen}
    assert ("get", 408) in covered  # the exec-result timeout path was exercised
    expected_statuses = {200, 201, 204, 400, 404, 408, 409, 410}
    assert expected_statuses <= {s for _, _, s in validator.seen}
    patterns = {(m, _pattern(p)) for m, p, _ in validator.seen}
    for operation in _implemented_operations():
        assert operation in patterns, f"not exercised: {operation}"


def _pattern(path: str) -> str:
    parts = path.split("/")
    out = []
    for part in parts:
        out.append("{id}" if len(part) >= 32 or part in {"missing", "nope"} else part)
    return "/".join(out)


def _implemented_operations() -> set[tuple[str, str]]:
    M, A, P = "/market-api/v1", "/activity-api/v1", "/payment-api/v1"
    return {
        ("get", "/me"),
        ("post", f"{M}/demands"),
        ("get", f"{M}/demands"),
        ("delete", f"{M}/demands/{{id}}"),
        ("get", f"{M}/demands/{{id}}/events"),
        ("get", f"{M}/demands/{{id}}/proposals/{{id}}"),
        ("post", f"{M}/demands/{{id}}/proposals/{{id}}"),
        ("post", f"{M}/demands/{{id}}/proposals/{{id}}/reject"),
        ("post", f"{M}/agreements"),
        ("get", f"{M}/agreements/{{id}}"),
        ("post", f"{M}/agreements/{{id}}/confirm"),
        ("post", f"{M}/agreements/{{id}}/wait"),
        ("post", f"{M}/agreements/{{id}}/cancel"),
        ("post", f"{M}/agreements/{{id}}/terminate"),
        ("get", f"{M}/agreements/{{id}}/terminate/reason"),
        ("get", f"{M}/agreementEvents"),
        ("post", f"{A}/activity"),
        ("post", f"{A}/activity/{{id}}/exec"),
        ("get", f"{A}/activity/{{id}}/exec/{{id}}"),
        ("get", f"{A}/activity/{{id}}/state"),
        ("get", f"{A}/activity/{{id}}/usage"),
        ("get", f"{A}/activity/{{id}}/agreement"),
        ("get", f"{A}/activity/{{id}}/command"),
        ("delete", f"{A}/activity/{{id}}"),
        ("post", f"{P}/allocations"),
        ("get", f"{P}/allocations"),
        ("get", f"{P}/allocations/{{id}}"),
        ("put", f"{P}/allocations/{{id}}"),
        ("delete", f"{P}/allocations/{{id}}"),
        ("get", f"{P}/demandDecorations"),
        ("get", f"{P}/debitNotes"),
        ("get", f"{P}/debitNotes/{{id}}"),
        ("post", f"{P}/debitNotes/{{id}}/accept"),
        ("post", f"{P}/debitNotes/{{id}}/reject"),
        ("get", f"{P}/debitNoteEvents"),
        ("get", f"{P}/invoices"),
        ("get", f"{P}/invoices/{{id}}"),
        ("post", f"{P}/invoices/{{id}}/accept"),
        ("post", f"{P}/invoices/{{id}}/reject"),
        ("get", f"{P}/invoiceEvents"),
    }


async def test_error_answers_and_401s_match_the_definitions(
    localnet: LocalNetwork, checked: tuple[httpx.AsyncClient, Validator]
) -> None:
    client, validator = checked
    async with httpx.AsyncClient(
        base_url=str(localnet.url), event_hooks={"response": [validator]}
    ) as anonymous:
        assert (await anonymous.get("/market-api/v1/demands")).status_code == 401
        assert (await anonymous.get("/payment-api/v1/allocations")).status_code == 401
    bad = await client.post("/market-api/v1/demands", json={"properties": {}})
    assert bad.status_code == 400 and "constraints" in bad.json()["message"]
    refused = await client.post("/payment-api/v1/allocations", json={"totalAmount": "1e30"})
    assert refused.status_code == 400
    assert refused.json()["type"] == "/payment-api/v1/allocations/validation-error"
    assert_clean(validator)


async def test_net_api_matches_the_openapi_definitions(
    checked: tuple[httpx.AsyncClient, Validator],
) -> None:
    client, validator = checked
    n = "/net-api/v1/net"
    # No network yet: an unknown id is "Network not found".
    assert (await client.get(f"{n}/deadbeef")).status_code == 404
    created = await client.post(n, json={"ip": "192.168.60.0", "mask": "255.255.255.0"})
    network_id = created.json()["id"]
    await client.post(n, json={"ip": "not-an-ip"})
    await client.get(n)
    await client.get(f"{n}/{network_id}")
    await client.get(f"{n}/{network_id}/addresses")
    await client.post(f"{n}/{network_id}/addresses", json={"ip": "192.168.60.7"})
    await client.post(f"{n}/{network_id}/addresses", json={"ip": "192.168.61.7"})
    node = "0x" + "ab" * 20
    await client.post(f"{n}/{network_id}/nodes", json={"id": node, "ip": "192.168.60.2"})
    await client.post(f"{n}/{network_id}/nodes", json={"id": node, "ip": "192.168.61.2"})
    await client.get(f"{n}/{network_id}/nodes")
    await client.delete(f"{n}/{network_id}/nodes/{node}")
    await client.get(f"{n}/deadbeef/nodes")  # 403 now: the requestor owns a network
    await client.delete(f"{n}/{network_id}")
    assert_clean(validator)
    statuses = {(method, status) for method, _, status in validator.seen}
    assert {("post", 200), ("get", 200), ("delete", 200), ("post", 400), ("get", 403)} <= statuses
