"""aiohttp routes speaking yagna's requestor REST API (plus `/_localnet` admin paths).

Built by `localnet.server.LocalNetwork`; every handler validates the request, calls
`localnet.network.Network` and shapes the answer as the real daemon (yagna 0.17.6) does:
its status codes, `{"message": ...}` error bodies (problem JSON under POST /allocations,
plain text for 401), id formats and the checks it makes on path ids and JSON bodies. Every
path needs `Authorization: Bearer <key>`, except the image registry's (`/v1/image/...`,
`/download/...`), which is public like the Golem registry. Where yagna differs from its
OpenAPI definitions, the localnet follows yagna (docs/localnet.md lists the differences).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import TypeAdapter, ValidationError

from golem_operator.localnet.config import DaemonFault, Faults, format_validation_error
from golem_operator.localnet.events import parse_iso, stamp
from golem_operator.localnet.images import DOWNLOAD_PATH
from golem_operator.localnet.model import DOCUMENT_KINDS, BareError, PlainError
from golem_operator.localnet.network import (
    Activity,
    Agreement,
    ApiError,
    Demand,
    Document,
    DocumentKind,
    Network,
    ProblemError,
    agreement_id_problem,
    check_proposal_id,
    check_subscription_id,
)
from golem_operator.localnet.pricing import parse_amount
from golem_operator.localnet.sandbox import SandboxError
from golem_operator.localnet.vpn import close_quietly

log = logging.getLogger(__name__)

MARKET = "/market-api/v1"
ACTIVITY = "/activity-api/v1"
PAYMENT = "/payment-api/v1"
NET = "/net-api/v1"
ADMIN = "/_localnet"
REGISTRY = "/v1/image"
PUBLIC_PREFIXES = (f"{REGISTRY}/", f"{DOWNLOAD_PATH}/")
NETWORK_KEY = web.AppKey("network", Network)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _no_content() -> web.Response:
    return web.Response(status=204)


def _net(request: web.Request) -> Network:
    return request.app[NETWORK_KEY]


def _is_tcp_tunnel(request: web.Request) -> bool:
    return request.path.startswith(f"{NET}/net/") and "/tcp/" in request.path


def make_auth_middleware(app_key: str) -> Any:
    keys = {"expected": app_key.encode()}

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PUBLIC_PREFIXES):
            # The image registry and its downloads are public, as the Golem registry is.
            return await handler(request)
        # yagna answers in plain text; anything but a `Bearer ` header counts as missing.
        header = request.headers.get("Authorization", "")
        if not header and _is_tcp_tunnel(request) and "authToken" in request.query:
            # The TCP websocket also takes the key as a query parameter (app_key_param).
            header = "Bearer " + request.query["authToken"]
        if not header.startswith("Bearer "):
            return web.Response(status=401, text="Missing application key")
        given = header.removeprefix("Bearer ").strip().encode()
        if not hmac.compare_digest(given, keys["expected"]):
            return web.Response(status=401, text="Invalid application key")
        if request.path == f"{ADMIN}/app-key" and request.method == "POST":
            # Key rotation (`yagna app-key drop` + create): the old key is refused from now on.
            # Served here because the key lives here; the body's key is never echoed.
            new_key = (await _admin_body(request)).get("key")
            if not isinstance(new_key, str) or len(new_key.strip()) < 8:
                return _json({"message": "`key` must be a string of at least 8 characters"}, 400)
            keys["expected"] = new_key.strip().encode()
            return _no_content()
        return await handler(request)

    return auth


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inject the configured daemon faults (`daemon_faults`); admin paths are never faulted."""
    if request.path.startswith(ADMIN):
        return await handler(request)
    fault = _net(request).daemon_faults.match(request.method, request.path)
    if fault is None:
        return await handler(request)
    if fault.delay_seconds:
        await asyncio.sleep(fault.delay_seconds)
    if fault.status is None:
        return await handler(request)
    # yagna's error shape: a JSON object with a message.
    text = "Service temporarily unavailable" if fault.status == 503 else "Internal server error"
    return _json({"message": fault.message or f"{text} (injected fault)"}, fault.status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BareError as error:
        return web.Response(status=error.status)
    except PlainError as error:
        return web.Response(status=error.status, text=error.message or "")
    except ProblemError as error:
        return web.json_response(
            error.problem, status=error.status, content_type="application/problem+json"
        )
    except ApiError as error:
        return _json({"message": error.message}, error.status)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        # No such route: yagna (actix) answers 404 with an empty body, whatever the method.
        return web.Response(status=404)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _json({"message": error.reason}, error.status)


# ------------------------------------------------------------------- params
def _float_param(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"Invalid query parameter {name}: {raw!r}") from None
    if value < 0:
        raise ApiError(400, f"Invalid query parameter {name}: {raw!r}")
    return value


def _int_param(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise ApiError(400, f"Invalid query parameter {name}: {raw!r}") from None
    if value < 0:
        raise ApiError(400, f"Invalid query parameter {name}: {raw!r}")
    return value


def _timeout(request: web.Request) -> float:
    return min(_float_param(request, "timeout", 5.0), 600.0)


def _max_events(request: web.Request) -> int:
    value = _int_param(request, "maxEvents", 10) or 10
    return max(1, min(value, 100))


def _after(request: web.Request, name: str = "afterTimestamp") -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return parse_iso(raw)
    except ValueError:
        raise ApiError(400, f"Invalid query parameter {name}: {raw!r}") from None


def _is_json(request: web.Request) -> bool:
    content_type = request.content_type
    return content_type == "application/json" or content_type.endswith("+json")


async def _body(request: web.Request) -> Any:
    """The JSON body, checked as yagna's extractor does: JSON content type, then valid JSON."""
    if not _is_json(request):
        raise ApiError(400, "Content type error")
    text = await request.text()
    if not text.strip():
        raise ApiError(400, "Json deserialize error: EOF while parsing a value at line 1 column 0")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ApiError(400, f"Json deserialize error: {error}") from None


async def _object_body(request: web.Request) -> dict[str, Any]:
    body = await _body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "Json deserialize error: expected an object")
    return body


async def _admin_body(request: web.Request) -> dict[str, Any]:
    """The admin paths take any content type and an empty body as {}."""
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        raise ApiError(400, f"Json deserialize error: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Json deserialize error: expected an object")
    return body


async def _reason(request: web.Request) -> dict[str, Any] | None:
    """A Reason body or JSON `null`; yagna refuses a missing body (400 Content type error)."""
    body = await _body(request)
    if body is None:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        raise ApiError(400, "Json deserialize error: missing field `message`")
    return body


def _subscription_id(request: web.Request) -> str:
    subscription_id = request.match_info["subscriptionId"]
    check_subscription_id(subscription_id)
    return subscription_id


def _demand(request: web.Request) -> Demand:
    return _net(request).market.demand(_subscription_id(request))


def _proposal_id(request: web.Request) -> str:
    proposal_id = request.match_info["proposalId"]
    check_proposal_id(proposal_id)
    return proposal_id


def _agreement(request: web.Request, *, call: str = "get") -> Agreement:
    """The agreement of the path; a malformed or unknown id fails as yagna words it per `call`.

    `call` is "get" (GET /agreements/{id}, terminate/reason), "wait", "terminate", or
    "confirm" (confirm, cancel: like wait, they name the id with its `R-` prefix).
    """
    agreement_id = request.match_info["agreementId"]
    problem = agreement_id_problem(agreement_id)
    if problem is not None:
        if call == "terminate":
            raise ApiError(
                500,
                f"Failed to get Agreement [{agreement_id}]. Error: Invalid Agreement id: {problem}",
            )
        prefix = "Invalid agreement id." if call == "wait" else "Invalid Agreement id."
        raise ApiError(400, f"{prefix} {problem}")
    agreement = _net(request).agreements.get(agreement_id)
    if agreement is None:
        named = agreement_id if call in ("get", "terminate") else f"R-{agreement_id}"
        raise ApiError(404, f"Agreement [{named}] not found.")
    return agreement


async def _demand_offer(request: web.Request) -> tuple[dict[str, Any], str]:
    body = await _object_body(request)
    properties, constraint_text = body.get("properties"), body.get("constraints")
    if not isinstance(properties, dict) or not isinstance(constraint_text, str):
        raise ApiError(400, "Json deserialize error: `properties` (object) and `constraints`")
    return properties, constraint_text


# -------------------------------------------------------------------- identity
async def get_me(request: web.Request) -> web.Response:
    net = _net(request)
    name = net.config.requestor.name
    return _json({"identity": net.requestor_id, "name": name, "role": "manager"})


# ---------------------------------------------------------------------- market
async def subscribe_demand(request: web.Request) -> web.Response:
    properties, constraint_text = await _demand_offer(request)
    # Constraints are not validated here (yagna answers 201 for any text).
    demand = _net(request).market.subscribe_demand(properties, constraint_text)
    return _json(demand.id, 201)


async def get_demands(request: web.Request) -> web.Response:
    net = _net(request)
    return _json([d.to_json(net.requestor_id) for d in net.demands.values()])


async def unsubscribe_demand(request: web.Request) -> web.Response:
    _net(request).market.unsubscribe_demand(_subscription_id(request))
    return _no_content()


async def collect_offers(request: web.Request) -> web.Response:
    demand = _demand(request)
    events = await demand.events.collect(
        wait_seconds=_timeout(request), max_events=_max_events(request)
    )
    if events is None:
        raise ApiError(404, f"Subscription [{demand.id}] not found. Could be unsubscribed.")
    return _json(events)


async def get_proposal_offer(request: web.Request) -> web.Response:
    proposal_id = _proposal_id(request)
    proposal = _net(request).market.proposal_of(_demand(request), proposal_id)
    return _json(proposal.to_json())


async def counter_proposal_demand(request: web.Request) -> web.Response:
    proposal_id = _proposal_id(request)
    demand = _demand(request)
    properties, constraint_text = await _demand_offer(request)
    counter = _net(request).market.counter_proposal(
        demand, proposal_id, properties, constraint_text
    )
    return _json(counter.id, 200)  # yagna answers 200; the spec says 201


async def reject_proposal_offer(request: web.Request) -> web.Response:
    proposal_id = _proposal_id(request)
    demand = _demand(request)
    _net(request).market.reject_proposal(demand, proposal_id, await _reason(request))
    return _no_content()


async def create_agreement(request: web.Request) -> web.Response:
    body = await _object_body(request)
    proposal_id, valid_to = body.get("proposalId"), body.get("validTo")
    if not isinstance(proposal_id, str) or not isinstance(valid_to, str):
        raise ApiError(400, "Json deserialize error: `proposalId` and `validTo` are required")
    try:
        parse_iso(valid_to)
    except ValueError:
        raise ApiError(400, f"Invalid validTo: {valid_to!r}") from None
    agreement = _net(request).market.create_agreement(proposal_id, valid_to)
    return _json(agreement.id, 200)  # yagna answers 200; the spec says 201


async def get_agreement(request: web.Request) -> web.Response:
    return _json(_agreement(request).to_json(_net(request).requestor_id))


async def confirm_agreement(request: web.Request) -> web.Response:
    _net(request).market.confirm_agreement(_agreement(request, call="confirm"))
    return _no_content()


async def wait_for_approval(request: web.Request) -> web.Response:
    agreement = _agreement(request, call="wait")
    await _net(request).market.wait_for_approval(agreement, _timeout(request))
    return _no_content()


async def cancel_agreement(request: web.Request) -> web.Response:
    agreement = _agreement(request, call="confirm")
    _net(request).market.cancel_agreement(agreement, await _reason(request))
    return _no_content()


async def terminate_agreement(request: web.Request) -> web.Response:
    agreement = _agreement(request, call="terminate")
    await _net(request).market.terminate_agreement(agreement, "Requestor", await _reason(request))
    return web.Response(status=200)  # yagna: 200 with an empty body; the spec says 204


async def terminate_reason(request: web.Request) -> web.Response:
    agreement = _agreement(request)
    if agreement.state != "Terminated" or agreement.terminated_date is None:
        # yagna names the agreement with its provider-side (`P-`) id here.
        raise ApiError(400, f"Agreement [P-{agreement.id}] not terminated yet.")
    event = _net(request).market.terminated_event(agreement)
    event["signature"] = ""  # yagna 0.17.6 leaves it empty in this answer
    return _json(event)


async def collect_agreement_events(request: web.Request) -> web.Response:
    events = await _net(request).market.agreement_events.collect(
        after=_after(request), wait_seconds=_timeout(request), max_events=_max_events(request)
    )
    return _json(events)


# -------------------------------------------------------------------- activity
async def _activity_of(request: web.Request) -> Activity:
    """The activity, after waiting as its provider would (latency, unresponsiveness)."""
    net = _net(request)
    activity = net.exeunits.activity(request.match_info["activityId"])
    await activity.provider.react()
    return activity


async def create_activity(request: web.Request) -> web.Response:
    body = await _body(request)
    if isinstance(body, str):
        agreement_id = body
    elif isinstance(body, dict) and isinstance(body.get("agreementId"), str):
        agreement_id = body["agreementId"]
    else:
        raise ApiError(400, "Json deserialize error: `agreementId` is required")
    activity = await _net(request).exeunits.create_activity(agreement_id)
    # yagna answers 200 here although the OpenAPI definition says 201 (yagna-offline.md),
    # and in the shape it was asked: a bare id for a bare id, else {"activityId": ...}.
    if isinstance(body, str):
        return _json(activity.id, 200)
    return _json({"activityId": activity.id}, 200)


async def exec_script(request: web.Request) -> web.Response:
    activity = await _activity_of(request)
    body = await _object_body(request)
    text = body.get("text")
    if not isinstance(text, str):
        raise ApiError(400, "Json deserialize error: `text` is required")
    batch = _net(request).exeunits.exec_script(activity, text)
    return _json(batch.id)


async def get_exec_results(request: web.Request) -> web.Response:
    activity = await _activity_of(request)
    results = await _net(request).exeunits.results(
        activity,
        request.match_info["batchId"],
        _timeout(request),
        _int_param(request, "commandIndex", None),
    )
    return _json(results)


async def get_activity_state(request: web.Request) -> web.Response:
    activity = await _activity_of(request)
    return _json(activity.state_json())


async def get_activity_usage(request: web.Request) -> web.Response:
    activity = await _activity_of(request)
    net = _net(request)
    now = int(datetime.now(UTC).timestamp())
    return _json({"currentUsage": net.exeunits.usage(activity), "timestamp": now})


async def get_activity_agreement(request: web.Request) -> web.Response:
    activity = _net(request).exeunits.activity(request.match_info["activityId"])
    return _json(activity.agreement.id)


async def get_running_commands(request: web.Request) -> web.Response:
    activity = await _activity_of(request)
    running = []
    for batch in activity.batches.values():
        if batch.running_index is not None:
            command = batch.commands[batch.running_index]
            running.append({"batchId": batch.id, "command": next(iter(command))})
    return _json(running)


async def destroy_activity(request: web.Request) -> web.Response:
    activity = await _activity_of(request)
    # Destroyed by the requestor: no reason in the state afterwards (as yagna shows it).
    await _net(request).exeunits.end_activity(activity, None, error=None)
    return _json(None, 200)


# --------------------------------------------------------------------- payment
def _parse_allocation_ids(request: web.Request) -> list[str]:
    raw = request.query.getall("allocationIds", [])
    ids = [part for value in raw for part in value.split(",") if part]
    if not ids:
        raise ApiError(400, "Query deserialize error: missing field `allocationIds`")
    return ids


async def create_allocation(request: web.Request) -> web.Response:
    allocation = _net(request).payments.create_allocation(await _object_body(request))
    return _json(allocation.to_json(), 201)


async def get_allocations(request: web.Request) -> web.Response:
    # As yagna 0.17.6 lists them: live ones, least recently updated first; afterTimestamp
    # compares with the allocation's expiry (not its creation), maxItems cuts the list.
    net = _net(request)
    after = _after(request)
    limit = _int_param(request, "maxItems", None)
    live = sorted(
        (a for a in net.allocations.values() if not a.released),
        key=lambda a: a.updated or a.timestamp,
    )
    chosen = [a for a in live if after is None or a.expires > after]
    return _json([a.to_json() for a in (chosen[:limit] if limit else chosen)])


async def get_allocation(request: web.Request) -> web.Response:
    return _json(_net(request).payments.allocation(request.match_info["allocationId"]).to_json())


async def amend_allocation(request: web.Request) -> web.Response:
    net = _net(request)
    allocation = net.payments.allocation(request.match_info["allocationId"])
    body = await _object_body(request)
    if "totalAmount" in body:
        try:
            total = parse_amount(body["totalAmount"])
        except ValueError as error:
            raise ApiError(400, f"Invalid totalAmount: {error}") from None
        # yagna 0.17.6's words (amend_allocation_fields).
        if total < allocation.spent:
            raise ApiError(400, "New allocation would be smaller than the already spent amount")
    timeout = body.get("timeout")
    if isinstance(timeout, str):
        try:
            when = datetime.fromisoformat(timeout.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, f"Invalid timeout: {timeout!r}") from None
        if when < stamp():
            raise ApiError(400, "New allocation timeout is in the past")
    if "totalAmount" in body:
        allocation.total = total
    if isinstance(timeout, str):
        allocation.timeout = timeout
    allocation.updated = stamp()
    return _json(allocation.to_json())


async def release_allocation(request: web.Request) -> web.Response:
    _net(request).payments.release_allocation(request.match_info["allocationId"])
    return _json(None, 200)


async def demand_decorations(request: web.Request) -> web.Response:
    net = _net(request)
    allocations = [net.payments.allocation(i) for i in _parse_allocation_ids(request)]
    properties: list[dict[str, str]] = []
    constraint_list: list[str] = []
    for platform in sorted({a.platform for a in allocations}):
        address = next(a.address for a in allocations if a.platform == platform)
        key = f"golem.com.payment.platform.{platform}.address"
        properties.append({"key": key, "value": address})
        constraint_list.append(f"(golem.com.payment.platform.{platform}.address=*)")
    properties.append({"key": "golem.com.payment.protocol.version", "value": "3"})
    return _json({"properties": properties, "constraints": constraint_list})


def _listing(request: web.Request, documents: list[Document]) -> list[Document]:
    after = _after(request)
    limit = _int_param(request, "maxItems", None)
    chosen = [d for d in documents if after is None or d.timestamp > after]
    return chosen[:limit] if limit else chosen


def document_handlers(kind: DocumentKind) -> dict[str, Handler]:
    """The REST handlers of one kind of payment document (debit notes, invoices)."""

    def document(request: web.Request) -> Document:
        return _net(request).payments.document(kind, request.match_info[kind.id_key])

    async def listing(request: web.Request) -> web.Response:
        payments = _net(request).payments
        documents = _listing(request, list(payments.documents[kind].values()))
        return _json([payments.document_json(d) for d in documents])

    async def one(request: web.Request) -> web.Response:
        return _json(_net(request).payments.document_json(document(request)))

    async def accept(request: web.Request) -> web.Response:
        _net(request).payments.accept(document(request), await _object_body(request))
        return web.Response(status=200)

    async def reject(request: web.Request) -> web.Response:
        _net(request).payments.reject(document(request), await _object_body(request))
        return web.Response(status=200)

    async def events(request: web.Request) -> web.Response:
        found = (
            await _net(request)
            .payments.events[kind]
            .collect(
                after=_after(request),
                wait_seconds=_timeout(request),
                max_events=_max_events(request),
            )
        )
        return _json(found)

    return {"list": listing, "get": one, "accept": accept, "reject": reject, "events": events}


# ------------------------------------------------------------------------- net
async def _net_body(request: web.Request) -> dict[str, Any]:
    """The net API's JSON body; its extractor errors come in plain text."""
    try:
        return await _object_body(request)
    except ApiError as error:
        raise PlainError(error.status, error.message) from None


async def get_networks(request: web.Request) -> web.Response:
    return _json([n.to_json() for n in _net(request).vpn.list_networks()])


async def create_network(request: web.Request) -> web.Response:
    return _json(_net(request).vpn.create_network(await _net_body(request)).to_json())


async def get_network(request: web.Request) -> web.Response:
    return _json(_net(request).vpn.network(request.match_info["networkId"]).to_json())


async def remove_network(request: web.Request) -> web.Response:
    await _net(request).vpn.remove_network(request.match_info["networkId"])
    return _json(None)


async def get_addresses(request: web.Request) -> web.Response:
    network = _net(request).vpn.network(request.match_info["networkId"])
    return _json([{"ip": ip} for ip in network.addresses])


async def add_address(request: web.Request) -> web.Response:
    vpn = _net(request).vpn
    vpn.add_address(request.match_info["networkId"], await _net_body(request))
    return _json(None)


async def get_nodes(request: web.Request) -> web.Response:
    network = _net(request).vpn.network(request.match_info["networkId"])
    return _json([{"id": node_id, "ip": ip} for ip, node_id in network.nodes.items()])


async def add_node(request: web.Request) -> web.Response:
    body = await _net_body(request)
    await _net(request).vpn.add_node_and_route(request.match_info["networkId"], body)
    return _json(None)


async def remove_node(request: web.Request) -> web.Response:
    network_id, node_id = request.match_info["networkId"], request.match_info["nodeId"]
    await _net(request).vpn.remove_node_and_route(network_id, node_id)
    return _json(None)


async def connect_tcp(request: web.Request) -> web.StreamResponse:
    """The TCP websocket: binary frames both ways, relayed to ip:port inside the activity."""
    vpn = _net(request).vpn
    ip = request.match_info["ip"]
    try:
        port = int(request.match_info["port"])
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise PlainError(404, f"invalid port: {request.match_info['port']}")
    activity = vpn.target(request.match_info["networkId"], ip)
    try:
        sock = await vpn.open_tcp(activity, ip, port)
    except (OSError, TimeoutError) as error:
        log.info("TCP tunnel to %s:%s in activity %s failed: %s", ip, port, activity.id, error)
        raise BareError(504) from None
    ws = web.WebSocketResponse(autoping=True, heartbeat=None)
    try:
        await ws.prepare(request)
        await _relay(ws, sock)
    finally:
        close_quietly(sock)
    return ws


async def _relay(ws: web.WebSocketResponse, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()

    async def to_activity() -> None:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                await loop.sock_sendall(sock, message.data)
            elif message.type == WSMsgType.TEXT:
                await loop.sock_sendall(sock, message.data.encode())
        # The requestor closed: the activity's side reads end-of-stream.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    async def to_requestor() -> None:
        while data := await loop.sock_recv(sock, 65536):
            await ws.send_bytes(data)

    sending = asyncio.ensure_future(to_activity())
    receiving = asyncio.ensure_future(to_requestor())
    try:
        await asyncio.wait({receiving, sending}, return_when=asyncio.FIRST_COMPLETED)
        if sending.done() and not receiving.done():
            # Half-closed by the requestor: let the activity finish its answer, bounded.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(receiving), 5)
    finally:
        for task in (sending, receiving):
            task.cancel()
        await asyncio.gather(sending, receiving, return_exceptions=True)
        await ws.close()


# ----------------------------------------------------------------------- admin
def _admin_activity(request: web.Request) -> Activity:
    activity_id = request.match_info["activityId"]
    activity = _net(request).activities.get(activity_id)
    if activity is None:
        raise ApiError(404, f"Activity [{activity_id}] not found.")
    return activity


async def audit(request: web.Request) -> web.Response:
    return _json(_net(request).audit())


async def read_activity_file(request: web.Request) -> web.Response:
    activity = _admin_activity(request)
    path = request.query.get("path")
    if not path:
        raise ApiError(400, "query parameter `path` is required")
    if activity.sandbox is None:
        raise ApiError(404, f"Activity [{activity.id}] was never deployed.")
    try:
        host_path = activity.sandbox.host_path(path)
    except SandboxError as error:
        raise ApiError(400, str(error)) from None
    if not host_path.is_file():
        raise ApiError(404, f"{path} not found in activity [{activity.id}].")
    return web.Response(body=host_path.read_bytes(), content_type="application/octet-stream")


async def set_provider_faults(request: web.Request) -> web.Response:
    net = _net(request)
    provider = net.providers.get(request.match_info["name"])
    if provider is None:
        raise ApiError(404, f"Provider [{request.match_info['name']}] not found.")
    body = await _admin_body(request)
    try:
        faults = Faults.model_validate({**provider.faults.model_dump(), **body})
    except ValidationError as error:
        raise ApiError(400, format_validation_error(error)) from None
    provider.set_faults(faults)
    return _json({"provider": provider.name, "faults": faults.model_dump(mode="json")})


async def set_daemon_faults(request: web.Request) -> web.Response:
    """Replace every daemon fault (an empty list clears them).

    The body is the list itself (PUT) or `{"faults": [DaemonFault, ...]}` (POST).
    """
    net = _net(request)
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body must be JSON: a list of daemon faults") from None
    entries = body.get("faults", []) if isinstance(body, dict) else body
    if not isinstance(entries, list):
        raise ApiError(400, "faults: a list of daemon faults is required")
    try:
        faults = TypeAdapter(list[DaemonFault]).validate_python(entries)
    except ValidationError as error:
        raise ApiError(400, "faults" + format_validation_error(error)) from None
    net.daemon_faults.replace(faults)
    return _json(net.daemon_faults.to_json())


async def get_daemon_faults(request: web.Request) -> web.Response:
    return _json(_net(request).daemon_faults.to_json())


async def crash_activity(request: web.Request) -> web.Response:
    net = _net(request)
    activity = _admin_activity(request)
    await net.exeunits.crash_activity(activity)
    return _json(activity.state_json())


async def list_images(request: web.Request) -> web.Response:
    catalog = _net(request).images
    tags_by_hash: dict[str, list[str]] = {}
    for tag, digest in catalog.tags.items():
        tags_by_hash.setdefault(digest, []).append(tag)
    return _json(
        [
            {
                "tag": entry.tag,
                "tags": sorted(tags_by_hash.get(entry.hash, [])),
                "hash": entry.hash,
                "url": catalog.link(entry.hash),
                "size": len(entry.package),
                "taskPackage": catalog.task_package(entry.hash),
            }
            for entry in catalog.entries.values()
        ]
    )


async def retag_image(request: web.Request) -> web.Response:
    """Point a registry tag at another image: `{"tag": "x:y", "hash": "<sha3>"}`."""
    body = await _admin_body(request)
    tag, digest = body.get("tag"), body.get("hash")
    if not isinstance(tag, str) or not tag or not isinstance(digest, str):
        return _json({"message": "`tag` and `hash` must be strings"}, 400)
    try:
        _net(request).images.retag(tag, digest.lower())
    except KeyError:
        return _json({"message": f"no image with hash {digest}"}, 404)
    return _json({"tag": tag, "hash": digest.lower()})


async def registry_image_info(request: web.Request) -> web.Response:
    """The Golem image registry's `GET /v1/image/info?tag=...|hash=...` (count/dev ignored)."""
    catalog = _net(request).images
    tag, digest = request.query.get("tag"), request.query.get("hash")
    if (tag is None) == (digest is None):
        return _json({"message": "give exactly one of the query parameters tag or hash"}, 400)
    entry = catalog.lookup(tag=tag, digest=digest)
    if entry is None:
        what = f"tag {tag}" if tag is not None else f"hash {digest}"
        return web.Response(status=404, text=f"image not found: {what}")
    return _json(catalog.info(entry, tag))


async def registry_download(request: web.Request) -> web.Response:
    entry = _net(request).images.lookup(digest=request.match_info["hash"])
    if entry is None:
        return web.Response(status=404, text="image not found")
    return web.Response(body=entry.package, content_type="application/octet-stream")


async def list_providers(request: web.Request) -> web.Response:
    net = _net(request)
    return _json(
        [
            {
                "name": p.name,
                "nodeId": p.node_id,
                "faults": p.faults.model_dump(mode="json"),
                "agreements": sorted(p.agreements),
                "offer": p.offer_properties(),
            }
            for p in net.providers.values()
        ]
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/me", get_me)
    r.add_post(f"{MARKET}/demands", subscribe_demand)
    r.add_get(f"{MARKET}/demands", get_demands)
    r.add_delete(f"{MARKET}/demands/{{subscriptionId}}", unsubscribe_demand)
    r.add_get(f"{MARKET}/demands/{{subscriptionId}}/events", collect_offers)
    r.add_get(f"{MARKET}/demands/{{subscriptionId}}/proposals/{{proposalId}}", get_proposal_offer)
    r.add_post(
        f"{MARKET}/demands/{{subscriptionId}}/proposals/{{proposalId}}", counter_proposal_demand
    )
    r.add_post(
        f"{MARKET}/demands/{{subscriptionId}}/proposals/{{proposalId}}/reject",
        reject_proposal_offer,
    )
    r.add_post(f"{MARKET}/agreements", create_agreement)
    r.add_get(f"{MARKET}/agreements/{{agreementId}}", get_agreement)
    r.add_post(f"{MARKET}/agreements/{{agreementId}}/confirm", confirm_agreement)
    r.add_post(f"{MARKET}/agreements/{{agreementId}}/wait", wait_for_approval)
    r.add_post(f"{MARKET}/agreements/{{agreementId}}/cancel", cancel_agreement)
    r.add_post(f"{MARKET}/agreements/{{agreementId}}/terminate", terminate_agreement)
    # yagna serves GET (a POST, as the spec has it, gets 404 there and here).
    r.add_get(f"{MARKET}/agreements/{{agreementId}}/terminate/reason", terminate_reason)
    r.add_get(f"{MARKET}/agreementEvents", collect_agreement_events)

    r.add_post(f"{ACTIVITY}/activity", create_activity)
    r.add_post(f"{ACTIVITY}/activity/{{activityId}}/exec", exec_script)
    r.add_get(f"{ACTIVITY}/activity/{{activityId}}/exec/{{batchId}}", get_exec_results)
    r.add_get(f"{ACTIVITY}/activity/{{activityId}}/state", get_activity_state)
    r.add_get(f"{ACTIVITY}/activity/{{activityId}}/usage", get_activity_usage)
    r.add_get(f"{ACTIVITY}/activity/{{activityId}}/agreement", get_activity_agreement)
    r.add_get(f"{ACTIVITY}/activity/{{activityId}}/command", get_running_commands)
    r.add_delete(f"{ACTIVITY}/activity/{{activityId}}", destroy_activity)

    r.add_post(f"{PAYMENT}/allocations", create_allocation)
    r.add_get(f"{PAYMENT}/allocations", get_allocations)
    r.add_get(f"{PAYMENT}/allocations/{{allocationId}}", get_allocation)
    r.add_put(f"{PAYMENT}/allocations/{{allocationId}}", amend_allocation)
    r.add_delete(f"{PAYMENT}/allocations/{{allocationId}}", release_allocation)
    r.add_get(f"{PAYMENT}/demandDecorations", demand_decorations)
    for kind in DOCUMENT_KINDS:
        handlers = document_handlers(kind)
        one = f"{PAYMENT}/{kind.collection}/{{{kind.id_key}}}"
        r.add_get(f"{PAYMENT}/{kind.collection}", handlers["list"])
        r.add_get(one, handlers["get"])
        r.add_post(f"{one}/accept", handlers["accept"])
        r.add_post(f"{one}/reject", handlers["reject"])
        r.add_get(f"{PAYMENT}/{kind.events_path}", handlers["events"])

    r.add_get(f"{NET}/net", get_networks)
    r.add_post(f"{NET}/net", create_network)
    r.add_get(f"{NET}/net/{{networkId}}", get_network)
    r.add_delete(f"{NET}/net/{{networkId}}", remove_network)
    r.add_get(f"{NET}/net/{{networkId}}/addresses", get_addresses)
    r.add_post(f"{NET}/net/{{networkId}}/addresses", add_address)
    r.add_get(f"{NET}/net/{{networkId}}/nodes", get_nodes)
    r.add_post(f"{NET}/net/{{networkId}}/nodes", add_node)
    r.add_delete(f"{NET}/net/{{networkId}}/nodes/{{nodeId}}", remove_node)
    r.add_get(f"{NET}/net/{{networkId}}/tcp/{{ip}}/{{port}}", connect_tcp)

    r.add_get(f"{ADMIN}/audit", audit)
    r.add_get(f"{ADMIN}/images", list_images)
    r.add_post(f"{ADMIN}/images/tags", retag_image)
    r.add_get(f"{REGISTRY}/info", registry_image_info)
    r.add_get(f"{DOWNLOAD_PATH}/{{hash}}", registry_download)
    r.add_get(f"{ADMIN}/providers", list_providers)
    r.add_put(f"{ADMIN}/daemon-faults", set_daemon_faults)
    r.add_get(f"{ADMIN}/activities/{{activityId}}/files", read_activity_file)
    r.add_post(f"{ADMIN}/activities/{{activityId}}/crash", crash_activity)
    r.add_post(f"{ADMIN}/providers/{{name}}/faults", set_provider_faults)
    r.add_get(f"{ADMIN}/daemon-faults", get_daemon_faults)
    r.add_post(f"{ADMIN}/daemon-faults", set_daemon_faults)
