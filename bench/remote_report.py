"""`distill report` over a 1M-row store in object storage vs the same store on local disk, in one run.

    python bench/remote_report.py [--rows 1000000] [--repeat 3]

The store is the one bench/report_scale.py generates (reused from bench/out/). The
remote copy lives on a real S3-compatible server (moto's server mode) on
127.0.0.1, so the figure is the cost of going through the S3 protocol and
pyarrow's filesystem rather than a network's latency; a real bucket adds the
round-trip time of each footer and row-group read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_scale import generate, run_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    local = generate(args.rows)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="bench")
    started = time.perf_counter()
    parts = sorted(local.rglob("*.parquet"))
    for p in parts:
        s3.upload_file(str(p), "bench", f"store/{p.relative_to(local)}")
    print(f"uploaded {len(parts)} parts in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    remote = "s3://bench/store"
    results = {"local": [], "remote": []}
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        results["local"].append(run_report(local))
        results["remote"].append(run_report(remote))
    for name, runs in results.items():
        walls = [r[0] for r in runs]
        print(f"{name:>6}: {args.rows:,} rows  wall best {min(walls):.2f} s ({', '.join(f'{w:.2f}' for w in walls)})  "
              f"cpu {min(r[2] for r in runs):.2f} s  peak RSS {max(r[1] for r in runs) / 1024:.0f} MB  "
              f"calls {runs[0][3]['totals']['calls']:,}")
    assert results["local"][0][3]["totals"] == results["remote"][0][3]["totals"], "remote and local reports differ"
    print(f"remote / local: x{min(r[0] for r in results['remote']) / min(r[0] for r in results['local']):.1f}")
    server.stop()


if __name__ == "__main__":
    main()
