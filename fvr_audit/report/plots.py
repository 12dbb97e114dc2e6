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
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter

from fvr_audit.audit.results import QueryCurvePoint, Record

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
    ax.set_xticklabels(_spaced_labels(grid, log=axis == "n"), fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("K (top-K returned)" if axis == "k" else "N (enrolled identities)", fontsize=9)
    ax.set_ylim(0, min(1.02, max(0.05, top * 1.12)))
    ax.yaxis.set_major_formatter(FuncFormatter(_percent))
    _quiet_axes(ax)


#: On a log axis, a tick label closer than this ratio to the next labelled tick is left blank
#: (500 and 600 printed "500600").
LOG_LABEL_MIN_RATIO = 1.5


def _quiet_axes(ax) -> None:
    """Small tick labels, a light grid behind the data, no top or right frame line."""
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#DDDDDD", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _spaced_labels(ticks: Sequence[int], *, log: bool) -> list[str]:
    """Tick labels that do not run into each other; the largest tick (the gate's N) always keeps its own.

    >>> _spaced_labels([50, 100, 500, 600], log=True)
    ['50', '100', '', '600']
    >>> _spaced_labels([1, 5, 10, 25], log=False)
    ['1', '5', '10', '25']
    """
    labels = [str(t) for t in ticks]
    if not log:
        return labels
    kept = None
    for i in range(len(ticks) - 1, -1, -1):
        if kept is not None and kept / ticks[i] < LOG_LABEL_MIN_RATIO:
            labels[i] = ""
        else:
            kept = ticks[i]
    return labels


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


#: Points of the common query grid the per-target traces are resampled on.
TRACE_GRID_POINTS = 48


def trace_quartiles(traces: Sequence[Sequence[Sequence[float]]]) -> tuple[list[float], list[list[float]]] | None:
    """Per-target ``[[queries, similarity], ...]`` traces -> (query grid, [q25, median, q75] per point).

    Each target's similarity at q is its last traced value at or before q; a target that stopped
    early (plateau, budget) keeps its last value. The grid starts where every target has a value.

    >>> grid, (low, mid, high) = trace_quartiles([[[10, 0.5], [20, 0.7]], [[10, 0.6], [30, 0.8]]])
    >>> grid[0], grid[-1], mid[0], mid[-1]
    (10.0, 30.0, 0.55, 0.75)
    """
    import numpy as np

    usable = [sorted((float(q), float(v)) for q, v in t) for t in traces if t]
    if not usable:
        return None
    start = max(t[0][0] for t in usable)
    end = max(t[-1][0] for t in usable)
    points = sorted({q for t in usable for q, _ in t if start <= q <= end})
    if len(points) > TRACE_GRID_POINTS:
        points = sorted(set(np.quantile(points, np.linspace(0, 1, TRACE_GRID_POINTS)).round().tolist()))
    grid = np.asarray(points, dtype=float)
    values = np.empty((len(usable), len(grid)))
    for i, t in enumerate(usable):
        qs = np.asarray([q for q, _ in t])
        vs = np.asarray([v for _, v in t])
        values[i] = vs[np.clip(np.searchsorted(qs, grid, side="right") - 1, 0, len(vs) - 1)]
    quartiles = np.quantile(values, [0.25, 0.5, 0.75], axis=0)
    return grid.tolist(), [row.tolist() for row in quartiles]


def similarity_svg(traces: dict[str, Sequence], styles: dict[str, MethodStyle], *, figure_id: str) -> str | None:
    """cos(F(x), v) against queries to F, per attack: the median over targets and its quartile band.

    ``traces`` maps a method to its per-target ``[[queries, similarity], ...]`` traces (the
    ``trace`` setting the attacks record); methods without a trace are left out.
    """
    curves = {m: trace_quartiles(t) for m, t in traces.items()}
    curves = {m: c for m, c in curves.items() if c is not None}
    if not curves:
        return None
    figure = Figure(figsize=(6.4, 2.6))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    figure.subplots_adjust(left=0.1, right=0.98, top=0.95, bottom=0.2)
    low_all = 1.0
    for method, (grid, (low, mid, high)) in curves.items():
        style = styles.get(method) or MethodStyle("#555555", "-", "o", 1.8, method)
        ax.fill_between(grid, low, high, color=style.colour, alpha=0.15, linewidth=0)
        ax.plot(grid, mid, color=style.colour, linestyle=style.linestyle, linewidth=style.linewidth,
                label=_mpl_text(f"{style.label} (median, quartiles)"))
        low_all = min(low_all, *low)
    ax.set_xscale("log")
    ax.set_xlabel("queries to F per target (gradient: forward/backward passes)", fontsize=8.5)
    ax.set_ylabel("cos(F(x), v)", fontsize=8.5)
    ax.set_ylim(max(-1.0, low_all - 0.03), 1.0)
    _quiet_axes(ax)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _to_inline_svg(figure, figure_id, "Similarity to the leaked vector against queries to F, per attack")


#: Line styles of the engines in the re-identification-vs-queries figure (colour is the method's).
ENGINE_LINESTYLES = ("-", "--", ":", "-.")


def reidentification_svg(points: Sequence[QueryCurvePoint], styles: dict[str, MethodStyle], *, figure_id: str,
                         same_system: Sequence[str] = ()) -> str | None:
    """tpr at the gate's K and N against queries per target: one line per (attack, engine), its 95%
    interval shaded, chance K/N dashed. ``points`` are the scan's ``query_curve``; engines in
    ``same_system`` (F itself) are labelled so. None when there are no points."""
    series: dict[tuple[str, str], list[QueryCurvePoint]] = {}
    for point in points:
        series.setdefault((point.method, point.engine), []).append(point)
    if not series:
        return None
    engines = sorted({engine for _, engine in series})
    gates = sorted({(p.k, p.n) for p in points})  # the deployed system's N is its row count: may differ
    # one legend row per entry: each label names attack, engine and gate, and two did not fit the width
    legend_rows = len(series) + len(gates)
    # the legend goes under the axes, never over the lines (they climb into the upper left too)
    height = 2.5 + 0.17 * legend_rows
    figure = Figure(figsize=(6.4, height))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    figure.subplots_adjust(left=0.1, right=0.98, top=1 - 0.12 / height, bottom=(0.62 + 0.17 * legend_rows) / height)
    axes_in = height - 0.12 - (0.62 + 0.17 * legend_rows)  # the legend sits 0.45 in below the axes, under the x label
    for (method, engine), line in series.items():
        line = sorted(line, key=lambda p: p.queries)
        style = styles.get(method) or MethodStyle("#555555", "-", "o", 1.8, method)
        q = [p.queries for p in line]
        ax.fill_between(q, [p.tpr_ci[0] for p in line], [p.tpr_ci[1] for p in line], color=style.colour, alpha=0.1,
                        linewidth=0)
        label = f"{style.label} under {engine}{' (F itself)' if engine in same_system else ''}"
        if len(gates) > 1:
            label += f", top-{line[0].k} of {line[0].n:,}"
        ax.plot(q, [p.tpr for p in line], color=style.colour, marker=style.marker, markersize=4,
                linestyle=ENGINE_LINESTYLES[engines.index(engine) % len(ENGINE_LINESTYLES)], linewidth=1.6,
                label=_mpl_text(label))
    ticks = []
    for q in sorted({p.queries for p in points}):  # 64 and 65 (a final scoring query) would print over each other
        if ticks and q < ticks[-1] * 1.15:
            ticks[-1] = q
        else:
            ticks.append(q)
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{q:,}" for q in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    for k, n in gates:
        ax.axhline(k / n, color="#888888", linestyle=(0, (2, 2)), linewidth=1.0,
                   label=_mpl_text(f"chance (K/N = {k}/{n:,})"))
    ax.set_xlabel("queries to F per target (at most)", fontsize=8.5)
    k, n = gates[0]
    ax.set_ylabel(_mpl_text(f"re-identified, top-{k} of {n:,}" if len(gates) == 1 else "re-identified (top-K of N)"),
                  fontsize=8.5)
    ax.set_ylim(0, 1.0)
    ax.yaxis.set_major_formatter(FuncFormatter(_percent))
    _quiet_axes(ax)
    ax.legend(loc="upper center", bbox_to_anchor=(0.45, -0.45 / axes_in), ncol=1, fontsize=7.5, frameon=False)
    return _to_inline_svg(figure, figure_id, "Re-identification against queries to F, per black-box attack and engine")


#: tpr / fpr / no-match colours of the outcome bars (Okabe-Ito: blue, vermillion, grey).
OUTCOME_COLOURS = {"tpr": "#0072B2", "fpr": "#D55E00", "no_match": "#BBBBBB"}


def outcome_bars_svg(
    records: Sequence[Record], engines: Sequence[str], methods: Sequence[str], k: int, *, figure_id: str
) -> str | None:
    """The paper's Fig. 6: for each engine and method, one bar split into tpr, fpr and no-match at
    top-``k`` among each engine's enrolled identities (its largest N). None without records."""
    rows = []
    for engine in engines:
        mine = [r for r in records if r.engine == engine and r.k == k]
        if not mine:
            continue
        n = max(r.n for r in mine)
        for method in methods:
            record = next((r for r in mine if r.method == method and r.n == n), None)
            if record is not None:
                rows.append((engine, n, method, record))
    if not rows:
        return None
    height = 0.9 + 0.28 * len(rows)
    figure = Figure(figsize=(7.2, height))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    figure.subplots_adjust(left=0.36, right=0.98, top=1 - 0.25 / height, bottom=0.62 / height)
    labels = []
    for y, (engine, n, method, record) in enumerate(rows):
        left = 0.0
        for part in ("tpr", "fpr", "no_match"):
            value = getattr(record, part)
            ax.barh(y, value, left=left, color=OUTCOME_COLOURS[part], height=0.7)
            if value >= 0.08:
                ax.text(left + value / 2, y, _percent(value), ha="center", va="center", fontsize=7,
                        color="white" if part != "no_match" else "black")
            left += value
        labels.append(_mpl_text(f"{engine}  ·  {method}  (N = {n:,})"))
    ax.set_yticks(range(len(rows)), labels, fontsize=7.5)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(FuncFormatter(_percent))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(f"Outcome of each reconstruction at top-{k}", fontsize=10, loc="left")
    figure.legend(
        handles=[Patch(facecolor=c, label=label) for label, c in
                 (("true match (tpr)", OUTCOME_COLOURS["tpr"]), ("wrong identity (fpr)", OUTCOME_COLOURS["fpr"]),
                  ("no match above threshold", OUTCOME_COLOURS["no_match"]))],
        loc="lower center", bbox_to_anchor=(0.6, 0.02 / height), ncols=3, fontsize=8, frameon=False,
    )
    return _to_inline_svg(figure, figure_id, f"tpr, fpr and no-match at top-{k}, per engine and method")


def metric2_svg(methods: Sequence[dict], styles: dict[str, MethodStyle], baseline: float, *, figure_id: str) -> str | None:
    """The paper's Fig. 7: people's matching accuracy per method, against chance (1/K).

    ``methods`` are the analysis's per-method entries (``survey analyze``): a box spans the
    per-participant quartiles (whiskers: min and max), the dot is the pooled accuracy with its
    95% bootstrap interval. Methods without answers are left out; None when none has any.
    """
    drawn = [m for m in methods if m.get("accuracy") is not None]
    if not drawn:
        return None
    figure = Figure(figsize=(6.4, 2.5))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    figure.subplots_adjust(left=0.1, right=0.98, top=0.93, bottom=0.24)
    for x, entry in enumerate(drawn):
        style = styles.get(entry["method"]) or MethodStyle("#555555", "-", "o", 1.8, entry["method"])
        box = entry.get("participant_accuracy")
        if box:
            ax.add_patch(
                Rectangle(
                    (x - 0.22, box["q25"]), 0.44, max(box["q75"] - box["q25"], 0.004),
                    facecolor=style.colour, alpha=0.18, edgecolor=style.colour, linewidth=0.8,
                )
            )
            ax.plot([x - 0.22, x + 0.22], [box["median"]] * 2, color=style.colour, linewidth=1.4)
            ax.plot([x, x], [box["min"], box["q25"]], color=style.colour, linewidth=0.8)
            ax.plot([x, x], [box["q75"], box["max"]], color=style.colour, linewidth=0.8)
        low, high = entry["accuracy_ci"]
        ax.errorbar(
            [x + 0.32], [entry["accuracy"]], yerr=[[entry["accuracy"] - low], [high - entry["accuracy"]]],
            fmt=style.marker, color=style.colour, markersize=6, capsize=3, linewidth=1.4,
        )
    ax.axhline(baseline, color=BASELINE_COLOUR, linestyle="--", linewidth=1.2)
    ax.text(len(drawn) - 0.45, baseline, f"chance (1/K) {_percent(baseline)}", fontsize=8, color=BASELINE_COLOUR,
            va="bottom", ha="right")
    ax.set_xticks(range(len(drawn)), [_mpl_text(m["method"]) for m in drawn], fontsize=9)
    ax.set_xlim(-0.6, len(drawn) - 0.4)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(FuncFormatter(_percent))
    ax.set_ylabel("matching accuracy", fontsize=8.5)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(True, axis="y", color="#DDDDDD", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    figure.legend(
        handles=[
            Patch(facecolor="#888888", alpha=0.3, edgecolor="#555555", label="participants: quartiles (whiskers min-max)"),
            Line2D([], [], color="#555555", marker="o", linestyle="", label="all answers, 95% bootstrap interval"),
        ],
        loc="lower center", ncols=2, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0),
    )
    return _to_inline_svg(figure, figure_id, "Metric 2: people's matching accuracy per method against chance")
