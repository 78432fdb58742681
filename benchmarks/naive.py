"""The obvious script a user would write instead of the connector: the baseline of the benchmark.

Sequential httpx GETs over every page of ``/v1/bookings`` (perPage 100), all records kept in a
list, then ``pandas.DataFrame(records).to_parquet(...)``. Written to be fair, not slow: one
keep-alive client, the largest page size the API allows, no sleeps. Imports nothing of ours.

    python benchmarks/naive.py --base-url http://127.0.0.1:8765 --out /tmp/bookings.parquet
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

PER_PAGE = 100
TIMEOUT_SECONDS = 30.0


def fetch_all_bookings(client: httpx.Client) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    page = 1
    while True:
        response = client.get("/v1/bookings", params={"page": page, "perPage": PER_PAGE})
        response.raise_for_status()
        body = response.json()
        records.extend(body["data"])
        next_page = body.get("nextPage")
        if not next_page or not body["data"]:
            return records
        page = int(next_page)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="the naive baseline: every booking to one Parquet file"
    )
    parser.add_argument("--base-url", default=os.environ.get("JICOO_BASE_URL"))
    parser.add_argument("--out", type=Path, required=True, help="the Parquet file to write")
    args = parser.parse_args()
    key = os.environ.get("JICOO_API_KEY", "sk_test_sandbox")
    if not args.base_url:
        parser.error("--base-url or JICOO_BASE_URL is required")

    started = time.perf_counter()
    with httpx.Client(
        base_url=args.base_url, headers={"X-Jicoo-Api-Key": key}, timeout=TIMEOUT_SECONDS
    ) as client:
        records = fetch_all_bookings(client)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_parquet(args.out)
    elapsed = time.perf_counter() - started
    # One JSON line on stdout for the harness: what was written and how long the work took.
    print(json.dumps({"rows": len(records), "seconds": elapsed, "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
