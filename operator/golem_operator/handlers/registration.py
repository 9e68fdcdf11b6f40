"""kopf registration: every handler of the operator, each delegating to the engine.

The only module that imports kopf's decorators. Handlers return quickly; the service workers
do the work in the background and report through status and Events.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from golem_operator import constants
from golem_operator.config import OperatorConfig
from golem_operator.handlers.diffbase import DigestingDiffBaseStorage
from golem_operator.handlers.engine import Engine, Peering, force_delete_requested
from golem_operator.handlers.kube import Kube
from golem_operator.observability import metrics

RESOURCE = (constants.GROUP, constants.VERSION, constants.PLURAL)
INSTANCES = (constants.GROUP, constants.VERSION, constants.INSTANCE_PLURAL)
_state: dict[str, Engine] = {}


def engine() -> Engine:
    return _state["engine"]


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = memo.get("config") or OperatorConfig.from_env()
    settings.peering.standalone = not memo.get("peering")
    if memo.get("peering"):
        settings.peering.name = memo["peering"]
        settings.peering.mandatory = True
    settings.persistence.finalizer = constants.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=constants.ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = DigestingDiffBaseStorage(
        prefix=constants.ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Avoid kopf's silent watch-stream death: reconnect regularly.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 60
    if memo.get("metrics", True) and config.metrics_port:
        metrics.serve(config.metrics_port, config.bind_address)
    kube = await Kube.connect()
    peering = None
    if memo.get("peering"):
        peering = Peering(
            memo["peering"],
            memo["identity"],
            int(memo.get("priority") or 0),
            None if memo.get("clusterwide", True) else list(memo.get("namespaces") or []),
        )
    _state["engine"] = Engine(config, kube, peering)
    engine().start()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if "engine" in _state:
        await _state.pop("engine").close()


@kopf.on.probe(id="alive")
def alive(**_: Any) -> bool:
    if "engine" not in _state or not engine().alive():
        raise kopf.PermanentError("the operator's event loop is wedged")
    return True


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
async def sync(body: kopf.Body, **_: Any) -> None:
    engine().sync(dict(body))


@kopf.on.event(*RESOURCE)
async def observe(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    # The object left the API server: normally after its finalizer ran (nothing left to do),
    # else without it (stripped by hand): its worker must not go on renting for it.
    if event.get("type") == "DELETED":
        engine().gone(dict(body))


def _being_deleted(body: kopf.Body, **_: Any) -> bool:
    return bool(body.get("metadata", {}).get("deletionTimestamp"))


# Only deletions matter (every status write of an instance comes back as an event): the
# filter spares kopf the handler call and its log line for the rest.
@kopf.on.event(*INSTANCES, when=_being_deleted)
async def observe_instance(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    # kubectl delete gsi: the instance stops cleanly, its service replaces it.
    engine().instance_event(event.get("type"), dict(body))


@kopf.on.delete(*RESOURCE)
async def delete(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if force_delete_requested(dict(body)):
        logger.warning("force-delete annotation set: dropping the finalizer without settling")
        await engine().forget(dict(body), abandon=True)
        return
    if not await engine().delete(dict(body), wait=20.0):
        raise kopf.TemporaryError("waiting for instances to stop and agreements to settle", delay=1)
