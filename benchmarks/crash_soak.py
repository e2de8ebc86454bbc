#!/usr/bin/env python3
"""Soak version of the crash test: 50 SIGKILL cycles under a confirmed persistent load.

    .venv/bin/python benchmarks/crash_soak.py [--cycles 50] [--seed N]

Prints each cycle as it goes and the tally at the end; exits non-zero if a confirmed
message was lost or a repeat came without the redelivered flag.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import start_broker  # noqa: E402
from durability import crash_cycles  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xivo-bus-soak-") as data_dir:
        try:
            summary = crash_cycles(
                start_broker,
                data_dir,
                args.cycles,
                seed=args.seed,
                report=lambda line: print(line, flush=True),
            )
        except AssertionError as failure:
            print(f"FAILED: {failure}", flush=True)
            return 1
    print(json.dumps(summary, indent=2))
    print(
        f"{args.cycles} SIGKILL cycles: {summary['confirmed']} confirmed messages, none lost; "
        f"{summary['redelivered']} redeliveries, all flagged"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
