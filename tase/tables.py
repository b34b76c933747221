"""Aggregation of run results into paper-style tables (SPEC §5: mean ± std over seeds or
official splits, with the count of runs).

A run directory ``results/<run-id>/`` holds ``config.json`` (written by ``tase.train``) and
``metrics.json`` (written by ``tase.evaluate``). :func:`collect` turns a results tree into a tidy
frame, one row per run × metric; :func:`paper_table` and :func:`write_tables` summarise it;
:func:`paired_gain` compares two arms seed by seed; :func:`reference_values` returns the
published numbers SPEC §5 lists for sanity checks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import t as student_t

from tase import paths

TIDY_COLUMNS = (
    "run_id", "arm", "method", "dataset", "split", "data_seed", "seed", "metric", "protocol",
    "group", "value",
)
GROUPS = ("many", "medium", "few", "group_std")


def run_info(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{arm, method, dataset, split, data_seed, seed}`` of a run, from its ``config.json``.

    Reads ``tase.config.TrainConfig.to_dict()`` and is tolerant of missing keys (``None`` then):

    - ``method``: ``config["method"]["name"]`` (or ``config["method"]`` when it is a string).
    - ``arm``, the row label of tables: ``config["run"]["label"]``, else ``config["label"]``,
      else ``config["method"]["label"]``, else ``method``, else ``"unknown"``. TASE ablations
      share the method name, so give them a label (here, in ``labels.json`` or in
      :func:`collect`'s ``labels``).
    - ``dataset``, ``split``, ``data_seed``: ``config["data"]["name" | "split" | "seed"]``
      (top-level ``dataset`` / ``split`` accepted too).
    - ``seed`` (the training seed): ``config["run"]["seed"]``, else ``config["seed"]``.
    """

    def section(name: str) -> Mapping[str, Any]:
        value = config.get(name)
        return value if isinstance(value, Mapping) else {}

    method_cfg, data_cfg, run_cfg = section("method"), section("data"), section("run")
    method = method_cfg.get("name") if method_cfg else config.get("method")
    arm = run_cfg.get("label") or config.get("label") or method_cfg.get("label") or method
    return {
        "arm": arm or "unknown",
        "method": method,
        "dataset": data_cfg.get("name", config.get("dataset")),
        "split": data_cfg.get("split", config.get("split")),
        "data_seed": data_cfg.get("seed"),
        "seed": run_cfg.get("seed", config.get("seed")),
    }


def metric_parts(metric: str) -> tuple[str, str]:
    """``"knn10_few"`` -> ``("knn10", "few")``; ``"knn10"`` -> ``("knn10", "all")``."""
    for group in GROUPS:
        if metric.endswith("_" + group):
            return metric[: -len(group) - 1], group
    return metric, "all"


def collect(
    results_root: str | Path | None = None,
    filter: Mapping[str, Any] | Callable[[dict[str, Any]], bool] | None = None,
    labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Tidy frame of every run under ``results_root`` (default ``paths.results_dir()``).

    A run is a direct subfolder with both ``config.json`` and ``metrics.json``; other folders
    (``tables/``, unfinished runs) are skipped. Every numeric top-level entry of
    ``metrics.json`` becomes a row (``header`` and ``timings`` are not metrics; a null value,
    e.g. an empty group, becomes NaN).

    Args:
        filter: keep a run when every ``column: value`` matches (a value may be a list/set of
            allowed values), or when ``filter(info)`` is true; ``info`` holds the run's
            ``run_id``, ``arm``, ``method``, ``dataset``, ``split``, ``data_seed``, ``seed``
            and ``config``.
        labels: ``run_id -> arm`` overrides; they take precedence over
            ``results_root/labels.json`` (same mapping), which takes precedence over the
            config (see :func:`run_info`).

    Returns:
        columns :data:`TIDY_COLUMNS`, sorted by arm, dataset, split, data_seed, seed, run_id,
        metric.
    """
    root = Path(results_root) if results_root is not None else paths.results_dir()
    overrides: dict[str, str] = {}
    labels_file = root / "labels.json"
    if labels_file.exists():
        overrides.update(json.loads(labels_file.read_text()))
    overrides.update(labels or {})

    rows = []
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []:
        config_file, metrics_file = run_dir / "config.json", run_dir / "metrics.json"
        if not (config_file.exists() and metrics_file.exists()):
            continue
        config = json.loads(config_file.read_text())
        info = {"run_id": run_dir.name, **run_info(config)}
        if run_dir.name in overrides:
            info["arm"] = overrides[run_dir.name]
        if not _keep(info, config, filter):
            continue
        for metric, value in json.loads(metrics_file.read_text()).items():
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (numeric or value is None):
                continue
            protocol, group = metric_parts(metric)
            rows.append({
                **info, "metric": metric, "protocol": protocol, "group": group,
                "value": math.nan if value is None else float(value),
            })
    tidy = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    order = ["arm", "dataset", "split", "data_seed", "seed", "run_id", "metric"]
    return tidy.sort_values(order, key=_sort_key, ignore_index=True)


def _sort_key(column: pd.Series) -> pd.Series:
    return column.map(lambda v: (0, v) if isinstance(v, (int, float)) else (1, str(v)))


def _keep(info: dict, config: dict, filter) -> bool:
    if filter is None:
        return True
    if callable(filter):
        return bool(filter({**info, "config": config}))
    for column, wanted in filter.items():
        allowed = wanted if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
        if info.get(column) not in allowed:
            return False
    return True


# --------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True)
class Summary:
    """Numeric frames behind a paper table: rows × (dataset, metric) columns."""

    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame


def summarise(
    tidy: pd.DataFrame, metrics: Iterable[str] | None = None, rows: str = "arm"
) -> Summary:
    """Mean, sample std (``ddof=1``; NaN for a single run) and run count of each metric.

    Columns are a MultiIndex ``(dataset, metric)`` in the order the metrics are given (default:
    every metric, in order of appearance); rows are the values of column ``rows``.
    """
    if rows not in tidy.columns:
        raise ValueError(f"rows must be a column of the tidy frame, got {rows!r}")
    metrics = list(metrics) if metrics is not None else list(dict.fromkeys(tidy["metric"]))
    missing = sorted(set(metrics) - set(tidy["metric"]))
    if missing:
        raise ValueError(f"metrics not in the tidy frame: {missing}")
    data = tidy[tidy["metric"].isin(metrics)]
    grouped = data.groupby([rows, "dataset", "metric"], sort=False)["value"]
    frames = {}
    for name, series in (("mean", grouped.mean()), ("std", grouped.std(ddof=1)),
                         ("n", grouped.count())):
        frame = series.unstack(["dataset", "metric"])
        datasets = list(dict.fromkeys(data["dataset"]))
        columns = [(d, m) for d in datasets for m in metrics if (d, m) in frame.columns]
        frames[name] = frame.reindex(columns=pd.MultiIndex.from_tuples(
            columns, names=["dataset", "metric"]))
    frames["n"] = frames["n"].fillna(0).astype(int)
    return Summary(**frames)


def paper_table(
    tidy: pd.DataFrame,
    metrics: Iterable[str] | None = None,
    rows: str = "arm",
    decimals: int = 2,
) -> pd.DataFrame:
    """Strings ``"mean ± std (n)"`` (``"mean (1)"`` for a single run, ``"–"`` for none), same
    layout as :func:`summarise`."""
    summary = summarise(tidy, metrics, rows)

    def cell(mean: float, std: float, n: int) -> str:
        if n == 0 or math.isnan(mean):
            return "–"
        if n == 1 or math.isnan(std):
            return f"{mean:.{decimals}f} ({n})"
        return f"{mean:.{decimals}f} ± {std:.{decimals}f} ({n})"

    table = summary.mean.copy().astype(object)
    for r in table.index:
        for c in table.columns:
            table.loc[r, c] = cell(summary.mean.loc[r, c], summary.std.loc[r, c],
                                   int(summary.n.loc[r, c]))
    return table


def write_tables(
    tidy: pd.DataFrame,
    name: str,
    out_dir: str | Path | None = None,
    metrics: Iterable[str] | None = None,
    rows: str = "arm",
    decimals: int = 2,
) -> dict[str, Path]:
    """Write ``name.csv`` (one row per row × dataset × metric: mean, std, n), ``name_runs.csv``
    (the tidy per-run values behind it) and ``name.md`` (the paper table: rows = methods,
    columns = ``dataset / metric``) into ``out_dir`` (default ``results/tables``)."""
    out = Path(out_dir) if out_dir is not None else paths.results_dir() / "tables"
    out.mkdir(parents=True, exist_ok=True)
    metrics = list(metrics) if metrics is not None else None
    table = paper_table(tidy, metrics, rows, decimals)
    kept = tidy if metrics is None else tidy[tidy["metric"].isin(metrics)]
    numbers = (
        kept.groupby([rows, "dataset", "metric"], sort=False)["value"]
        .agg(mean="mean", std=lambda v: v.std(ddof=1), n="count")
        .reset_index()
    )
    files = {"csv": out / f"{name}.csv", "runs": out / f"{name}_runs.csv", "md": out / f"{name}.md"}
    numbers.to_csv(files["csv"], index=False, float_format="%.4f")
    kept.to_csv(files["runs"], index=False)
    files["md"].write_text(_markdown(table, rows))
    return files


def _markdown(table: pd.DataFrame, rows: str) -> str:
    single = table.columns.get_level_values("dataset").nunique() == 1
    headers = [m if single else f"{d} / {m}" for d, m in table.columns]
    lines = ["| " + " | ".join([rows, *headers]) + " |",
             "|" + "---|" * (len(headers) + 1)]
    for label, row in table.iterrows():
        lines.append("| " + " | ".join([str(label), *row.astype(str)]) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Paired comparison


@dataclass(frozen=True)
class PairedGain:
    """``arm − baseline`` on one metric, paired by (dataset, split, data_seed, seed).

    ``beyond_noise`` is true when a two-sided one-sample t-test of the paired differences
    against zero gives ``p_value < 0.05`` (with 3 seeds: |mean| > 2.48 × the std of the
    differences); otherwise the verdict says "within noise". With fewer than two pairs there is
    no spread estimate and nothing is called beyond noise.
    """

    baseline: str
    arm: str
    metric: str
    pairs: pd.DataFrame
    mean: float
    std: float
    n: int
    beyond_noise: bool
    p_value: float = math.nan

    @property
    def verdict(self) -> str:
        if self.n == 0:
            return "no paired runs"
        spread = f" ± {self.std:.2f}" if self.n > 1 else ""
        text = f"{self.arm} − {self.baseline} on {self.metric}: {self.mean:+.2f}{spread}"
        text += f" (n={self.n})"
        if self.n < 2:
            return text + ", within noise (one pair, no spread estimate)"
        verdict = ", beyond noise" if self.beyond_noise else ", within noise"
        return text + verdict + f" (paired t-test p = {self.p_value:.3f})"


def paired_gain(
    tidy: pd.DataFrame, baseline: str, arm: str, metric: str, rows: str = "arm"
) -> PairedGain:
    """Per-seed differences ``arm − baseline`` of ``metric`` (see :class:`PairedGain`).

    Runs are paired on (dataset, split, data_seed, seed): the same data and the same training
    seed; runs without a partner are left out.

    Raises:
        ValueError: unknown arm or metric, or two runs of one arm share a pairing key.
    """
    data = tidy[tidy["metric"] == metric]
    if data.empty:
        raise ValueError(f"metric {metric!r} not in the tidy frame")
    keys = ["dataset", "split", "data_seed", "seed"]
    sides = {}
    for side in (baseline, arm):
        runs = data[data[rows] == side]
        if runs.empty:
            raise ValueError(f"{rows} {side!r} has no runs with metric {metric!r}")
        duplicated = runs[runs.duplicated(keys, keep=False)]
        if not duplicated.empty:
            raise ValueError(
                f"{rows} {side!r} has several runs for the same (dataset, split, data_seed, "
                f"seed): "
                f"{sorted(duplicated['run_id'])}"
            )
        sides[side] = runs.set_index(keys)["value"]
    pairs = pd.concat({"baseline": sides[baseline], "arm": sides[arm]}, axis=1, join="inner")
    pairs["diff"] = pairs["arm"] - pairs["baseline"]
    pairs = pairs.reset_index()
    diffs = pairs["diff"].to_numpy(dtype=float)
    n = len(diffs)
    mean = float(diffs.mean()) if n else math.nan
    std = float(diffs.std(ddof=1)) if n > 1 else math.nan
    p_value = math.nan
    if n > 1:
        p_value = 0.0 if std == 0 and mean != 0 else 1.0
        if std > 0:
            t = abs(mean) / (std / math.sqrt(n))
            p_value = float(2 * student_t.sf(t, df=n - 1))
    return PairedGain(
        baseline=baseline, arm=arm, metric=metric, pairs=pairs, mean=mean, std=std, n=n,
        beyond_noise=bool(n > 1 and p_value < 0.05), p_value=p_value,
    )


# --------------------------------------------------------------------------------------------
# Published reference values (SPEC §5), for sanity checks against our evaluation code

_REFERENCE_ROWS = [
    # source, model, dataset, split, metric, variant, probe, value
    *(
        ("TS", "SimCLR+TS", dataset, split, metric, variant, probe, value)
        for dataset, split, values in (
            ("cifar10-lt", "sdclr:1", (61.21, 61.20, 71.49, 62.92)),
            ("cifar100-lt", "sdclr:1", (29.12, 28.11, 27.02, 32.29)),
            ("imagenet100-lt", "official", (38.38, 38.98, 45.18, 47.26)),
        )
        for (metric, variant, probe), value in zip(
            (("knn1", "", ""), ("knn10", "", ""), ("ms_lp", "min", "LinearSVC"),
             ("lt_lp", "", "LinearSVC")),
            values,
            strict=True,
        )
    ),
    ("BCL README", "SimCLR", "cifar100-lt", "sdclr:1", "full_lp", "", "Adam", 50.7),
    ("BCL README", "SimCLR", "cifar100-lt", "sdclr:1", "ms_lp", "100", "Adam", 46.3),
    ("BCL README", "SimCLR", "cifar100-lt", "sdclr:1", "ms_lp", "50", "Adam", 42.4),
]
REFERENCE = pd.DataFrame(
    _REFERENCE_ROWS,
    columns=["source", "model", "dataset", "split", "metric", "variant", "probe", "value"],
)
"""Released-checkpoint numbers of peers (not TASE), percent. TS: its evaluation notebooks'
printout (kNN on the LT set; ``ms_lp`` variant ``min`` is TS's "FS"). BCL: README, linear probe
trained with Adam on the full pool / 100 / 50 images per class."""


def reference_values(dataset: str) -> pd.DataFrame:
    """Rows of :data:`REFERENCE` for a dataset; names match loosely (``"CIFAR-100-LT"``,
    ``"cifar100_lt"`` and ``"cifar100-lt"`` are the same). Empty frame when none."""
    wanted = _canonical(dataset)
    mask = REFERENCE["dataset"].map(_canonical) == wanted
    return REFERENCE[mask].reset_index(drop=True)


def _canonical(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


__all__ = [
    "GROUPS", "REFERENCE", "TIDY_COLUMNS", "PairedGain", "Summary", "collect", "metric_parts",
    "paired_gain", "paper_table", "reference_values", "run_info", "summarise", "write_tables",
]
