"""Command-line flags declared once: parsed by the process that owns them,
rendered by whoever starts that process.

The operator starts the node agent through a DaemonSet, so the agent's flags
are a contract between two programs. Each flag is declared here once, next to
the settings field it fills; `parse` and `render` both read that declaration,
and a test parses what the operator renders with the agent's own parser.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Flag:
    name: str  # "--sockhash-entries"
    field: str  # dotted path into the settings model: "map_sizes.sockhash"
    help: str
    env: str | None = None  # an environment variable that overrides the model's default


def _field_type(model: type[BaseModel], path: str) -> tuple[Any, Any]:
    """(annotation, default) of a dotted field path."""
    *parents, last = path.split(".")
    cls: type[BaseModel] = model
    instance: Any = model()
    for part in parents:
        instance = getattr(instance, part)
        cls = type(instance)
    return cls.model_fields[last].annotation, getattr(instance, last)


def _scalar(annotation: Any) -> Any:
    """int for `int`, str for `str | None`, the choices' type for a Literal."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return type(typing.get_args(annotation)[0])
    return annotation


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel], flags: Sequence[Flag]) -> None:
    for flag in flags:
        annotation, default = _field_type(model, flag.field)
        kind = _scalar(annotation)
        dest = flag.field.replace(".", "__")
        if flag.env and flag.env in os.environ:
            default = os.environ[flag.env]
        choices = None
        base = annotation
        if typing.get_origin(base) is typing.Literal:
            choices = list(typing.get_args(base))
        if kind is bool:
            parser.add_argument(flag.name, dest=dest, action="store_true", default=default, help=flag.help)
        elif typing.get_origin(annotation) in (list, tuple):
            parser.add_argument(flag.name, dest=dest, action="append", default=list(default), help=flag.help)
        else:
            help_text = f"{flag.help} (default: {default})"
            parser.add_argument(flag.name, dest=dest, type=kind, default=default, choices=choices, help=help_text)


def from_namespace(model: type[M], flags: Sequence[Flag], args: argparse.Namespace, **fixed: Any) -> M:
    """The settings model filled from parsed flags (validated by pydantic)."""
    data: dict[str, Any] = dict(fixed)
    for flag in flags:
        *parents, last = flag.field.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = getattr(args, flag.field.replace(".", "__"))
    return model.model_validate(data)


def render(settings: BaseModel, flags: Sequence[Flag]) -> list[str]:
    """The flags that reproduce @settings, leaving out values equal to the defaults."""
    defaults = type(settings)()
    out: list[str] = []
    for flag in flags:
        value: Any = settings
        default: Any = defaults
        for part in flag.field.split("."):
            value, default = getattr(value, part), getattr(default, part)
        if value == default:
            continue
        if isinstance(value, bool):
            out.append(flag.name)
        elif isinstance(value, list | tuple):
            out += [f"{flag.name}={v}" for v in value]
        else:
            out.append(f"{flag.name}={value}")
    return out
