"""The markdown table, the JSON document and the PNG chart of one run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._registry import scenarios
from ._runner import MemoryResult, Result


def _fmt_ns(ns: float) -> str:
    if ns >= 100_000:
        return f"{ns / 1000:,.0f} us"
    if ns >= 10_000:
        return f"{ns / 1000:.1f} us"
    return f"{ns:,.0f}"


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return ""
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


def _fmt_rate(ns: float) -> str:
    rate = 1e9 / ns
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.0f}k"
    return f"{rate:.0f}"


def table(results: Sequence[Result], memory: Sequence[MemoryResult]) -> str:
    titles = scenarios()
    lines: list[str] = []
    for sid, title in titles.items():
        rows = [r for r in results if r.row.scenario == sid]
        mem = [m for m in memory if m.case.scenario == sid]
        if not rows and not mem:
            continue
        lines += [f"### {sid}: {title}", ""]
        if rows:
            lines += [
                "| row | backend | ns/event | events/s | x raw | x best peer | note |",
                "|---|---|---:|---:|---:|---:|---|",
            ]
            for r in rows:
                row = r.row
                note = row.note
                if r.ratio_versus is not None:
                    note = f"{_fmt_ratio(r.ratio_versus)} of S1; {note}".rstrip("; ")
                if not r.ok:
                    lines.append(f"| {row.name} | {row.backend} | | | | | {r.error} |")
                    continue
                lines.append(
                    f"| {row.name} | {row.backend} | {_fmt_ns(r.median_ns)} | "
                    f"{_fmt_rate(r.median_ns)} | {_fmt_ratio(r.ratio_raw)} | "
                    f"{_fmt_ratio(r.ratio_peer)} | {note} |"
                )
            lines.append("")
        if mem:
            lines += [
                "| row | backend | events | peak RSS over idle | seconds |",
                "|---|---|---:|---:|---:|",
            ]
            for m in mem:
                if m.error is not None:
                    lines.append(
                        f"| {m.case.name} | {m.case.backend} | {m.events:,} | {m.error} | |"
                    )
                    continue
                lines.append(
                    f"| {m.case.name} | {m.case.backend} | {m.events:,} | "
                    f"{m.over_idle_mb:.1f} MB | {m.seconds:.1f} |"
                )
            lines.append("")
    return "\n".join(lines)


def document(
    results: Sequence[Result], memory: Sequence[MemoryResult], meta: dict[str, Any]
) -> dict[str, Any]:
    return {
        "meta": meta,
        "scenarios": scenarios(),
        "rows": [
            {
                "key": r.row.key,
                "scenario": r.row.scenario,
                "name": r.row.name,
                "kind": r.row.kind,
                "backend": r.row.backend,
                "note": r.row.note,
                "n": r.n,
                "ns_per_event_rounds": [round(x, 2) for x in r.ns],
                "ns_per_event": round(r.median_ns, 2) if r.ok else None,
                "events_per_s": round(1e9 / r.median_ns) if r.ok else None,
                "ratio_raw": r.ratio_raw,
                "baseline": r.baseline_key,
                "ratio_best_peer": r.ratio_peer,
                "best_peer": r.best_peer_key,
                "ratio_versus": r.ratio_versus,
                "versus": r.row.versus,
                "error": r.error,
            }
            for r in results
        ],
        "memory": [
            {
                "key": m.case.key,
                "events": m.events,
                "peak_rss_over_idle_mb": m.over_idle_mb,
                "seconds": m.seconds,
                "error": m.error,
            }
            for m in memory
        ],
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


COLORS = {"eventbus": "#1f77b4", "raw": "#7f7f7f", "peer": "#d62728"}


def plot(path: Path, results: Sequence[Result], meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    order = {sid: i for i, sid in enumerate(scenarios())}
    shown = sorted((r for r in results if r.ok), key=lambda r: order.get(r.row.scenario, 99))
    labels = [f"{r.row.scenario}  {r.row.name} [{r.row.backend}]" for r in shown]
    values = [r.median_ns for r in shown]
    colors = [COLORS.get(r.row.kind, "#2ca02c") for r in shown]
    height = max(4.0, 0.24 * len(shown) + 1.2)
    fig, ax = plt.subplots(figsize=(11, height))
    positions = list(range(len(shown)))[::-1]
    ax.barh(positions, values, color=colors, height=0.75)
    ax.set_yticks(positions, labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("ns per event (log scale, lower is better; median of rounds)")
    for pos, value in zip(positions, values, strict=True):
        ax.text(value * 1.05, pos, _fmt_ns(value), va="center", fontsize=6)
    previous = None
    for pos, r in zip(positions, shown, strict=True):
        if previous is not None and r.row.scenario != previous:
            ax.axhline(pos + 0.5, color="#cccccc", linewidth=0.8)
        previous = r.row.scenario
    ax.legend(
        handles=[Patch(color=c, label=k) for k, c in COLORS.items()], loc="lower right", fontsize=8
    )
    ax.set_title(
        f"eventbus benchmarks — {meta.get('cpu', '?')}, {meta.get('nproc', '?')} cores, "
        f"Python {meta.get('python', '?')}, {meta.get('date', '')}",
        fontsize=9,
    )
    ax.set_xlim(right=max(values) * 6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
