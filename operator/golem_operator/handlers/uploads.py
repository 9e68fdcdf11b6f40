"""Content of upload commands: inline text, or a key of a ConfigMap or Secret.

Only objects in the GolemService's own namespace are read (the references carry no namespace),
so a service cannot upload another namespace's Secret. Secret content is never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from golem_operator.api.spec import Command

if TYPE_CHECKING:
    from golem_operator.handlers.service import ServiceWorker


class UploadError(Exception):
    """An upload source cannot be read; the message names the field, never the content."""


async def resolve(worker: ServiceWorker, commands: list[Command]) -> dict[int, bytes]:
    contents: dict[int, bytes] = {}
    for index, command in enumerate(commands):
        if command.upload is None:
            continue
        source = command.upload.source
        try:
            if source.inline is not None:
                contents[index] = source.inline.encode()
            elif source.config_map_key_ref is not None:
                ref = source.config_map_key_ref
                contents[index] = await worker.engine.kube.read_config_map_key(
                    worker.namespace, ref.name, ref.key
                )
            elif source.secret_key_ref is not None:
                ref = source.secret_key_ref
                contents[index] = await worker.engine.kube.read_secret_key(
                    worker.namespace, ref.name, ref.key
                )
        except KeyError as error:
            raise UploadError(f"upload {command.upload.path}: {error.args[0]}") from None
        except Exception as error:
            status = getattr(error, "status", None)
            raise UploadError(
                f"upload {command.upload.path}: cannot read its source "
                f"({status or type(error).__name__})"
            ) from None
    return contents
