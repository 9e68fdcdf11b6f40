"""A stand-in Ethereum JSON-RPC endpoint (Holesky, chain id 17000) for real yagna daemons.

yagna's erc20 payment driver asks a chain RPC for balances before it lets a requestor create an
allocation. `realnet.netns_host` serves this inside its network namespace on 127.0.0.1,
before yagna starts (for the contract suite and for the private real network). Every account
holds a large ETH and GLM balance; transactions are accepted but never mined (settlement is
not under test). Unknown methods are logged and answered with a JSON-RPC
"method not found" error so a new yagna request shows up in the log, not as a hang.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web

HOLESKY_CHAIN_ID = 17000
# 10**9 whole tokens (18 decimals): large enough for any allocation a test makes.
LARGE_BALANCE = 10**27
ERC20_BALANCE_OF = "0x70a08231"
ERC20_DECIMALS = "0x313ce567"
GENESIS_SECONDS = 1_700_000_000

log = logging.getLogger("yagna-fakechain")


def _hex(value: int) -> str:
    return hex(value)


def _word(value: int) -> str:
    return "0x" + format(value, "064x")


def _block_number() -> int:
    # A block every 12 s since an arbitrary genesis: the head always looks fresh to yagna.
    return (int(time.time()) - GENESIS_SECONDS) // 12


def _block(number: int, full: bool) -> dict[str, Any]:
    del full  # no transactions are ever mined, so full and hash-only blocks look the same
    timestamp = GENESIS_SECONDS + number * 12
    return {
        "number": _hex(number),
        "hash": _word(number + 1),
        "parentHash": _word(number),
        "nonce": "0x0000000000000000",
        "sha3Uncles": _word(0),
        "logsBloom": "0x" + "00" * 256,
        "transactionsRoot": _word(0),
        "stateRoot": _word(0),
        "receiptsRoot": _word(0),
        "miner": "0x" + "00" * 20,
        "difficulty": "0x0",
        "totalDifficulty": "0x0",
        "extraData": "0x",
        "size": "0x220",
        "gasLimit": _hex(30_000_000),
        "gasUsed": "0x0",
        "timestamp": _hex(timestamp),
        "baseFeePerGas": _hex(1_000_000_000),
        "mixHash": _word(0),
        "transactions": [],
        "uncles": [],
    }


class FakeChain:
    """JSON-RPC dispatcher; `seen` counts the methods yagna called (for the session log)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.unknown: dict[str, int] = {}

    def answer(self, method: str, params: list[Any]) -> Any:
        """The result for one call; raises KeyError for a method this fake does not know."""
        self.seen[method] = self.seen.get(method, 0) + 1
        if method == "eth_chainId":
            return _hex(HOLESKY_CHAIN_ID)
        if method == "net_version":
            return str(HOLESKY_CHAIN_ID)
        if method == "eth_blockNumber":
            return _hex(_block_number())
        if method == "eth_getBalance":
            return _hex(LARGE_BALANCE)
        if method == "eth_call":
            data = str((params[0] or {}).get("data") or (params[0] or {}).get("input") or "")
            if data.startswith(ERC20_DECIMALS):
                return _word(18)
            # balanceOf, and any other view call: a large number is the useful answer.
            return _word(LARGE_BALANCE)
        if method == "eth_gasPrice":
            return _hex(1_000_000_000)
        if method == "eth_maxPriorityFeePerGas":
            return _hex(1_000_000_000)
        if method == "eth_getTransactionCount":
            return "0x0"
        if method == "eth_estimateGas":
            return _hex(100_000)
        if method == "eth_getBlockByNumber":
            tag = params[0] if params else "latest"
            number = _block_number() if not str(tag).startswith("0x") else int(str(tag), 16)
            return _block(number, bool(params[1]) if len(params) > 1 else False)
        if method == "eth_feeHistory":
            count = int(str(params[0]), 16) if str(params[0]).startswith("0x") else int(params[0])
            return {
                "oldestBlock": _hex(max(_block_number() - count + 1, 0)),
                "baseFeePerGas": [_hex(1_000_000_000)] * (count + 1),
                "gasUsedRatio": [0.5] * count,
                "reward": [[_hex(1_000_000_000)] for _ in range(count)],
            }
        if method == "eth_sendRawTransaction":
            return _word(int(time.time() * 1000))
        if method in ("eth_getTransactionReceipt", "eth_getTransactionByHash"):
            return None
        if method == "eth_getLogs":
            return []
        if method == "eth_syncing":
            return False
        if method == "web3_clientVersion":
            return "golem-operator-fakechain/1"
        self.unknown[method] = self.unknown.get(method, 0) + 1
        raise KeyError(method)

    def _one(self, call: dict[str, Any]) -> dict[str, Any]:
        method = str(call.get("method", ""))
        params = call.get("params") or []
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": call.get("id")}
        try:
            reply["result"] = self.answer(method, list(params))
        except KeyError:
            log.warning("fake chain: unknown JSON-RPC method %s params=%s", method, params)
            reply["error"] = {"code": -32601, "message": f"method {method} not found"}
        except (IndexError, ValueError, TypeError, AttributeError) as err:
            log.warning("fake chain: bad params for %s: %s (%s)", method, params, err)
            reply["error"] = {"code": -32602, "message": "invalid params"}
        return reply

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except json.JSONDecodeError:
            return web.json_response(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse"}}
            )
        if isinstance(body, list):
            return web.json_response([self._one(call) for call in body])
        return web.json_response(self._one(body))


def make_app(chain: FakeChain) -> web.Application:
    app = web.Application()
    app.router.add_post("/", chain.handle)
    app.router.add_post("/{tail:.*}", chain.handle)
    return app
