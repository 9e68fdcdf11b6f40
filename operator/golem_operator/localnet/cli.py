"""`golem-operator local-network`: run the local Golem network until interrupted.

The package's `golem_operator.cli` calls `add_arguments` on its subparser and `run` with the
parsed namespace. The app key is read from --app-key-file, or generated and written there
(or to a temporary file); only the file's path is printed, never the key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path

from golem_operator.localnet.config import ConfigError, LocalNetConfig, load_config
from golem_operator.localnet.server import LocalNetwork

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="providers YAML (default: two providers)")
    parser.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1 is accepted")
    parser.add_argument("--port", type=int, default=7465)
    parser.add_argument(
        "--app-key-file",
        type=Path,
        help="file holding the app key; created with a new key when missing",
    )


def _app_key(path: Path | None) -> tuple[str, Path]:
    if path is not None and path.exists():
        key = path.read_text().strip()
        if not key:
            raise ConfigError(f"{path}: the app key file is empty")
        return key, path
    key = secrets.token_hex(16)
    if path is None:
        handle, name = tempfile.mkstemp(prefix="localnet-appkey-")
        os.close(handle)
        path = Path(name)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key, path


async def _serve(config: LocalNetConfig, key: str, host: str, port: int) -> None:
    network = LocalNetwork(config, app_key=key)
    url = await network.start(host, port)
    print(f"local Golem network listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await network.stop()


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config) if args.config else LocalNetConfig()
        key, key_path = _app_key(args.app_key_file)
    except (ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"app key in {key_path}", flush=True)
    try:
        asyncio.run(_serve(config, key, args.host, args.port))
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    """Standalone entry: `python -m golem_operator.localnet.cli`."""
    parser = argparse.ArgumentParser(prog="golem-localnet", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
