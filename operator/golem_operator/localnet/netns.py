"""Sockets inside a sandbox's network namespace.

Used by `localnet.vpn` (TCP tunnels into an activity) and `localnet.outbound` (listeners of
the targets a manifest grants): a socket belongs to the namespace it was created in, so one
made there connects or listens only inside the sandbox, whatever thread uses it later.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from typing import Any

_CLONE_NEWNET = 0x40000000


def socket_in_netns(pid: int) -> socket.socket:
    """A TCP socket created in the network namespace of `pid`.

    A socket belongs to the namespace it was created in. A short-lived thread of its own
    switches its namespace (per thread for CLONE_NEWNET), creates the socket and switches
    back, so no other thread ever runs in the sandbox's namespace.
    """
    result: dict[str, Any] = {}

    def work() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the sandbox network failed")
            # Back to the host namespace; were that to fail, the thread ends here anyway.
            result["socket"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            libc.setns(own, _CLONE_NEWNET)
        except BaseException as error:
            result["error"] = error
        finally:
            os.close(own)
            os.close(target)

    thread = threading.Thread(target=work, name="localnet-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    created: socket.socket = result["socket"]
    return created


def close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
