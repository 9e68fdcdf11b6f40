"""The anchor process of the yagna test network namespace (run by `tests/support/yagna.py`).

Started as `unshare --net -- python yagna_netns_host.py ...`, so it lives in a fresh network
namespace that has only `lo`. It brings `lo` up, checks that no other interface exists, serves the
fake Ethereum JSON-RPC (`yagna_fakechain.py`) on 127.0.0.1 inside the namespace, and bridges the
host: it inherits a listening TCP socket that the test process bound on the HOST's 127.0.0.1
before the unshare (a socket keeps the namespace it was created in), and relays every connection
accepted there to yagna's REST port on the namespace's 127.0.0.1. Nothing else crosses over.
It prints READY once serving, and exits on SIGTERM/SIGINT or when its parent dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
from pathlib import Path

from aiohttp import web

# This module runs as a script; its sibling is imported through the tests folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support import yagna_fakechain

PR_SET_PDEATHSIG = 1
RELAY_CHUNK = 65536


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM us if the test process dies without tearing down."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def loopback_only() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Ask the kernel (netlink), not /sys: sysfs shows the namespace it was mounted in.
    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        raise SystemExit(f"namespace is not loopback-only: interfaces {interfaces}")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(RELAY_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def relay_one(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, target_port: int
) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()  # yagna not listening (yet, or any more): the client sees a reset
        return
    try:
        await asyncio.gather(
            _pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer)
        )
    finally:
        for writer in (client_writer, upstream_writer):
            with contextlib.suppress(OSError):
                writer.close()


async def serve(args: argparse.Namespace) -> None:
    chain = yagna_fakechain.FakeChain()
    runner = web.AppRunner(yagna_fakechain.make_app(chain), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.chain_port).start()

    host_side = socket.socket(fileno=args.relay_fd)
    host_side.setblocking(False)
    relay = await asyncio.start_server(lambda r, w: relay_one(r, w, args.api_port), sock=host_side)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("READY", flush=True)
    await stop.wait()
    relay.close()
    await runner.cleanup()
    logging.info("fake chain calls: %s; unknown: %s", chain.seen, chain.unknown)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--relay-fd", type=int, required=True)
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--chain-port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    die_with_parent()
    loopback_only()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
