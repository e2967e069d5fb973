"""Start-up time of the command line and of the imports, each in a fresh process.

Every command runs once untimed (warming the page cache), then ``--repeats`` times; the table
shows the median, minimum and maximum wall time of the whole process (interpreter start
included). ``python -c pass`` and ``python -c 'import flair'`` are references: the first is the
floor, the second what every command paid while the package imported Flair eagerly.

Examples:
    python benchmarks/bench_startup.py
    python benchmarks/bench_startup.py --repeats 11

Writes ``startup.json`` and ``startup.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import REPO, RESULTS, load_average, log, machine_info, markdown_table, publish


def flair_elmo() -> list[str]:
    """The installed ``flair-elmo`` script beside this interpreter, else ``python -m flair_elmo_modes``."""
    script = Path(sys.executable).parent / "flair-elmo"
    if script.is_file():
        return [str(script)]
    found = shutil.which("flair-elmo")
    return [found] if found else [sys.executable, "-m", "flair_elmo_modes"]


def commands() -> dict[str, list[str]]:
    python = sys.executable
    return {
        "flair-elmo --help": [*flair_elmo(), "--help"],
        "flair-elmo info en-tiny": [*flair_elmo(), "info", "en-tiny"],
        "python -c 'import flair_elmo_modes.bilm'": [python, "-c", "import flair_elmo_modes.bilm"],
        "python -c 'from flair_elmo_modes import ElmoEmbedder'": [
            python,
            "-c",
            "from flair_elmo_modes import ElmoEmbedder",
        ],
        "python -c 'import flair' (reference)": [python, "-c", "import flair"],
        "python -c pass (interpreter floor)": [python, "-c", "pass"],
    }


def time_command(argv: list[str], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` runs of ``argv`` after one untimed run; a failing run raises."""
    times = []
    for run in range(repeats + 1):
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if run > 0:
            times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": machine_info(), "repeats": args.repeats, "commands": []}
    for name, command in commands().items():
        log(f"{name}; load {load_average()}")
        times = time_command(command, args.repeats)
        results["commands"].append(
            {
                "command": name,
                "argv": command,
                "median_s": round(statistics.median(times), 3),
                "min_s": round(min(times), 3),
                "max_s": round(max(times), 3),
                "times_s": [round(t, 3) for t in times],
            }
        )
    markdown = f"Median of {args.repeats} fresh processes after one untimed run.\n\n" + markdown_table(
        ["command", "median s", "min s", "max s"],
        [
            [f"`{r['command']}`", f"{r['median_s']:.2f}", f"{r['min_s']:.2f}", f"{r['max_s']:.2f}"]
            for r in results["commands"]
        ],
    )
    publish(args.out, "startup", results, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
