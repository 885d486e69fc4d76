"""Command line: ``demo``, ``brokers up|serve|doctor|pull``, ``doctor``, ``conformance``,
``worker``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path


def _demo(_: argparse.Namespace) -> int:
    from . import demo

    asyncio.run(demo.main())
    return 0


@contextlib.contextmanager
def _signals_set(stop: threading.Event) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM set ``stop`` (so brokers are stopped, not orphaned)."""
    handlers = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _brokers_up(args: argparse.Namespace) -> int:
    """Start one broker and print its address for a shell (the export line is the only place
    its password is shown: it is what the learner asked for)."""
    from .brokers import ENV_VARS, BrokerUnavailableError, start
    from .redact import redact_url

    stop = threading.Event()
    with _signals_set(stop):
        try:
            broker = start(args.kind, args.mode, nodes=args.nodes)
        except ValueError as e:  # a cluster of something other than local RabbitMQ, say
            print(f"brokers up: {e}", file=sys.stderr)
            return 2
        except BrokerUnavailableError as e:
            print(e, file=sys.stderr)
            return 1
        with broker:
            print(f"{args.kind} broker ({broker.mode}) at {redact_url(broker.url)}")
            print(f"export {ENV_VARS[args.kind]}={shlex.quote(broker.url)}")
            print("Ctrl-C stops it.", flush=True)
            stop.wait()
        print(f"{args.kind} broker stopped", flush=True)
        return 0


def _brokers_serve(args: argparse.Namespace) -> int:
    """Start several brokers, write their ``export`` lines to a file, stay up until signalled.

    With ``--env-file`` the lines, passwords included, go to that file (mode 0600) only; what is
    printed (often into a log others can read) has the passwords blanked.
    """
    from .brokers import ENV_VARS, BrokerUnavailableError, start
    from .brokers.base import write_private
    from .redact import redact_url

    stop = threading.Event()
    with _signals_set(stop), contextlib.ExitStack() as running:
        try:
            brokers = [running.enter_context(start(kind, args.mode)) for kind in args.kinds]
        except BrokerUnavailableError as e:
            print(e, file=sys.stderr)
            return 1
        exports = "".join(f"export {ENV_VARS[b.kind]}={shlex.quote(b.url)}\n" for b in brokers)
        if args.env_file:  # written whole, then renamed: a reader never sees half of it
            partial = Path(f"{args.env_file}.partial")
            write_private(partial, exports)
            partial.replace(args.env_file)
            shown = "".join(f"export {ENV_VARS[b.kind]}={redact_url(b.url)}\n" for b in brokers)
            exports = f"{shown}(with the passwords in {args.env_file})\n"
        print(exports + "Ctrl-C (or SIGTERM) stops them.", end="\n", flush=True)
        stop.wait()
    print("brokers stopped", flush=True)
    return 0


def _doctor(_: argparse.Namespace) -> int:
    from .doctor import main as doctor

    return doctor()


def _brokers_doctor(_: argparse.Namespace) -> int:
    from .brokers import diagnose, format_report

    print(format_report(diagnose()))
    return 0


def _brokers_pull(args: argparse.Namespace) -> int:
    """Pull the images containers of ``args.kinds`` (default: all) need, before a lesson;
    1 if any of them is still missing afterwards."""
    from .brokers import KINDS, containers

    ok, why = containers.docker_status()
    if not ok:
        print(f"nothing pulled: {why}", file=sys.stderr)
        return 1
    missing = 0
    for name in containers.images_to_pull(args.kinds or list(KINDS)):
        print(f"pulling {name} ...", flush=True)
        present, error = containers.pull_image(name)
        if error is None:
            print(f"pulled {name}", flush=True)
        elif present:
            print(f"{name}: a copy is here, the registry did not answer: {error}", file=sys.stderr)
        else:
            print(f"cannot pull {name}: {error}", file=sys.stderr)
            missing += 1
    return 1 if missing else 0


def _kind(value: str) -> str:
    from .brokers.base import KINDS

    if value not in KINDS:
        raise argparse.ArgumentTypeError(f"{value!r} is none of {', '.join(KINDS)}")
    return value


def _conformance(args: argparse.Namespace) -> int:
    from .matrix import run_conformance

    text, matrix_json = asyncio.run(run_conformance(args.buses.split(",")))
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(matrix_json)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from . import workers

    return workers.main(
        args.bus,
        args.group,
        args.handler,
        args.url,
        args.settings,
        args.imports,
        args.report_every,
        args.stop_on_stdin_eof,
        args.stop_timeout,
    )


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse type): 0, negatives and nan are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):  # nan compares false too
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit code."""
    from .brokers.base import KINDS, MODES

    parser = argparse.ArgumentParser(prog="python -m eventsource_lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the tutorial's complete working example").set_defaults(
        run=_demo
    )
    brokers = commands.add_parser("brokers", help="start a real broker, or see which ways work")
    actions = brokers.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start a broker and keep it running until Ctrl-C")
    up.add_argument("kind", choices=KINDS)
    up.add_argument("--mode", choices=MODES, default="auto", help="how to get it (default: auto)")
    up.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="rabbitmq only: start a local cluster of this many nodes (3 need ~460 MB)",
    )
    up.set_defaults(run=_brokers_up)
    serve = actions.add_parser(
        "serve", help="start several brokers, write their export lines, keep them until signalled"
    )
    serve.add_argument("kinds", nargs="+", choices=KINDS, metavar="KIND", help=", ".join(KINDS))
    serve.add_argument("--mode", choices=MODES, default="auto", help="how to get them")
    serve.add_argument("--env-file", metavar="FILE", help="also write the export lines here")
    serve.set_defaults(run=_brokers_serve)
    actions.add_parser("doctor", help="which ways of getting each broker work here").set_defaults(
        run=_brokers_doctor
    )
    pull = actions.add_parser("pull", help="pull the container images, say before a lesson")
    pull.add_argument("kinds", nargs="*", type=_kind, metavar="KIND", help=", ".join(KINDS))
    pull.set_defaults(run=_brokers_pull)
    commands.add_parser(
        "doctor", help="classroom preflight: can the notebooks run here?"
    ).set_defaults(run=_doctor)
    conformance = commands.add_parser(
        "conformance", help="run the conformance behaviours on every bus and print the matrix"
    )
    conformance.add_argument(
        "--buses", default="memory,redis,rabbitmq,kafka", help="comma-separated (default: all)"
    )
    conformance.add_argument("--json", metavar="FILE", help="also write the matrix as JSON")
    conformance.set_defaults(run=_conformance)
    worker = commands.add_parser(
        "worker", help="consume as one worker process of a group until SIGTERM (graceful)"
    )
    worker.add_argument("--bus", required=True, choices=("redis", "rabbitmq", "kafka"))
    worker.add_argument("--group", required=True, help="the consumer group to join")
    worker.add_argument("--handler", required=True, help="package.module:callable, for every event")
    worker.add_argument("--url", help="the broker (default: the bus's environment variable)")
    worker.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module to import first, e.g. the one registering the events; repeatable",
    )
    worker.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a bus setting, VALUE as JSON (e.g. --set pending_idle_ms=500); repeatable",
    )
    worker.add_argument(
        "--report-every", type=_seconds, default=1.0, metavar="SECONDS", help="stats line interval"
    )
    worker.add_argument(
        "--stop-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="a graceful stop taking longer ends in SIGKILL (default: 30); a second signal ends "
        "the worker at once",
    )
    worker.add_argument("--stop-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    worker.set_defaults(run=_worker)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
