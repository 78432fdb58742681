"""The `jicoo-sandbox` command: `jicoo-sandbox serve` runs the fake Jicoo API until interrupted.

The only module of the sandbox that prints. Its first stdout line is the ready line
(``READY_LINE_PREFIX`` + base URL) that ``SandboxProcess`` waits for.
"""

import argparse
import datetime as dt
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from jicoo_sandbox.config import (
    AUTH_FAILURE_STATUSES,
    DEFAULT_SANDBOX_KEY,
    SandboxConfig,
    WebhookOptions,
)
from jicoo_sandbox.server import READY_LINE_PREFIX, serve

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_UNUSABLE = 2


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jicoo-sandbox",
        description="A Jicoo-compatible fake API for tests, demos and benchmarks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    options = commands.add_parser(
        "serve",
        help="serve the sandbox until interrupted; prints its base URL first",
        description="Serve a Jicoo-compatible API with seeded data, rate limits and faults.",
    )
    options.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    options.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    options.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    options.add_argument("--bookings", type=int, default=2000, help="number of bookings")
    options.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"a key the sandbox accepts (repeatable; default {DEFAULT_SANDBOX_KEY})",
    )
    options.add_argument(
        "--auth-failure-status",
        type=int,
        choices=AUTH_FAILURE_STATUSES,
        default=AUTH_FAILURE_STATUSES[0],
        help="what a missing or wrong X-Jicoo-Api-Key gets: 403 (as the real API answered a "
        "missing key) or 401 (default 403)",
    )
    options.add_argument("--latency-ms", type=float, default=None, help="added to every answer")
    options.add_argument("--rate-limit", type=float, default=None, metavar="RPS", help="per key")
    options.add_argument("--burst", type=int, default=None, help="token bucket size (with RPS)")
    options.add_argument("--faults", type=Path, default=None, help="fault profile JSON file")
    options.add_argument("--journal", type=Path, default=None, help="append mutations as JSONL")
    options.add_argument(
        "--anchor-date", type=_date, default=None, help="day the data is spread around (today)"
    )
    hooks = options.add_argument_group("webhooks (signed events for every booking change)")
    hooks.add_argument("--webhook-url", help="POST events here (at least once, retried)")
    hooks.add_argument("--webhook-secret", help="the endpoint secret events are signed with")
    hooks.add_argument(
        "--webhook-duplicate", type=float, default=0.0, metavar="P", help="share sent twice"
    )
    hooks.add_argument(
        "--webhook-reorder-ms", type=float, default=0.0, metavar="MS", help="random first delay"
    )
    hooks.add_argument(
        "--webhook-concurrency", type=int, default=1, metavar="N", help="deliveries in flight"
    )
    hooks.add_argument("--churn", type=float, default=0.0, metavar="RATE", help="changes/s")
    hooks.add_argument("--churn-limit", type=int, default=0, metavar="N", help="stop after N")
    return parser


def _usage(message: str) -> int:
    print(f"jicoo-sandbox: {message}", file=sys.stderr)
    return EXIT_UNUSABLE


def _port_free(host: str, port: int) -> bool:
    # Checked before the sandbox loads its data, so the mistake is told at once and plainly.
    if port == 0:
        return True
    try:
        with socket.create_server((host, port)):
            return True
    except OSError:
        return False


def _serve(args: argparse.Namespace) -> int:
    if bool(args.webhook_url) != bool(args.webhook_secret):
        raise SystemExit("jicoo-sandbox serve: --webhook-url and --webhook-secret go together")
    faults: dict[str, object] = {}
    if args.faults is not None:
        try:
            loaded = json.loads(args.faults.read_text(encoding="utf-8"))
        except OSError as exc:
            return _usage(f"--faults {args.faults}: {exc.strerror}")
        except ValueError as exc:
            return _usage(f"--faults {args.faults}: not JSON ({exc})")
        if not isinstance(loaded, dict):
            return _usage(f"--faults {args.faults}: the fault profile must be a JSON object")
        faults.update(loaded)
    if not _port_free(args.host, args.port):
        return _usage(f"port {args.port} on {args.host} is in use; pick another (--port 0: any)")
    if args.latency_ms is not None:
        faults["latency_ms"] = args.latency_ms
    if args.rate_limit is not None:
        faults["rate_limit"] = {
            "rps": args.rate_limit,
            "burst": args.burst if args.burst is not None else max(1, int(args.rate_limit * 2)),
        }
    config = SandboxConfig(
        seed=args.seed,
        bookings=args.bookings,
        api_keys=tuple(args.api_keys or (DEFAULT_SANDBOX_KEY,)),
        auth_failure_status=args.auth_failure_status,
        anchor_date=args.anchor_date,
        faults=faults,
        journal_path=args.journal,
        webhooks=WebhookOptions(
            url=args.webhook_url,
            secret=args.webhook_secret,
            duplicate=args.webhook_duplicate,
            reorder_ms=args.webhook_reorder_ms,
            seed=args.seed,
            concurrency=args.webhook_concurrency,
        )
        if args.webhook_url
        else None,
        churn_rate=args.churn,
        churn_limit=args.churn_limit,
    )

    def announce(base_url: str) -> None:
        print(f"{READY_LINE_PREFIX}{base_url}", flush=True)

    serve(config, host=args.host, port=args.port, on_ready=announce)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
    except KeyboardInterrupt:
        return EXIT_OK
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
