#!/usr/bin/env python3
"""Run the three "spine" benchmarks in one go (one build, one image, one Berth server, Swarm mode
enabled only if it was inactive and left again at the end) and print a summary table.

    python3 bench/run_spine.py             # builds berth (profile perf) and the static test app first
    python3 bench/run_spine.py --no-build  # use the binaries already in target/
    python3 bench/run_spine.py --quick     # fewer repetitions (a smoke test, ~3 minutes)
"""

import argparse
import sys
import time

import bench_replace
import bench_rollout
import bench_startup
import common


def main():
    ap = common.common_args(argparse.ArgumentParser(description=__doc__,
                                                    formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--quick", action="store_true", help="1-2 repetitions each, N=10 only")
    ap.add_argument("--only", default="1,2,3", help="which benchmarks, e.g. 2,3")
    args = ap.parse_args()
    only = {x.strip() for x in args.only.split(",")}
    b = common.Bench(build=not args.no_build, berth_log=args.berth_log)
    rows = []
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    try:
        b.print_versions()
        b.prepare()
        b.start_berth()
        if "1" in only:
            r = bench_startup.bench(b, (10,) if args.quick else (10, 30), 1 if args.quick else 3)
            rows += bench_startup.summary_rows(r)
        if "2" in only:
            r = bench_replace.bench(b, (1, 2), 2 if args.quick else 5, 1 if args.quick else 3)
            rows += bench_replace.summary_rows(r)
        if "3" in only:
            r = bench_rollout.bench(b, 1 if args.quick else 3)
            rows += bench_rollout.summary_rows(r)
    finally:
        b.cleanup()
    print()
    print(f"Summary (started {started}; medians with min–max; ratio = Berth median / peer median)")
    for k, v in b.versions().items():
        print(f"  {k}: {v}")
    print(common.table(rows, ["benchmark", "peer", "Berth", "peer", "ratio", "goal", "met"]))


if __name__ == "__main__":
    sys.exit(main())
