"""A smoke run of the live fuzzer (``benchmarks/fuzz.py``): a second of mutated frames
from a few connections, then the broker still serves a well-behaved client and its
heartbeats, and closed no one with 541. The real runs are longer (see the script)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz.py"


def test_a_short_live_fuzz_leaves_the_broker_unharmed():
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--duration", "1", "--connections", "4", "--no-alarm"]
        + ["--no-timers", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "the broker is unharmed" in run.stdout
    assert "pika publish/consume with confirms: ok" in run.stdout
