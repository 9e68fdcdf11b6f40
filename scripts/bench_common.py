"""Shared pieces of the benchmark scripts: machine facts, process sampling, docs sections.

Imported by scripts/bench_localnet.py and scripts/bench_operator.py (run from the repository
root; `scripts/` is on sys.path because the scripts live there). Reads /proc only: no
dependency beyond the standard library.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
MINIMAL_IMAGE = ROOT / "examples" / "images" / "minimal"
MINIMAL_TAG = "golem/minimal:latest"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """One line naming this machine: cores, CPU model, memory, kernel, Python, load."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores (nproc), {model}, {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}; "
        f"load average at start {load[0]:.2f}"
    )


def command_line() -> str:
    """The exact command that ran this script, as a user would type it."""
    script = os.path.relpath(sys.argv[0], ROOT)
    return " ".join(shlex.quote(part) for part in [".venv/bin/python", script, *sys.argv[1:]])


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class CpuSample:
    wall: float
    cpu: float  # seconds of user + system time


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of one process (its threads included).

    With `children`, the CPU of its reaped child processes is added (the localnet's sandboxed
    commands run as its children).
    """
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces: fields start after the last ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def sample_cpu(pid: int, children: bool = False) -> CpuSample:
    return CpuSample(time.monotonic(), cpu_seconds(pid, children))


def cpu_share(before: CpuSample, after: CpuSample) -> float:
    """CPU used between two samples, as a fraction of one core."""
    wall = after.wall - before.wall
    return (after.cpu - before.cpu) / wall if wall > 0 else 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLOCK_TICKS, sum(fields) / CLOCK_TICKS


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc/PID/status."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], digits: int = 1) -> str:
    """`median (min-max, n runs)`, or the single value."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return (
        f"{median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f}, "
        f"{len(values)} runs)"
    )


def write_section(name: str, body: str, path: Path = DOCS) -> None:
    """Replace (or append) the section between `<!-- bench:NAME -->` markers."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
