"""The `jicoo` command: sandbox serve, extract, plan, apply, ledger. The only module that prints."""

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from jicoo_connector.errors import JicooError

__all__ = ["main"]

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_UNUSABLE = 2


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def _add_sandbox(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sandbox = commands.add_parser("sandbox", help="the local Jicoo-compatible fake server")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    serve = sandbox_commands.add_parser(
        "serve",
        help="serve the sandbox until interrupted; prints its base URL first",
        description="Serve a Jicoo-compatible API with seeded data, rate limits and faults.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    serve.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    serve.add_argument("--bookings", type=int, default=2000, help="number of bookings")
    serve.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="a key the sandbox accepts (repeatable; default sk_test_sandbox)",
    )
    serve.add_argument("--latency-ms", type=float, default=None, help="added to every answer")
    serve.add_argument("--rate-limit", type=float, default=None, metavar="RPS", help="per key")
    serve.add_argument("--burst", type=int, default=None, help="token bucket size (with RPS)")
    serve.add_argument("--faults", type=Path, default=None, help="fault profile JSON file")
    serve.add_argument("--journal", type=Path, default=None, help="append mutations as JSONL")
    serve.add_argument(
        "--anchor-date", type=_date, default=None, help="day the data is spread around (today)"
    )


def _serve_sandbox(args: argparse.Namespace) -> int:
    from jicoo_connector.sandbox.config import DEFAULT_SANDBOX_KEY, SandboxConfig
    from jicoo_connector.sandbox.server import serve

    faults: dict[str, object] = {}
    if args.faults is not None:
        loaded = json.loads(args.faults.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise SystemExit(f"{args.faults}: the fault profile must be a JSON object")
        faults.update(loaded)
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
        anchor_date=args.anchor_date,
        faults=faults,
        journal_path=args.journal,
    )

    def announce(base_url: str) -> None:
        print(f"Jicoo sandbox listening on {base_url}", flush=True)

    serve(config, host=args.host, port=args.port, on_ready=announce)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jicoo",
        description="Jicoo connector: extract to Parquet, apply change sets, run the sandbox.",
        epilog="The API key is read from JICOO_API_KEY, the base URL from JICOO_BASE_URL.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_sandbox(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "sandbox":
            return _serve_sandbox(args)
    except KeyboardInterrupt:
        return EXIT_OK
    except JicooError as exc:
        print(f"jicoo: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
