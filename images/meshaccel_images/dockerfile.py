"""The part of the Dockerfile language our Dockerfiles use, parsed into steps.

The project's Dockerfiles are the one recipe of each image: `docker build`
runs them on a workstation, and this builder runs the same file here, where
no container engine or registry is available. It understands one stage:
ARG, FROM, RUN (shell form), COPY, ENV, WORKDIR, USER, LABEL, EXPOSE,
ENTRYPOINT and CMD. Anything else is refused with the line that uses it, so
a Dockerfile cannot silently mean something else here than under Docker.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

KNOWN = {"ARG", "FROM", "RUN", "COPY", "ENV", "WORKDIR", "USER", "LABEL", "EXPOSE", "ENTRYPOINT", "CMD"}


class DockerfileError(ValueError):
    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True)
class Step:
    """One instruction that changes the filesystem or what later RUNs see:
    RUN (command), COPY (sources, dest), WORKDIR (dest) or ENV (env). The
    others only shape the image config (Recipe)."""

    kind: str
    line: int
    command: str = ""
    sources: tuple[str, ...] = ()
    dest: str = ""
    env: tuple[tuple[str, str], ...] = ()


@dataclass
class Recipe:
    base: str
    steps: list[Step] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines; drop comments and blank lines."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append((start, pending + stripped))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), ""), value)


def _pairs(rest: str, path: str, line: int, what: str) -> dict[str, str]:
    words = shlex.split(rest)
    if len(words) == 2 and "=" not in words[0]:
        return {words[0]: words[1]}  # the legacy `ENV key value` form
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise DockerfileError(path, line, f"{what} expects key=value, got {word!r}")
        pairs[key] = value
    return pairs


def _json_list(rest: str, path: str, line: int, what: str) -> list[str]:
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DockerfileError(path, line, f'{what} must use the exec form, e.g. ["cmd", "arg"]')
    return value


def parse(text: str, path: str = "Dockerfile", build_args: dict[str, str] | None = None) -> Recipe:
    args: dict[str, str] = {}
    recipe: Recipe | None = None
    for line, content in _logical_lines(text):
        keyword, _, rest = content.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword not in KNOWN:
            raise DockerfileError(path, line, f"{keyword} is not supported by the offline builder")
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = (build_args or {}).get(name, default)
            continue
        if keyword == "FROM":
            if recipe is not None:
                raise DockerfileError(path, line, "multi-stage builds are not supported by the offline builder")
            recipe = Recipe(base=_substitute(rest, args))
            continue
        if recipe is None:
            raise DockerfileError(path, line, f"{keyword} before FROM")
        variables = {**args, **recipe.env}
        if keyword == "RUN":
            if rest.startswith("["):
                raise DockerfileError(path, line, "RUN in exec form is not supported; use the shell form")
            recipe.steps.append(Step("RUN", line, command=rest))
        elif keyword == "COPY":
            words = shlex.split(_substitute(rest, variables))
            if any(w.startswith("--") for w in words) or len(words) < 2:
                raise DockerfileError(path, line, "COPY takes plain SOURCE... DEST (no flags)")
            recipe.steps.append(Step("COPY", line, sources=tuple(words[:-1]), dest=words[-1]))
        elif keyword == "WORKDIR":
            recipe.workdir = _substitute(rest, variables)
            recipe.steps.append(Step("WORKDIR", line, dest=recipe.workdir))
        elif keyword == "ENV":
            pairs = {k: _substitute(v, variables) for k, v in _pairs(rest, path, line, "ENV").items()}
            recipe.env.update(pairs)
            recipe.steps.append(Step("ENV", line, env=tuple(pairs.items())))
        elif keyword == "LABEL":
            recipe.labels.update(_pairs(rest, path, line, "LABEL"))
        elif keyword == "USER":
            recipe.user = rest
        elif keyword == "EXPOSE":
            recipe.exposed += [p if "/" in p else f"{p}/tcp" for p in rest.split()]
        elif keyword == "ENTRYPOINT":
            recipe.entrypoint = _json_list(rest, path, line, "ENTRYPOINT")
        elif keyword == "CMD":
            recipe.cmd = _json_list(rest, path, line, "CMD")
    if recipe is None:
        raise DockerfileError(path, 1, "no FROM")
    return recipe
