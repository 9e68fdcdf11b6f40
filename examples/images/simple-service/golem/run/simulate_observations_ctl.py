#!/usr/bin/env python3
"""Start or stop the background observation simulator.

--start: launch simulate_observations.py detached (new session, stdio to /dev/null) and write
its pid to /golem/work/simulate_observations.pid. --stop: kill it, remove the pid file and
leave the marker /golem/work/stopped (tests read it to prove the stop script ran).
"""

import argparse
import os
import signal
import subprocess
import sys
import time

WORK = "/golem/work"
PID_FILE = os.path.join(WORK, "simulate_observations.pid")
STOPPED = os.path.join(WORK, "stopped")
SIMULATOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simulate_observations.py")


def start(interval: str) -> int:
    if os.path.exists(PID_FILE):
        print("already running", file=sys.stderr)
        return 1
    with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out:
        process = subprocess.Popen(
            [sys.executable, SIMULATOR, interval],
            stdin=null_in,
            stdout=null_out,
            stderr=null_out,
            start_new_session=True,
        )
    with open(PID_FILE, "w") as handle:
        handle.write(str(process.pid))
    print(f"started simulator pid {process.pid}")
    return 0


def stop() -> int:
    try:
        with open(PID_FILE) as handle:
            pid = int(handle.read().strip())
    except FileNotFoundError:
        print("not running", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.02)
    except ProcessLookupError:
        pass
    os.remove(PID_FILE)
    with open(STOPPED, "w") as handle:
        handle.write(f"stopped simulator pid {pid} at {time.time():.3f}\n")
    print(f"stopped simulator pid {pid}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--start", action="store_true")
    group.add_argument("--stop", action="store_true")
    parser.add_argument("--interval", default="0.2", help="seconds between observations")
    args = parser.parse_args()
    return start(args.interval) if args.start else stop()


if __name__ == "__main__":
    sys.exit(main())
