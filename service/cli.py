"""The ``customer-sync`` command line (SPEC §7): a thin dispatcher.

Each command lives in its own module with ``add_arguments`` and ``main``;
this one only wires them and turns the errors a user can meet into one
sentence on stderr (never a traceback): exit 2 for an unusable configuration,
1 for anything else the command could not do, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service import __version__
from service.errors import ConfigError, CustomerSyncError


def _parser() -> argparse.ArgumentParser:
    from service.gameball.simulator import cli as simulate
    from service.tools import canary, check, demo, replay

    parser = argparse.ArgumentParser(
        prog="customer-sync",
        description="Kafka CDC → Gameball Batch Customer API, at least once.",
    )
    parser.add_argument("--version", action="version", version=f"customer-sync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run the service (configured by environment variables)",
        description=(
            "Run the service. With --until-idle or --max-records it is a bounded run "
            "(a one-off backfill): it stops once everything it read is delivered (or "
            "dead-lettered) and committed, leaves the group and exits 0."
        ),
    )
    run.add_argument(
        "--until-idle",
        action="store_true",
        help="stop once every assigned partition is read to its end, settled and committed",
    )
    run.add_argument(
        "--max-records",
        type=_positive,
        metavar="N",
        help="read at most N records; stop once they are settled and committed",
    )
    check.add_arguments(
        commands.add_parser(
            "check",
            help="check configuration, brokers, topics, group lag and API credentials",
            description=(check.__doc__ or "").split("\n\n")[1].replace("\n", " "),
        )
    )
    canary.add_arguments(
        commands.add_parser(
            "canary",
            help="go-live check: one throwaway customer through the API, read back field by field",
            description=(canary.__doc__ or "").split("\n\n")[1].replace("\n", " "),
        )
    )
    demo.add_arguments(
        commands.add_parser(
            "demo", help="the whole pipeline on this machine: broker, simulator, events, live view"
        )
    )
    simulate.add_arguments(
        commands.add_parser(
            "simulate",
            help="run the local Gameball Batch API simulator",
            description=simulate.DESCRIPTION,
            epilog=simulate.EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    replay.add_arguments(commands.add_parser("dlq", help="inspect or replay the dead-letter topic"))
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        from service.app import run
        from service.config import load_settings
        from service.delivery.bounded import Until

        bounded = args.until_idle or args.max_records is not None
        until = Until(idle=args.until_idle, records=args.max_records) if bounded else None
        run(load_settings(), until)
        return 0
    if args.command == "check":
        from service.tools.check import main as check_main

        return check_main(args)
    if args.command == "canary":
        from service.tools.canary import main as canary_main

        return canary_main(args)
    if args.command == "simulate":
        from service.gameball.simulator.cli import main as simulate_main

        return simulate_main(args)
    if args.command == "demo":
        from service.tools.demo import run_demo

        return run_demo(args)
    if args.command == "dlq":
        from service.tools.replay import main as dlq_main

        return dlq_main(args)
    raise AssertionError(f"unknown command {args.command}")  # argparse prevents it


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"customer-sync: configuration error: {exc}", file=sys.stderr)
        return 2
    except CustomerSyncError as exc:
        print(f"customer-sync {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("customer-sync: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
