"""Experiments: named arms × seeds on one base configuration, trained, evaluated and tabulated.

An **arm** is a label and dotted overrides of the base config (``{"method.alpha": 2.0}``). A
**sweep** varies one axis around the defaults and expands into one arm per value. Every arm of a
seed that continues from a warm-up shares that seed's warm-up run (see
:func:`tase.config.warmup_config`); finished runs and cached metrics are reused, so re-running a
notebook only computes what is missing and an interrupted one resumes where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from . import config as C
from .tables import metric_parts


@dataclass(frozen=True)
class Arm:
    label: str
    overrides: dict = field(default_factory=dict)
    sweep: str | None = None  # the sweep this arm belongs to, if any
    value: object = None  # its value on that sweep's axis

    def config(self, base: C.TrainConfig, seed: int) -> C.TrainConfig:
        d = base.to_dict()
        for key, value in self.overrides.items():
            C.set_dotted(d, key, value)
        C.set_dotted(d, "run.seed", seed)
        C.set_dotted(d, "run.label", self.label)
        return C.from_dict(d)


def arms_from_params(params: dict, sweeps: list[str] | None = None) -> list[Arm]:
    """Arms of a notebook's parameters: ``arms: {label: overrides}`` and ``sweeps: {name: {keys:
    [dotted, ...], values: [[...], ...]}}``; ``sweeps`` selects which sweeps to expand (all
    by default). A sweep value equal to the defaults maps to the same run as the plain arm.
    """
    arms = [Arm(label, dict(o or {})) for label, o in params.get("arms", {}).items()]
    for name, spec in params.get("sweeps", {}).items():
        if sweeps is not None and name not in sweeps:
            continue
        keys = spec["keys"]
        for value in spec["values"]:
            values = value if isinstance(value, list) else [value]
            if len(values) != len(keys):
                raise ValueError(f"sweep {name!r}: value {value!r} does not match keys {keys}")
            shown = ",".join(map(str, values))
            overrides = {**spec.get("with", {}), **dict(zip(keys, values, strict=True))}
            arms.append(Arm(f"{name}={shown}", overrides, sweep=name, value=shown))
    return arms


def run_arms(
    base: C.TrainConfig,
    arms: list[Arm],
    seeds: list[int],
    protocols: list[str] | tuple[str, ...],
    probe: str = "svc",
) -> pd.DataFrame:
    """Train (or reuse) and evaluate every arm for every seed; a tidy frame of the metrics.

    Columns: those of :data:`tase.tables.TIDY_COLUMNS` plus ``sweep`` and ``sweep_value``, so
    :func:`tase.tables.paper_table` and :func:`tase.tables.paired_gain` apply directly. A run
    shared by two arms (a sweep value equal to the defaults) appears under both labels.
    """
    from .evaluate import evaluate
    from .train import load_data, train

    rows = []
    for seed in seeds:
        for arm in arms:
            cfg = arm.config(base, seed)
            run = train(cfg)
            print(f"[{arm.label} | seed {seed}] {run.id}", flush=True)
            metrics = evaluate(run.dir, load_data(cfg.data), protocols=list(protocols), probe=probe)
            for metric, number in metrics.items():
                numeric = isinstance(number, (int, float)) and not isinstance(number, bool)
                if not (numeric or number is None):
                    continue
                protocol, group = metric_parts(metric)
                rows.append(
                    {
                        "run_id": run.id,
                        "arm": arm.label,
                        "method": cfg.method.name,
                        "dataset": cfg.data.name,
                        "split": cfg.data.split,
                        "data_seed": cfg.data.seed,
                        "seed": seed,
                        "metric": metric,
                        "protocol": protocol,
                        "group": group,
                        "value": math.nan if number is None else float(number),
                        "sweep": arm.sweep,
                        "sweep_value": arm.value,
                    }
                )
    return pd.DataFrame(rows)
