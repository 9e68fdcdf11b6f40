"""GolemService spec: the one source of the API, from which crds/ is generated.

Read by the handlers (``GolemServiceSpec.model_validate(body["spec"])``) and by ``api.crd``.
Every field carries a description (``kubectl explain`` shows it); cross-field rules that a
schema cannot say are CEL rules (``x-kubernetes-validations``) attached with ``cel()``.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from golem_operator.api.manifest import ManifestError, decode_base64_text, read_manifest

#: GLM amounts travel as decimal strings (never floats): up to 18 decimals, like the token.
GLM_PATTERN = r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?$"
#: Durations as Kubernetes users write them: "90s", "15m", "2h", "1h30m".
DURATION_PATTERN = r"^([0-9]{1,6}(h|m|s|ms))+$"

#: Providers of the Golem network refuse agreements that end sooner than this from now
#: (yagna's provider agent: min-agreement-expiration, 5 minutes).
MIN_AGREEMENT_DURATION = "5m"

GLMAmount = Annotated[str, StringConstraints(pattern=GLM_PATTERN, max_length=40)]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]
ShortString = Annotated[str, StringConstraints(min_length=1, max_length=253)]


def cel(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """JSON-schema extras carrying CEL rules: (rule, message[, fieldPath])."""
    validations = []
    for rule in rules:
        entry = {"rule": rule[0], "message": rule[1]}
        if len(rule) == 3:
            entry["fieldPath"] = rule[2]
        validations.append(entry)
    return {"x-kubernetes-validations": validations}


def parse_duration(text: str) -> timedelta:
    """'1h30m' -> timedelta(hours=1, minutes=30). The CRD pattern guarantees the shape."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"([0-9]+)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 90s, 15m, 2h, 1h30m)")
    return timedelta(seconds=sum(int(n) * units[u] for n, u in parts))


class _Model(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# --- payload ---------------------------------------------------------------------------------


class Runtime(StrEnum):
    VM = "vm"


class Image(_Model):
    """The VM image, as the Golem SDKs name it: a registry tag, a hash, or a hash and a URL.

    A tag, or a hash without a URL, is resolved through the Golem image registry
    (``GET {registry}/v1/image/info``) to the image's sha3 hash and download URL, once: both
    are recorded in ``status.image`` and every instance, replacement and renewal deploys those
    bits until this field changes. A hash with a URL is used as it is (the provider's
    exe-unit downloads the URL and verifies the hash).
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "has(self.tag) || has(self.hash) || has(self.url)",
                "payload.image needs one of tag, hash or url",
            ),
            (
                "!has(self.tag) || !has(self.hash)",
                "payload.image.tag and payload.image.hash cannot both be set "
                "(the registry resolves one or the other)",
            ),
            (
                "!has(self.url) || has(self.hash)",
                "payload.image.url needs payload.image.hash: the provider verifies the "
                "downloaded image against it",
                ".url",
            ),
            (
                "!has(self.registry) || !has(self.url)",
                "payload.image.registry is only used to resolve a tag or a hash without url",
                ".registry",
            ),
        ),
    )

    hash: Annotated[str, StringConstraints(pattern=r"^(sha3:)?[0-9a-f]{56,64}$")] | None = Field(
        None,
        description="SHA3 hash of the image (hex), as published by gvmkit-build. Alone, it is "
        "resolved to a download URL through the registry; with url, it is used as it is.",
    )
    tag: Annotated[str, StringConstraints(pattern=r"^[a-z0-9._/-]+:[A-Za-z0-9._-]+$")] | None = (
        Field(
            None,
            description="Registry tag of the image, e.g. golem/alpine:latest; resolved to a "
            "hash and URL through the image registry.",
        )
    )
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2048)] | None = (
        Field(
            None,
            description="Direct download URL of the image (gvmkit-squash); needs hash.",
        )
    )
    registry: (
        Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#]+(/\S*)?$", max_length=2048)]
        | None
    ) = Field(
        None,
        description="Golem image registry that resolves tag or hash, e.g. "
        "https://registry.golem.network; absent means the operator's default "
        "(GOLEM_OPERATOR_IMAGE_REGISTRY).",
    )

    @model_validator(mode="after")
    def _one_form(self) -> Image:
        # The CRD's CEL rules say the same at admission; this guards objects read otherwise.
        if not (self.tag or self.hash or self.url):
            raise ValueError("payload.image needs one of tag, hash or url")
        if self.tag and self.hash:
            raise ValueError("payload.image.tag and payload.image.hash cannot both be set")
        if self.url and not self.hash:
            raise ValueError("payload.image.url needs payload.image.hash")
        if self.registry and self.url:
            raise ValueError("payload.image.registry is only used to resolve a tag or a hash")
        return self


class KeyRef(_Model):
    """A key of a ConfigMap or Secret in the GolemService's own namespace."""

    name: ShortString = Field(description="Name of the object (same namespace).")
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = Field(
        description="Key inside the object."
    )


_ONE_SOURCE = (
    "[has(self.inline), has(self.configMapKeyRef), has(self.secretKeyRef)]"
    ".filter(x, x).size() == 1",
    "exactly one of inline, configMapKeyRef or secretKeyRef must be set",
)


class ManifestPart(_Model):
    """A signature or certificate of a manifest: exactly one of inline, configMapKeyRef,
    secretKeyRef. Base64 text is published as it is; any other content (PEM, DER, raw
    signature bytes) is base64-encoded first, as the SDKs do."""

    model_config = ConfigDict(json_schema_extra=cel(_ONE_SOURCE))

    inline: Annotated[str, StringConstraints(min_length=1, max_length=65536)] | None = Field(
        None,
        description="The content itself: base64 text (a signature is binary), or a PEM "
        "certificate.",
    )
    config_map_key_ref: KeyRef | None = Field(
        None, alias="configMapKeyRef", description="Content from a ConfigMap key."
    )
    secret_key_ref: KeyRef | None = Field(
        None,
        alias="secretKeyRef",
        description="Content from a Secret key; the Secret must carry the label services."
        'golem.network/upload: "true" (its content is published in the demand).',
    )


def _sources_given(source: Manifest | ManifestPart) -> int:
    return sum(
        x is not None for x in (source.inline, source.config_map_key_ref, source.secret_key_ref)
    )


class Manifest(_Model):
    """A Golem computation manifest, published in the demand as the Golem SDKs publish it
    (golem.srv.comp.payload and, when signed, .sig, .sig.algorithm, .cert): it asks providers
    for outbound internet access to the URLs under compManifest.net.inet.out. Only providers
    offering the manifest-support capability (and inet, when the manifest asks for it) match.

    The manifest is published as the base64 of the exact bytes given (no reformatting), so a
    signature made over `base64 -w0 manifest.json` stays valid; a manifest given as base64
    text is published as it is.
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            _ONE_SOURCE,
            (
                "!has(self.signature) || has(self.signatureAlgorithm)",
                "payload.manifest.signature needs signatureAlgorithm (e.g. sha256)",
                ".signatureAlgorithm",
            ),
            (
                "!has(self.signatureAlgorithm) || has(self.signature)",
                "payload.manifest.signatureAlgorithm is only used with signature",
                ".signature",
            ),
            (
                "!has(self.signature) || has(self.certificate)",
                "payload.manifest.signature needs certificate: providers verify the "
                "signature with it",
                ".certificate",
            ),
            (
                "!has(self.certificate) || has(self.signature)",
                "payload.manifest.certificate is only used with signature",
                ".signature",
            ),
        ),
    )

    inline: Annotated[str, StringConstraints(min_length=1, max_length=262144)] | None = Field(
        None,
        description="The manifest JSON itself (or its base64), at most 256 KiB. A YAML block "
        "scalar (|) ends with a newline: sign the same bytes.",
    )
    config_map_key_ref: KeyRef | None = Field(
        None, alias="configMapKeyRef", description="The manifest from a ConfigMap key."
    )
    secret_key_ref: KeyRef | None = Field(
        None,
        alias="secretKeyRef",
        description="The manifest from a Secret key; the Secret must carry the label "
        'services.golem.network/upload: "true" (its content is published in the demand).',
    )
    signature: ManifestPart | None = Field(
        None,
        description="Signature of the base64-encoded manifest (golem.srv.comp.payload.sig); "
        "needs signatureAlgorithm and certificate.",
    )
    signature_algorithm: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,32}$")] | None = (
        Field(
            None,
            alias="signatureAlgorithm",
            description="Digest of the signature, e.g. sha256 (golem.srv.comp.payload.sig."
            "algorithm).",
        )
    )
    certificate: ManifestPart | None = Field(
        None,
        description="Certificate (PEM or DER) whose key made the signature "
        "(golem.srv.comp.payload.cert).",
    )

    @field_validator("inline")
    @classmethod
    def _document(cls, inline: str | None) -> str | None:
        # A schema cannot parse JSON: a bad document is reported in the Degraded condition,
        # naming the field inside it.
        if inline is not None:
            try:
                read_manifest(inline.encode())
            except ManifestError as error:
                raise ValueError(str(error)) from None
        return inline

    @model_validator(mode="after")
    def _sources(self) -> Manifest:
        # The CRD's CEL rules say the same at admission; this guards objects read otherwise.
        if _sources_given(self) != 1:
            raise ValueError("exactly one of inline, configMapKeyRef or secretKeyRef must be set")
        if (self.signature is None) != (self.signature_algorithm is None):
            raise ValueError(
                "payload.manifest.signature needs signatureAlgorithm (e.g. sha256)"
                if self.signature is not None
                else "payload.manifest.signatureAlgorithm is only used with signature"
            )
        if (self.signature is None) != (self.certificate is None):
            raise ValueError(
                "payload.manifest.signature needs certificate"
                if self.signature is not None
                else "payload.manifest.certificate is only used with signature"
            )
        for name, part in (("signature", self.signature), ("certificate", self.certificate)):
            if part is not None and _sources_given(part) != 1:
                raise ValueError(
                    f"payload.manifest.{name}: exactly one of inline, configMapKeyRef or "
                    "secretKeyRef must be set"
                )
        inline_signature = self.signature.inline if self.signature is not None else None
        if inline_signature is not None and decode_base64_text(inline_signature.encode()) is None:
            raise ValueError(
                "payload.manifest.signature.inline must be base64 (a signature is binary)"
            )
        return self


class Payload(_Model):
    """What to rent: the runtime, the image and the minimum resources of the provider."""

    runtime: Runtime = Field(Runtime.VM, description="ExeUnit runtime to request. Only vm.")
    image: Image = Field(description="The VM image to run.")
    min_mem_gib: float = Field(
        0.5, alias="minMemGib", ge=0, le=4096, description="Minimum memory in GiB."
    )
    min_storage_gib: float = Field(
        2.0, alias="minStorageGib", ge=0, le=1_000_000, description="Minimum storage in GiB."
    )
    min_cpu_threads: int = Field(
        1, alias="minCpuThreads", ge=1, le=4096, description="Minimum CPU threads."
    )
    capabilities: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,63}$")]] = Field(
        default_factory=list,
        max_length=16,
        description="VM capabilities the provider must offer, e.g. vpn, inet, manifest-support.",
    )
    manifest: Manifest | None = Field(
        None,
        description="A Golem computation manifest asking providers for outbound internet "
        "access (compManifest.net.inet.out.urls), optionally signed; published in the demand "
        "as the Golem SDKs publish it. Only providers offering the manifest-support "
        "capability (and inet, when the manifest asks for it) match.",
    )
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra demand properties, published as they are (e.g. golem.node.debug.x).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    constraints: list[Annotated[str, StringConstraints(pattern=r"^\(.*\)$", max_length=1024)]] = (
        Field(
            default_factory=list,
            max_length=32,
            description="Extra demand constraints in LDAP filter syntax, ANDed with the "
            "generated ones, e.g. (golem.inf.cpu.architecture=x86_64).",
        )
    )

    @field_validator("constraints")
    @classmethod
    def _balanced(cls, constraints: list[str]) -> list[str]:
        # The schema checks the outer parentheses; their balance is checked here (and a
        # violation is reported in the Degraded condition, naming the field).
        for constraint in constraints:
            depth = 0
            for char in constraint:
                depth += {"(": 1, ")": -1}.get(char, 0)
                if depth < 0:
                    break
            if depth != 0:
                raise ValueError(f"unbalanced parentheses in {constraint[:80]!r}")
        return constraints


# --- lifecycle scripts -----------------------------------------------------------------------


class EnvVar(_Model):
    """An environment variable of a run command."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=256)] = (
        Field(description="Variable name.")
    )
    value: Annotated[str, StringConstraints(max_length=32768)] = Field(
        "", description="Variable value."
    )


class RunCommand(_Model):
    """Run a program inside the VM."""

    entrypoint: Annotated[str, StringConstraints(pattern=r"^/\S*$", max_length=4096)] = Field(
        description="Absolute path of the program inside the VM, e.g. /golem/run/app.py."
    )
    args: list[Annotated[str, StringConstraints(max_length=32768)]] = Field(
        default_factory=list, max_length=256, description="Arguments."
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=128, description="Environment variables."
    )


class UploadSource(_Model):
    """Where uploaded content comes from: exactly one of inline, configMapKeyRef, secretKeyRef."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "[has(self.inline), has(self.configMapKeyRef), has(self.secretKeyRef)]"
                ".filter(x, x).size() == 1",
                "exactly one of inline, configMapKeyRef or secretKeyRef must be set",
            )
        ),
    )

    inline: Annotated[str, StringConstraints(max_length=262144)] | None = Field(
        None, description="The content itself (UTF-8 text, at most 256 KiB)."
    )
    config_map_key_ref: KeyRef | None = Field(
        None, alias="configMapKeyRef", description="Content from a ConfigMap key."
    )
    secret_key_ref: KeyRef | None = Field(
        None, alias="secretKeyRef", description="Content from a Secret key."
    )


class UploadCommand(_Model):
    """Send a file to the VM."""

    path: Annotated[str, StringConstraints(pattern=r"^/\S*$", max_length=4096)] = Field(
        description="Absolute destination path inside the VM."
    )
    source: UploadSource = Field(
        description="Where the content comes from. (Named `source` rather than `from`, "
        "which is a keyword in most client languages.)"
    )


class DownloadCommand(_Model):
    """Fetch a file from the VM into the instance's status."""

    path: Annotated[str, StringConstraints(pattern=r"^/\S*$", max_length=4096)] = Field(
        description="Absolute path of the file inside the VM."
    )
    max_bytes: int = Field(
        4096,
        alias="maxBytes",
        ge=1,
        le=65536,
        description="At most this many bytes are kept (in status.instances[].downloads).",
    )


class Empty(_Model):
    """A command without parameters."""


class Command(_Model):
    """One step of a script: exactly one of deploy, start, run, upload, download, terminate."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "[has(self.deploy), has(self.start), has(self.run), has(self.upload),"
                " has(self.download), has(self.terminate)].filter(x, x).size() == 1",
                "a command must set exactly one of deploy, start, run, upload, download, terminate",
            )
        ),
    )

    deploy: Empty | None = Field(None, description="Deploy the image (first step of start).")
    start: Empty | None = Field(None, description="Start the VM (after deploy).")
    run: RunCommand | None = Field(None, description="Run a program inside the VM.")
    upload: UploadCommand | None = Field(None, description="Send content to a file in the VM.")
    download: DownloadCommand | None = Field(
        None, description="Fetch a file's head from the VM into status."
    )
    terminate: Empty | None = Field(None, description="Terminate the VM.")

    @property
    def kind(self) -> str:
        for name in ("deploy", "start", "run", "upload", "download", "terminate"):
            if getattr(self, name) is not None:
                return name
        raise ValueError("empty command")


DEPLOY = Command(deploy=Empty())
START = Command(start=Empty())


class Script(_Model):
    """A list of commands sent as one batch, with a time limit."""

    commands: list[Command] = Field(
        default_factory=list, max_length=64, description="Commands, run in order."
    )
    timeout_seconds: int = Field(
        300,
        alias="timeoutSeconds",
        ge=1,
        le=86400,
        description="The whole script must finish within this many seconds.",
    )


class StartScript(Script):
    """Run once, after the activity is created. Success moves the instance to Running."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.commands) || !self.commands.exists(c, has(c.deploy)) || "
                "has(self.commands[0].deploy)",
                "deploy, when given, must be the first command",
                ".commands",
            )
        ),
    )

    commands: list[Command] = Field(
        default_factory=list,
        max_length=64,
        description="Commands run after the implicit deploy and start, as the SDK's "
        "start() does; a list that begins with deploy is taken as the whole script.",
    )

    def full_script(self) -> list[Command]:
        """deploy + start + commands, unless the user wrote the deploy themselves."""
        if self.commands and self.commands[0].deploy is not None:
            return list(self.commands)
        return [DEPLOY, START, *self.commands]


class RunScript(Script):
    """Repeated while the instance runs; also its health check."""

    interval_seconds: int = Field(
        10,
        alias="intervalSeconds",
        ge=1,
        le=86400,
        description="Seconds between the end of one run and the start of the next (> 0).",
    )
    failure_threshold: int = Field(
        3,
        alias="failureThreshold",
        ge=1,
        le=1000,
        description="Consecutive failed runs (or unanswered activity polls) after which the "
        "instance counts as failed and restartPolicy applies.",
    )
    timeout_seconds: int = Field(
        60, alias="timeoutSeconds", ge=1, le=86400, description="Time limit of one run."
    )


class StopScript(Script):
    """Run once when the instance stops (scale-down, deletion, expiration)."""

    timeout_seconds: int = Field(
        60,
        alias="timeoutSeconds",
        ge=1,
        le=3600,
        description="Time limit of the stop script; deletion waits at most this long per instance.",
    )


class Lifecycle(_Model):
    """The scripts of the service model's active states: Starting, Running, Stopping."""

    start: StartScript = Field(
        default_factory=StartScript,
        description="Starting: run once; default deploy + start.",
        json_schema_extra={"default": {}},
    )
    run: RunScript = Field(
        default_factory=RunScript,
        description="Running: repeated every intervalSeconds; without commands only the "
        "activity's state is checked.",
        json_schema_extra={"default": {}},
    )
    stop: StopScript = Field(
        default_factory=StopScript,
        description="Stopping: run once before the agreement is terminated.",
        json_schema_extra={"default": {}},
    )


# --- market and money ------------------------------------------------------------------------


class PaymentPlatform(_Model):
    """The payment platform: driver and network."""

    driver: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,32}$")] = Field(
        "erc20", description="Payment driver."
    )
    network: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,32}$")] = Field(
        "holesky", description="Payment network (e.g. holesky for test GLM, polygon)."
    )

    @property
    def token(self) -> str:
        return "glm" if self.network in ("mainnet", "polygon") else "tglm"

    @property
    def platform(self) -> str:
        """The platform name as the daemon spells it, e.g. erc20-holesky-tglm."""
        return f"{self.driver}-{self.network}-{self.token}"


class ProviderFilter(_Model):
    """Which providers may be rented, by node id (0x…) or node name."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.allow) || !has(self.deny) || !self.allow.exists(p, p in self.deny)",
                "a provider cannot be both allowed and denied",
            )
        ),
    )

    allow: list[ShortString] = Field(
        default_factory=list,
        max_length=1000,
        description="If not empty, only these providers are used.",
    )
    deny: list[ShortString] = Field(
        default_factory=list, max_length=1000, description="These providers are never used."
    )


class Market(_Model):
    """Where and at what price to rent."""

    subnet_tag: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = Field(
        "public", alias="subnetTag", description="Subnet of the Golem network to search."
    )
    payment: PaymentPlatform = Field(
        default_factory=PaymentPlatform,
        description="Payment platform.",
        json_schema_extra={"default": {}},
    )
    max_start_price: GLMAmount | None = Field(
        None, alias="maxStartPrice", description="Highest acceptable start price (GLM)."
    )
    max_cpu_per_hour: GLMAmount | None = Field(
        None, alias="maxCpuPerHour", description="Highest acceptable price per CPU-hour (GLM)."
    )
    max_env_per_hour: GLMAmount | None = Field(
        None,
        alias="maxEnvPerHour",
        description="Highest acceptable price per hour of the environment's life (GLM).",
    )
    providers: ProviderFilter = Field(
        default_factory=ProviderFilter,
        description="Provider allow and deny lists.",
        json_schema_extra={"default": {}},
    )
    debit_note_interval_seconds: int = Field(
        120,
        alias="debitNoteIntervalSeconds",
        ge=10,
        le=3600,
        description="Interval of debit notes (mid-agreement payments) asked of providers.",
    )
    payment_timeout_seconds: int = Field(
        600,
        alias="paymentTimeoutSeconds",
        ge=60,
        le=86400,
        description="Seconds the operator has to pay an accepted debit note.",
    )


class GolemRef(_Model):
    """A Secret holding the URL and app key of the Golem daemon to use."""

    secret_name: ShortString = Field(
        alias="secretName", description="Secret in the GolemService's namespace."
    )
    url_key: ShortString = Field("url", alias="urlKey", description="Key holding the URL.")
    app_key_key: ShortString = Field(
        "appKey", alias="appKeyKey", description="Key holding the app key."
    )


class RestartPolicy(StrEnum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


# --- rollout ---------------------------------------------------------------------------------

#: A count or a percentage of replicas ("25%"), as Deployments take maxSurge and maxUnavailable.
PERCENT_PATTERN = r"^[0-9]{1,3}%$"
IntOrPercent = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]


def _check_int_or_percent(value: int | str, field: str) -> int | str:
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a count or a percentage such as 25%")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{field} must not be negative")
        return value
    if not re.match(PERCENT_PATTERN, value):
        raise ValueError(f"{field} must be a count or a percentage such as 25%, not {value!r}")
    return value


def _int_or_percent_rule(field: str) -> tuple[str, str, str]:
    return (
        f"!has(self.{field}) || (type(self.{field}) == int ? int(self.{field}) >= 0 : "
        f"string(self.{field}).matches('{PERCENT_PATTERN}'))",
        f"{field} must be a non-negative count or a percentage such as 25%",
        f".{field}",
    )


class RollingUpdate(_Model):
    """How far a rolling update may go above and below spec.replicas (as a Deployment's)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            _int_or_percent_rule("maxSurge"),
            _int_or_percent_rule("maxUnavailable"),
            (
                "!has(self.maxSurge) || !has(self.maxUnavailable) || "
                "!(string(self.maxSurge) in ['0', '0%'] && "
                "string(self.maxUnavailable) in ['0', '0%'])",
                "maxSurge and maxUnavailable cannot both be 0",
                ".maxUnavailable",
            ),
        ),
    )

    max_surge: IntOrPercent = Field(
        "25%",
        alias="maxSurge",
        description="How many instances may exist above spec.replicas while instances of an "
        "older revision (or an agreement about to end) are replaced: a count or a percentage "
        "of replicas, rounded up. Each needs the budget of one more agreement.",
        json_schema_extra={"default": "25%"},
    )
    max_unavailable: IntOrPercent = Field(
        "25%",
        alias="maxUnavailable",
        description="How many of spec.replicas may be unavailable while replacing: a count or "
        "a percentage of replicas, rounded down. Not 0 when maxSurge is 0.",
        json_schema_extra={"default": "25%"},
    )

    @field_validator("max_surge")
    @classmethod
    def _surge(cls, value: int | str) -> int | str:
        return _check_int_or_percent(value, "maxSurge")

    @field_validator("max_unavailable")
    @classmethod
    def _unavailable(cls, value: int | str) -> int | str:
        return _check_int_or_percent(value, "maxUnavailable")

    @model_validator(mode="after")
    def _not_both_zero(self) -> RollingUpdate:
        if str(self.max_surge) in ("0", "0%") and str(self.max_unavailable) in ("0", "0%"):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0")
        return self


class UpdateStrategyType(StrEnum):
    ROLLING_UPDATE = "RollingUpdate"
    RECREATE = "Recreate"


class UpdateStrategy(_Model):
    """How instances of an older revision are replaced when the payload, lifecycle or market
    changes (as a Deployment's strategy)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.rollingUpdate) || !has(self.type) || self.type == 'RollingUpdate'",
                "rollingUpdate may only be given with type RollingUpdate",
                ".rollingUpdate",
            )
        ),
    )

    type: UpdateStrategyType = Field(
        UpdateStrategyType.ROLLING_UPDATE,
        description="RollingUpdate: new instances first (within maxSurge), old ones stopped "
        "through their stop scripts while enough stay available (maxUnavailable). Recreate: "
        "every old instance is stopped first, then the new ones start.",
    )
    rolling_update: RollingUpdate | None = Field(
        None,
        alias="rollingUpdate",
        description="maxSurge and maxUnavailable (default 25% each).",
    )

    @model_validator(mode="after")
    def _rolling_only(self) -> UpdateStrategy:
        if self.rolling_update is not None and self.type is not UpdateStrategyType.ROLLING_UPDATE:
            raise ValueError("rollingUpdate may only be given with type RollingUpdate")
        return self


# --- network ---------------------------------------------------------------------------------

#: An IPv4 network in CIDR notation, e.g. 192.168.0.0/24.
CIDR_PATTERN = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$"
#: Prefix lengths a service network may have: /30 still holds one instance beside the gateway.
CIDR_PREFIX_MIN = 8
CIDR_PREFIX_MAX = 30


class ServiceNetwork(_Model):
    """A Golem VPN joining the service's instances (and the operator, at the gateway)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "isCIDR(self.cidr) && cidr(self.cidr).ip().family() == 4 && "
                "cidr(self.cidr) == cidr(self.cidr).masked()",
                "network.cidr must be an IPv4 network address with its prefix, "
                "e.g. 192.168.0.0/24 (no host bits set)",
                ".cidr",
            ),
            (
                "!isCIDR(self.cidr) || "
                f"(cidr(self.cidr).prefixLength() >= {CIDR_PREFIX_MIN} && "
                f"cidr(self.cidr).prefixLength() <= {CIDR_PREFIX_MAX})",
                f"network.cidr prefix must be /{CIDR_PREFIX_MIN} to /{CIDR_PREFIX_MAX}",
                ".cidr",
            ),
        ),
    )

    cidr: Annotated[str, StringConstraints(pattern=CIDR_PATTERN, max_length=18)] = Field(
        description="The VPN's IPv4 network, e.g. 192.168.0.0/24. Its first address is the "
        "gateway (the operator's own address in it); instance n (status ordinal) gets the "
        "address gateway + 1 + n and the host name <service>-<n>.",
    )

    @field_validator("cidr")
    @classmethod
    def _ipv4_network(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError as error:
            raise ValueError(
                f"network.cidr must be an IPv4 network address with its prefix, e.g. "
                f"192.168.0.0/24: {error}"
            ) from None
        if not CIDR_PREFIX_MIN <= network.prefixlen <= CIDR_PREFIX_MAX:
            raise ValueError(
                f"network.cidr prefix must be /{CIDR_PREFIX_MIN} to /{CIDR_PREFIX_MAX}"
            )
        return value


# --- ports -----------------------------------------------------------------------------------

#: A port name as Services and EndpointSlices take it (a DNS-1123 label).
PORT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: Ports one service may expose (bounds the CEL rules' cost).
PORTS_MAX = 32


class PortProtocol(StrEnum):
    TCP = "TCP"


class ServicePort(_Model):
    """A TCP port inside every instance, served through a Kubernetes Service."""

    name: Annotated[str, StringConstraints(pattern=PORT_NAME_PATTERN, max_length=63)] = Field(
        description="Name of the port (a DNS-1123 label), also the name of the Kubernetes "
        "Service's port and of its EndpointSlice port."
    )
    port: int = Field(
        ge=1,
        le=65535,
        description="The port the process inside each instance listens on (on its VPN "
        "address or 0.0.0.0); the Kubernetes Service offers the same port number.",
    )
    protocol: PortProtocol = Field(
        PortProtocol.TCP,
        description="Only TCP: yagna's VPN tunnels carry TCP streams.",
    )


class GolemServiceSpec(_Model):
    """Desired state of a GolemService: what to run on Golem, how, and how many."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.market) || !has(self.market.maxStartPrice) || "
                "double(self.market.maxStartPrice) <= double(self.budget)",
                "market.maxStartPrice cannot exceed budget",
                ".market.maxStartPrice",
            ),
            (
                "!has(self.agreementDuration) || "
                f"duration(self.agreementDuration) >= duration('{MIN_AGREEMENT_DURATION}')",
                f"agreementDuration must be at least {MIN_AGREEMENT_DURATION} "
                "(providers refuse shorter agreements)",
                ".agreementDuration",
            ),
            (
                "!has(self.renewBefore) || duration(self.renewBefore) < "
                "duration(has(self.agreementDuration) ? self.agreementDuration : '1h')",
                "renewBefore must be shorter than agreementDuration",
                ".renewBefore",
            ),
            (
                "!has(self.progressDeadlineSeconds) || !has(self.minReadySeconds) || "
                "self.progressDeadlineSeconds > self.minReadySeconds",
                "progressDeadlineSeconds must be greater than minReadySeconds",
                ".progressDeadlineSeconds",
            ),
            (
                "!has(self.ports) || size(self.ports) == 0 || has(self.network)",
                "spec.ports needs spec.network: connections reach the instances through the "
                "service's Golem VPN (e.g. network: {cidr: 192.168.0.0/24})",
                ".ports",
            ),
        ),
    )

    replicas: int = Field(1, ge=0, le=10000, description="Number of instances to keep running.")
    payload: Payload = Field(description="What to rent: runtime, image and minimum resources.")
    lifecycle: Lifecycle = Field(
        default_factory=Lifecycle,
        description="Scripts of the Starting, Running and Stopping states.",
        json_schema_extra={"default": {}},
    )
    respawn_unstarted_instances: bool = Field(
        True,
        alias="respawnUnstartedInstances",
        description="Retry an instance that fails before Running on another provider; "
        "false leaves it Terminated with the error.",
    )
    restart_policy: RestartPolicy = Field(
        RestartPolicy.ALWAYS,
        alias="restartPolicy",
        description="What to do with an instance that fails after Running: Always and "
        "OnFailure replace it on another provider, Never leaves it Terminated. "
        "(Always also replaces instances whose agreement expired.)",
    )
    agreement_duration: Duration = Field(
        "1h",
        alias="agreementDuration",
        description="How long each agreement lasts (e.g. 15m, 2h). Before it ends a "
        "replacement is started and the old instance stopped, so the replica count holds. "
        "(The SDK's `expiration`.)",
    )
    renew_before: Duration | None = Field(
        None,
        alias="renewBefore",
        description="How long before an agreement ends its successor is started (e.g. 5m; "
        "less than agreementDuration). Give it the time a start takes on the chosen providers "
        "(a VM deploy can take minutes). Default: a fifth of agreementDuration, at least 10s "
        "and at most 5m.",
    )
    market: Market = Field(
        default_factory=Market,
        description="Subnet, payment platform, price caps and provider lists.",
        json_schema_extra={"default": {}},
    )
    budget: GLMAmount = Field(
        description="The most GLM this service may spend in all (a decimal string); no new "
        "instance is started when it would exceed it.",
    )
    golem_ref: GolemRef | None = Field(
        None,
        alias="golemRef",
        description="Golem daemon to use; absent means the operator's default.",
    )
    update_strategy: UpdateStrategy = Field(
        default_factory=UpdateStrategy,
        alias="updateStrategy",
        description="How instances of an older revision are replaced (RollingUpdate or "
        "Recreate). Agreement renewals use the rolling update's maxSurge and maxUnavailable.",
        json_schema_extra={"default": {}},
    )
    min_ready_seconds: int = Field(
        0,
        alias="minReadySeconds",
        ge=0,
        le=86400,
        description="How long an instance must have been Running to count as available.",
    )
    progress_deadline_seconds: int = Field(
        600,
        alias="progressDeadlineSeconds",
        ge=1,
        le=86400 * 7,
        description="A rollout that makes no progress for this long is reported as "
        "Progressing=False, reason ProgressDeadlineExceeded (it goes on trying).",
    )
    paused: bool = Field(
        False,
        description="Hold the rollout: no instance of an older revision is replaced or "
        "stopped for it. Scaling and agreement renewals go on.",
    )
    network: ServiceNetwork | None = Field(
        None,
        description="A Golem VPN for the instances (opt-in): each instance joins it at its own "
        "address and reaches the others by address or host name (<service>-<ordinal>). "
        "Absent: no VPN. Part of the revision: adding, changing or removing it rolls the "
        "instances.",
    )
    ports: list[ServicePort] = Field(
        default_factory=list,
        max_length=PORTS_MAX,
        description="TCP ports of the instances to serve inside the cluster: the operator "
        "manages a Kubernetes Service of the GolemService's name with these ports, whose "
        "connections it forwards to a Running instance through the Golem VPN's TCP tunnel. "
        "Names and port numbers are unique. Not part of the revision: changing ports never "
        "restarts an instance.",
        json_schema_extra=cel(
            (
                "self.all(p, self.exists_one(q, q.name == p.name))",
                "spec.ports: each port needs a name of its own",
            ),
            (
                "self.all(p, self.exists_one(q, q.port == p.port))",
                "spec.ports: each port number may appear only once",
            ),
        ),
    )
    revision_history_limit: int = Field(
        10,
        alias="revisionHistoryLimit",
        ge=0,
        le=100,
        description="How many old revisions status.revisions remembers.",
    )

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, ports: list[ServicePort]) -> list[ServicePort]:
        names = [p.name for p in ports]
        numbers = [p.port for p in ports]
        if len(set(names)) != len(names):
            raise ValueError("spec.ports: each port needs a name of its own")
        if len(set(numbers)) != len(numbers):
            raise ValueError("spec.ports: each port number may appear only once")
        return ports

    @model_validator(mode="after")
    def _deadline_after_ready(self) -> GolemServiceSpec:
        if self.progress_deadline_seconds <= self.min_ready_seconds:
            raise ValueError("progressDeadlineSeconds must be greater than minReadySeconds")
        if self.ports and self.network is None:
            raise ValueError(
                "spec.ports needs spec.network: connections reach the instances through the "
                "service's Golem VPN"
            )
        return self

    @property
    def budget_glm(self) -> Decimal:
        return Decimal(self.budget)
