"""``customer-sync simulate``: its switches, its help text, the banner it prints, and ``main``.

The server itself is :mod:`.runner`'s; this module only turns a command line into a
:class:`SimulatorConfig` and a bound socket, and says what it did in one banner.
"""

from __future__ import annotations

import argparse
from typing import Any

from service.errors import ConfigError
from service.gameball.customer import SHAPES
from service.gameball.operations import Operation
from service.gameball.simulator import runner
from service.gameball.simulator.config import DOCUMENTED_LIMITS, SimulatorConfig

LISTEN_BACKLOG = 2048


def main(args: argparse.Namespace) -> int:
    """Bind first (a taken port is one sentence), print the banner, then serve until Ctrl-C."""
    config = config_from_args(args)
    try:
        # Listening before the banner makes it a readiness signal: a client that reads
        # "listening on" may connect at once (queued until uvicorn's loop accepts it), so
        # a supervisor such as the benchmark waits for that line, not for a poll to succeed.
        sock = runner.bind(args.host, args.port, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        raise ConfigError(
            f"simulate: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
            "choose another --port or --host"
        ) from None
    print(banner(config, runner.base_url(args.host, sock.getsockname()[1])), flush=True)
    runner.serve_forever(config, sock)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``customer-sync simulate`` switches; defaults are :class:`SimulatorConfig`'s."""
    d = SimulatorConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    add("--port", type=int, default=8090, help="port to listen on (8090)")
    add("--api-key", default=d.api_key, help=f"the APIKey header to accept ({d.api_key})")
    add(
        "--secret-key",
        default=d.secret_key,
        help=f"the SecretKey header to accept ({d.secret_key})",
    )
    add(
        "--latency",
        type=float,
        default=d.latency_seconds,
        help="seconds added to every API request (0)",
    )
    add(
        "--job-duration",
        type=float,
        default=d.job_duration_seconds,
        help="seconds from job creation to its end; 0 = complete at the first look (0)",
    )
    add(
        "--record-failure-rate",
        type=float,
        default=d.record_failure_rate,
        help="share of records failing with 'Failed to create customer' (0)",
    )
    add(
        "--job-failure-rate",
        type=float,
        default=d.job_failure_rate,
        help="share of jobs ending 'failed' (0)",
    )
    add(
        "--stuck-job-rate",
        type=float,
        default=d.stuck_job_rate,
        help="share of jobs that stop progressing halfway and stay 'running' until stopped (0)",
    )
    add(
        "--stopped-job-rate",
        type=float,
        default=d.stopped_job_rate,
        help="share of jobs the API stops by itself halfway, ending 'stopped' (0)",
    )
    add(
        "--rate-limit-rate",
        type=float,
        default=d.rate_limit_rate,
        help="share of requests answered 429 (0)",
    )
    add(
        "--retry-after",
        type=float,
        default=d.retry_after_seconds,
        help=f"the Retry-After of the --rate-limit-rate 429s, in seconds ({d.retry_after_seconds})",
    )
    add(
        "--server-error-rate",
        type=float,
        default=d.server_error_rate,
        help="share of requests answered 500/502/503; half the POSTs after creating the job (0)",
    )
    add(
        "--documented-limits",
        action="store_true",
        help="enforce Gameball's documented rate limits for the batch endpoints: "
        f"{DOCUMENTED_LIMITS['limit_per_second']} requests/s and "
        f"{DOCUMENTED_LIMITS['limit_per_window']} per "
        f"{DOCUMENTED_LIMITS['limit_window_seconds']:g} s per API key, in sliding windows",
    )
    add(
        "--limit-per-second",
        type=int,
        default=None,
        help="requests per second per API key, 429 beyond (0 = none; overrides the documented)",
    )
    add(
        "--limit-per-window",
        type=int,
        default=None,
        help="requests per --limit-window per API key, 429 beyond (0 = none; overrides the "
        "documented)",
    )
    add(
        "--limit-window",
        type=float,
        default=None,
        help=f"the quota window of --limit-per-window, in seconds ({d.limit_window_seconds:g})",
    )
    add(
        "--limit-without-retry-after",
        action="store_true",
        help="answer the limits' 429s without Retry-After, as Gameball documents none",
    )
    add("--seed", type=int, default=None, help="random seed for reproducible faults (none)")
    add(
        "--job-api",
        choices=("batch", "batches", "both"),
        default=d.job_api,
        help="the job dialect(s) served: batch (GET/DELETE /batch/{jobId}), batches "
        "(GET /batches/{id}/status, POST /batches/{id}/stop) or both; the other's routes "
        f"answer 404 like absent ones ({d.job_api})",
    )
    add(
        "--error-envelope",
        action="store_true",
        help="answer errors with Gameball's {code, type, message, requestId} (401: code 1001)",
    )
    add(
        "--min-api-version",
        choices=("v4.0", "v4.1"),
        default=None,
        help="refuse calls to older API versions with 403, as a merchant's minimum version does",
    )
    add(
        "--customer-shape",
        choices=SHAPES,
        default=d.customer_shape,
        help="the customer item the API binds: nested (Gameball's reference: the profile in "
        f"customerAttributes) or flat (the tutorial's) ({d.customer_shape})",
    )
    add(
        "--lenient",
        action="store_true",
        help="accept item fields the shape does not define, drop them and count them in "
        "/_sim/stats, as the live API probably does (default: strict, a 400 naming the field)",
    )
    add(
        "--all-customers-known",
        action="store_true",
        help="take every customer as known to orders, cashback, redeem, events and "
        "balance-adjustment (default: 'Customer not found' until a customers job applied it)",
    )
    add(
        "--echo-keys",
        action="store_true",
        help="add the natural key (orderId, transactionId) to each result entry; Gameball "
        "documents only customerId and the message",
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Raises :class:`ConfigError` (reported cleanly by the CLI) for an out-of-range value."""
    values: dict[str, Any] = {
        "api_key": args.api_key,
        "secret_key": args.secret_key,
        "latency_seconds": args.latency,
        "job_duration_seconds": args.job_duration,
        "record_failure_rate": args.record_failure_rate,
        "job_failure_rate": args.job_failure_rate,
        "stuck_job_rate": args.stuck_job_rate,
        "stopped_job_rate": args.stopped_job_rate,
        "rate_limit_rate": args.rate_limit_rate,
        "retry_after_seconds": args.retry_after,
        "server_error_rate": args.server_error_rate,
        "limit_retry_after": not args.limit_without_retry_after,
        "seed": args.seed,
        "job_api": args.job_api,
        "error_envelope": args.error_envelope,
        "min_api_version": args.min_api_version or "",
        "customer_shape": args.customer_shape,
        "strict": not args.lenient,
        "all_customers_known": args.all_customers_known,
        "echo_keys": args.echo_keys,
    }
    if args.documented_limits:
        values.update(DOCUMENTED_LIMITS)
    explicit = {
        "limit_per_second": args.limit_per_second,
        "limit_per_window": args.limit_per_window,
        "limit_window_seconds": args.limit_window,
    }
    values.update({name: value for name, value in explicit.items() if value is not None})
    try:
        return SimulatorConfig(**values)
    except ValueError as exc:
        raise ConfigError(f"simulate: {exc}") from exc


DESCRIPTION = """\
A local stand-in for Gameball's batch API: every batch operation (customers,
orders, cashback, redeem, events, balance-adjustment), the same paths (v4.0 and
v4.1; job status and stop in either published dialect, --job-api), the
APIKey/SecretKey headers, the 1,000-record limit and the queued -> running ->
completed/failed job lifecycle; per record, a duplicate orderId or transactionId
is refused, an unknown customer is 'Customer not found' and a transaction time
in the future is refused; plus switches to provoke every failure the service
must survive. Unauthenticated controls: GET /_sim/stats, GET
/_sim/applied?since=N[&operation=orders], GET|POST /_sim/config, POST
/_sim/reset. --documented-limits answers 429 past Gameball's documented rate
limits, as the real API does.
"""

EPILOG = """\
examples:
  customer-sync simulate                                  # a well-behaved API on :8090
  customer-sync simulate --job-duration 2 --record-failure-rate 0.05
  customer-sync simulate --rate-limit-rate 0.2 --server-error-rate 0.05 --seed 1
  customer-sync simulate --documented-limits --limit-without-retry-after --job-duration 2
  customer-sync simulate --job-api batches --customer-shape flat --lenient
  customer-sync simulate --all-customers-known --echo-keys   # orders without customers first
"""


def banner(config: SimulatorConfig, base_url: str) -> str:
    """What a newcomer needs to point the service at the simulator, ready to paste."""
    faults = {
        "latency": f"{config.latency_seconds:g} s",
        "job duration": f"{config.job_duration_seconds:g} s",
        "record failures": f"{config.record_failure_rate:.1%}",
        "job failures": f"{config.job_failure_rate:.1%}",
        "stuck jobs": f"{config.stuck_job_rate:.1%}",
        "429s": f"{config.rate_limit_rate:.1%} (Retry-After {config.retry_after_seconds:g} s)",
        "5xx": f"{config.server_error_rate:.1%}",
    }
    served = {"batch": "batch", "batches": "batches", "both": "batch and batches"}[config.job_api]
    return "\n".join(
        [
            f"Gameball API simulator listening on {base_url}",
            f"  credentials   APIKey: {config.api_key}   SecretKey: {config.secret_key}",
            f"  job dialect   {served} (--job-api); errors "
            + ("{code, type, message, requestId}" if config.error_envelope else "{message}")
            + (f"; minimum version {config.min_api_version}" if config.min_api_version else ""),
            f"  customers     {config.customer_shape} shape, "
            + (
                "strict (a field the shape lacks: 400 naming it)"
                if config.strict
                else "lenient (fields the shape lacks: dropped, counted in /_sim/stats)"
            ),
            "  operations    " + ", ".join(Operation) + " (POST .../batch/<operation>)",
            "  per record    duplicate ids and future times refused; "
            + (
                "every customer known"
                if config.all_customers_known
                else "a customer no customers job applied: 7000"
            )
            + "; results: customerId, message"
            + (", natural key" if config.echo_keys else ""),
            "  faults        " + ", ".join(f"{k} {v}" for k, v in faults.items()),
            "  rate limits   " + _limits(config),
            "  use it        export GAMEBALL_BASE_URL=" + base_url,
            f"                export GAMEBALL_API_KEY={config.api_key} "
            f"GAMEBALL_SECRET_KEY={config.secret_key}",
            f"  controls      {base_url}/_sim/stats  (also /_sim/applied, /_sim/config, "
            "/_sim/reset)",
            "  Ctrl-C stops it.",
        ]
    )


def _limits(config: SimulatorConfig) -> str:
    if not config.limited:
        return "none (--documented-limits enforces Gameball's)"
    parts = []
    if config.limit_per_second:
        parts.append(f"{config.limit_per_second} requests/s")
    if config.limit_per_window:
        parts.append(f"{config.limit_per_window} per {config.limit_window_seconds:g} s")
    answer = "with Retry-After" if config.limit_retry_after else "without Retry-After"
    return " and ".join(parts) + f" per API key (sliding windows); 429 {answer}"
