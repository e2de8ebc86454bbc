"""Benchmark xivo-bus against RabbitMQ and GarageMQ side by side; write docs/performance.md.

Starts ``xivo-bus serve``, a private RabbitMQ node and a private GarageMQ on free loopback
ports, runs the same ``xivo-bus bench`` scenarios against each (``--repeats`` times, the
brokers taking turns), and writes the medians, the ratios ours/RabbitMQ and ours/GarageMQ,
broker CPU and memory, start-up times and the machine's facts between the markers of
docs/performance.md (the text around the markers is kept). A run that a broker cannot do
(an error, lost messages, publishes never confirmed) shows "—" with a footnote saying why,
and that broker's remaining repeats of the scenario are skipped. Run it as
``benchmarks/compare`` from the repository; ``--quick`` runs a subset once, shorter.
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
from dataclasses import dataclass
from pathlib import Path

import brokers

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"
SETTLE_S = 2.0  # after start-up, before reading idle memory
# A run is stuck once no delivery or confirm came for this long (RabbitMQ pauses for
# several seconds now and then while it holds a backlog of a million messages).
DRAIN_TIMEOUT_S = {"messaging": 10.0, "backlog": 30.0}
BACKLOG = 1_000_000  # messages of the backlog scenario (1 KB bodies)
QUICK_BACKLOG = 200_000


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    args: tuple[str, ...]
    group: str  # main: the detailed table; matrix: one row each; memory
    quick: bool = False  # part of --quick

    @property
    def kind(self) -> str:
        if self.args[0] in ("latency", "connections", "backlog"):
            return self.args[0]
        return "messaging"

    @property
    def fresh(self) -> bool:
        """Memory figures need a broker that has not grown yet: restarted before each run."""
        return self.kind in ("connections", "backlog")

    @property
    def size(self) -> int:
        args = list(self.args)
        return int(args[args.index("--size") + 1]) if "--size" in args else 100

    def bench_args(self, backlog: int) -> list[str]:
        return [arg.format(backlog=backlog, tenth=backlog // 10) for arg in self.args]


def _s(name, what, args, group, quick=False) -> Scenario:
    return Scenario(name, what, tuple(args.split()), group, quick)


KB = "--size 1024"
PERSISTENT = "--persistent --confirm 100"
SCENARIOS = [
    _s(
        "throughput",
        "transient, 1 producer → 1 queue → 1 consumer, manual acks",
        "throughput",
        "main",
        True,
    ),
    _s(
        "throughput-confirm",
        "as above, publisher confirms (window 100)",
        "throughput --confirm 100",
        "main",
        True,
    ),
    _s(
        "throughput-persistent",
        "durable queue, persistent messages, confirms (window 100)",
        "throughput --persistent --confirm 100",
        "main",
        True,
    ),
    _s(
        "fanout",
        "1 producer → fanout → 10 queues, 10 consumers",
        "fanout --queues 10",
        "main",
        True,
    ),
    _s("latency", "1 000 msg/s, 1 producer, 1 consumer", "latency --rate 1000", "main", True),
    _s(
        "connections",
        "1 000 idle connections, then open/close",
        "connections --idle 1000",
        "main",
        True,
    ),
    # The matrix: 1 KB bodies, 1 producer, 1 queue, 1 consumer, transient, manual acks,
    # unless the row says otherwise.
    _s("size-16", "16 B bodies", "throughput --size 16", "matrix", True),
    _s("size-1k", "1 KB bodies", f"throughput {KB}", "matrix"),
    _s("size-64k", "64 KB bodies", "throughput --size 65536", "matrix"),
    _s("size-1m", "1 MB bodies", "throughput --size 1048576", "matrix", True),
    _s("p4", "4 producers", f"throughput {KB} --producers 4", "matrix"),
    _s("p16", "16 producers", f"throughput {KB} --producers 16", "matrix", True),
    _s("q1-c10", "10 consumers on the queue", f"throughput {KB} --consumers 10", "matrix"),
    _s(
        "q10-c1",
        "10 queues published to in turn, 1 consumer on all",
        f"throughput {KB} --queues 10 --consumers 1",
        "matrix",
    ),
    _s(
        "q10-c10",
        "10 queues published to in turn, 1 consumer each",
        f"throughput {KB} --queues 10",
        "matrix",
        True,
    ),
    _s(
        "p16-q10-c10",
        "16 producers, 10 queues, 1 consumer each",
        f"throughput {KB} --producers 16 --queues 10",
        "matrix",
    ),
    _s(
        "persistent",
        "persistent: durable queue, delivery_mode 2, confirms (window 100 a producer), "
        "consumer attached",
        f"throughput {KB} {PERSISTENT}",
        "matrix",
        True,
    ),
    _s(
        "persistent-p4",
        "persistent, 4 producers",
        f"throughput {KB} {PERSISTENT} --producers 4",
        "matrix",
    ),
    _s(
        "persistent-p16",
        "persistent, 16 producers",
        f"throughput {KB} {PERSISTENT} --producers 16",
        "matrix",
        True,
    ),
    _s(
        "persistent-p16-q10-c10",
        "persistent, 16 producers, 10 queues, 1 consumer each",
        f"throughput {KB} {PERSISTENT} --producers 16 --queues 10",
        "matrix",
    ),
    _s(
        "persistent-64k",
        "persistent, 64 KB bodies",
        f"throughput --size 65536 {PERSISTENT}",
        "matrix",
    ),
    _s(
        "persistent-no-confirm",
        "durable queue, delivery_mode 2, no confirms, consumer attached",
        f"throughput {KB} --persistent",
        "matrix",
    ),
    _s(
        "latency-persistent",
        "1 000 msg/s, persistent + confirms, consumer attached",
        f"latency --rate 1000 {KB} {PERSISTENT}",
        "matrix",
        True,
    ),
    _s(
        "backlog",
        "{backlog} messages of 1 KB in 1 queue, no consumer",
        f"backlog {KB} --messages {{backlog}}",
        "memory",
        True,
    ),
    _s(
        "backlog-fanout",
        "{tenth} messages of 1 KB → fanout → 10 queues, no consumer",
        f"backlog {KB} --queues 10 --messages {{tenth}}",
        "memory",
        True,
    ),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help="runs of each scenario (3; --quick: 1)")
    parser.add_argument(
        "--duration", type=float, help="seconds of publishing per run (5; --quick: 3)"
    )
    parser.add_argument(
        "--backlog",
        type=int,
        help=f"messages of the backlog scenario ({BACKLOG:,}; --quick: {QUICK_BACKLOG:,})",
    )
    parser.add_argument("--quick", action="store_true", help="a subset, once, shorter")
    parser.add_argument("--scenarios", nargs="*", help="only these scenarios")
    parser.add_argument(
        "--brokers",
        nargs="*",
        choices=["xivo-bus", "RabbitMQ", "GarageMQ"],
        help="only these brokers (xivo-bus is always measured)",
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration = args.duration or (3.0 if args.quick else 5.0)
    args.backlog = args.backlog or (QUICK_BACKLOG if args.quick else BACKLOG)
    command = shlex.join(["benchmarks/compare", *sys.argv[1:]])
    chosen = [
        s
        for s in SCENARIOS
        if (s.name in args.scenarios if args.scenarios else not args.quick or s.quick)
    ]
    everyone = [brokers.Ours(), brokers.RabbitMQ()]
    if brokers.GarageMQ.available:
        everyone.append(brokers.GarageMQ())
    else:
        print("garagemq is not installed (apt-get install garagemq): left out", file=sys.stderr)
    wanted = set(args.brokers or []) | {brokers.Ours.name}
    peers = [b for b in everyone if not args.brokers or b.name in wanted]
    work = Path(tempfile.mkdtemp(prefix="xivo-bus-compare-"))
    started = time.time()
    study = Study(peers, args, work)
    try:
        for broker in peers:
            study.start(broker)
        study.full_serve = _full_serve()
        for scenario in chosen:
            study.run(scenario)
        study.profile = None if args.no_profile else _profile(peers[0], args.duration, work)
    finally:
        for broker in peers:
            broker.stop()
            broker.cleanup()
    elapsed = time.time() - started
    text = _render(study, chosen, command, elapsed)
    _write(Path(args.output), text)
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.output} ({elapsed / 60:.1f} min)", file=sys.stderr)
    return 0


class Study:
    """The brokers, every run's document, what failed and why, start-up and idle memory."""

    def __init__(self, peers, args, work: Path):
        self.peers = peers
        self.names = [b.name for b in peers]
        self.args = args
        self.work = work
        self.runs: dict[str, dict[str, list[dict]]] = {}
        self.failures: dict[tuple[str, str], tuple[str, str]] = {}  # → (category, detail)
        self.startup_s: dict[str, list[float]] = {b.name: [] for b in peers}
        self.idle_rss_kib: dict[str, int] = {}
        self.versions = {b.name: b.version for b in peers}
        self.full_serve: dict | None = None
        self.profile = None

    def start(self, broker) -> None:
        print(f"starting {broker.name} …", file=sys.stderr, flush=True)
        broker.start()
        self.startup_s[broker.name].append(broker.startup_s)
        time.sleep(SETTLE_S)
        self.idle_rss_kib.setdefault(broker.name, brokers.rss_kib(broker.pid))

    def run(self, scenario: Scenario) -> None:
        self.runs[scenario.name] = {name: [] for name in self.names}
        for repeat in range(self.args.repeats):
            for broker in self.peers:
                if (scenario.name, broker.name) in self.failures:
                    continue
                if scenario.fresh:
                    broker.stop()
                    self.start(broker)
                label = f"{scenario.name} #{repeat + 1} {broker.name}"
                out = self.work / f"{scenario.name}-{repeat}-{broker.name}.json"
                document, failure = _bench(broker, scenario, self.args, out, label)
                if document and scenario.kind == "backlog":
                    document["results"]["disk_kib"] = _disk_kib(broker.data_path)
                if failure:
                    print(f"    {broker.name}: {failure[1]}", file=sys.stderr, flush=True)
                    self.failures[(scenario.name, broker.name)] = failure
                    self.runs[scenario.name][broker.name] = []
                else:
                    self.runs[scenario.name][broker.name].append(document)


def _full_serve() -> dict | None:
    """Start-up and idle memory of ``xivo-bus serve`` with its call-form web service, where
    this version has one (the figures above are of the broker alone, as RabbitMQ's are)."""
    full = brokers.Ours()
    if not full.has_cti:
        full.cleanup()
        return None
    full.extra_args = [arg for arg in full.extra_args if arg != "--no-cti"]
    full.extra_args += ["--http", "127.0.0.1:0"]
    if "--cti-listen" in full.options:
        full.extra_args += ["--cti-listen", "127.0.0.1:0"]
    try:
        full.start()
        time.sleep(SETTLE_S)
        return {"startup_s": full.startup_s, "idle_rss_kib": brokers.rss_kib(full.pid)}
    finally:
        full.stop()
        full.cleanup()


def _disk_kib(path: Path) -> int:
    """What the files under ``path`` take on disk."""
    blocks = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                blocks += os.lstat(os.path.join(root, name)).st_blocks
            except OSError:
                continue
    return blocks // 2


def _bench_timeout(scenario: Scenario, duration: float) -> float:
    return 300.0 if scenario.kind == "backlog" else max(120.0, 20 * duration)


def _bench_command(broker, bench_args: list[str], duration: float, out: Path, timeout: float):
    drain = DRAIN_TIMEOUT_S["backlog" if bench_args[0] == "backlog" else "messaging"]
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
        "--drain-timeout",
        str(drain),
        "--timeout",
        str(timeout),
        "--json",
        str(out),
    ]


def _bench(broker, scenario: Scenario, args, out: Path, label: str):
    """One run: (its document, None), or (None, (category, detail)) when it failed."""
    print(f"  {label}", file=sys.stderr, flush=True)
    timeout = _bench_timeout(scenario, args.duration)
    command = _bench_command(broker, scenario.bench_args(args.backlog), args.duration, out, timeout)
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout + 120
        )
    except subprocess.TimeoutExpired:
        return None, ("stuck", f"no result within {timeout + 120:.0f} s")
    if result.returncode not in (0, 2) or not out.exists():
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        return None, ("failed", lines[-1].removeprefix("xivo-bus bench: "))
    document = json.loads(out.read_text())
    return document, _invalid(document)


def _invalid(document: dict) -> tuple[str, str] | None:
    results = document["results"]
    if results.get("unconfirmed"):
        return "unconfirmed", (
            f"{results['unconfirmed']:,} of {results['sent']:,} publishes never confirmed"
        )
    if results.get("lost"):
        return "lost", f"{results['lost']:,} of {results['expected']:,} messages never arrived"
    return None


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
    command = _bench_command(ours, ["throughput"], duration, work / "profile.json", 120.0)
    subprocess.run(command, capture_output=True, check=False, timeout=300)
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
    if path == "generator/busiest_percent":
        generator = run.get("generator", {})
        shares = [generator.get(f"busiest_{role}_percent") for role in ("producer", "consumer")]
        shares = [s for s in shares if s is not None]
        return max(shares) if shares else None
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
        ("busiest generator process", "generator/busiest_percent", "% of a core", "info"),
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
    "backlog": [
        ("RSS per queued message", "results/rss_per_message_bytes", "B", "lower"),
        ("RSS per queued copy", "results/rss_per_copy_bytes", "B", "lower"),
        ("RSS with the backlog", "results/rss_with_backlog_kib", "KiB", "lower"),
        ("publish rate (confirms, window 5 000)", "results/publish_rate", "msg/s", "higher"),
        ("data directory on disk with the backlog", "results/disk_kib", "KiB", "info"),
    ],
}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "KiB":
        return f"{value / 1024:,.1f} MiB" if value >= 10240 else f"{value:,.1f} KiB"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:,.2f} {unit}".strip()


def _fmt_rate(value: float | None, size: int) -> str:
    """A delivery rate, with the bytes a second it means for large bodies."""
    text = _fmt(value, "msg/s")
    if value is not None and size >= 65536:
        text += f" ({value * size / 2**20:,.0f} MiB/s)"
    return text


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or not theirs:
        return "–"
    return f"{ours / theirs:.2f}×"


class Report:
    """Medians per scenario, metric and broker; "—" and a footnote for a failed broker."""

    def __init__(self, study: Study):
        self.study = study
        self.names = study.names
        self.notes: dict[tuple[str, str], list[str]] = {}  # (broker, category) → details

    def median(self, scenario: str, path: str, broker: str) -> float | None:
        runs = self.study.runs.get(scenario, {}).get(broker, [])
        return _median([_pick(r, path) for r in runs])

    def cell(self, scenario: str, broker: str, text: str) -> str:
        failure = self.study.failures.get((scenario, broker))
        if failure is None:
            return text
        category, detail = failure
        key = (broker, category)
        self.notes.setdefault(key, []).append(f"{scenario}: {detail}")
        return f"— ({self._marker(key)})"

    def _marker(self, key: tuple[str, str]) -> str:
        return "abcdefghijklmnopqrstuvwxyz"[list(self.notes).index(key)]

    def footnotes(self) -> list[str]:
        if not self.notes:
            return []
        lines = [""]
        for key, details in self.notes.items():
            broker, category = key
            lines.append(
                f"({self._marker(key)}) {broker}, {CATEGORIES[category]}: "
                + "; ".join(dict.fromkeys(details))
                + "."
            )
            lines.append("")
        return lines[:-1]

    def values(self, scenario: str, path: str) -> dict[str, float | None]:
        return {b: self.median(scenario, path, b) for b in self.names}

    def ratios(self, values: dict[str, float | None]) -> list[str]:
        ours = values[self.names[0]]
        return [_ratio(ours, values[b]) for b in self.names[1:]]


CATEGORIES = {
    "unconfirmed": "publishes never confirmed, so the run could not finish as specified",
    "lost": "messages published but never delivered",
    "failed": "the run failed",
    "stuck": "the run never finished",
}


def _render(study: Study, chosen, command: str, elapsed: float) -> str:
    args = study.args
    report = Report(study)
    names = study.names
    ours, peers = names[0], names[1:]
    head = "| " + " | ".join(names) + " | " + " | ".join(f"ours / {p}" for p in peers) + " |"
    align = "|" + "---:|" * (len(names) + len(peers))
    fresh = [s.name for s in chosen if s.fresh]
    lines = [
        f"## Figures (generated by `benchmarks/compare`, {time.strftime('%Y-%m-%d %H:%M %Z')})",
        "",
        f"Command: `{command}` ({elapsed / 60:.1f} min). Each scenario ran {args.repeats} "
        f"time{'s' if args.repeats > 1 else ''} against each broker, taking turns, "
        f"{args.duration:g} s of publishing per run (connections: half of it opening and "
        "closing); the figures are medians. Same load generator (`xivo-bus bench`) for all, "
        "same machine, same run. "
        + (f"Restarted before each run: {', '.join(fresh)}. " if fresh else "")
        + "A dash is a run the broker could not do; the footnotes say why.",
        "",
        "Machine: " + _machine(),
        "",
        "Brokers: " + _brokers_line(study),
        "",
    ]
    main = [s for s in chosen if s.group == "main"]
    if main:
        lines += ["| scenario | metric " + head, "|---|---" + align]
        for scenario in main:
            for label, path, unit, _better in METRICS[scenario.kind]:
                values = report.values(scenario.name, path)
                cells = [report.cell(scenario.name, b, _fmt(values[b], unit)) for b in names]
                lines.append(
                    f"| {scenario.name} ({scenario.what}) | {label} | "
                    + " | ".join(cells + report.ratios(values))
                    + " |"
                )
    lines += _startup_table(study, report, head, align)
    matrix = [s for s in chosen if s.group == "matrix"]
    if matrix:
        lines += [
            "",
            "### Scenario matrix",
            "",
            "1 KB bodies, 1 producer, 1 queue, 1 consumer, transient messages, one ack per "
            "delivery (prefetch 100), unless the row says otherwise. Persistent rows: durable "
            "queues, delivery_mode 2, publisher confirms with a window of 100 per producer, "
            "the consumers attached throughout. Delivery rate, or latency where the row is "
            "a fixed-rate one.",
            "",
            "| scenario | metric " + head,
            "|---|---" + align,
        ]
        for scenario in matrix:
            if scenario.kind == "latency":
                rows = METRICS["latency"][:2]
            else:
                rows = [METRICS["messaging"][0]]
            for label, path, unit, _ in rows:
                values = report.values(scenario.name, path)
                texts = {
                    b: _fmt_rate(values[b], scenario.size)
                    if unit == "msg/s"
                    else _fmt(values[b], unit)
                    for b in names
                }
                cells = [report.cell(scenario.name, b, texts[b]) for b in names]
                lines.append(
                    f"| {scenario.name} ({scenario.what}) | {label} | "
                    + " | ".join(cells + report.ratios(values))
                    + " |"
                )
        lines += [
            "",
            "| scenario | broker CPU: " + " | ".join(names) + " | busiest generator process |",
            "|---|" + "---:|" * (len(names) + 1),
        ]
        for scenario in matrix:
            cpu = report.values(scenario.name, "broker/cpu_percent")
            busiest = [
                _pick(run, "generator/busiest_percent")
                for per_broker in study.runs.get(scenario.name, {}).values()
                for run in per_broker
            ]
            busiest = [b for b in busiest if b is not None]
            cells = [report.cell(scenario.name, b, _fmt(cpu[b], "%")) for b in names]
            top = f"{max(busiest):.0f} %" if busiest else "–"
            lines.append(f"| {scenario.name} | " + " | ".join(cells) + f" | {top} |")
    memory = [s for s in chosen if s.group == "memory"]
    if memory:
        lines += ["", "### Memory", "", "| scenario | metric " + head, "|---|---" + align]
        for scenario in memory:
            what = scenario.what.format(
                backlog=f"{args.backlog:,}", tenth=f"{args.backlog // 10:,}"
            )
            for label, path, unit, _ in METRICS["backlog"]:
                if path.endswith("per_copy_bytes") and "--queues" not in scenario.args:
                    continue
                values = report.values(scenario.name, path)
                cells = [report.cell(scenario.name, b, _fmt(values[b], unit)) for b in names]
                lines.append(
                    f"| {scenario.name} ({what}) | {label} | "
                    + " | ".join(cells + report.ratios(values))
                    + " |"
                )
    lines += report.footnotes()
    if main:
        lines += _targets(report, ours, chosen)
    lines += [
        "",
        "### Every run",
        "",
        "| scenario | metric | " + " | ".join(f"{b} runs" for b in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for scenario in chosen:
        label, path, unit, _ = METRICS[scenario.kind][0]
        each = [
            ", ".join(_fmt(_pick(r, path), unit) for r in study.runs[scenario.name][b]) or "—"
            for b in names
        ]
        lines.append(f"| {scenario.name} | {label} | " + " | ".join(each) + " |")
    if study.profile:
        lines += [
            "",
            "### Where our broker's time goes (py-spy, throughput scenario)",
            "",
            "| function | self | total |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| `{name}` | {own:.1f} % | {anywhere:.1f} % |"
            for name, own, anywhere in study.profile
        ]
    return "\n".join(lines) + "\n"


def _brokers_line(study: Study) -> str:
    parts = []
    for name in study.names:
        version = study.versions[name]
        if name == brokers.Ours.name:
            parts.append(
                f"{version} (uvloop {_uvloop()}), the broker alone: no call-form web service, "
                "management API or Prometheus endpoint"
            )
        elif name == brokers.RabbitMQ.name:
            parts.append(f"{version}, no plugins, default configuration")
        else:
            parts.append(
                f"{version}, the package's configuration (frame_max 65 536, "
                "maxMessagesInRam 131 072, badger store) with its own ports and data "
                "directory and TCP_NODELAY on"
            )
    return "; ".join(parts) + "."


def _startup_table(study: Study, report: Report, head: str, align: str) -> list[str]:
    names = study.names
    startup = {b: _median(study.startup_s[b]) for b in names}
    idle = {b: study.idle_rss_kib.get(b) for b in names}
    counts = " / ".join(str(len(study.startup_s[b])) for b in names)
    lines = [
        "",
        "| start-up and memory " + head,
        "|---" + align,
        f"| start-up to accepting AMQP (median of {counts}) | "
        + " | ".join(f"{startup[b]:.3f} s" for b in names)
        + " | "
        + " | ".join(report.ratios(startup))
        + " |",
        f"| idle RSS ({SETTLE_S:g} s after start-up) | "
        + " | ".join(_fmt(idle[b], "KiB") for b in names)
        + " | "
        + " | ".join(report.ratios(idle))
        + " |",
    ]
    full = study.full_serve
    if full:
        blanks = " | ".join([""] * (2 * len(names) - 2))
        lines.append(
            f"| `xivo-bus serve` with its call-form web service: start-up, idle RSS | "
            f"{full['startup_s']:.3f} s, {_fmt(full['idle_rss_kib'], 'KiB')} | {blanks} |"
        )
    return lines


# (what, JSON path, limit against RabbitMQ, higher is better) by scenario kind: issue
# 14's targets
TARGETS = {
    "messaging": [
        ("delivery rate ≥ 1.5×", "results/delivery_rate", 1.5, True),
        ("RSS at end ≤ 1/3", "broker/rss_kib", 1 / 3, False),
    ],
    "latency": [
        ("latency p50 ≤ 0.7×", "results/latency_us/p50", 0.7, False),
        ("latency p99 ≤ 0.7×", "results/latency_us/p99", 0.7, False),
    ],
    "connections": [
        ("RSS with 1 000 idle connections ≤ 1/3", "results/rss_with_idle_kib", 1 / 3, False)
    ],
    "backlog": [("RSS with the backlog ≤ 1/3", "results/rss_with_backlog_kib", 1 / 3, False)],
}


def _targets(report: Report, ours: str, chosen) -> list[str]:
    """Every scenario against its targets, with the ratio to GarageMQ beside it."""
    rabbit, garage = brokers.RabbitMQ.name, brokers.GarageMQ.name
    study = report.study

    def ratio(scenario: str, path: str, peer: str) -> float | None:
        if peer not in study.names:
            return None
        a, b = report.median(scenario, path, ours), report.median(scenario, path, peer)
        return None if a is None or not b else a / b

    checks = []  # (scenario, target, ours / RabbitMQ, limit, higher, ours / GarageMQ)
    for scenario in chosen:
        for label, path, limit, higher in TARGETS[scenario.kind]:
            checks.append(
                (
                    scenario.name,
                    label,
                    ratio(scenario.name, path, rabbit),
                    limit,
                    higher,
                    ratio(scenario.name, path, garage),
                )
            )
    idle = study.idle_rss_kib
    checks.append(
        (
            "idle",
            "RSS 2 s after start-up ≤ 1/3",
            idle[ours] / idle[rabbit] if idle.get(ours) and idle.get(rabbit) else None,
            1 / 3,
            False,
            idle[ours] / idle[garage] if idle.get(ours) and idle.get(garage) else None,
        )
    )
    rows = []
    met_count = 0
    for name, label, value, limit, higher, against_garage in checks:
        garage_text = f"{against_garage:.2f}×" if against_garage is not None else "–"
        if value is None:
            rows.append(f"| {name} | {label} | not measured | – | {garage_text} |")
            continue
        met = value >= limit if higher else value <= limit
        met_count += met
        rows.append(
            f"| {name} | {label} | {value:.2f}× | {'yes' if met else '**no**'} | {garage_text} |"
        )
    startup = _median(study.startup_s[ours])
    met = startup is not None and startup < 0.5
    met_count += met
    rows.append(
        f"| start-up | to accepting connections < 0.5 s | {_fmt(startup, 's')} | "
        f"{'yes' if met else '**no**'} | – |"
    )
    return [
        "",
        "### Targets",
        "",
        f"Issue 14's targets, against RabbitMQ in this run: every delivery rate ≥ 1.5×, "
        "every latency p50 and p99 ≤ 0.7×, the broker's RSS ≤ 1/3 in every scenario; "
        f"the ratio to GarageMQ beside each. **{met_count} of {len(rows)} met.** Text "
        "after the figures explains each miss.",
        "",
        "| scenario | target | ours / RabbitMQ | met | ours / GarageMQ |",
        "|---|---|---:|---|---:|",
        *rows,
    ]


def _machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        memory_kib = int(info.readline().split()[1])
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory_kib / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"other work on the machine was not stopped (load average {load:.2f} at the end)"
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
