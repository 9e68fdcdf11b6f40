"""The anchor process of a loopback-only network namespace for real yagna daemons.

Used by the contract suite's yagna fixture (`tests/support/yagna.py`) and by the private real
network (`realnet.network`). Started as
`unshare --net -- python -m golem_operator.realnet.netns_host ...`, so it lives in a fresh network
namespace that has only `lo`. It brings `lo` up, checks that no other interface exists, serves the
stand-in chain RPC (`realnet.fakechain`) on 127.0.0.1 inside the namespace (and, when asked, a
folder of image packages over HTTP, for exe-unit's downloads), and bridges the
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

from aiohttp import web

from golem_operator.realnet import fakechain

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
    chain = fakechain.FakeChain()
    runner = web.AppRunner(fakechain.make_app(chain), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.chain_port).start()
    images: web.AppRunner | None = None
    if args.images_dir:
        app = web.Application()
        app.router.add_static("/", args.images_dir, show_index=False, follow_symlinks=False)
        images = web.AppRunner(app, access_log=None)
        await images.setup()
        await web.TCPSite(images, "127.0.0.1", args.images_port).start()

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
    if images is not None:
        await images.cleanup()
    await runner.cleanup()
    logging.info("fake chain calls: %s; unknown: %s", chain.seen, chain.unknown)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--relay-fd", type=int, required=True)
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--chain-port", type=int, required=True)
    parser.add_argument("--images-dir", help="serve this folder over HTTP inside the namespace")
    parser.add_argument("--images-port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    die_with_parent()
    loopback_only()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
