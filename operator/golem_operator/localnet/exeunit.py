"""The exe-units of the simulated network: activities, their sandboxes and ExeScripts.

`ExeUnits` creates an activity per request on an approved agreement, runs its ExeScript
batches (deploy, start, run, transfer, terminate) in the activity's sandbox
(`localnet.sandbox`), and ends activities (requestor, crash faults, agreement end).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from golem_operator.localnet import pricing
from golem_operator.localnet.events import stamp
from golem_operator.localnet.images import DeployError, ImageCatalog
from golem_operator.localnet.model import (
    P_TASK_PACKAGE,
    Activity,
    ApiError,
    Batch,
    CommandResult,
    agreement_id_problem,
    decode_data_url,
    new_activity_id,
    new_id,
)
from golem_operator.localnet.runtime import Part, Runtime
from golem_operator.localnet.sandbox import Sandbox, SandboxError
from golem_operator.localnet.vpn import parse_deploy_hosts, parse_deploy_net

if TYPE_CHECKING:
    from golem_operator.localnet.market import Market
    from golem_operator.localnet.payments import Payments
    from golem_operator.localnet.vpn import Vpn


class ExeUnits(Part):
    """Every activity, and every provider's exe-unit."""

    market: Market
    payments: Payments
    vpn: Vpn

    def __init__(self, runtime: Runtime, images: ImageCatalog) -> None:
        super().__init__(runtime)
        self.images = images
        self.activities: dict[str, Activity] = {}

    async def close(self) -> None:
        for activity in self.activities.values():
            for task in activity.tasks:
                task.cancel()
            if activity.sandbox is not None:
                await activity.sandbox.kill()

    async def create_activity(self, agreement_id: str) -> Activity:
        problem = agreement_id_problem(agreement_id)
        if problem is not None:
            raise ApiError(500, f"Service error: {problem}")
        agreement = self.market.agreements.get(agreement_id)
        if agreement is None:
            raise ApiError(404, f"Not found: {agreement_id}")
        if agreement.state != "Approved":
            raise ApiError(
                400,
                f"Bad request: Agreement {agreement_id} is not Approved. "
                f"Current state: {agreement.state}",
            )
        await agreement.provider.react()
        if agreement.vanished:
            # The provider no longer answers: the daemon gives up on reaching it.
            raise ApiError(
                500,
                f"Service error: provider {agreement.provider.node_id} did not answer "
                f"the activity creation for agreement {agreement_id}",
            )
        activity_id = new_activity_id()
        activity = Activity(
            id=activity_id,
            agreement=agreement,
            created=stamp(),
            created_monotonic=self.now(),
            folder=self.runtime.work_root / "activities" / activity_id,
        )
        self.activities[activity.id] = activity
        agreement.activities.append(activity.id)
        activity.tasks.append(self.spawn(self.payments.bill_activity(activity)))
        crash_after = agreement.provider.faults.crash_after_seconds
        if crash_after is not None:
            activity.tasks.append(self.spawn(self._crash_later(activity, crash_after)))
        return activity

    def activity(self, activity_id: str) -> Activity:
        activity = self.activities.get(activity_id)
        if activity is None:
            # yagna 0.17.6 answers every activity call on an unknown id so (not 404).
            raise ApiError(500, f"DAO error: Not found: agreement id for activity: {activity_id}")
        return activity

    async def _crash_later(self, activity: Activity, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.crash_activity(activity)

    async def crash_activity(self, activity: Activity) -> None:
        await self.end_activity(activity, "ExeUnit crashed", error="ExeUnit process died")

    async def end_activity(
        self, activity: Activity, reason: str | None, *, error: str | None
    ) -> None:
        """Kill everything of the activity; it stays visible as Terminated."""
        if activity.terminated:
            return
        activity.state = "Terminated"
        activity.reason = reason
        activity.error_message = error
        activity.ended_monotonic = self.now()
        current = asyncio.current_task()
        for task in activity.tasks:
            if task is not current:
                task.cancel()
        if activity.sandbox is not None:
            await activity.sandbox.kill()
        await self.vpn.leave(activity)
        for batch in activity.batches.values():
            if not batch.done:
                batch.done = True
                batch.notify()

    def exec_script(self, activity: Activity, text: str) -> Batch:
        try:
            commands = json.loads(text)
        except json.JSONDecodeError as error:
            raise ApiError(400, f"Invalid ExeScript: {error}") from None
        if not isinstance(commands, list) or not all(
            isinstance(c, dict) and len(c) == 1 for c in commands
        ):
            raise ApiError(400, "Invalid ExeScript: expected a list of single-key command objects")
        known = {"deploy", "start", "run", "transfer", "terminate", "sign"}
        for command in commands:
            name = next(iter(command))
            if name not in known:
                raise ApiError(400, f"Invalid ExeScript: unknown command {name!r}")
        if len(commands) > self.config.limits.max_commands_per_batch:
            raise ApiError(400, "Invalid ExeScript: too many commands")
        if activity.terminated:
            raise ApiError(500, f"Activity [{activity.id}] is Terminated.")
        batch = Batch(id=new_id(), commands=commands)
        activity.batches[batch.id] = batch
        activity.tasks.append(self.spawn(self._run_batch(activity, batch)))
        return batch

    async def _run_batch(self, activity: Activity, batch: Batch) -> None:
        for index, command in enumerate(batch.commands):
            batch.running_index = index
            await activity.provider.react()
            if activity.terminated:
                result = CommandResult(index, ok=False, message="Activity is terminated")
            else:
                try:
                    result = await self._run_command(activity, index, command)
                except SandboxError as error:
                    result = CommandResult(index, ok=False, message=str(error))
            last = (not result.ok) or index == len(batch.commands) - 1 or activity.terminated
            result.finished_batch = last
            batch.results.append(result)
            batch.notify()
            if last:
                break
        batch.running_index = None
        batch.done = True
        batch.notify()

    async def _run_command(
        self, activity: Activity, index: int, command: dict[str, Any]
    ) -> CommandResult:
        name, body = next(iter(command.items()))
        body = body if isinstance(body, dict) else {}
        faults = activity.provider.faults
        if name == "deploy":
            if activity.state != "Initialized":
                return CommandResult(index, ok=False, message=f"Can't deploy: {activity.state}")
            if faults.fail_deploy:
                return CommandResult(index, ok=False, message="Deployment failed (injected fault)")
            try:
                networks = parse_deploy_net(body)
                hosts, hostname = parse_deploy_hosts(body)
            except ValueError as error:
                return CommandResult(index, ok=False, message=f"Invalid deploy: {error}")
            try:
                image = await self.images.deploy(
                    activity.agreement.demand_properties.get(P_TASK_PACKAGE)
                )
            except DeployError as error:
                return CommandResult(index, ok=False, message=str(error))
            if activity.state != "Initialized" or activity.terminated:
                return CommandResult(index, ok=False, message=f"Can't deploy: {activity.state}")
            sandbox = Sandbox(image.path, activity.folder, hosts=hosts, hostname=hostname)
            await sandbox.start()
            activity.sandbox = sandbox
            if activity.terminated:  # crashed or destroyed while starting
                await sandbox.kill()
                return CommandResult(index, ok=False, message="Activity is terminated")
            activity.tasks.append(self.spawn(self._watch_sandbox(activity, sandbox)))
            try:
                await self.vpn.join(activity, networks)
            except (RuntimeError, SandboxError) as error:
                return CommandResult(index, ok=False, message=f"Deployment failed: {error}")
            activity.state = "Deployed"
            return CommandResult(index, ok=True, stdout="deployed", stderr="")
        if name == "start":
            if activity.state != "Deployed":
                return CommandResult(index, ok=False, message=f"Can't start: {activity.state}")
            if faults.fail_start:
                return CommandResult(index, ok=False, message="Start failed (injected fault)")
            activity.state = "Ready"
            return CommandResult(index, ok=True, stdout="started", stderr="")
        if name == "terminate":
            await self.end_activity(activity, "Terminated by requestor command", error=None)
            return CommandResult(index, ok=True)
        if name == "sign":
            return CommandResult(index, ok=False, message="sign is not supported by localnet")
        if name == "run":
            return await self._run(activity, index, body)
        return await self._transfer(activity, index, body)

    async def _watch_sandbox(self, activity: Activity, sandbox: Sandbox) -> None:
        await sandbox.wait()
        if not activity.terminated:
            await self.end_activity(activity, "ExeUnit crashed", error="sandbox process died")

    async def _run(self, activity: Activity, index: int, body: dict[str, Any]) -> CommandResult:
        if activity.state != "Ready" or activity.sandbox is None:
            return CommandResult(index, ok=False, message=f"Can't run: activity {activity.state}")
        entry_point = body.get("entry_point")
        args = body.get("args", [])
        env = body.get("env") or {}
        if (
            not isinstance(entry_point, str)
            or not isinstance(args, list)
            or not all(isinstance(a, str) for a in args)
            or not isinstance(env, dict)
        ):
            return CommandResult(index, ok=False, message="Invalid run command")
        pattern = activity.provider.faults.fail_command
        if pattern and any(pattern in part for part in [entry_point, *args]):
            return CommandResult(
                index, ok=False, stdout="", stderr="injected fault", message="Injected fault"
            )
        limits = self.config.limits
        outcome = await activity.sandbox.run(
            [entry_point, *args],
            {str(k): str(v) for k, v in env.items()},
            time_limit=limits.command_timeout_seconds,
            output_cap=limits.output_cap_bytes,
        )
        if outcome.timed_out:
            message = f"Command timed out after {limits.command_timeout_seconds}s and was killed"
            return CommandResult(index, False, outcome.stdout, outcome.stderr, message)
        if outcome.exit_code != 0:
            message = f"ExeScript command exited with code {outcome.exit_code}"
            return CommandResult(index, False, outcome.stdout, outcome.stderr, message)
        return CommandResult(index, True, outcome.stdout, outcome.stderr)

    async def _transfer(
        self, activity: Activity, index: int, body: dict[str, Any]
    ) -> CommandResult:
        sandbox = activity.sandbox
        if sandbox is None or activity.state not in ("Deployed", "Ready"):
            return CommandResult(index, ok=False, message=f"Can't transfer: {activity.state}")
        source, target = body.get("from"), body.get("to")
        if not isinstance(source, str) or not isinstance(target, str):
            return CommandResult(index, ok=False, message="transfer needs `from` and `to`")
        cap = self.config.limits.transfer_cap_bytes
        try:
            if source.startswith("data:") and target.startswith("container:"):
                data = decode_data_url(source)
                if len(data) > cap:
                    raise SandboxError(f"transfer larger than {cap} bytes")
                path = sandbox.host_path(target.removeprefix("container:"))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                return CommandResult(index, ok=True, stdout="", stderr="")
            if source.startswith("container:") and target.startswith("data:"):
                path = sandbox.host_path(source.removeprefix("container:"))
                if not path.is_file():
                    raise SandboxError(f"{source} is not a file")
                if path.stat().st_size > cap:
                    raise SandboxError(f"{source} is larger than {cap} bytes")
                encoded = base64.b64encode(path.read_bytes()).decode()
                url = f"data:application/octet-stream;base64,{encoded}"
                return CommandResult(index, ok=True, stdout=url, stderr="")
        except (SandboxError, OSError, ValueError) as error:
            return CommandResult(index, ok=False, message=f"Transfer failed: {error}")
        return CommandResult(
            index,
            ok=False,
            message="Transfer failed: localnet supports data:->container: and container:->data:",
        )

    async def results(
        self, activity: Activity, batch_id: str, wait_seconds: float, command_index: int | None
    ) -> list[dict[str, Any]]:
        batch = activity.batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"Batch [{batch_id}] not found.")
        deadline = self.now() + wait_seconds
        while True:
            if command_index is not None:
                ready = len(batch.results) > command_index or batch.done
            else:
                ready = batch.done
            remaining = deadline - self.now()
            if ready or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch.changed.wait(), remaining)
        if command_index is not None and len(batch.results) <= command_index and not batch.done:
            raise ApiError(408, "Timeout")
        if not batch.results and not batch.done:
            raise ApiError(408, "Timeout")
        return [result.to_json() for result in batch.results]

    def usage(self, activity: Activity) -> list[float]:
        duration = round(activity.duration(self.now()), 3)
        return [duration, duration]  # cpu_sec ~ duration (documented simplification)

    def activity_cost(self, activity: Activity) -> Decimal:
        cpu, duration = self.usage(activity)
        return pricing.activity_cost(
            activity.provider.spec.prices, cpu_seconds=cpu, duration_seconds=duration
        )
