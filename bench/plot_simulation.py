"""The pictures of `python -m bench.simulate`: queue depth and replicas over time per model (`--plot PATH`),
and p95 wait against worker-seconds per policy and trace (`--pareto --plot PATH`).

Needs matplotlib (the `bench` extra); importing this module fails with ModuleNotFoundError without it,
which bench/simulate.py turns into a one-line error. Draws with the Agg backend, no pyplot state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from bench.pareto import Point
    from bench.simulate import Result, Sample

#: model name (as in the table) -> line colour
COLOURS = {"ours": "tab:blue", "KEDA defaults": "tab:red", "KEDA tuned": "tab:green", "oracle": "0.4",
           "ours targetPerSlot": "tab:cyan", "ours targetWaitSeconds": "tab:blue"}
LABELS = {"ours": "ours (defaults)", "KEDA defaults": "KEDA + HPA defaults (base list)",
          "KEDA tuned": "KEDA + HPA tuned (all lists + in flight)", "oracle": "oracle (knows the trace)"}


def _label(name: str, result: Result) -> str:
    label = (f"{LABELS.get(name, name)}: wait p95 {result.pct(0.95):.0f} s, "
             f"{result.worker_seconds:,.0f} worker-s, {result.killed} tasks killed")
    if result.unfinished:
        label += f", {result.unfinished} never finished"
    return label


def plot(path: str | Path, *, trace_name: str, seed: int, series: list[tuple[str, list[Sample]]],
         results: list[tuple[str, Result]], end: int, trace_end: int, tasks: int, concurrency: int,
         startup: float) -> None:
    """Two panels sharing the time axis (minutes), clipped to the trace plus its tail (`end` seconds)."""
    by_name = dict(results)
    fig = Figure(figsize=(11, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    depth, replicas = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    for name, samples in series:
        shown = [s for s in samples if s.at <= end]
        minutes = [s.at / 60 for s in shown]
        colour, z = COLOURS.get(name), 3 if name == "ours" else 2  # ours on top
        depth.plot(minutes, [s.pending + s.in_flight for s in shown], color=colour, lw=1.2, zorder=z,
                   drawstyle="steps-post", label=_label(name, by_name[name]))
        if name == "KEDA defaults":  # what its scaler sees: LLEN of the base list, nothing in flight
            depth.plot(minutes, [s.base_pending for s in shown], color=colour, lw=0.9, ls=":",
                       drawstyle="steps-post", label="KEDA + HPA's metric: base list length only (priority 10..8)")
        replicas.plot(minutes, [s.replicas for s in shown], color=colour, lw=1.2, zorder=z, drawstyle="steps-post")
    for ax in (depth, replicas):
        ax.axvspan(trace_end / 60, end / 60, color="0.92", zorder=0)
        ax.grid(True, color="0.85", lw=0.6)
        ax.set_xlim(0, end / 60)
        ax.set_ylim(bottom=0)
    depth.text(trace_end / 60 + 0.5, 0.97, "no more arrivals", transform=depth.get_xaxis_transform(),
               va="top", fontsize=8, color="0.35", zorder=4, bbox={"fc": "0.92", "ec": "none", "alpha": 0.8})
    depth.set_ylabel("queue depth (tasks)\npending in all lists + in flight")
    replicas.set_ylabel("replicas (workers)\npods not being removed")
    replicas.set_xlabel("time since the trace started (min)")
    # One legend for both panels (same colours), under the axes; filled by column: ours | all lists, base | its metric.
    handles, labels = depth.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2,
               fontsize=8, frameon=False)
    fig.suptitle(f"Autoscaler simulation: {trace_name} trace, seed {seed} ({tasks:,} tasks; "
                 f"concurrency {concurrency}, worker startup {startup:g} s)", fontsize=12)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)


def plot_pareto(path: str | Path, *, curves: dict[str, dict[str, list[Point]]], defaults: dict[str, Point],
                seeds: list[int], concurrency: int, startup: float, grace: float) -> None:
    """One panel per trace: each policy's sweep as a line of (worker-seconds, p95 wait), ours marked."""
    fig = Figure(figsize=(12, 9), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).flatten()
    for ax, (trace, by_policy) in zip(axes, curves.items(), strict=False):
        for policy, points in by_policy.items():
            shown = sorted((p for p in points if p.p95 != float("inf")), key=lambda p: p.worker_seconds)
            if not shown:
                continue
            ax.plot([p.worker_seconds for p in shown], [max(p.p95, 0.5) for p in shown], marker="o", ms=3, lw=1.2,
                    color=COLOURS.get(policy), ls="--" if policy == "oracle" else "-", label=policy)
        ours = defaults.get(trace)
        if ours is not None:
            ax.plot([ours.worker_seconds], [max(ours.p95, 0.5)], marker="*", ms=14, color="tab:blue", ls="none",
                    label=f"ours, default (p95 {ours.p95:.0f} s)")
        ax.set_yscale("log")
        ax.set_title(trace)
        ax.set_xlabel("worker-seconds (mean over seeds)")
        ax.set_ylabel("p95 queue wait (s, log)")
        ax.grid(True, color="0.85", lw=0.6)
        ax.legend(fontsize=7)
    fig.suptitle(f"p95 wait against worker-seconds, each policy's knob swept (seeds {','.join(map(str, seeds))}; "
                 f"concurrency {concurrency}, startup {startup:g} s, grace {grace:g} s)", fontsize=11)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
