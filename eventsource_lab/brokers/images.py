"""Which image each broker's container runs, whether it is here, and what its labels promise.

A class behind a registry mirror, or with images pulled beforehand, names its own images in
``EVENTSOURCE_LAB_REDIS_IMAGE`` (``_RABBITMQ_IMAGE``, ``_KAFKA_IMAGE``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .base import KINDS

__all__ = [
    "DEFAULT_IMAGES",
    "DURABLE_LABEL",
    "HUB_PREFIX_ENV",
    "IMAGE_ENV_VARS",
    "ImageNameError",
    "ImagePullError",
    "ImageState",
    "configured_image",
    "image_name",
    "inspect",
    "names_registry",
    "pull",
    "reaper_image",
]

DEFAULT_IMAGES = {
    "redis": "redis:7-alpine",
    "rabbitmq": "rabbitmq:3.13-alpine",
    "kafka": "apache/kafka:3.8.0",
}
IMAGE_ENV_VARS = {kind: f"EVENTSOURCE_LAB_{kind.upper()}_IMAGE" for kind in KINDS}
#: ``false`` on an image whose broker keeps nothing across a restart (absent: it keeps it).
DURABLE_LABEL = "org.eventsource-lab.durable"
HUB_PREFIX_ENV = "TESTCONTAINERS_HUB_IMAGE_NAME_PREFIX"


class ImagePullError(Exception):
    """The engine could not pull an image (no registry, no such image, no access)."""


class ImageNameError(ValueError):
    """The engine says a name is no valid image reference (say, one with capitals in it)."""


@dataclass(frozen=True)
class ImageState:
    """An image as the engine has it: here or not, and whether its broker keeps its data."""

    name: str
    present: bool
    durable: bool


def configured_image(kind: str) -> str:
    """The image named for ``kind``: its ``EVENTSOURCE_LAB_<KIND>_IMAGE``, else the default."""
    return os.environ.get(IMAGE_ENV_VARS[kind]) or DEFAULT_IMAGES[kind]


def names_registry(name: str) -> bool:
    """Whether ``name`` starts with a registry host (``mirror.school:5000/redis:7``), by Docker's
    rule: a first path part with a dot or a port in it, or ``localhost``."""
    first, slash, _ = name.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def image_name(kind: str) -> str:
    """The name the engine is asked for: the hub prefix goes before a Docker Hub name only, as
    testcontainers documents it (a name that names its registry already is used as it is)."""
    name = configured_image(kind)
    return name if names_registry(name) else os.environ.get(HUB_PREFIX_ENV, "") + name


def reaper_image() -> str | None:
    """testcontainers' reaper (Ryuk) image, which every start needs; None where it is disabled."""
    from testcontainers.core.config import ENABLE_FLAGS
    from testcontainers.core.config import testcontainers_config as config

    disabled = os.environ.get(
        "TESTCONTAINERS_RYUK_DISABLED", config.tc_properties.get("ryuk.disabled", "")
    )
    if disabled.lower() in ENABLE_FLAGS:
        return None
    return os.environ.get(HUB_PREFIX_ENV, "") + config.ryuk_image


def inspect(client: Any, name: str) -> ImageState:
    """Whether the engine behind ``client`` has ``name``, and what its durable label says."""
    import docker

    try:
        labels = client.images.get(name).labels
    except docker.errors.ImageNotFound:
        return ImageState(name, False, True)
    except docker.errors.APIError as e:
        if e.status_code == 400:  # the engine's answer to a name it cannot parse
            raise ImageNameError(f"{name} is no valid image name ({e.explanation})") from e
        raise
    said = labels.get(DURABLE_LABEL, "").strip().lower()
    return ImageState(name, True, said not in ("false", "no", "0"))


def pull(client: Any, name: str) -> None:
    """Pull ``name``; ImagePullError with the engine's own words if it cannot."""
    import docker

    repository, tag = docker.utils.parse_repository_tag(name)
    try:
        for line in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if "error" in line:  # a failure half-way is a line of the stream, not an HTTP error
                raise ImagePullError(str(line["error"]).strip())
    except docker.errors.APIError as e:
        raise ImagePullError(str(e.explanation or e)) from e
    except (docker.errors.DockerException, OSError) as e:  # requests' errors are OSErrors
        raise ImagePullError(f"{type(e).__name__}: {e}") from e
