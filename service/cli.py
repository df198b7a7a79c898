"""The ``customer-sync`` command line (SPEC §7)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service import __version__
from service.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    from service.simulator import add_simulate_arguments

    parser = argparse.ArgumentParser(
        prog="customer-sync",
        description="Kafka CDC → Gameball Batch Customer API, at least once.",
    )
    parser.add_argument("--version", action="version", version=f"customer-sync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="run the service (configured by environment variables)")
    simulate = commands.add_parser("simulate", help="run the local Gameball Batch API simulator")
    add_simulate_arguments(simulate)
    demo = commands.add_parser(
        "demo", help="the whole pipeline on this machine: broker, simulator, events, live view"
    )
    demo.add_argument("--events", type=int, default=20_000, help="events to produce (20000)")
    demo.add_argument("--customers", type=int, default=3_000, help="distinct customers (3000)")
    demo.add_argument(
        "--failure-rate", type=float, default=0.01, help="per-record API failure rate (0.01)"
    )
    demo.add_argument("--job-duration", type=float, default=0.3, help="seconds per job (0.3)")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the pipeline up after the summary, for exploring /metrics (Ctrl-C ends)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from service.app import run
            from service.config import load_settings

            run(load_settings())
        elif args.command == "simulate":
            import asyncio

            from service.simulator import config_from_args, serve

            config = config_from_args(args)
            print(
                f"Gameball API simulator on http://{args.host}:{args.port}  "
                f"(APIKey={config.api_key}, SecretKey={config.secret_key})",
                flush=True,
            )
            asyncio.run(serve(config, args.host, args.port))
        elif args.command == "demo":
            from service.demo import run_demo

            return run_demo(args)
    except ConfigError as exc:
        print(f"customer-sync: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
