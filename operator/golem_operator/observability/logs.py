"""Logging as text or JSON, with the resource's namespace/name on every line.

`setup` is called once by the runner. Service code logs through `for_service`, an adapter that
adds the object's identity; kopf's own per-object loggers carry it in `k8s_obj`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "resource"):
            # kopf's per-object loggers carry the object as `k8s_ref`.
            ref = getattr(record, "k8s_ref", None)
            if isinstance(ref, dict) and ref.get("name"):
                record.resource = f"{ref.get('namespace') or ''}/{ref['name']}"
            else:
                record.resource = "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "resource": getattr(record, "resource", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_Context())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s [%(resource)s] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiohttp.access", "kubernetes_asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class ServiceLogger(logging.LoggerAdapter[logging.Logger]):
    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs.setdefault("extra", {})["resource"] = self.extra["resource"] if self.extra else "-"
        return msg, kwargs


def for_service(name: str, namespace: str, service: str) -> ServiceLogger:
    return ServiceLogger(logging.getLogger(name), {"resource": f"{namespace}/{service}"})
