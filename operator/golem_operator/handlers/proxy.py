"""The operator's proxy for one GolemService's spec.ports: a listener per port, each connection
carried to a Running instance through yagna's TCP tunnel over the service's VPN.

Owned by the service worker, which opens and closes the listeners as spec.ports changes and
closes them when it stops (deletion, pause, shutdown). Each accepted connection is its own
task: the instance is chosen by `core.balancing` (another one when the tunnel cannot be
opened), then bytes are pumped both ways until either side ends or nothing moved for the idle
timeout. One connection's failure closes that connection only; it is counted in the proxy
metrics by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from golem_operator.api.spec import ServicePort
from golem_operator.core import balancing
from golem_operator.golem import (
    GolemError,
    GolemForbidden,
    GolemNotFound,
    GolemTimeout,
    GolemUnavailable,
)
from golem_operator.golem.net import NetApi, TcpTunnel
from golem_operator.observability import metrics

#: Bytes read from the client at a time (one websocket frame at most).
CHUNK = 65536


class ProxyHost(Protocol):
    """What the proxy needs from its service: where connections may go, and how."""

    namespace: str
    name: str

    def backends(self) -> list[balancing.Backend]: ...

    def net_api(self) -> NetApi | None: ...


@dataclass(frozen=True)
class ProxySettings:
    #: Where the listeners bind (the operator's pod IP).
    address: str
    connect_timeout: float
    #: 0: no idle timeout.
    idle_timeout: float


class _IdleTimeout(Exception):
    pass


@dataclass
class _Listener:
    name: str
    #: The port inside the instances (may change while the listener stays).
    target_port: int
    server: asyncio.Server
    port: int


class ServiceProxy:
    def __init__(
        self, host: ProxyHost, settings: ProxySettings, log: logging.LoggerAdapter[logging.Logger]
    ) -> None:
        self.host = host
        self.settings = settings
        self.log = log
        self.listeners: dict[str, _Listener] = {}
        #: Open connections per instance (the balancing's load).
        self.open_connections: dict[str, int] = {}
        self._turn = 0
        #: The tasks of open connections, per listener name.
        self._connections: dict[str, set[asyncio.Task[None]]] = {}

    @property
    def listener_ports(self) -> dict[str, int]:
        return {name: listener.port for name, listener in self.listeners.items()}

    async def serve(self, ports: Sequence[ServicePort]) -> dict[str, int]:
        """Listen for each of `ports` (a listener per name; one that stays keeps its port);
        stop listening for names no longer given. Returns the listener port per name."""
        wanted = {p.name: p for p in ports}
        for name in [n for n in self.listeners if n not in wanted]:
            await self._close_listener(self.listeners.pop(name))
        for name, port in wanted.items():
            listener = self.listeners.get(name)
            if listener is not None:
                listener.target_port = port.port
                continue
            self.listeners[name] = await self._open_listener(port)
        return self.listener_ports

    async def _open_listener(self, port: ServicePort) -> _Listener:
        holder: list[_Listener] = []

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._connection(holder[0], reader, writer)

        server = await asyncio.start_server(accepted, host=self.settings.address, port=0)
        bound = server.sockets[0].getsockname()[1]
        listener = _Listener(port.name, port.port, server, bound)
        holder.append(listener)
        self.log.info(
            "serving port %s (%d) on %s:%d", port.name, port.port, self.settings.address, bound
        )
        return listener

    async def _close_listener(self, listener: _Listener) -> None:
        listener.server.close()
        mine = list(self._connections.pop(listener.name, set()))
        for task in mine:
            task.cancel()
        for task in mine:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await listener.server.wait_closed()
        metrics.forget_proxy_port(self.host.namespace, self.host.name, listener.name)
        self.log.info("port %s no longer served", listener.name)

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        for name in list(self.listeners):
            await self._close_listener(self.listeners.pop(name))

    # --- one connection -------------------------------------------------------------------

    async def _connection(
        self, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        open_tasks = self._connections.setdefault(listener.name, set())
        open_tasks.add(task)
        labels = (self.host.namespace, self.host.name, listener.name)
        metrics.PROXY_CONNECTIONS.labels(*labels).inc()
        metrics.PROXY_ACTIVE.labels(*labels).inc()
        try:
            opened = await self._open_tunnel(listener, labels)
            if opened is None:
                metrics.PROXY_ERRORS.labels(*labels, "no-backend").inc()
                _reset(writer)
                return
            tunnel, instance = opened
            self.open_connections[instance] = self.open_connections.get(instance, 0) + 1
            try:
                await self._pump(reader, writer, tunnel, labels)
            finally:
                self.open_connections[instance] -= 1
                if not self.open_connections[instance]:
                    del self.open_connections[instance]
                with contextlib.suppress(Exception):
                    await tunnel.aclose()
        except asyncio.CancelledError:
            raise
        except Exception:
            # One connection's failure must not reach the listener, nor the operator.
            self.log.exception("port %s: proxied connection failed", listener.name)
            metrics.PROXY_ERRORS.labels(*labels, "stream-error").inc()
        finally:
            metrics.PROXY_ACTIVE.labels(*labels).dec()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            open_tasks.discard(task)

    async def _open_tunnel(
        self, listener: _Listener, labels: tuple[str, str, str]
    ) -> tuple[TcpTunnel, str] | None:
        """A tunnel to the listener's port of a backend: another backend each time one
        cannot be opened, until none is left."""
        tried: set[str] = set()
        while True:
            net = self.host.net_api()
            choice = balancing.choose(
                self.host.backends(), self.open_connections, tried, self._turn
            )
            self._turn += 1
            if net is None or choice is None:
                return None
            tried.add(choice.instance)
            try:
                tunnel = await asyncio.wait_for(
                    net.open_tcp(
                        choice.network_id,
                        choice.address,
                        listener.target_port,
                        timeout=self.settings.connect_timeout,
                    ),
                    self.settings.connect_timeout,
                )
            except GolemTimeout:
                # 504: nothing answers there (no server on the port, the instance gone).
                reason = "tunnel-refused"
            except (GolemForbidden, GolemNotFound):
                reason = "network-unknown"
            except GolemUnavailable as error:
                reason = "connect-timeout" if "Timeout" in error.message else "daemon-unreachable"
            except TimeoutError:
                reason = "connect-timeout"
            except GolemError:
                reason = "golem-error"
            else:
                return tunnel, choice.instance
            metrics.PROXY_ERRORS.labels(*labels, reason).inc()
            self.log.info(
                "port %s: no tunnel to %s (%s:%d): %s; trying another instance",
                listener.name,
                choice.instance,
                choice.address,
                listener.target_port,
                reason,
            )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tunnel: TcpTunnel,
        labels: tuple[str, str, str],
    ) -> None:
        """Carry bytes both ways. The tunnel's end ends the connection; the client's end of
        sending leaves the answer to come (the tunnel cannot pass a half-close on)."""
        moved = time.monotonic()
        bytes_in = metrics.PROXY_BYTES.labels(*labels, "in")
        bytes_out = metrics.PROXY_BYTES.labels(*labels, "out")

        async def upstream() -> None:
            nonlocal moved
            while data := await reader.read(CHUNK):
                moved = time.monotonic()
                await tunnel.send(data)
                bytes_in.inc(len(data))

        async def downstream() -> None:
            nonlocal moved
            while data := await tunnel.receive():
                moved = time.monotonic()
                writer.write(data)
                await writer.drain()
                bytes_out.inc(len(data))
            if writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()

        async def idle() -> None:
            limit = self.settings.idle_timeout
            if not limit:
                await asyncio.Event().wait()
            while True:
                left = moved + limit - time.monotonic()
                if left <= 0:
                    raise _IdleTimeout
                await asyncio.sleep(left)

        up = asyncio.create_task(upstream())
        down = asyncio.create_task(downstream())
        watch = asyncio.create_task(idle())
        waiting = {up, down, watch}
        try:
            while True:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if up in done and up.exception() is None and not down.done():
                    continue  # the client sent everything: the answer may still come
                break
            for task in (up, down, watch):
                error = task.exception() if task.done() and not task.cancelled() else None
                if error is not None:
                    raise error
        except _IdleTimeout:
            metrics.PROXY_ERRORS.labels(*labels, "idle-timeout").inc()
        except (ConnectionError, OSError):
            metrics.PROXY_ERRORS.labels(*labels, "connection-reset").inc()
        finally:
            for task in (up, down, watch):
                task.cancel()
            await asyncio.gather(up, down, watch, return_exceptions=True)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a reset: a client with no instance to serve it sees the connection refused
    (as kube-proxy rejects a Service without endpoints), never an empty answer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
