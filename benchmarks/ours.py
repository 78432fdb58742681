"""Our extractor through its library path, as one process the harness can time and measure.

Calls ``jicoo_connector.extract.extract_range`` exactly as a Python user would, then prints one
JSON line (seconds spent inside the call). Row counts are taken by the harness from the Parquet.

    python benchmarks/ours.py --base-url URL --out DIR --start 2026-01-01 --end 2026-04-01
"""

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

EXIT_NOT_AVAILABLE = 3


def main() -> int:
    parser = argparse.ArgumentParser(description="our extractor, library path")
    parser.add_argument("--base-url", default=os.environ.get("JICOO_BASE_URL"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tables", default="bookings", help="comma-separated table names")
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--end", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--rate-limit", type=float, required=True, help="client limit, req/s")
    parser.add_argument("--burst", type=int, required=True)
    args = parser.parse_args()
    if not args.base_url:
        parser.error("--base-url or JICOO_BASE_URL is required")

    try:
        from jicoo_connector.extract import extract_range
    except ImportError as exc:
        print(f"not available yet: jicoo_connector.extract ({exc})", file=sys.stderr)
        return EXIT_NOT_AVAILABLE
    from jicoo_connector.settings import ApiKey, Settings

    settings = Settings(
        api_key=ApiKey(os.environ.get("JICOO_API_KEY", "sk_test_sandbox")),
        base_url=args.base_url,
        rate_limit=args.rate_limit,
        burst=args.burst,
    )
    tables = [name.strip() for name in args.tables.split(",") if name.strip()]
    started = time.perf_counter()
    results = extract_range(settings, tables, args.start, args.end, str(args.out), None)
    elapsed = time.perf_counter() - started
    rows = sum(result.rows for result in results)
    print(json.dumps({"seconds": elapsed, "rows": rows, "partitions": len(results)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
