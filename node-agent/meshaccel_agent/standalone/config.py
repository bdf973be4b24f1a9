"""The enrolment set: which network namespaces (pods) are accelerated.

The standalone agent reads it from a YAML file; the Kubernetes agent will
build the same model from its node object. Validation happens here, once, so
that a bad file is refused with a message naming the field and the agent keeps
its last good state.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A configuration that cannot be applied; the message is one line."""


def _pod_ipv4(ip: str) -> str:
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise ValueError(f"{ip!r} is not an IPv4 address") from None
    if addr.is_loopback or addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"{ip} cannot identify a pod (loopback, unspecified or multicast)")
    return str(addr)


PodIPv4 = Annotated[str, AfterValidator(_pod_ipv4)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Endpoint(BaseModel):
    """One pod: its network namespace and the addresses that belong to it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str = Field(min_length=1, max_length=253, description="label for logs and status")
    netns: str = Field(
        min_length=1, description="path of the network namespace, e.g. /run/netns/NAME or /proc/PID/ns/net"
    )
    ips: tuple[PodIPv4, ...] = Field(min_length=1, description="IPv4 addresses of the pod")
    excluded_ports: tuple[Port, ...] = Field(
        default=(), alias="excludedPorts", description="ports (local or remote) never accelerated"
    )
    shapes: tuple[Literal["direct", "sidecar"], ...] = Field(
        default=("direct", "sidecar"),
        min_length=1,
        description="direct: to other enrolled pods; sidecar: inside the pod (app <-> its proxy)",
    )


class EnrolmentConfig(BaseModel):
    """The desired enrolment of one host."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    endpoints: tuple[Endpoint, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> EnrolmentConfig:
        names: set[str] = set()
        owners: dict[str, str] = {}
        for i, ep in enumerate(self.endpoints):
            if ep.name in names:
                raise ValueError(f"endpoints[{i}].name: {ep.name!r} appears twice")
            names.add(ep.name)
            for ip in ep.ips:
                if ip in owners:
                    raise ValueError(f"endpoints[{i}].ips: {ip} already belongs to {owners[ip]!r}")
                owners[ip] = ep.name
        return self


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_config(text: str, source: str = "<config>") -> EnrolmentConfig:
    """Parse YAML text; raise ConfigError with a one-line, field-naming message."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return EnrolmentConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(tuple(err["loc"])) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{source}: {field}: {msg}{more}") from None


def load_config(path: str | Path) -> EnrolmentConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    return parse_config(text, str(p))
