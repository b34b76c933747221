"""The training engine: SimCLR warm-up and every method's stage, resumable, on 1 or N processes.

``train(config) -> Run`` runs epochs ``[start, end)`` of an ``optim.epochs``-long schedule and
writes ``results/<run-id>/``: ``config.json``, ``history.csv`` (one row per epoch), ``steps.csv``
(one row per step), ``checkpoint.pt``, ``status.json`` and ``clusterings/epoch_XXXX.npz``.

- A method that continues the warm-up (SimCLR, TASE) asks for the warm-up run of its config
  (:func:`tase.config.warmup_config`), which is reused when finished and trained when absent, then
  continues from its checkpoint: every arm with the same data, model and seed shares one warm-up.
- Randomness is a function of ``(seed, epoch)`` (shuffling, K-means) and of ``(seed, epoch, view,
  sample index)`` (augmentation), so a resumed run is bit-identical to an uninterrupted one and
  the result does not depend on the number of processes.
- Under ``torchrun`` (``WORLD_SIZE > 1``) each rank takes a contiguous slice of every global batch;
  projections are all-gathered with gradients, so the loss sees the global batch exactly as on
  one device; BatchNorm is synchronised (``run.sync_bn``); rank 0 alone writes files. Multi-node
  runs need ``results/`` (``TASE_RESULTS``) on a filesystem every node sees.

CLI: ``python -m tase.train --config params/quick/02_cluster_balance.yaml [--set key=value ...]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn

from . import config as C
from . import paths
from .augment import simclr_views
from .cluster import kmeans
from .losses import mean_over_anchors, per_anchor_loss
from .methods import build_policy
from .models import build_model
from .progress import EpochProgress


class TrainingError(RuntimeError):
    """Base class of the trainer's errors."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class ConfigMismatchError(TrainingError):
    """A checkpoint was written by a different configuration than the one asked for."""


class WarmupNotFoundError(TrainingError):
    """The warm-up checkpoint a run must continue from does not exist or is unfinished."""


HISTORY_COLUMNS = (
    "epoch",
    "loss",
    "lr",
    "tau_mean",
    "tau_min",
    "tau_max",
    "w_min",
    "w_max",
    "n_clusters",
    "cluster_min",
    "cluster_max",
    "cluster_sizes",
    "pl_acc",
    "pl_nmi",
    "pl_ari",
    "knn10",
    "images_per_s",
    "epoch_s",
    "cluster_s",
)
STEP_COLUMNS = ("epoch", "step", "loss", "lr")


# ---------------------------------------------------------------------------------------------
# Pure helpers


def learning_rate(step: int, total_steps: int, warmup_steps: int, base: float, final: float):
    """Per-step schedule (SPEC §2): linear warm-up to ``base``, then cosine down to ``final``."""
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return float(final + 0.5 * (base - final) * (1 + np.cos(np.pi * min(1.0, progress))))


def batch_bounds(n: int, batch_size: int, world: int = 1) -> list[tuple[int, int]]:
    """Global batches as ``[start, end)`` of the epoch's permutation: every sample once.

    A last batch smaller than the number of processes is merged into the one before, so every
    rank always has at least one sample.
    """
    bounds = [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < max(2, world):
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def rank_counts(size: int, world: int) -> list[int]:
    """How many samples of a global batch of ``size`` each rank takes (contiguous slices)."""
    return [size // world + (r < size % world) for r in range(world)]


def rank_slice(size: int, ctx: Context) -> tuple[list[int], slice]:
    """Every rank's count, and this rank's contiguous ``slice`` of ``range(size)``."""
    counts = rank_counts(size, ctx.world)
    lo = sum(counts[: ctx.rank])
    return counts, slice(lo, lo + counts[ctx.rank])


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


# ---------------------------------------------------------------------------------------------
# Processes and devices


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()


def context(device: str = "auto") -> Context:
    """Set up (once) the process group from torchrun's environment, and pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and device != "cpu"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        minutes = float(os.environ.get("TASE_DIST_TIMEOUT_MIN", "10"))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=minutes))
    rank = dist.get_rank() if world > 1 else 0
    if device.startswith("cuda:"):
        dev = torch.device(device)
    else:
        dev = torch.device(f"cuda:{local}" if cuda else "cpu")
    return Context(rank, world, dev)


def gather_rows(x: torch.Tensor, counts: list[int], ctx: Context, grad: bool) -> torch.Tensor:
    """Concatenate every rank's rows (uneven counts allowed), keeping gradients if asked."""
    if ctx.world == 1:
        return x
    pad = max(counts) - x.shape[0]
    if pad:
        x = torch.cat([x, x.new_zeros((pad,) + x.shape[1:])])
    if grad:
        parts = torch.distributed.nn.functional.all_gather(x)
    else:
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(parts, x)
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)])


class CrossRankBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with statistics over the global batch of every process, for gloo on the CPU.

    ``torch.nn.SyncBatchNorm`` (used on CUDA) is GPU-only under DDP. This computes the same
    thing: per-channel sums and sums of squares all-reduced with gradients, then the usual
    normalisation; running statistics use the unbiased global variance, as BatchNorm does.
    """

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        count = torch.tensor([x.numel() / c], dtype=xf.dtype, device=x.device)
        reduce = torch.distributed.nn.functional.all_reduce
        # Two passes (mean, then centred squares) rather than E[x²] − E[x]², which cancels badly
        # in float32 when a channel's mean is large against its spread.
        sums = reduce(torch.cat([xf.sum(dims), count]))
        n = sums[-1]
        mean = sums[:c] / n
        centred = xf - mean.view(shape)
        var = reduce((centred * centred).sum(dims)) / n
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        return (y * self.weight.view(shape) + self.bias.view(shape)).to(x.dtype)


def synchronise_batchnorm(module: nn.Module, cuda: bool) -> nn.Module:
    """Every BatchNorm of ``module`` computes statistics over the global batch."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            sync = CrossRankBatchNorm(child.num_features, child.eps, child.momentum, child.affine)
            sync.load_state_dict(child.state_dict())
            setattr(module, name, sync.to(child.weight.device, child.weight.dtype))
        else:
            synchronise_batchnorm(child, cuda)
    return module


# ---------------------------------------------------------------------------------------------
# Files


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2)))


def _rewrite_csv(path: Path, columns, rows) -> None:
    def write(p):
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)

    _atomic_write(path, write)


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _append_csv(path: Path, columns, row) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        if new:
            w.writeheader()
        w.writerow(row)


def read_status(run_dir: Path) -> dict:
    f = Path(run_dir) / "status.json"
    return json.loads(f.read_text()) if f.exists() else {"epoch": 0, "finished": False}


def load_checkpoint(run_dir: Path, cfg: C.TrainConfig | None = None) -> dict:
    """Load ``checkpoint.pt`` (``weights_only=True``), refusing one written by another config."""
    ckpt = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=True)
    if cfg is not None and json.loads(ckpt["config"]) != C.hashed_dict(cfg):
        raise ConfigMismatchError(
            f"checkpoint in {run_dir} was written by a different configuration; refusing to "
            f"resume from it (delete the folder to start over, or use its own config.json)"
        )
    return ckpt


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass
class Run:
    """A run folder: its config, progress and files."""

    config: C.TrainConfig
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def finished(self) -> bool:
        return bool(read_status(self.dir)["finished"])

    @property
    def history(self):
        import pandas as pd

        return pd.read_csv(self.dir / "history.csv")

    def encoder(self, device="cpu") -> nn.Module:
        return load_encoder(self.dir, device)


def load_encoder(run_dir: str | Path, device="cpu") -> nn.Module:
    """The trained encoder of a run folder, in eval mode (works for single and multi-process)."""
    run_dir = Path(run_dir)
    cfg = C.from_dict(json.loads((run_dir / "config.json").read_text()))
    ckpt = load_checkpoint(run_dir, cfg)
    model = build_model(cfg.model.arch, cfg.augment.size, cfg.model.width, cfg.model.proj_dim)
    prefix = "encoder."
    state = {k[len(prefix) :]: v for k, v in ckpt["module"].items() if k.startswith(prefix)}
    model.load_state_dict(state)
    return model.to(device).eval()


_DATA_CACHE: dict = {}


def load_data(data_cfg: C.DataConfig):
    """``tase.data.load`` for a :class:`DataConfig`, cached in-process (notebooks train many
    arms on the same data)."""
    from . import data

    key = json.dumps(dataclasses.asdict(data_cfg), sort_keys=True)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = data.load(data_cfg.name, **data_cfg.load_kwargs())
    return _DATA_CACHE[key]


def augment_params(cfg: C.AugmentConfig):
    from dataclasses import replace

    from . import augment

    preset = augment.imagenet_params if cfg.preset == "imagenet" else augment.cifar_params
    params = preset(cfg.size)
    if cfg.scale_min is not None:
        params = replace(params, scale=(cfg.scale_min, params.scale[1]))
    if cfg.blur_p is not None:
        params = replace(params, blur_p=cfg.blur_p)
    return params


def check_against_data(cfg: C.TrainConfig, n_samples: int, n_classes: int) -> None:
    """Errors that need the data, raised before any training starts."""
    k = cfg.method.n_clusters or n_classes
    if cfg.method.name == "tase" and not 2 <= k <= n_samples:
        raise ValueError(f"method.n_clusters must be in [2, {n_samples}] (N), got {k}")
    if cfg.optim.batch_size > n_samples:
        raise ValueError(
            f"optim.batch_size must be <= the training set size {n_samples}, "
            f"got {cfg.optim.batch_size}"
        )


def train(
    cfg: C.TrainConfig,
    *,
    data=None,
    warmup_dir: str | Path | None = None,
    until: int | None = None,
) -> Run:
    """Train ``cfg`` (or return it if finished); resume from its checkpoint if one exists.

    ``warmup_dir`` names the warm-up run to continue from (an error if it is missing); by default
    it is found or trained. ``until`` stops after that epoch with a checkpoint, like an
    interruption (tests use it).
    """
    ctx = context(cfg.run.device)
    if cfg.optim.batch_size < ctx.world:
        raise ValueError(
            f"optim.batch_size ({cfg.optim.batch_size}) must be >= the number of processes "
            f"({ctx.world}): the global batch is split across them"
        )
    if cfg.run.stage == "warmup":
        cfg = C.warmup_config(cfg)
    data = load_data(cfg.data) if data is None else data
    n, n_classes = len(data.train_labels), int(data.n_classes)
    check_against_data(cfg, n, n_classes)
    run_dir = paths.results_dir() / C.run_id(cfg)
    run = Run(cfg, run_dir)
    if run.finished:
        load_checkpoint(run_dir, cfg)  # refuses a foreign checkpoint
        return run
    if warmup_dir is not None:
        status = read_status(Path(warmup_dir))
        if not status["finished"]:
            raise WarmupNotFoundError(f"no finished warm-up run in {warmup_dir}")
    Trainer(cfg, data, ctx, run_dir, warmup_dir).fit(until)
    ctx.barrier()
    return run


class Trainer:
    def __init__(self, cfg: C.TrainConfig, data, ctx: Context, run_dir: Path, warmup_dir=None):
        self.cfg, self.data, self.ctx, self.dir = cfg, data, ctx, run_dir
        self.warmup_dir = warmup_dir
        dev = ctx.device
        self.cuda = dev.type == "cuda"
        self.bf16 = cfg.run.precision == "bf16" or (cfg.run.precision == "auto" and self.cuda)
        # fp64 exists to verify exactness (1 vs N processes), not for speed.
        self.dtype = torch.float64 if cfg.run.precision == "fp64" else torch.float32
        # CUDA only: on the CPU (torch 2.14) channels_last is ~30% faster for the small network
        # but SDCLR's masked-weight convolutions then crash in backward (segfault).
        self.channels_last = cfg.run.channels_last and self.cuda
        self.images = data.train_images.to(dev)
        self.labels = torch.as_tensor(data.train_labels).long()
        self.n = len(self.labels)
        self.aug = augment_params(cfg.augment)
        self.end = cfg.end_epoch
        self.bounds = batch_bounds(self.n, cfg.optim.batch_size, ctx.world)
        self.total_steps = len(self.bounds) * cfg.optim.epochs
        self.warmup_steps = len(self.bounds) * cfg.optim.lr_warmup_epochs

        torch.manual_seed(cfg.run.seed)
        self.model = build_model(
            cfg.model.arch, cfg.augment.size, cfg.model.width, cfg.model.proj_dim
        ).to(dev, self.dtype)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.policy = build_policy(cfg, self.n, int(data.n_classes), dev)
        self.module = self.policy.train_module(self.model)
        if ctx.world > 1 and cfg.run.sync_bn:
            self.module = synchronise_batchnorm(self.module, self.cuda)
        self.module.to(dev)
        self.forward = self.module
        if ctx.world > 1:
            ids = [dev.index] if self.cuda else None
            self.forward = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        if cfg.run.compile:
            self.forward = torch.compile(self.forward)
        self.optimizer = torch.optim.SGD(
            self.module.parameters(),
            lr=cfg.optim.lr,
            momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay,
        )
        self.bank = None
        if self.policy.cluster_features == "bank":
            self.bank = torch.zeros(self.n, self.model.feature_dim, device=dev)
            self.bank_filled = torch.zeros(self.n, dtype=torch.bool, device=dev)
        self.epoch = 0
        self.step = 0
        self.cluster_row: dict = {}

    # -- state ---------------------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "config": json.dumps(C.hashed_dict(self.cfg)),
            "epoch": self.epoch,
            "step": self.step,
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "policy": self.policy.state_dict(),
            "bank": None if self.bank is None else self.bank.cpu(),
            "bank_filled": None if self.bank is None else self.bank_filled.cpu(),
            "torch_rng": torch.get_rng_state(),
        }

    def load(self, ckpt: dict, policy: bool = True) -> None:
        self.module.load_state_dict(ckpt["module"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        torch.set_rng_state(ckpt["torch_rng"])
        if policy:
            self.policy.load_state_dict(ckpt["policy"])
            if self.bank is not None and ckpt["bank"] is not None:
                self.bank.copy_(ckpt["bank"])
                self.bank_filled.copy_(ckpt["bank_filled"])

    def save(self) -> None:
        if self.ctx.main:
            _atomic_write(self.dir / "checkpoint.pt", lambda p: torch.save(self.state(), p))
            finished = self.epoch >= self.end
            _write_json(self.dir / "status.json", {"epoch": self.epoch, "finished": finished})
        self.ctx.barrier()

    def resume_or_start(self) -> None:
        cfg = self.cfg
        if (self.dir / "checkpoint.pt").exists():
            self.load(load_checkpoint(self.dir, cfg))
            if self.ctx.main:  # forget epochs after the checkpoint
                for name, cols in (("history.csv", HISTORY_COLUMNS), ("steps.csv", STEP_COLUMNS)):
                    rows = [r for r in _read_csv(self.dir / name) if int(r["epoch"]) < self.epoch]
                    _rewrite_csv(self.dir / name, cols, rows)
            return
        b = cfg.warmup_epochs
        if not (self.policy.continues_warmup and 0 < b < self.end):
            return
        warm_cfg = C.warmup_config(cfg)
        if self.warmup_dir is None:
            warm = train(warm_cfg, data=self.data)
            self.warmup_dir = warm.dir
        self.load(load_checkpoint(Path(self.warmup_dir), warm_cfg), policy=False)

    # -- training ------------------------------------------------------------------------------

    def fit(self, until: int | None = None) -> None:
        cfg, ctx = self.cfg, self.ctx
        if ctx.main:
            self.dir.mkdir(parents=True, exist_ok=True)
            _write_json(self.dir / "config.json", cfg.to_dict())
        ctx.barrier()
        self.resume_or_start()
        stop = self.end if until is None else min(self.end, until)
        bar = EpochProgress(
            self.epoch, stop, desc=f"{cfg.method.name} {self.dir.name}", enabled=ctx.main
        )
        try:
            while self.epoch < stop:
                row = self.train_epoch(self.epoch)
                self.epoch += 1
                if ctx.main:
                    _append_csv(self.dir / "history.csv", HISTORY_COLUMNS, row)
                done = self.epoch == stop
                if done or self.epoch % cfg.run.checkpoint_every == 0:
                    self.save()
                bar.update(
                    row["epoch"],
                    loss=row["loss"],
                    tau=f"{row['tau_min']:.3f}-{row['tau_max']:.3f}",
                    img_s=f"{row['images_per_s']:.0f}",
                )
        finally:
            bar.close()

    def train_epoch(self, epoch: int) -> dict:
        cfg, ctx = self.cfg, self.ctx
        t0 = time.perf_counter()
        self.policy.start_epoch(epoch, self.model)
        cluster_s = self.cluster(epoch) if self.policy.wants_clustering(epoch) else 0.0
        self.module.train()
        perm = epoch_permutation(cfg.run.seed, epoch, self.n).to(ctx.device)
        losses, lr = [], 0.0
        for step_in_epoch, (s, e) in enumerate(self.bounds):
            batch = perm[s:e]
            counts, mine = rank_slice(e - s, ctx)
            local = batch[mine]
            lr = learning_rate(
                self.step, self.total_steps, self.warmup_steps, cfg.optim.lr, cfg.optim.min_lr
            )
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss = self.train_step(batch, local, counts, epoch)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at epoch {epoch}, step {step_in_epoch} of run "
                    f"{self.dir.name}; the last good checkpoint is kept"
                )
            losses.append(loss.item())
            if ctx.main:
                _append_csv(
                    self.dir / "steps.csv",
                    STEP_COLUMNS,
                    {"epoch": epoch, "step": self.step, "loss": losses[-1], "lr": lr},
                )
            self.step += 1
        seconds = time.perf_counter() - t0
        row = {k: "" for k in HISTORY_COLUMNS}
        row.update(self.policy.epoch_summary(epoch))
        row.update(self.cluster_row if cluster_s else {})
        row.update(
            epoch=epoch,
            loss=float(np.mean(losses)),
            lr=lr,
            images_per_s=self.n / seconds,
            epoch_s=seconds,
            cluster_s=cluster_s,
        )
        eval_every = cfg.run.eval_every
        if eval_every and ((epoch + 1) % eval_every == 0 or epoch + 1 == self.end):
            row["knn10"] = self.knn_accuracy()
        return row

    def train_step(self, batch, local, counts, epoch) -> torch.Tensor:
        cfg, ctx = self.cfg, self.ctx
        images = self.images[local]
        v1, v2 = simclr_views(images, self.aug, cfg.run.seed, epoch, local)
        v1, v2 = self.policy.views(images, local, epoch, v1, v2)
        v1, v2 = v1.to(self.dtype), v2.to(self.dtype)
        if self.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            h1, z1, h2, z2 = self.forward(v1, v2)
        z1 = gather_rows(z1.to(self.dtype), counts, ctx, grad=True)
        z2 = gather_rows(z2.to(self.dtype), counts, ctx, grad=True)
        tau, neg_weight, anchor_weight = self.policy.terms(batch, epoch)
        # Every rank computes the same global loss; all_gather's backward sums the ranks'
        # gradients and DDP averages them, which together give exactly the global gradient.
        per_anchor = per_anchor_loss(z1, z2, tau, neg_weight)
        loss = mean_over_anchors(per_anchor, anchor_weight)
        if torch.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if self.bank is not None:
            h = gather_rows(F.normalize(h1.detach().float(), dim=1), counts, ctx, grad=False)
            self.bank[batch] = h
            self.bank_filled[batch] = True
        self.policy.observe(batch, per_anchor.detach().view(2, -1).mean(0))
        return loss.detach()

    # -- clustering and monitoring -------------------------------------------------------------

    def features(self) -> torch.Tensor:
        """Clean backbone features of every training image: each rank its slice, then gathered."""
        from .evaluate import extract_features

        counts, mine = rank_slice(self.n, self.ctx)
        local = self.images[mine]
        f = extract_features(self.model, local, batch_size=1024, device=self.ctx.device)
        return gather_rows(f.to(self.ctx.device), counts, self.ctx, grad=False)

    def cluster(self, epoch: int) -> float:
        """K-means on features; every rank receives rank 0's pseudo-labels and sizes."""
        from .diagnostics import pseudo_label_accuracy

        t0 = time.perf_counter()
        m = self.cfg.method
        k = self.policy.n_clusters
        use_bank = self.bank is not None and bool(self.bank_filled.all())
        feats = self.bank if use_bank else self.features()
        labels = torch.empty(self.n, dtype=torch.long, device=self.ctx.device)
        if self.ctx.main:
            result = kmeans(
                feats, k, n_init=m.kmeans_restarts, seed=self.cfg.run.seed * 7919 + epoch
            )
            labels.copy_(result.labels.to(self.ctx.device))
        if self.ctx.world > 1:
            dist.broadcast(labels, src=0)
        sizes = torch.bincount(labels, minlength=k).cpu()
        self.policy.set_clustering(epoch, labels, sizes)
        seconds = time.perf_counter() - t0
        if self.ctx.main:
            true = self.labels.numpy()
            pseudo = labels.cpu().numpy()
            scores = pseudo_label_accuracy(true, pseudo, int(self.data.n_classes))
            tau, weight = self.policy.per_sample(
                torch.arange(self.n, device=self.ctx.device), epoch
            )
            out = self.dir / "clusterings"
            out.mkdir(exist_ok=True)
            _atomic_write(
                out / f"epoch_{epoch:04d}.npz",
                lambda p: np.savez_compressed(
                    open(p, "wb"),
                    epoch=epoch,
                    labels=pseudo,
                    sizes=sizes.numpy(),
                    tau=tau.cpu().numpy(),
                    weight=weight.cpu().numpy(),
                    true_labels=true,
                ),
            )
            self.cluster_row = {
                "n_clusters": k,
                "cluster_min": int(sizes.min()),
                "cluster_max": int(sizes.max()),
                "cluster_sizes": ";".join(map(str, sizes.tolist())),
                "pl_acc": scores["accuracy"],
                "pl_nmi": scores["nmi"],
                "pl_ari": scores["ari"],
            }
        return seconds

    def knn_accuracy(self) -> float:
        """kNN@10 mean per-class accuracy on the test set (monitoring only; rank 0)."""
        if not self.ctx.main:
            return float("nan")
        from .evaluate import extract_features, knn_predict, mean_per_class_accuracy

        dev = self.ctx.device
        train_f = extract_features(self.model, self.data.train_images, 1024, dev)
        test_f = extract_features(self.model, self.data.test_images, 1024, dev)
        pred = knn_predict(train_f, torch.as_tensor(self.data.train_labels), test_f, k=10)
        return mean_per_class_accuracy(
            np.asarray(self.data.test_labels), pred.cpu().numpy(), int(self.data.n_classes)
        )


# ---------------------------------------------------------------------------------------------
# CLI


def torchrun_command(cfg: C.TrainConfig, nproc_per_node: int = 8) -> str:
    """The ``torchrun`` command that trains ``cfg`` on ``nproc_per_node`` GPUs.

    The config is written to ``outputs/configs/<run-id>.yaml``; the run lands in the same
    ``results/<run-id>/`` as a single-process run, so notebooks find it finished afterwards.
    """
    out = paths.outputs_dir() / "configs"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{C.run_id(cfg)}.yaml"
    C.save(cfg, path)
    return f"torchrun --nproc_per_node={nproc_per_node} -m tase.train --config {path}"


def parse_overrides(items: list[str]) -> dict:
    """``["method.alpha=2", "optim.epochs=5"]`` -> ``{"method.alpha": 2, "optim.epochs": 5}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value (e.g. method.alpha=2), got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tase.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--config", required=True, help="YAML file, e.g. params/quick/01_warmup.yaml"
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides")
    parser.add_argument("--warmup-from", default=None, help="run folder of the warm-up to continue")
    parser.add_argument(
        "--evaluate", action="store_true", help="run the evaluation protocols after"
    )
    args = parser.parse_args(argv)
    cfg = C.load(args.config, parse_overrides(args.set))
    run = train(cfg, warmup_dir=args.warmup_from)
    ctx = context(cfg.run.device)
    if ctx.main:
        print(f"run {run.id}: {run.dir}", file=sys.stderr)
        if args.evaluate:
            from .evaluate import evaluate

            metrics = evaluate(run.dir, load_data(run.config.data))
            print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}))
    if ctx.world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
