"""Configuration of the local Golem network: providers, images, faults and limits.

Read from YAML by `load_config` (called by `localnet.cli` and tests) and validated with
pydantic; every error names the offending field, e.g. ``providers[1].prices.start``.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Paths that the sandbox itself provides; an image may not shadow them.
RESERVED_IMAGE_ENTRIES = frozenset(
    {"usr", "etc", "proc", "dev", "tmp", "bin", "lib", "lib64", "sbin"}
)


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """What a provider advertises (golem.inf.*)."""

    mem_gib: float = Field(default=4.0, gt=0)
    storage_gib: float = Field(default=20.0, gt=0)
    cpu_threads: int = Field(default=2, ge=1)


class Prices(_Strict):
    """Linear pricing, in GLM: a start fee, per CPU-hour and per environment-hour."""

    start: Decimal = Field(default=Decimal("0"), ge=0)
    per_cpu_hour: Decimal = Field(default=Decimal("0.1"), ge=0)
    per_env_hour: Decimal = Field(default=Decimal("0.02"), ge=0)

    def coeffs(self) -> list[float]:
        """golem.com.pricing.model.linear.coeffs: [cpu_sec, duration_sec, start]."""
        return [
            float(self.per_cpu_hour / 3600),
            float(self.per_env_hour / 3600),
            float(self.start),
        ]


class Faults(_Strict):
    """Misbehaviour of one provider. All off by default; the admin API can change them."""

    fail_deploy: bool = False
    fail_start: bool = False
    #: a `run` command whose entry point or an argument contains this substring fails
    fail_command: str | None = None
    #: the activity (its whole sandbox) dies this many seconds after it was created
    crash_after_seconds: float | None = Field(default=None, gt=0)
    #: the provider terminates the agreement this many seconds after approval
    terminate_agreement_after_seconds: float | None = Field(default=None, gt=0)
    #: activity calls for this provider's activities hang until the fault is cleared
    unresponsive: bool = False
    #: added before every provider-side reaction (approval, activity calls, commands)
    latency_seconds: float = Field(default=0.0, ge=0)
    #: the provider rejects every agreement proposal
    reject_agreements: bool = False
    #: the provider never issues an invoice when an agreement ends
    never_invoice: bool = False
    #: the invoice is issued this many seconds after the agreement ended
    invoice_delay_seconds: float | None = Field(default=None, gt=0)
    #: GLM added to every invoice above what the usage costs (an overcharging provider)
    invoice_surcharge: Decimal = Field(default=Decimal(0), ge=0)
    #: once it approves an agreement the provider is gone: it never answers again, so the
    #: activity cannot be created on it (and it sends no invoice)
    vanish_after_approval: bool = False


class DaemonFault(_Strict):
    """A transient failure of the daemon itself on matching requests (after authentication).

    `path` is a glob over the request path (`*` matches within and across segments, e.g.
    `/payment-api/v1/debitNotes/*`); `method` None or `*` matches any. Admin paths (/_localnet)
    are never faulted. A matching request fails with
    `probability`, for at most `count` failures (None: unlimited). With `delay_seconds` the
    answer is delayed that long first (the client's timeout may fire), then `status` is
    answered (or, with `status` None, the request is served normally after the delay).
    """

    path: str = Field(min_length=1)
    method: str | None = Field(default=None, pattern=r"^(\*|GET|POST|PUT|DELETE|PATCH)$")
    status: int | None = Field(default=503, ge=500, le=599)
    probability: float = Field(default=1.0, ge=0, le=1)
    count: int | None = Field(default=None, ge=1)
    delay_seconds: float = Field(default=0.0, ge=0, le=600)
    #: the answer's message (yagna's error body); a generic text for the status when unset
    message: str | None = None


class ProviderConfig(_Strict):
    """One provider (``name``) or ``count`` identical ones named ``<name_prefix>-<n>``."""

    name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    count: int | None = Field(default=None, ge=1, le=10000)
    name_prefix: str = Field(default="provider", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    resources: Resources = Resources()
    runtime: str = "vm"
    runtime_version: str = "0.4.2"
    prices: Prices = Prices()
    subnet_tag: str | None = None
    payment_platform: str | None = None
    debit_note_interval_seconds: float | None = Field(default=None, gt=0)
    #: agreements this provider runs at once; a busy provider makes no new offers
    max_agreements: int = Field(default=1, ge=1)
    #: offers outbound access (capabilities inet and manifest-support) and grants an activity
    #: the loopback URLs its agreement's computation manifest lists (localnet.outbound)
    outbound: bool = False
    faults: Faults = Faults()

    @model_validator(mode="after")
    def _name_or_count(self) -> ProviderConfig:
        if (self.name is None) == (self.count is None):
            raise ValueError("give exactly one of `name` or `count`")
        return self


class ImageConfig(_Strict):
    """A VM image: a local folder whose files appear at their absolute paths in the sandbox.

    Its hash is the sha3-224 of the folder's package (a deterministic tar), computed at start.
    """

    tag: str = Field(min_length=1)
    path: Path


class Limits(_Strict):
    """Per-command limits of the sandboxes."""

    command_timeout_seconds: float = Field(default=60.0, gt=0)
    output_cap_bytes: int = Field(default=64 * 1024, ge=16)
    transfer_cap_bytes: int = Field(default=4 * 1024 * 1024, ge=16)
    #: script commands per exec batch
    max_commands_per_batch: int = Field(default=100, ge=1)


class AgreementRules(_Strict):
    """What every provider agent demands of an agreement, as yagna's provider agent does by
    default (its negotiator and task manager); 0 turns a rule off."""

    #: refuse a demand whose golem.srv.comp.expiration is less than this from now
    min_expiration_seconds: float = Field(default=300.0, ge=0)
    #: refuse one ending later than this from now unless it sets the debit-note acceptance
    #: deadline (golem.com.payment.debit-notes.accept-timeout?)
    max_expiration_without_deadline_seconds: float = Field(default=1800.0, ge=0)
    #: refuse one ending this long from now or later unless it sets mid-agreement payments
    #: (golem.com.scheme.payu.payment-timeout-sec?)
    payment_timeout_required_seconds: float = Field(default=36000.0, ge=0)
    #: terminate an approved agreement on which no activity was created within this long
    idle_agreement_timeout_seconds: float = Field(default=90.0, ge=0)


class RequestorConfig(_Strict):
    name: str = "requestor"
    #: balance that allocations may reserve in total
    funds: Decimal = Field(default=Decimal("1000"), gt=0)


class LocalNetConfig(_Strict):
    """The whole network."""

    subnet_tag: str = "localnet"
    payment_platform: str = "erc20-holesky-tglm"
    debit_note_interval_seconds: float = Field(default=120.0, gt=0)
    #: how long a provider waits for a payable debit note to be accepted before it ends the
    #: agreement; only applies when the demand set golem.com.payment.debit-notes.accept-timeout?
    enforce_debit_note_acceptance: bool = True
    agreement_rules: AgreementRules = AgreementRules()
    requestor: RequestorConfig = RequestorConfig()
    limits: Limits = Limits()
    images: list[ImageConfig] = []
    providers: list[ProviderConfig] = Field(default_factory=lambda: [ProviderConfig(count=2)])
    #: transient failures of the daemon's REST API (5xx, slow answers) on chosen paths; the
    #: admin API (/_localnet/daemon-faults) replaces them at run time
    daemon_faults: list[DaemonFault] = []
    #: where activity folders live; a fresh temporary folder when unset
    work_root: Path | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> LocalNetConfig:
        seen: set[str] = set()
        for spec in expand_providers(self):
            if spec.name in seen:
                raise ValueError(f"duplicate provider name {spec.name!r}")
            seen.add(spec.name)
        tags = [image.tag for image in self.images]
        if len(tags) != len(set(tags)):
            raise ValueError("duplicate image tag")
        return self


class ProviderSpec(_Strict):
    """A provider after expanding ``count``: what the network instantiates."""

    name: str
    resources: Resources
    runtime: str
    runtime_version: str
    prices: Prices
    subnet_tag: str
    payment_platform: str
    debit_note_interval_seconds: float
    max_agreements: int
    outbound: bool = False
    faults: Faults


def expand_providers(config: LocalNetConfig) -> list[ProviderSpec]:
    """One spec per provider, network defaults filled in."""
    specs: list[ProviderSpec] = []
    for entry in config.providers:
        names = (
            [entry.name]
            if entry.name is not None
            else [f"{entry.name_prefix}-{i}" for i in range(1, (entry.count or 0) + 1)]
        )
        for name in names:
            specs.append(
                ProviderSpec(
                    name=name,
                    resources=entry.resources,
                    runtime=entry.runtime,
                    runtime_version=entry.runtime_version,
                    prices=entry.prices,
                    subnet_tag=entry.subnet_tag or config.subnet_tag,
                    payment_platform=entry.payment_platform or config.payment_platform,
                    debit_note_interval_seconds=(
                        entry.debit_note_interval_seconds or config.debit_note_interval_seconds
                    ),
                    max_agreements=entry.max_agreements,
                    outbound=entry.outbound,
                    faults=entry.faults,
                )
            )
    return specs


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def format_validation_error(error: ValidationError) -> str:
    """`providers[1].prices.start: Input should be ...`, one line per problem."""
    return "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in error.errors())


def parse_config(data: Any, base_dir: Path | None = None) -> LocalNetConfig:
    """Validate a decoded YAML/JSON document; relative image paths resolve from base_dir."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("(root): the configuration must be a mapping")
    try:
        config = LocalNetConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None
    images: list[ImageConfig] = []
    for index, image in enumerate(config.images):
        folder = image.path if image.path.is_absolute() else (base_dir or Path.cwd()) / image.path
        folder = folder.resolve()
        if not folder.is_dir():
            raise ConfigError(f"images[{index}].path: {folder} is not a directory")
        clashes = sorted(p.name for p in folder.iterdir() if p.name in RESERVED_IMAGE_ENTRIES)
        if clashes:
            raise ConfigError(f"images[{index}].path: the image may not contain {clashes}")
        images.append(image.model_copy(update={"path": folder}))
    return config.model_copy(update={"images": images})


def load_config(path: Path) -> LocalNetConfig:
    """Read and validate a YAML file."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(data, base_dir=path.parent)
