"""Metric 1 figures as inline SVG (matplotlib, Agg canvas, no pyplot state, text kept as text).

One figure per engine F': tpr and fpr against K at the gate's N, and against N at the gate's K;
one line per method, the tpr's 95% interval as a band, the random baseline K/N dashed, and the
"original" row (the target's real photo: the upper bound) drawn distinctly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

# The Agg canvas on a bare Figure: no pyplot, so no global backend switch and no GUI.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from fvr_audit.audit.results import Record

#: Okabe-Ito colours (readable by colour-blind readers and in greyscale print), for attacks.
ATTACK_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C564B", "#7F7F7F")
ORIGINAL_COLOUR = "#111111"
RANDOM_COLOUR = "#9A9A9A"
BASELINE_COLOUR = "#555555"


@dataclass(frozen=True)
class MethodStyle:
    colour: str
    linestyle: str
    marker: str
    linewidth: float
    label: str


def method_styles(methods: Sequence[str]) -> dict[str, MethodStyle]:
    """One style per method, the same in every figure and table of a report.

    >>> styles = method_styles(["gradient", "original", "random"])
    >>> styles["original"].label, styles["gradient"].colour
    ('original photo (upper bound)', '#0072B2')
    """
    styles = {}
    attacks = [m for m in methods if m not in ("original", "random")]
    for i, method in enumerate(attacks):
        styles[method] = MethodStyle(
            ATTACK_COLOURS[i % len(ATTACK_COLOURS)], "-", "os^Dvph<>"[i % 9], 1.8, method
        )
    if "original" in methods:
        styles["original"] = MethodStyle(ORIGINAL_COLOUR, "-", "*", 2.6, "original photo (upper bound)")
    if "random" in methods:
        styles["random"] = MethodStyle(RANDOM_COLOUR, ":", "x", 1.4, "random images (measured chance)")
    return styles


def _mpl_text(text: str) -> str:
    """User strings as literal matplotlib text (no mathtext from a stray ``$``)."""
    return text.replace("$", r"\$")


def _percent(value: float, _pos=None) -> str:
    if value == 0:
        return "0%"
    if abs(value) < 0.01:
        return f"{value * 100:.2g}%"
    return f"{value * 100:.0f}%"


def metric1_svg(
    records: Sequence[Record],
    engine: str,
    methods: Sequence[str],
    gate_k: int,
    gate_n: int,
    *,
    figure_id: str,
) -> str | None:
    """The engine's 2x2 Metric 1 figure as an inline ``<svg>`` element, or None without records."""
    mine = [r for r in records if r.engine == engine]
    if not mine:
        return None
    styles = method_styles(methods)
    handles = [
        Line2D(
            [],
            [],
            color=s.colour,
            linestyle=s.linestyle,
            marker=s.marker,
            linewidth=s.linewidth,
            markersize=6 if s.marker != "*" else 9,
            label=_mpl_text(s.label),
        )
        for m, s in styles.items()
        if any(r.method == m for r in mine)
    ]
    handles.append(
        Line2D(
            [], [], color=BASELINE_COLOUR, linestyle="--", linewidth=1.2, label="chance (K/N; fpr 1 - K/N)"
        )
    )
    handles.append(Patch(facecolor="#888888", alpha=0.25, label="tpr 95% interval (Wilson)"))
    # Fixed margins (constrained layout would double the drawing time); the legend gets its own band.
    columns = 3
    legend_rows = -(-len(handles) // columns)
    panels_in, legend_in = 5.0, 0.12 + 0.2 * legend_rows
    height = panels_in + legend_in
    figure = Figure(figsize=(7.2, height))
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2)
    figure.subplots_adjust(
        left=0.085,
        right=0.985,
        top=1 - 0.3 / height,
        bottom=(legend_in + 0.5) / height,
        hspace=0.42,
        wspace=0.2,
    )
    panels = (
        (axes[0][0], "tpr", "k", gate_n, f"tpr vs K (N = {gate_n})"),
        (axes[0][1], "fpr", "k", gate_n, f"fpr vs K (N = {gate_n})"),
        (axes[1][0], "tpr", "n", gate_k, f"tpr vs N (K = {gate_k})"),
        (axes[1][1], "fpr", "n", gate_k, f"fpr vs N (K = {gate_k})"),
    )
    for ax, metric, axis, fixed, title in panels:
        _panel(ax, mine, methods, styles, metric, axis, fixed)
        ax.set_title(title, fontsize=10, loc="left")
    figure.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.04 / height),
        ncols=columns,
        fontsize=8,
        frameon=False,
        handlelength=2.6,
        columnspacing=1.6,
    )
    return _to_inline_svg(
        figure, figure_id, f"Metric 1 for {engine}: tpr and fpr against K and N, per method"
    )


def _panel(ax, records, methods, styles, metric, axis, fixed) -> None:
    other = "n" if axis == "k" else "k"
    top = 0.0
    xs_all: set[int] = set()
    for method in methods:
        rows = sorted(
            (r for r in records if r.method == method and getattr(r, other) == fixed),
            key=lambda r: getattr(r, axis),
        )
        if not rows:
            continue
        style = styles[method]
        xs = [getattr(r, axis) for r in rows]
        xs_all.update(xs)
        ys = [getattr(r, metric) for r in rows]
        if metric == "tpr" and method != "random":  # chance needs no band: the dashed line is exact
            low = [r.tpr_ci[0] for r in rows]
            high = [r.tpr_ci[1] for r in rows]
            ax.fill_between(
                xs, low, high, color=style.colour, alpha=0.14 if method != "original" else 0.08, linewidth=0
            )
            top = max(top, *high)
        ax.plot(
            xs,
            ys,
            color=style.colour,
            linestyle=style.linestyle,
            marker=style.marker,
            linewidth=style.linewidth,
            markersize=5 if style.marker != "*" else 8,
            zorder=3 if method == "original" else 2,
        )
        top = max(top, *ys)
    if not xs_all:
        ax.text(
            0.5,
            0.5,
            f"no records at {other.upper()} = {fixed}",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=9,
            color="#777777",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return
    grid = sorted(xs_all)
    chance = [min(1.0, (x / fixed) if axis == "k" else (fixed / x)) for x in grid]
    if metric == "fpr":
        chance = [1 - c for c in chance]
    ax.plot(grid, chance, color=BASELINE_COLOUR, linestyle="--", linewidth=1.2, zorder=1)
    top = max(top, *chance)
    if axis == "n":
        ax.set_xscale("log")
    ax.set_xticks(grid)
    ax.set_xticklabels([str(x) for x in grid], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("K (top-K returned)" if axis == "k" else "N (enrolled identities)", fontsize=9)
    ax.set_ylim(0, min(1.02, max(0.05, top * 1.12)))
    ax.yaxis.set_major_formatter(FuncFormatter(_percent))
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#DDDDDD", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _to_inline_svg(figure: Figure, figure_id: str, label: str) -> str:
    import io

    buffer = io.StringIO()
    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": figure_id, "font.family": "DejaVu Sans"}
    ):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE: this goes inside HTML
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    # Scale with the page: keep the viewBox, let CSS set the size.
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", svg, count=1)
    label = label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    svg = svg.replace("<svg", f'<svg class="plot" role="img" aria-label="{label}"', 1)
    return svg
