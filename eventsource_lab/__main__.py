"""Command line: ``python -m eventsource_lab demo``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence


def _demo(_: argparse.Namespace) -> int:
    from . import demo

    asyncio.run(demo.main())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m eventsource_lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the tutorial's complete working example").set_defaults(
        run=_demo
    )
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
