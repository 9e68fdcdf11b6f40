#!/usr/bin/env python3
"""Print JSON statistics (count, min, max, mean, median) over the simulator's observations."""

import argparse
import json
import statistics
import sys

OBSERVATIONS = "/golem/work/observations.txt"


def stats() -> dict[str, float | int | None]:
    try:
        with open(OBSERVATIONS) as handle:
            values = [float(line) for line in handle if line.strip()]
    except FileNotFoundError:
        values = []
    if not values:
        return {"count": 0, "min": None, "max": None, "mean": None, "median": None}
    return {
        "count": len(values),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stats", action="store_true", required=True)
    parser.parse_args()
    print(json.dumps(stats()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
