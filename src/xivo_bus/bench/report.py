"""What a benchmark shows a person: a live progress line on stderr, a table at the end."""

from __future__ import annotations

import sys

from xivo_bus.bench.runner import State


class Progress:
    """One line on stderr, rewritten in place while the run goes on (only on a terminal)."""

    def __init__(self, scenario: str, stream=sys.stderr):
        self.scenario = scenario
        self.stream = stream
        self.enabled = stream.isatty()
        self._last = (0.0, 0)

    def __call__(self, state: State) -> None:
        if not self.enabled:
            return
        total = sum(state.counts)
        last_time, last_total = self._last
        rate = (
            (total - last_total) / (state.elapsed - last_time) if state.elapsed > last_time else 0
        )
        self._last = (state.elapsed, total)
        done = len(state.results)
        self.stream.write(
            f"\r{self.scenario}: {state.elapsed:6.1f} s  {total:>12,} events  "
            f"{rate:>12,.0f}/s  {done} worker(s) done "
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()


def rows(document: dict) -> list[tuple[str, str]]:
    """The document's figures as (label, value) rows."""
    results = document["results"]
    out = [("scenario", document["scenario"]), ("broker", document["url"])]
    params = document["params"]
    if document["scenario"] == "backlog":
        out.append(("message size", f"{params['size']} B"))
        out.append(("sent / queued", f"{results['sent']:,} / {results['queued']:,}"))
        if results["lost"]:
            out.append(("LOST", f"{results['lost']:,}"))
        out.append(("confirmed / nacked", f"{results['confirmed']:,} / {results['nacked']:,}"))
        if results["unconfirmed"]:
            out.append(("UNCONFIRMED", f"{results['unconfirmed']:,}"))
        out.append(("publish rate", f"{results['publish_rate']:,.0f} msg/s"))
        if results.get("publishers_blocked"):
            blocked = f"{results['publishers_blocked']:,} times, {results['blocked_s']:.1f} s"
            out.append(("PUBLISHERS BLOCKED", blocked))
        if "rss_per_message_bytes" in results:
            out.append(("broker RSS before", _kib(results["rss_before_kib"])))
            out.append(("broker RSS with backlog", _kib(results["rss_with_backlog_kib"])))
            out.append(("RSS per message", f"{results['rss_per_message_bytes']:,.0f} B"))
            out.append(("RSS per queued copy", f"{results['rss_per_copy_bytes']:,.0f} B"))
        if "drained" in results:
            out.append(("drained", f"{results['drained']:,}"))
            out.append(("drain rate", f"{results['drain_rate']:,.0f} msg/s"))
        if "rss_after_drain_kib" in results:
            out.append(("broker RSS after drain", _kib(results["rss_after_drain_kib"])))
    elif document["scenario"] == "connections":
        out.append(("idle connections", f"{results['idle_connections']:,}"))
        out.append(("open/close rate", f"{results['open_close_rate']:,.0f} connections/s"))
        if "rss_per_connection_kib" in results:
            out.append(("broker RSS before", _kib(results["rss_before_kib"])))
            out.append(("broker RSS with idle", _kib(results["rss_with_idle_kib"])))
            out.append(("RSS per connection", f"{results['rss_per_connection_kib']:,.1f} KiB"))
    else:
        out.append(("message size", f"{params['size']} B"))
        out.append(("sent / received", f"{results['sent']:,} / {results['received']:,}"))
        if results["lost"]:
            out.append(("LOST", f"{results['lost']:,}"))
        out.append(("publish rate", f"{results['publish_rate']:,.0f} msg/s"))
        out.append(("delivery rate", f"{results['delivery_rate']:,.0f} msg/s"))
        if "confirmed" in results:
            out.append(("confirmed / nacked", f"{results['confirmed']:,} / {results['nacked']:,}"))
            if results.get("unconfirmed"):
                out.append(("UNCONFIRMED", f"{results['unconfirmed']:,}"))
        latency = results.get("latency_us")
        if latency and latency.get("samples"):
            for key in ("p50", "p99", "p99.9", "max"):
                out.append((f"latency {key}", f"{latency[key]:,.0f} µs"))
    broker = document["broker"]
    if "cpu_s" in broker:
        out.append(("broker CPU", f"{broker['cpu_s']:.2f} s ({broker['cpu_percent']}% of a core)"))
        out.append(("broker RSS", _kib(broker["rss_kib"])))
    generator = document["generator"]
    out.append(
        (
            "generator CPU",
            f"{generator['cpu_s']:.2f} s ({generator['cpu_percent']}% of a core, "
            f"{generator['processes']} processes)",
        )
    )
    for role in ("producer", "consumer"):
        if f"busiest_{role}_percent" in generator:
            share = generator[f"busiest_{role}_percent"]
            out.append((f"busiest {role} process", f"{share}% of a core"))
    out.append(("wall time", f"{document['wall_s']:.2f} s"))
    return out


def table(document: dict) -> str:
    data = rows(document)
    width = max(len(label) for label, _ in data)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in data)


def _kib(value: int | None) -> str:
    return "?" if value is None else f"{value / 1024:,.1f} MiB"
