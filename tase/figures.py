"""Figure style, colours and deterministic saving shared by every notebook.

Helpers draw on a given Axes (or a new figure) and return it; they never call ``plt.show`` and
never pick a backend, so they work inline in Jupyter and headless under Agg. :func:`save` writes
``<figures_dir>/<name>.png`` and ``.pdf`` with the timestamps and software stamps stripped, so
re-running a notebook reproduces its figures byte for byte.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tase import paths
from tase.diagnostics import GROUP_NAMES, contingency_table, hungarian_match

FONT_SIZE = 9
DPI = 150
FORMATS = ("png", "pdf")

# Okabe-Ito colours (colour-blind safe), indexed like ``tase.data`` groups: 0 many, 1 medium, 2 few.
GROUP_COLORS = {"many": "#0072B2", "medium": "#009E73", "few": "#D55E00"}

_TAB10 = [to_hex(c) for c in plt.get_cmap("tab10").colors]
# Fixed colours for the methods of SPEC §4; TASE is red so it stands out in every figure.
KNOWN_METHOD_COLORS = {
    "simclr": _TAB10[7],  # grey
    "ts": _TAB10[0],  # blue
    "sdclr": _TAB10[2],  # green
    "bcl": _TAB10[4],  # purple
    "tase": _TAB10[3],  # red
}
KNOWN_METHOD_COLORS["bcl-i"] = KNOWN_METHOD_COLORS["bcl"]
# Ablation arms and sweep values: the 20-colour palette without the five method colours.
_OTHER_COLORS = [
    c for c in (to_hex(c) for c in plt.get_cmap("tab20").colors)
    if c not in KNOWN_METHOD_COLORS.values()
]

_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
}


def set_style(font_size: int = FONT_SIZE, dpi: int = DPI) -> None:
    """Seaborn ``whitegrid`` theme in the ``paper`` context, one font size, fixed DPI."""
    sns.set_theme(
        context="paper",
        style="whitegrid",
        rc={
            "font.size": font_size,
            "axes.titlesize": font_size,
            "axes.labelsize": font_size,
            "xtick.labelsize": font_size - 1,
            "ytick.labelsize": font_size - 1,
            "legend.fontsize": font_size - 1,
            "legend.title_fontsize": font_size - 1,
            "figure.dpi": dpi,
            "savefig.dpi": dpi,
            "pdf.fonttype": 42,  # TrueType in PDFs: text stays editable and searchable
        },
    )


def method_colors(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per method name.

    The methods of SPEC §4 (``simclr, ts, sdclr, bcl, tase``, case-insensitive) always get the
    same colour; other names cycle through the remaining tab20 colours in sorted order, so the
    result does not depend on the order ``names`` are given in.
    """
    colors = {}
    others = sorted({n for n in names if n.lower() not in KNOWN_METHOD_COLORS})
    for name in names:
        if name.lower() in KNOWN_METHOD_COLORS:
            colors[name] = KNOWN_METHOD_COLORS[name.lower()]
        else:
            colors[name] = _OTHER_COLORS[others.index(name) % len(_OTHER_COLORS)]
    return colors


def save(
    fig: Figure,
    name: str,
    directory: str | Path | None = None,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Write ``<directory>/<name>.<fmt>`` for each format, reproducibly and atomically.

    ``directory`` defaults to :func:`tase.paths.figures_dir` (``TASE_FIGURES``) and is created.
    Timestamps and software stamps are stripped, so saving the same figure twice gives identical
    bytes. Each file is written to a temporary file in the same folder and renamed, so a reader
    never sees half a figure.

    Raises:
        ValueError: ``name`` contains a path separator or an extension, or a format is unknown.
    """
    if not name or Path(name).name != name or Path(name).suffix.lower() in (".png", ".pdf"):
        raise ValueError(f"name must be a bare file stem like 'class_counts', got {name!r}")
    unknown = [f for f in formats if f not in _METADATA]
    if unknown:
        raise ValueError(f"unknown formats {unknown}; allowed: {sorted(_METADATA)}")
    directory = Path(directory) if directory is not None else paths.figures_dir()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = directory / f"{name}.{fmt}"
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=f".{fmt}")
        try:
            with os.fdopen(handle, "wb") as stream:
                fig.savefig(stream, format=fmt, metadata=_METADATA[fmt], bbox_inches="tight")
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        written.append(target)
    return written


def _axes(ax: Axes | None, figsize=(4.0, 3.0)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _readable_log_axis(axis) -> None:
    """Plain numbers on a log axis (``50``, not ``5×10^1``); minor ticks at 2 and 5 labelled when
    the view spans at most 2.5 decades, so short ranges such as 13..130 still read."""

    def minor(value: float, _) -> str:
        low, high = axis.get_view_interval()
        if low <= 0 or np.log10(high / low) > 2.5:
            return ""
        mantissa = round(value / 10 ** np.floor(np.log10(value)))
        return f"{value:g}" if mantissa in (2, 5) else ""

    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(ticker.FuncFormatter(minor))


def _group_legend(ax: Axes, groups_present) -> None:
    handles = [
        Line2D([], [], marker="s", linestyle="", color=GROUP_COLORS[GROUP_NAMES[g]])
        for g in groups_present
    ]
    ax.legend(handles, [GROUP_NAMES[g] for g in groups_present], title="group")


def plot_class_counts(counts, groups, ax: Axes | None = None, log: bool = True) -> Axes:
    """Training images per class, classes sorted by count (rank 0 = largest), bars by group."""
    counts, groups = np.asarray(counts), np.asarray(groups)
    order = np.argsort(-counts, kind="stable")
    ax = _axes(ax)
    colors = [GROUP_COLORS[GROUP_NAMES[g]] for g in groups[order]]
    ax.bar(np.arange(counts.size), counts[order], color=colors, width=0.9)
    if log:
        ax.set_yscale("log")
        _readable_log_axis(ax.yaxis)
    ax.set_xlabel("class rank")
    ax.set_ylabel("training images")
    _group_legend(ax, np.unique(groups))
    return ax


def plot_per_class_accuracy(
    counts, accuracies_by_method: Mapping[str, Sequence[float]], ax: Axes | None = None
) -> Axes:
    """Per-class accuracy against the class's training count (log x), one line per method."""
    counts = np.asarray(counts)
    order = np.argsort(counts, kind="stable")
    colors = method_colors(list(accuracies_by_method))
    ax = _axes(ax)
    for method, accuracy in accuracies_by_method.items():
        accuracy = np.asarray(accuracy)
        if accuracy.shape != counts.shape:
            raise ValueError(f"{method}: {accuracy.size} accuracies for {counts.size} classes")
        ax.plot(
            counts[order], accuracy[order], marker="o", ms=3, label=method, color=colors[method]
        )
    ax.set_xscale("log")
    _readable_log_axis(ax.xaxis)
    ax.set_xlabel("training images of the class")
    ax.set_ylabel("accuracy")
    ax.legend()
    return ax


def plot_history(
    history_df: pd.DataFrame, columns: Sequence[str], ax: Axes | None = None, x: str = "epoch"
) -> Axes:
    """Curves of ``columns`` against ``x`` (the index when ``x`` is not a column)."""
    missing = [c for c in columns if c not in history_df.columns]
    if missing:
        raise ValueError(f"history has no columns {missing}; it has {list(history_df.columns)}")
    xs = history_df[x] if x in history_df.columns else history_df.index
    ax = _axes(ax)
    for column in columns:
        ax.plot(xs, history_df[column], label=column)
    ax.set_xlabel(x if x in history_df.columns else (history_df.index.name or "step"))
    ax.legend()
    return ax


def confusion_order(table: np.ndarray) -> np.ndarray:
    """Cluster order for a class x cluster table: matched clusters in the order of their class,
    then unmatched clusters by decreasing size."""
    matched = sorted(hungarian_match(table).items(), key=lambda item: item[1])
    first = [cluster for cluster, _ in matched]
    rest = [k for k in np.argsort(-table.sum(axis=0), kind="stable") if k not in first]
    return np.array(first + rest, dtype=np.int64)


def plot_confusion(true, pseudo, ax: Axes | None = None, n_classes: int | None = None) -> Axes:
    """Class x cluster heatmap, rows normalised to 1, clusters ordered by Hungarian matching.

    A perfect clustering is the identity; a tail class merged into a head cluster shows as mass
    in the head class's column.
    """
    table = contingency_table(true, pseudo, n_classes)
    order = confusion_order(table)
    rows = table[:, order].astype(float)
    rows /= np.maximum(rows.sum(axis=1, keepdims=True), 1)
    ax = _axes(ax, figsize=(4.0, 3.5))
    image = ax.imshow(rows, cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="fraction of the class")
    ax.grid(False)
    ax.set_xlabel("cluster (Hungarian order)")
    ax.set_ylabel("true class")
    if len(order) <= 20:
        ax.set_xticks(np.arange(len(order)), [str(k) for k in order])
    if table.shape[0] <= 20:
        ax.set_yticks(np.arange(table.shape[0]))
    return ax


def plot_size_vs_size(
    class_sizes, cluster_sizes_of_dominant, groups, ax: Axes | None = None
) -> Axes:
    """Size of each class's dominant cluster against the class size (log-log), by group.

    Points above the diagonal are classes sharing a larger cluster (merged); on it, clusters
    that match their class.
    """
    class_sizes = np.asarray(class_sizes, dtype=float)
    cluster_sizes = np.asarray(cluster_sizes_of_dominant, dtype=float)
    groups = np.asarray(groups)
    ax = _axes(ax)
    for g in np.unique(groups):
        mask = groups == g
        name = GROUP_NAMES[g]
        ax.scatter(class_sizes[mask], cluster_sizes[mask], color=GROUP_COLORS[name], label=name)
    low = min(class_sizes.min(), cluster_sizes.min())
    high = max(class_sizes.max(), cluster_sizes.max())
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _readable_log_axis(ax.xaxis)
    _readable_log_axis(ax.yaxis)
    ax.set_xlabel("class size")
    ax.set_ylabel("size of its dominant cluster")
    ax.legend(title="group")
    return ax


def image_grid(
    images_uint8, labels, class_order, per_class: int = 8, padding: int = 1
) -> np.ndarray:
    """A uint8 mosaic (rows x columns x 3): one row per class of ``class_order``, its first
    ``per_class`` images in dataset order, tiles separated by ``padding`` white pixels, white
    where a class has fewer images.

    ``images_uint8``: N x 3 x H x W or N x 1 x H x W (array or CPU tensor).
    """
    images = np.asarray(images_uint8)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be N x 3 x H x W or N x 1 x H x W, got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{labels.size} labels for {images.shape[0]} images")
    images = np.broadcast_to(images, (images.shape[0], 3, *images.shape[2:]))
    height, width = images.shape[2:]
    step_y, step_x = height + padding, width + padding
    grid = np.full(
        (len(class_order) * step_y - padding, per_class * step_x - padding, 3), 255, np.uint8
    )
    for row, cls in enumerate(class_order):
        for col, index in enumerate(np.flatnonzero(labels == cls)[:per_class]):
            y, x = row * step_y, col * step_x
            grid[y : y + height, x : x + width] = images[index].transpose(1, 2, 0)
    return grid


def sample_grid(
    images_uint8,
    labels,
    class_order,
    per_class: int = 8,
    ax: Axes | None = None,
    class_names: Sequence[str] | None = None,
) -> Axes:
    """Show :func:`image_grid`, rows labelled by class name (or index)."""
    grid = image_grid(images_uint8, labels, class_order, per_class)
    step = (grid.shape[0] + 1) / max(len(class_order), 1)
    ax = _axes(ax, figsize=(per_class * 0.5, len(class_order) * 0.5))
    ax.imshow(grid, interpolation="nearest")
    ax.grid(False)
    ax.set_xticks([])
    names = [class_names[c] if class_names is not None else str(c) for c in class_order]
    ax.set_yticks(np.arange(len(class_order)) * step + (step - 1) / 2 - 0.5, names)
    return ax


def bar_with_errors(
    table_df: pd.DataFrame,
    x: str = "metric",
    hue: str = "method",
    mean: str = "mean",
    std: str = "std",
    ax: Axes | None = None,
) -> Axes:
    """Grouped bars of ``mean`` ± ``std`` from a long table: one group per ``x`` value, one bar
    per ``hue`` value (coloured by :func:`method_colors`); missing combinations leave a gap."""
    missing = [c for c in (x, hue, mean) if c not in table_df.columns]
    if missing:
        raise ValueError(f"table has no columns {missing}; it has {list(table_df.columns)}")
    categories = list(dict.fromkeys(table_df[x]))
    arms = list(dict.fromkeys(table_df[hue]))
    colors = method_colors([str(a) for a in arms])
    width = 0.8 / len(arms)
    ax = _axes(ax, figsize=(max(4.0, 0.6 * len(categories) * len(arms)), 3.0))
    for j, arm in enumerate(arms):
        rows = table_df[table_df[hue] == arm].set_index(x)
        positions = [i for i, c in enumerate(categories) if c in rows.index]
        present = [categories[i] for i in positions]
        errors = rows.loc[present, std].to_numpy() if std in rows.columns else None
        ax.bar(
            np.array(positions) + (j - (len(arms) - 1) / 2) * width,
            rows.loc[present, mean].to_numpy(),
            width=width,
            yerr=errors,
            capsize=2,
            color=colors[str(arm)],
            label=str(arm),
        )
    ax.set_xticks(np.arange(len(categories)), [str(c) for c in categories])
    ax.set_xlabel(x)
    ax.set_ylabel(mean)
    ax.legend(title=hue)
    return ax


def scatter_embedding(
    xy,
    colors_values,
    ax: Axes | None = None,
    kind: str = "class",
    label: str | None = None,
    point_size: float = 4.0,
    cmap: str = "viridis",
) -> Axes:
    """A 2-D embedding (e.g. UMAP) drawn in the given point order, coloured by ``colors_values``.

    ``kind``: ``"class"`` (integer categories: tab10 / tab20 / husl by count, legend up to 20),
    ``"group"`` (0 many, 1 medium, 2 few in :data:`GROUP_COLORS`) or ``"continuous"`` (``cmap``
    with a colour bar labelled ``label``, e.g. the per-sample temperature).
    """
    xy = np.asarray(xy, dtype=float)
    values = np.asarray(colors_values)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must be N x 2, got {xy.shape}")
    if values.shape != (xy.shape[0],):
        raise ValueError(f"{values.size} colour values for {xy.shape[0]} points")
    ax = _axes(ax, figsize=(4.0, 4.0))
    if kind == "continuous":
        points = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=point_size, cmap=cmap, linewidths=0)
        ax.figure.colorbar(points, ax=ax, label=label)
    elif kind in ("class", "group"):
        categories = np.unique(values)
        if kind == "group":
            names = [GROUP_NAMES[int(v)] for v in categories]
            palette = [GROUP_COLORS[n] for n in names]
        else:
            names = [str(v) for v in categories]
            count = len(categories)
            palette_name = "tab10" if count <= 10 else "tab20" if count <= 20 else "husl"
            palette = [to_hex(c) for c in sns.color_palette(palette_name, count)]
        lookup = dict(zip(categories.tolist(), palette, strict=True))
        ax.scatter(
            xy[:, 0], xy[:, 1], c=[lookup[v] for v in values.tolist()], s=point_size, linewidths=0
        )
        if len(categories) <= 20:
            handles = [Line2D([], [], marker="o", linestyle="", color=c) for c in palette]
            ax.legend(
                handles, names, title=label or kind, loc="center left", bbox_to_anchor=(1, 0.5)
            )
    else:
        raise ValueError(f"kind must be 'class', 'group' or 'continuous', got {kind!r}")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax
