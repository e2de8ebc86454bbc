"""Benchmark xivo-bus against RabbitMQ side by side and write docs/performance.md.

Starts ``xivo-bus serve`` and a private RabbitMQ node on free loopback ports, runs the same
``xivo-bus bench`` scenarios against both (``--repeats`` times each, the two brokers taking
turns), and writes the medians, the ratios ours/RabbitMQ, broker CPU and memory, start-up
times and the machine's facts between the markers of docs/performance.md (the text around
the markers is kept). Run it as ``benchmarks/compare`` from the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import brokers

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"
SETTLE_S = 2.0  # after start-up, before reading idle memory

# name, what it is, bench arguments
SCENARIOS = [
    ("throughput", "transient, 1 producer → 1 queue → 1 consumer, manual acks", ["throughput"]),
    (
        "throughput-confirm",
        "as above, publisher confirms (window 100)",
        ["throughput", "--confirm", "100"],
    ),
    (
        "throughput-persistent",
        "durable queue, persistent messages, confirms (window 100)",
        ["throughput", "--persistent", "--confirm", "100"],
    ),
    ("fanout", "1 producer → fanout → 10 queues, 10 consumers", ["fanout", "--queues", "10"]),
    ("latency", "1 000 msg/s, 1 producer, 1 consumer", ["latency", "--rate", "1000"]),
    ("connections", "1 000 idle connections, then open/close", ["connections", "--idle", "1000"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per run (6)")
    parser.add_argument("--scenarios", nargs="*", help="only these scenarios")
    parser.add_argument("--output", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    args = parser.parse_args()
    command = shlex.join(["benchmarks/compare", *sys.argv[1:]])
    chosen = [s for s in SCENARIOS if not args.scenarios or s[0] in args.scenarios]
    work = Path(tempfile.mkdtemp(prefix="xivo-bus-compare-"))
    ours, rabbit = brokers.Ours(), brokers.RabbitMQ()
    started = time.time()
    runs: dict[str, dict[str, list[dict]]] = {}
    try:
        facts = {"startup_s": {ours.name: [], rabbit.name: []}, "idle_rss_kib": {}}
        for broker in (ours, rabbit):
            _start(broker, facts)
        versions = {ours.name: ours.version, rabbit.name: rabbit.version}
        facts["full_serve"] = _full_serve()
        for name, _, bench_args in chosen:
            runs[name] = {ours.name: [], rabbit.name: []}
            for repeat in range(args.repeats):
                for broker in (ours, rabbit):
                    if name == "connections":
                        # Memory per connection needs a broker that has not grown yet.
                        broker.stop()
                        _start(broker, facts)
                    label = f"{name} #{repeat + 1} {broker.name}"
                    out = work / f"{name}-{repeat}-{broker.name}.json"
                    runs[name][broker.name].append(
                        _bench(broker, bench_args, args.duration, out, label)
                    )
        profile = None if args.no_profile else _profile(ours, args.duration, work)
    finally:
        for broker in (ours, rabbit):
            broker.stop()
            broker.cleanup()
    elapsed = time.time() - started
    text = _render(chosen, runs, facts, versions, profile, command, args, elapsed)
    _write(Path(args.output), text)
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.output} ({elapsed / 60:.1f} min)", file=sys.stderr)
    return 0


def _start(broker, facts: dict) -> None:
    print(f"starting {broker.name} …", file=sys.stderr, flush=True)
    broker.start()
    facts["startup_s"][broker.name].append(broker.startup_s)
    time.sleep(SETTLE_S)
    facts["idle_rss_kib"].setdefault(broker.name, brokers.rss_kib(broker.pid))


def _full_serve() -> dict | None:
    """Start-up and idle memory of ``xivo-bus serve`` with its call-form web service, where
    this version has one (the figures above are of the broker alone, as RabbitMQ's are)."""
    full = brokers.Ours(extra_args=["--http", "127.0.0.1:0"])
    if not full.has_cti:
        return None
    try:
        full.start()
        time.sleep(SETTLE_S)
        return {"startup_s": full.startup_s, "idle_rss_kib": brokers.rss_kib(full.pid)}
    finally:
        full.stop()
        full.cleanup()


def _bench_command(broker, bench_args: list[str], duration: float, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "xivo_bus",
        "bench",
        *bench_args,
        "--url",
        broker.url,
        "--broker-pid",
        str(broker.pid),
        "--duration",
        str(duration if bench_args[0] != "connections" else duration / 2),
        "--json",
        str(out),
    ]


def _bench(broker, bench_args: list[str], duration: float, out: Path, label: str) -> dict:
    print(f"  {label}", file=sys.stderr, flush=True)
    command = _bench_command(broker, bench_args, duration, out)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 2) or not out.exists():
        raise RuntimeError(f"{label} failed:\n{result.stdout}{result.stderr}")
    return json.loads(out.read_text())


def _profile(ours, duration: float, work: Path) -> list[tuple[str, float, float]] | None:
    """Sample our broker with py-spy during one extra throughput run: the functions
    with the most samples on top of the stack (self) and anywhere in it (total)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return None
    raw = work / "profile.txt"
    print("  profile: throughput under py-spy", file=sys.stderr, flush=True)
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(ours.pid), "--rate", "250", "--nonblocking"]
        + ["--format", "raw", "--output", str(raw), "--duration", str(int(duration) + 4)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _bench(ours, ["throughput"], duration, work / "profile.json", "throughput (profiled)")
    spy.wait(60)
    if not raw.exists():
        return None
    return collapsed_top(raw.read_text())


def collapsed_top(collapsed: str, count: int = 15) -> list[tuple[str, float, float]]:
    """(function, self %, total %) from py-spy's collapsed stacks, by self time."""
    own, anywhere = Counter(), Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        n = int(samples)
        frames = [_short(frame) for frame in stack.split(";")]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    if not total:
        return []
    return [
        (name, 100 * n / total, 100 * anywhere[name] / total) for name, n in own.most_common(count)
    ]


def _short(frame: str) -> str:
    """``handle (xivo_bus/broker/connection.py:212)`` → ``handle (connection.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(path).name})" if path else name


# -- the report ---------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _pick(run: dict, path: str):
    value = run
    for key in path.split("/"):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


# scenario kind → (label, JSON path, unit, better)
METRICS = {
    "messaging": [
        ("delivery rate", "results/delivery_rate", "msg/s", "higher"),
        ("publish rate", "results/publish_rate", "msg/s", "higher"),
        ("broker CPU", "broker/cpu_percent", "% of a core", "info"),
        ("broker RSS at end", "broker/rss_kib", "KiB", "lower"),
        ("generator CPU", "generator/cpu_percent", "% of a core", "info"),
    ],
    "latency": [
        ("latency p50", "results/latency_us/p50", "µs", "lower"),
        ("latency p99", "results/latency_us/p99", "µs", "lower"),
        ("latency p99.9", "results/latency_us/p99.9", "µs", "lower"),
        ("broker CPU", "broker/cpu_percent", "% of a core", "info"),
    ],
    "connections": [
        ("RSS with 1 000 idle connections", "results/rss_with_idle_kib", "KiB", "lower"),
        ("RSS per idle connection", "results/rss_per_connection_kib", "KiB", "lower"),
        ("open/close rate", "results/open_close_rate", "conn/s", "higher"),
        ("generator CPU", "generator/cpu_percent", "% of a core", "info"),
    ],
}


def _kind(name: str) -> str:
    return name if name in ("latency", "connections") else "messaging"


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "KiB":
        return f"{value / 1024:,.1f} MiB" if value >= 10240 else f"{value:,.1f} KiB"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:,.2f} {unit}".strip()


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or not theirs:
        return "–"
    return f"{ours / theirs:.2f}×"


def _render(chosen, runs, facts, versions, profile, command, args, elapsed) -> str:
    ours, rabbit = brokers.Ours.name, brokers.RabbitMQ.name
    medians: dict[tuple[str, str, str], float | None] = {}
    lines = [
        f"## Figures (generated by `benchmarks/compare`, {time.strftime('%Y-%m-%d %H:%M %Z')})",
        "",
        f"Command: `{command}` ({elapsed / 60:.1f} min). Each scenario ran {args.repeats} times "
        f"against each broker, taking turns, {args.duration:g} s of publishing per run "
        "(connections: half of it opening and closing); the figures are medians. "
        "Same load generator (`xivo-bus bench`) for both, same machine, same run.",
        "",
        "Machine: " + _machine(),
        "",
        f"Brokers: {versions[ours]} (uvloop {_uvloop()}); {versions[rabbit]}, no plugins, "
        "default configuration.",
        "",
        "| scenario | metric | xivo-bus | RabbitMQ | ours / RabbitMQ |",
        "|---|---|---:|---:|---:|",
    ]
    for name, what, _ in chosen:
        for label, path, unit, _better in METRICS[_kind(name)]:
            values = {b: _median([_pick(r, path) for r in runs[name][b]]) for b in (ours, rabbit)}
            medians[(name, path, ours)], medians[(name, path, rabbit)] = (
                values[ours],
                values[rabbit],
            )
            lines.append(
                f"| {name} ({what}) | {label} | {_fmt(values[ours], unit)} | "
                f"{_fmt(values[rabbit], unit)} | {_ratio(values[ours], values[rabbit])} |"
            )
    startup = {b: _median(facts["startup_s"][b]) for b in (ours, rabbit)}
    idle = {b: facts["idle_rss_kib"].get(b) for b in (ours, rabbit)}
    lines += [
        "",
        "| start-up and memory | xivo-bus | RabbitMQ | ours / RabbitMQ |",
        "|---|---:|---:|---:|",
        f"| start-up to accepting AMQP (median of {len(facts['startup_s'][ours])} / "
        f"{len(facts['startup_s'][rabbit])}) | {startup[ours]:.3f} s | {startup[rabbit]:.3f} s | "
        f"{_ratio(startup[ours], startup[rabbit])} |",
        f"| idle RSS ({SETTLE_S:g} s after start-up) | {_fmt(idle[ours], 'KiB')} | "
        f"{_fmt(idle[rabbit], 'KiB')} | {_ratio(idle[ours], idle[rabbit])} |",
    ]
    full = facts.get("full_serve")
    if full:
        lines.append(
            f"| `xivo-bus serve` with its call-form web service: start-up, idle RSS | "
            f"{full['startup_s']:.3f} s, {_fmt(full['idle_rss_kib'], 'KiB')} | | |"
        )
    lines += ["", "### Targets", "", "| target | figure | met |", "|---|---|---|"]
    lines += _targets(medians, startup, idle, ours, rabbit)
    lines += ["", "### Every run", "", "| scenario | metric | xivo-bus runs | RabbitMQ runs |"]
    lines += ["|---|---|---|---|"]
    for name, _, _ in chosen:
        label, path, unit, _ = METRICS[_kind(name)][0]
        each = {b: ", ".join(_fmt(_pick(r, path), unit) for r in runs[name][b]) for b in runs[name]}
        lines.append(f"| {name} | {label} | {each[ours]} | {each[rabbit]} |")
    if profile:
        lines += [
            "",
            "### Where our broker's time goes (py-spy, throughput scenario)",
            "",
            "| function | self | total |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| `{name}` | {own:.1f} % | {anywhere:.1f} % |" for name, own, anywhere in profile
        ]
    return "\n".join(lines) + "\n"


def _targets(medians, startup, idle, ours, rabbit) -> list[str]:
    def ratio(name, path):
        a, b = medians.get((name, path, ours)), medians.get((name, path, rabbit))
        return None if a is None or not b else a / b

    checks = [
        (
            "transient throughput ≥ 1.0× RabbitMQ",
            ratio("throughput", "results/delivery_rate"),
            1.0,
            True,
        ),
        (
            "transient throughput with confirms ≥ 1.0×",
            ratio("throughput-confirm", "results/delivery_rate"),
            1.0,
            True,
        ),
        ("fanout to 10 queues ≥ 1.0×", ratio("fanout", "results/delivery_rate"), 1.0, True),
        ("median latency ≤ RabbitMQ's", ratio("latency", "results/latency_us/p50"), 1.0, False),
        (
            "idle memory ≤ 1/3 of RabbitMQ's",
            idle[ours] / idle[rabbit] if idle[ours] and idle[rabbit] else None,
            1 / 3,
            False,
        ),
        (
            "memory with 1 000 idle connections ≤ 1/3",
            ratio("connections", "results/rss_with_idle_kib"),
            1 / 3,
            False,
        ),
    ]
    rows = []
    for label, value, limit, higher in checks:
        if value is None:
            rows.append(f"| {label} | not measured | – |")
            continue
        met = value >= limit if higher else value <= limit
        rows.append(f"| {label} | {value:.2f}× | {'yes' if met else '**no**'} |")
    met = startup[ours] is not None and startup[ours] < 0.5
    rows.append(
        f"| start-up to accepting connections < 0.5 s | {startup[ours]:.3f} s | "
        f"{'yes' if met else '**no**'} |"
    )
    return rows


def _machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        memory_kib = int(info.readline().split()[1])
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory_kib / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
        "other work on the machine was not stopped"
    )


def _uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "not installed"
    return uvloop.__version__


def _write(path: Path, generated: str) -> None:
    block = f"{BEGIN}\n{generated}{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, _, rest = text.partition(BEGIN)
            _, _, tail = rest.partition(END)
            path.write_text(head + block + tail)
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Performance\n\n{block}\n")


if __name__ == "__main__":
    sys.exit(main())
