"""Configuration: frozen dataclasses, validated at construction, loaded from and saved to YAML.

A training run is fully described by a :class:`TrainConfig` (data, model, augmentation,
optimisation, method, run). Its identity is :func:`run_id`, a hash of everything that changes the
numbers (not of where it runs or how often it logs), so a finished run is found again and an
interrupted one resumed.

Invalid values raise ``ValueError`` naming the field and the allowed range, e.g.
``method.tau_tail must be in (0, 10], got 0.0``.

YAML files are nested by section (``data:``, ``model:``, ...). A file may start with
``extends: other.yaml`` (relative to itself) to inherit and override another file, which keeps the
notebooks of one profile on a single base configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

DATASETS = ("digits-lt", "cifar10-lt", "cifar100-lt", "imagenet100-lt", "folder-lt")
ARCHS = ("small", "resnet18", "resnet50")
METHODS = ("simclr", "tase", "ts", "sdclr", "bcl")
PRESETS = ("digits", "cifar", "imagenet")


def _check(ok: bool, name: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    _check(value in choices, name, f"one of {', '.join(map(str, choices))}", value)


def _check_range(name, value, low, high, low_open=False, high_open=False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    lb, rb = ("(" if low_open else "["), (")" if high_open else "]")
    _check(ok, name, f"in {lb}{low}, {high}{rb}", value)


def _check_int(name, value, low, high=10**9) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    _check(ok, name, f"an integer in [{low}, {high}]", value)


@dataclass(frozen=True)
class DataConfig:
    """Which long-tailed set to train on (SPEC §1). ``ratio=None`` takes the dataset default."""

    name: str = "digits-lt"
    split: str = "exp"
    ratio: float | None = None
    seed: int = 0
    root: str | None = None
    download: bool = False

    def __post_init__(self):
        _check_choice("data.name", self.name, DATASETS)
        ok = self.split in ("exp", "step", "official") or (
            self.split.startswith("sdclr:") and self.split[6:] in ("1", "2", "3", "4", "5")
        )
        _check(ok, "data.split", "exp, step, official or sdclr:1..5", self.split)
        if self.ratio is not None:
            _check_range("data.ratio", self.ratio, 1, 10_000)
        _check_int("data.seed", self.seed, 0, 2**31 - 1)

    def load_kwargs(self) -> dict:
        """Keyword arguments of :func:`tase.data.load`."""
        kw = dict(split=self.split, seed=self.seed, download=self.download)
        if self.ratio is not None:
            kw["ratio"] = self.ratio
        if self.root is not None:
            kw["root"] = self.root
        return kw


@dataclass(frozen=True)
class ModelConfig:
    """Backbone and projection head (SPEC §2). ``width`` only applies to the small network."""

    arch: str = "small"
    width: int = 32
    proj_dim: int = 128

    def __post_init__(self):
        _check_choice("model.arch", self.arch, ARCHS)
        _check_int("model.width", self.width, 4, 1024)
        _check_int("model.proj_dim", self.proj_dim, 2, 8192)


@dataclass(frozen=True)
class AugmentConfig:
    """SimCLR views (SPEC §2): a preset of :mod:`tase.augment`, the output size, and optional
    overrides of the preset's smallest crop scale and blur probability."""

    preset: str = "digits"
    size: int = 16
    scale_min: float | None = None
    blur_p: float | None = None

    def __post_init__(self):
        _check_choice("augment.preset", self.preset, PRESETS)
        _check_int("augment.size", self.size, 4, 1024)
        if self.scale_min is not None:
            _check_range("augment.scale_min", self.scale_min, 0, 1, low_open=True)
        if self.blur_p is not None:
            _check_range("augment.blur_p", self.blur_p, 0, 1)


@dataclass(frozen=True)
class OptimConfig:
    """SGD with a per-step linear warm-up then cosine schedule over ``epochs`` (SPEC §2)."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_warmup_epochs: int = 10
    min_lr: float = 1e-6

    def __post_init__(self):
        _check_int("optim.epochs", self.epochs, 1, 100_000)
        _check_int("optim.batch_size", self.batch_size, 2, 1_000_000)
        _check_range("optim.lr", self.lr, 0, 100, low_open=True)
        _check_range("optim.momentum", self.momentum, 0, 1, high_open=True)
        _check_range("optim.weight_decay", self.weight_decay, 0, 1)
        _check_int("optim.lr_warmup_epochs", self.lr_warmup_epochs, 0, self.epochs)
        _check_range("optim.min_lr", self.min_lr, 0, self.lr)


@dataclass(frozen=True)
class MethodConfig:
    """The method and all its switches (SPEC §3, §4). Unused fields are ignored by a method.

    ``warmup_epochs=None`` means 25% of the epochs; ``ramp_epochs=None`` 10% of the cluster-balance
    stage (at least 1); ``n_clusters=None`` the number of classes.
    """

    name: str = "tase"
    tau0: float = 0.2
    # TASE
    warmup_epochs: int | None = None
    recluster_every: int = 5
    n_clusters: int | None = None
    tau_tail: float = 0.1
    tau_head: float = 0.3
    tau_direction: str = "tail-low"
    ramp_epochs: int | None = None
    alpha: float = 1.0
    use_temperature: bool = True
    reweight: str = "negatives"
    cluster_features: str = "clean"
    kmeans_restarts: int = 3
    # TS (Kukleva et al. 2023)
    ts_tau_min: float = 0.1
    ts_tau_max: float = 1.0
    ts_period: int = 200
    # SDCLR (Jiang et al. 2021)
    prune_ratio: float = 0.9
    # BCL-I (Zhou et al. 2022)
    bcl_beta: float = 0.97
    bcl_strength_base: float = 10.0
    bcl_strength_range: float = 20.0

    def __post_init__(self):
        _check_choice("method.name", self.name, METHODS)
        for name in ("tau0", "tau_tail", "tau_head", "ts_tau_min", "ts_tau_max"):
            _check_range(f"method.{name}", getattr(self, name), 0, 10, low_open=True)
        _check(
            self.tau_tail <= self.tau_head,
            "method.tau_tail",
            f"<= method.tau_head ({self.tau_head})",
            self.tau_tail,
        )
        _check(
            self.ts_tau_min <= self.ts_tau_max,
            "method.ts_tau_min",
            f"<= method.ts_tau_max ({self.ts_tau_max})",
            self.ts_tau_min,
        )
        if self.warmup_epochs is not None:
            _check_int("method.warmup_epochs", self.warmup_epochs, 0)
        if self.ramp_epochs is not None:
            _check_int("method.ramp_epochs", self.ramp_epochs, 1)
        if self.n_clusters is not None:
            _check_int("method.n_clusters", self.n_clusters, 2)
        _check_int("method.recluster_every", self.recluster_every, 1)
        _check_int("method.kmeans_restarts", self.kmeans_restarts, 1, 100)
        _check_choice("method.tau_direction", self.tau_direction, ("tail-low", "tail-high"))
        _check_choice("method.reweight", self.reweight, ("negatives", "anchors", "none"))
        _check_choice("method.cluster_features", self.cluster_features, ("clean", "bank"))
        _check_range("method.alpha", self.alpha, 0, 10)
        _check_int("method.ts_period", self.ts_period, 1)
        _check_range("method.prune_ratio", self.prune_ratio, 0, 1, high_open=True)
        _check_range("method.bcl_beta", self.bcl_beta, 0, 1, high_open=True)
        _check_range("method.bcl_strength_base", self.bcl_strength_base, 0, 30)
        _check_range("method.bcl_strength_range", self.bcl_strength_range, 0, 30)


@dataclass(frozen=True)
class RunConfig:
    """How a run executes. Only ``seed``, ``stop_epoch``, ``precision`` and ``sync_bn`` enter the
    run id; the rest says where and how verbosely it runs.

    ``stage="warmup"`` trains only the SimCLR warm-up of this configuration (notebook 01), so that
    every arm with the same data, model and optimisation shares it.
    """

    seed: int = 0
    stage: str = "full"
    stop_epoch: int | None = None
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = True
    device: str = "auto"
    checkpoint_every: int = 10
    eval_every: int = 10
    label: str | None = None

    def __post_init__(self):
        _check_int("run.seed", self.seed, 0, 2**31 - 1)
        _check_choice("run.stage", self.stage, ("full", "warmup"))
        if self.stop_epoch is not None:
            _check_int("run.stop_epoch", self.stop_epoch, 1)
        _check_choice("run.precision", self.precision, ("auto", "fp32", "bf16", "fp64"))
        _check_int("run.checkpoint_every", self.checkpoint_every, 1)
        _check_int("run.eval_every", self.eval_every, 0)
        ok = self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        _check(ok, "run.device", "auto, cpu, cuda or cuda:N", self.device)


# Fields of RunConfig that do not change the numbers a run produces.
_NOT_HASHED = (
    "stage",
    "channels_last",
    "compile",
    "device",
    "checkpoint_every",
    "eval_every",
    "label",
)


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        epochs = self.optim.epochs
        b = self.method.warmup_epochs
        if b is not None and self.method.name == "tase":
            _check(b < epochs, "method.warmup_epochs", f"< optim.epochs ({epochs})", b)
        if self.run.stop_epoch is not None:
            _check_int("run.stop_epoch", self.run.stop_epoch, 1, epochs)

    @property
    def warmup_epochs(self) -> int:
        """B: the epoch at which the cluster-balance stage starts (25% of epochs by default)."""
        b = self.method.warmup_epochs
        return int(round(0.25 * self.optim.epochs)) if b is None else b

    @property
    def ramp_epochs(self) -> int:
        """P: epochs over which the progressive factor rises from 0 to 1."""
        p = self.method.ramp_epochs
        return (
            max(1, int(round(0.1 * (self.optim.epochs - self.warmup_epochs)))) if p is None else p
        )

    @property
    def end_epoch(self) -> int:
        return self.optim.epochs if self.run.stop_epoch is None else self.run.stop_epoch

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **sections: dict) -> TrainConfig:
        """A copy with fields replaced per section: ``cfg.replace(method={"alpha": 2.0})``."""
        new = {name: replace(getattr(self, name), **values) for name, values in sections.items()}
        return replace(self, **new)


_SECTION_TYPES = {
    "data": DataConfig,
    "model": ModelConfig,
    "augment": AugmentConfig,
    "optim": OptimConfig,
    "method": MethodConfig,
    "run": RunConfig,
}


def from_dict(d: dict) -> TrainConfig:
    """Build a :class:`TrainConfig` from a nested dict; unknown keys raise ``ValueError``."""
    unknown = set(d) - set(_SECTION_TYPES)
    if unknown:
        raise ValueError(
            f"unknown config section(s) {sorted(unknown)}; valid: {list(_SECTION_TYPES)}"
        )
    sections = {}
    for name, cls in _SECTION_TYPES.items():
        values = dict(d.get(name) or {})
        valid = {f.name for f in fields(cls)}
        bad = set(values) - valid
        if bad:
            raise ValueError(
                f"unknown key(s) {sorted(bad)} in section {name!r}; valid: {sorted(valid)}"
            )
        sections[name] = cls(**values)
    return TrainConfig(**sections)


def set_dotted(d: dict, key: str, value: Any) -> None:
    """``set_dotted(d, "method.alpha", 2.0)`` sets ``d["method"]["alpha"]`` in place."""
    section, _, name = key.partition(".")
    if not name:
        raise ValueError(f"override {key!r} must look like section.field, e.g. method.alpha")
    d.setdefault(section, {})[name] = value


def read_yaml(path: str | Path) -> dict:
    """Read a YAML file, following ``extends:`` chains (paths relative to the including file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    d = yaml.safe_load(path.read_text()) or {}
    base = d.pop("extends", None)
    if base is None:
        return d
    merged = read_yaml(path.parent / base)
    return deep_merge(merged, d)


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Load a train config from YAML, then apply dotted overrides (``{"optim.epochs": 5}``)."""
    d = read_yaml(path)
    for key, value in (overrides or {}).items():
        set_dotted(d, key, value)
    return train_config(d)


def save(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def hashed_dict(cfg: TrainConfig) -> dict:
    d = cfg.to_dict()
    for name in _NOT_HASHED:
        d["run"].pop(name)
    return d


def config_hash(cfg: TrainConfig) -> str:
    """SHA-256 of the canonical JSON of everything that changes the numbers (12 hex digits)."""
    blob = json.dumps(hashed_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_id(cfg: TrainConfig) -> str:
    """Readable and unique: ``<dataset>_<method>_s<seed>_<hash>``."""
    return f"{cfg.data.name}_{cfg.method.name}_s{cfg.run.seed}_{config_hash(cfg)}"


def warmup_config(cfg: TrainConfig) -> TrainConfig:
    """The SimCLR warm-up stage of ``cfg``: epochs [0, B) of the same schedule with τ0.

    Method switches that only act after B are reset to their defaults so that every arm with the
    same data, model, augmentation, optimisation and seed maps to the same warm-up run.
    """
    method = MethodConfig(name="simclr", tau0=cfg.method.tau0, warmup_epochs=cfg.warmup_epochs)
    run = replace(cfg.run, stage="full", stop_epoch=cfg.warmup_epochs, label="warmup")
    return replace(cfg, method=method, run=run)


def notebook_params(
    notebook: str,
    profile: str = "quick",
    dataset: str | None = None,
    overrides: dict | None = None,
    config_file: str | Path | None = None,
) -> dict:
    """The parameters of a notebook: ``params/<profile>/<notebook>.yaml`` (or ``config_file``),
    with the dataset switched and dotted overrides applied.

    ``dataset`` merges ``params/<profile>/dataset-<name>.yaml`` when that file exists (model and
    augmentation that suit the data at this profile), else it only sets ``data.name``.
    """
    from .paths import PARAMS_DIR, params_file

    if config_file is None and not (PARAMS_DIR / profile).is_dir():
        valid = sorted(p.name for p in PARAMS_DIR.iterdir() if p.is_dir())
        raise ValueError(f"profile must be one of {', '.join(valid)}, got {profile!r}")
    d = read_yaml(config_file or params_file(profile, notebook))
    if dataset:
        _check_choice("dataset", dataset, DATASETS)
        overlay = PARAMS_DIR / profile / f"dataset-{dataset}.yaml"
        d = deep_merge(d, read_yaml(overlay) if overlay.exists() else {"data": {"name": dataset}})
    for key, value in (overrides or {}).items():
        set_dotted(d, key, value)
    return d


def train_config(params: dict) -> TrainConfig:
    """The :class:`TrainConfig` in a notebook's parameters (its section keys only)."""
    return from_dict({k: v for k, v in params.items() if k in _SECTION_TYPES})
