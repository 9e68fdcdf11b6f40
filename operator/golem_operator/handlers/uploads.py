"""Content of upload commands: inline text, or a key of a ConfigMap or Secret.

Only objects in the GolemService's own namespace are read (the references carry no namespace),
so a service cannot upload another namespace's Secret; and only Secrets that opt in with the
label ``services.golem.network/upload: "true"``, so that an app key or a TLS key that merely
lives in the namespace cannot be sent to a provider by naming it. Secret content is never
logged, and the worker's redactor keeps it (and its base64) out of status and Events.
"""

from __future__ import annotations

from golem_operator.api.spec import Command, Script, StartScript
from golem_operator.constants import UPLOAD_LABEL
from golem_operator.handlers.host import InstanceHost


class UploadError(Exception):
    """An upload source cannot be read; the message names the field, never the content."""


def script_commands(script: Script, field: str) -> tuple[list[Command], str, int]:
    """A script's commands as sent (start: with the implicit deploy and start), its field path,
    and how many implicit commands come before the written ones."""
    if isinstance(script, StartScript):
        commands = script.full_script()
        return commands, field, len(commands) - len(script.commands)
    return list(script.commands), field, 0


async def read_secret(worker: InstanceHost, name: str, key: str, field: str) -> bytes:
    """A Secret key for an upload: the Secret must carry the upload label."""
    try:
        labels, data = await worker.kube.read_secret(worker.namespace, name)
    except Exception as error:
        status = getattr(error, "status", None)
        raise UploadError(
            f"{field}: cannot read Secret {name!r} ({status or type(error).__name__})"
        ) from None
    if labels.get(UPLOAD_LABEL) != "true":
        raise UploadError(
            f'{field}: Secret {name!r} lacks the label {UPLOAD_LABEL}: "true" '
            "(only Secrets labelled so may be uploaded)"
        )
    if key not in data:
        raise UploadError(f"{field}: Secret {name!r} has no key {key!r}")
    content = data[key]
    worker.redactor.add(content)
    return content


async def resolve(
    worker: InstanceHost, commands: list[Command], field: str = "lifecycle", offset: int = 0
) -> dict[int, bytes]:
    """The content of each upload command, by index in ``commands``.

    field and offset name the script in errors: commands[i] is ``{field}.commands[i-offset]``.
    """
    contents: dict[int, bytes] = {}
    for index, command in enumerate(commands):
        if command.upload is None:
            continue
        source = command.upload.source
        where = (
            f"{field}.commands[{index - offset}].upload.source (upload to {command.upload.path})"
        )
        try:
            if source.inline is not None:
                contents[index] = source.inline.encode()
            elif source.config_map_key_ref is not None:
                ref = source.config_map_key_ref
                contents[index] = await worker.kube.read_config_map_key(
                    worker.namespace, ref.name, ref.key
                )
            elif source.secret_key_ref is not None:
                ref = source.secret_key_ref
                contents[index] = await read_secret(
                    worker,
                    ref.name,
                    ref.key,
                    f"{field}.commands[{index - offset}].upload.source.secretKeyRef "
                    f"(upload to {command.upload.path})",
                )
        except UploadError:
            raise
        except KeyError as error:
            raise UploadError(f"{where}: {error.args[0]}") from None
        except Exception as error:
            status = getattr(error, "status", None)
            raise UploadError(
                f"{where}: cannot read its source ({status or type(error).__name__})"
            ) from None
    return contents


async def remember_secrets(worker: InstanceHost) -> None:
    """Teach the redactor every Secret the spec's scripts upload (after a restart, output of
    a running instance may show content uploaded by the previous operator process)."""
    spec = worker.spec
    if spec is None:
        return
    for script in (spec.lifecycle.start, spec.lifecycle.run, spec.lifecycle.stop):
        for command in script.commands:
            if command.upload is None or command.upload.source.secret_key_ref is None:
                continue
            ref = command.upload.source.secret_key_ref
            try:
                await read_secret(worker, ref.name, ref.key, "lifecycle")
            except UploadError:
                continue  # reported by the script that uploads it
