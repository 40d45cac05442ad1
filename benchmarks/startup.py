"""How long `sslx` commands take to start, against importing torch.

Runs each command as a fresh subprocess of this interpreter's environment
(`sslx` beside `sys.executable`), round-robin over the commands for --repeats
rounds, so load on the machine falls on every command alike, and takes each
command's median wall time. The reference is `python -c "import torch"`: the
least any command that builds a component can cost. Targets: `--help` and
`--version` (which build nothing) at most 0.3 of it, the commands that read
components at most 1.3. Prints JSON; writes a dated table into
docs/benchmarks.md.

The commands run as an installed sslx does: with every installed plugin
(``SSLX_LOAD_PLUGINS`` unset) and with Python's bytecode cache
(``PYTHONDONTWRITEBYTECODE`` unset; the untimed first round writes it), since
torch's own modules come compiled and sslx's would otherwise be compiled from
source in every process.

    .venv/bin/python benchmarks/startup.py
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from benchutil import REPO, cpu_name, write_section

SSLX = str(Path(sys.executable).with_name("sslx"))
REFERENCE = "python -c 'import torch'"
# shown command -> (argv, target ratio to the reference)
COMMANDS: dict[str, tuple[list[str], float | None]] = {
    REFERENCE: ([sys.executable, "-c", "import torch"], None),
    "sslx --help": ([SSLX, "--help"], 0.3),
    "sslx --version": ([SSLX, "--version"], 0.3),
    "sslx plugins": ([SSLX, "plugins"], 1.3),
    "sslx validate experiments/moco.json": ([SSLX, "validate", "experiments/moco.json"], 1.3),
    "sslx describe objective moco": ([SSLX, "describe", "objective", "moco"], 1.3),
}


ENV = {k: v for k, v in os.environ.items() if k not in ("SSLX_LOAD_PLUGINS", "PYTHONDONTWRITEBYTECODE")}


def wall_time(argv: list[str]) -> float:
    """Seconds one fresh process takes from start to exit; it must succeed."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(repeats: int) -> dict[str, list[float]]:
    """Each command's wall times, the commands interleaved round by round
    after one untimed round that warms the file cache."""
    for argv, _ in COMMANDS.values():
        wall_time(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):
        for name, (argv, _) in COMMANDS.items():
            times[name].append(wall_time(argv))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs of each command (the median is kept).")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    times = measure(args.repeats)
    load_after = os.getloadavg()[0]
    reference = statistics.median(times[REFERENCE])
    results = {}
    for name, (_, target) in COMMANDS.items():
        median = statistics.median(times[name])
        results[name] = {
            "median_s": round(median, 3),
            "ratio": round(median / reference, 2),
            "target": target,
            "met": None if target is None else median / reference <= target,
        }
    machine = f"{cpu_name()}, {os.cpu_count()} cores"
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": machine,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "commands": results,
    }
    print(json.dumps(report, indent=2))

    lines = [
        f"### Command start-up against importing torch, {report['date']}",
        "",
        f"`benchmarks/startup.py --repeats {args.repeats}` on {machine}, Python {report['python']}, torch "
        f"{report['torch']}; median of {args.repeats} fresh processes each, interleaved round-robin, with the bytecode "
        f"cache; 1-minute load average {load_before:.2f} before and {load_after:.2f} after.",
        "",
        "| command | median s | ratio to torch import | target |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        target = "reference" if r["target"] is None else f"≤ {r['target']} ({'met' if r['met'] else 'missed'})"
        lines.append(f"| `{name}` | {r['median_s']:.2f} | {r['ratio']:.2f} | {target} |")
    write_section(REPO / "docs" / "benchmarks.md", "startup", "\n".join(lines))


if __name__ == "__main__":
    main()
