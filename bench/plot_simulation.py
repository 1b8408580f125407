"""The picture for `python -m bench.simulate --plot PATH`: queue depth and replicas over time, per model.

Needs matplotlib (the `bench` extra); importing this module fails with ModuleNotFoundError without it,
which bench/simulate.py turns into a one-line error. Draws with the Agg backend, no pyplot state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from bench.simulate import Result, Sample

#: model name (as in the table) -> line colour
COLOURS = {"ours": "tab:blue", "KEDA+HPA": "tab:red", "KEDA (all lists)": "tab:green"}
LABELS = {"ours": "ours (defaults)", "KEDA+HPA": "KEDA + HPA, base list",
          "KEDA (all lists)": "KEDA + HPA, all lists"}


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
        if name == "KEDA+HPA":  # what its scaler sees: LLEN of the base list, nothing in flight
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
    order = [0, 1, 3, 2] if len(handles) == 4 else list(range(len(handles)))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center", ncols=2,
               fontsize=8, frameon=False)
    fig.suptitle(f"Autoscaler simulation: {trace_name} trace, seed {seed} ({tasks:,} tasks; "
                 f"concurrency {concurrency}, worker startup {startup:g} s)", fontsize=12)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
