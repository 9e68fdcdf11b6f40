#!/usr/bin/env python3
"""Append a random observation to /golem/work/observations.txt every interval, forever.

Started in the background by simulate_observations_ctl.py --start (the seed's SimpleService).
"""

import os
import random
import sys
import time

OBSERVATIONS = os.environ.get("OBSERVATIONS_FILE", "/golem/work/observations.txt")


def main() -> None:
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 0.2
    while True:
        with open(OBSERVATIONS, "a") as handle:
            handle.write(f"{random.gauss(50.0, 10.0):.4f}\n")
        time.sleep(interval)


if __name__ == "__main__":
    main()
