#!/usr/bin/env python3
"""Does the suite pass every time? Clones the repository's HEAD into a fresh directory and
runs CI's own entry point (`bash .ci/run`: install, RabbitMQ node, ruff, the whole
suite) several times in a row there, on this machine as it is; reports each run (time,
passed, failed, the failing tests) and writes the table between the markers of its
section in docs/reliability.md. Run it as ``benchmarks/soak.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sections import write_section

ROOT = Path(__file__).resolve().parent.parent
# pytest -q ends with "2045 passed, 3 warnings in 332.60s (0:05:32)" (failures: "=== ... ===")
SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed|error).*?) in ([\d.]+)s", re.MULTILINE)
FAILED = re.compile(r"^(FAILED|ERROR) (\S+)", re.MULTILINE)


def count(summary: str, word: str) -> int:
    match = re.search(rf"(\d+) {word}", summary)
    return int(match.group(1)) if match else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", default=str(ROOT / "docs" / "reliability.md"))
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    clone = Path(tempfile.mkdtemp(prefix="xivo-bus-soak-")) / "xivo-bus"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    rows = []
    failures = 0
    for run in range(1, args.runs + 1):
        print(f"run {run}/{args.runs}: bash .ci/run in {clone} ...", flush=True)
        started = time.monotonic()
        log = clone.parent / f"run-{run}.log"
        with log.open("w") as out:
            code = subprocess.run(
                ["bash", ".ci/run"], cwd=clone, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, "CI": "true"},
            ).returncode  # fmt: skip
        minutes = (time.monotonic() - started) / 60
        text = log.read_text(errors="replace")
        summaries = SUMMARY.findall(text)
        summary = summaries[-1][0] if summaries else "no pytest summary"
        failed = sorted(set(name for _, name in FAILED.findall(text)))
        failures += bool(code or failed)
        rows.append((run, code, minutes, count(summary, "passed"), count(summary, "failed"),
                     count(summary, "error"), failed))  # fmt: skip
        print(
            f"run {run}/{args.runs}: exit {code}, {summary} ({minutes:.1f} min); log {log}"
            + "".join(f"\n  {name}" for name in failed),
            flush=True,
        )
    command = shlex.join(["benchmarks/soak.py", *sys.argv[1:]])
    lines = [
        f"Run {time.strftime('%Y-%m-%d')} with `{command}` on commit {commit}: `bash .ci/run` "
        f"{args.runs} times in a row in one fresh clone, on this 2-core machine.",
        "",
        "| run | exit | minutes | passed | failed | errors | failing tests |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, code, minutes, passed, failed, errors, names in rows:
        lines.append(
            f"| {run} | {code} | {minutes:.1f} | {passed} | {failed} | {errors} | "
            f"{', '.join(f'`{name}`' for name in names) or '—'} |"
        )
    write_section(Path(args.output), "soak", "The whole suite, again and again", lines)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
