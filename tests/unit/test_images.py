"""The offline builder reads our Dockerfiles as Docker would, or refuses."""

from __future__ import annotations

import pytest

from meshaccel_images.build import IMAGES, REPO
from meshaccel_images.dockerfile import DockerfileError, parse


def test_steps_env_and_config_in_order() -> None:
    recipe = parse(
        """# comment
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \\
 # a comment inside a continued line is dropped, as Docker does
 && apt-get install -y python3
WORKDIR /opt/x
COPY api ./api
ENV A=1 B="two words"
RUN echo $A
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["meshaccel-agent"]
"""
    )
    assert recipe.base == "debian:bookworm-slim"
    assert [s.kind for s in recipe.steps] == ["RUN", "WORKDIR", "COPY", "ENV", "RUN"]
    assert recipe.steps[0].command == "apt-get update  && apt-get install -y python3"
    assert recipe.steps[2].sources == ("api",) and recipe.steps[2].dest == "./api"
    assert recipe.env == {"A": "1", "B": "two words"}
    assert recipe.user == "65532:65532" and recipe.exposed == ["9464/tcp"]
    assert recipe.entrypoint == ["meshaccel-agent"] and recipe.workdir == "/opt/x"


def test_build_arg_overrides_the_base() -> None:
    recipe = parse("ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\n", build_args={"BASE_IMAGE": "x:1"})
    assert recipe.base == "x:1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM a\nHEALTHCHECK CMD true\n", "Dockerfile:2: HEALTHCHECK is not supported"),
        ("FROM a AS b\nFROM b\n", "multi-stage builds are not supported"),
        ("FROM a\nENTRYPOINT meshaccel-agent\n", "ENTRYPOINT must use the exec form"),
        ("FROM a\nCOPY --chown=1 a b\n", "COPY takes plain SOURCE"),
        ("RUN true\n", "RUN before FROM"),
    ],
)
def test_what_it_cannot_mean_the_same_is_refused(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse(text)


@pytest.mark.parametrize("name", list(IMAGES))
def test_every_project_dockerfile_parses(name: str) -> None:
    spec = IMAGES[name]
    recipe = parse((REPO / spec.dockerfile).read_text(), spec.dockerfile)
    assert recipe.base == "debian:bookworm-slim"
    for step in recipe.steps:
        for source in step.sources:
            assert (REPO / source).exists(), f"{spec.dockerfile}:{step.line}: COPY {source} is missing"
