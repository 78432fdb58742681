"""The dlt alternative: dlt's rest_api source over /v1/bookings to the filesystem destination.

Runs only in the isolated bench environment (benchmarks/.venv-bench, made by run.py from
benchmarks/requirements-dlt.txt); dlt is never a dependency of jicoo-connector. dlt's
defaults are kept (nesting into child tables, normalizer, loader) as a user would get them.

    benchmarks/.venv-bench/bin/python benchmarks/dlt_extract.py --base-url URL --out DIR
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

# No network but loopback here, and a benchmark must not phone home: set before dlt loads.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt
import pyarrow.parquet as pq
from dlt.sources.rest_api import rest_api_source

PER_PAGE = 100
PIPELINE_NAME = "jicoo_bench"
DATASET_NAME = "jicoo"


def build_source(base_url: str, api_key: str) -> object:
    # dlt's PageNumberPaginator reads total_path as the number of PAGES and stops once
    # page >= total + base_page (dlt/sources/helpers/rest_client/paginators.py,
    # RangePaginator.update_state), so it must point at numberOfPages, not totalCount.
    return rest_api_source(
        {
            "client": {
                "base_url": base_url.rstrip("/") + "/v1/",
                "auth": {
                    "type": "api_key",
                    "name": "X-Jicoo-Api-Key",
                    "api_key": api_key,
                    "location": "header",
                },
                "paginator": {
                    "type": "page_number",
                    "base_page": 1,
                    "page_param": "page",
                    "total_path": "numberOfPages",
                },
            },
            "resource_defaults": {"write_disposition": "replace"},
            "resources": [
                {
                    "name": "bookings",
                    "endpoint": {
                        "path": "bookings",
                        "params": {"perPage": PER_PAGE},
                        "data_selector": "data",
                    },
                }
            ],
        }
    )


def count_rows(table_dir: Path) -> int:
    return sum(pq.ParquetFile(path).metadata.num_rows for path in table_dir.rglob("*.parquet"))


def main() -> int:
    parser = argparse.ArgumentParser(description="dlt rest_api -> filesystem/parquet")
    parser.add_argument("--base-url", default=os.environ.get("JICOO_BASE_URL"))
    parser.add_argument("--out", type=Path, required=True, help="an empty working directory")
    args = parser.parse_args()
    key = os.environ.get("JICOO_API_KEY", "sk_test_sandbox")
    if not args.base_url:
        parser.error("--base-url or JICOO_BASE_URL is required")

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pipeline = dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        # Pipeline state in the run's own folder: no state carried between runs.
        pipelines_dir=str(out / "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(out / "lake").as_uri()),
        dataset_name=DATASET_NAME,
    )
    info = pipeline.run(build_source(args.base_url, key), loader_file_format="parquet")
    info.raise_on_failed_jobs()
    elapsed = time.perf_counter() - started
    table_dir = out / "lake" / DATASET_NAME / "bookings"
    print(json.dumps({"rows": count_rows(table_dir), "seconds": elapsed, "out": str(table_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
