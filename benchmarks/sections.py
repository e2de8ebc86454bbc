"""Benchmarks write their tables into the docs between markers of their own."""

from __future__ import annotations

from pathlib import Path


def table(caption: str, columns: list[str], rows: dict[str, list[str]]) -> list[str]:
    """A caption, then a Markdown table of one row per broker."""
    lines = [caption, "", "| broker | " + " | ".join(columns) + " |"]
    lines.append("|---|" + "---|" * len(columns))
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()]
    return lines


def write_section(output: Path, name: str, heading: str, lines: list[str]) -> None:
    """Put ``lines`` between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in
    ``output``; a document without them gets them at its end, under ``heading``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = "\n".join([begin, *lines, end])
    text = output.read_text() if output.exists() else "# Reliability\n"
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text += f"\n## {heading}\n\n{block}\n"
    output.write_text(text)
    print(block)
