"""Methods as policies: what temperature and weights each sample gets, and when to cluster.

The trainer is the same for every method; a policy answers its questions:

- ``wants_clustering(epoch)``: should pseudo-labels be (re)computed before this epoch?
- ``set_clustering(epoch, labels, sizes)``: here they are.
- ``terms(indices, epoch)``: per-view temperature and the negative / anchor weights for a batch.
- ``train_module(encoder)``: the module that maps two views to features and projections (SDCLR
  puts a pruned branch here), ``views(...)`` (BCL-I adds augmentation), ``observe(...)`` (BCL-I
  tracks per-sample losses), ``start_epoch(...)`` (SDCLR re-prunes).

The math is in pure functions at the top (tested on their own); the classes only hold state.
References: SimCLR (Chen et al., ICML 2020); TASE (arXiv 2410.22883); TS (Kukleva et al., ICLR
2023); SDCLR (Jiang et al., ICML 2021); BCL (Zhou et al., ICML 2022).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig

# ---------------------------------------------------------------------------------------------
# Pure functions (SPEC §3, §4)


def cluster_temperatures(
    sizes: torch.Tensor, tau_tail: float, tau_head: float, direction: str = "tail-low"
) -> torch.Tensor:
    """τ_c = τ_tail + (τ_head − τ_tail)·g_c, g_c = (log n_c − log n_min)/(log n_max − log n_min).

    Small clusters (tail) get ``tau_tail``, large ones (head) ``tau_head``; g_c = ½ for every
    cluster when all sizes are equal. ``direction="tail-high"`` flips the map (an ablation).
    """
    if (sizes <= 0).any():
        raise ValueError("cluster sizes must be positive (an empty cluster has no temperature)")
    log_n = torch.log(sizes.double())
    spread = log_n.max() - log_n.min()
    g = (log_n - log_n.min()) / spread if spread > 0 else torch.full_like(log_n, 0.5)
    if direction == "tail-high":
        g = 1 - g
    elif direction != "tail-low":
        raise ValueError(f"direction must be tail-low or tail-high, got {direction!r}")
    return (tau_tail + (tau_head - tau_tail) * g).float()


def cluster_weights(sizes: torch.Tensor, alpha: float) -> torch.Tensor:
    """ŵ_c = n_c^(−α), scaled so that the dataset mean Σ_c n_c ŵ_c / N equals 1."""
    n = sizes.double()
    w = n.pow(-alpha)
    return (w * n.sum() / (n * w).sum()).float()


def progressive_factor(epoch: int, start: int, ramp: int) -> float:
    """λ(t) = min(1, (t − B + 1)/P) for t ≥ B, else 0."""
    if epoch < start:
        return 0.0
    return min(1.0, (epoch - start + 1) / ramp)


def ts_temperature(epoch: float, tau_min: float, tau_max: float, period: int) -> float:
    """TS: τ(t) = τ_min + ½(τ_max − τ_min)(1 + cos(π·t/T)); a full cycle lasts 2T epochs."""
    return tau_min + 0.5 * (tau_max - tau_min) * (1 + math.cos(math.pi * epoch / period))


# ---------------------------------------------------------------------------------------------
# Policies


class TwoViews(nn.Module):
    """Both views through the same encoder in one forward pass (one BatchNorm batch)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, v1: torch.Tensor, v2: torch.Tensor):
        h = self.encoder.backbone(torch.cat([v1, v2]))
        z = self.encoder.projector(h)
        n = v1.shape[0]
        return h[:n], z[:n], h[n:], z[n:]


class SimCLR:
    """NT-Xent with one temperature τ0 for every pair."""

    continues_warmup = True  # its first B epochs are exactly the shared warm-up
    cluster_features = "clean"

    def __init__(self, cfg: TrainConfig, n_samples: int, n_classes: int, device: torch.device):
        self.cfg, self.m = cfg, cfg.method
        self.n_samples, self.n_classes, self.device = n_samples, n_classes, device

    def train_module(self, encoder: nn.Module) -> nn.Module:
        return TwoViews(encoder)

    def wants_clustering(self, epoch: int) -> bool:
        return False

    def set_clustering(self, epoch: int, labels: torch.Tensor, sizes: torch.Tensor) -> None:
        raise RuntimeError(f"{type(self).__name__} does not use pseudo-labels")

    def start_epoch(self, epoch: int, encoder: nn.Module) -> None:
        pass

    def views(self, images, indices, epoch, v1, v2):
        return v1, v2

    def temperature(self, indices: torch.Tensor, epoch: int) -> torch.Tensor | float:
        return self.m.tau0

    def terms(self, indices: torch.Tensor, epoch: int):
        """``(tau, neg_weight, anchor_weight)`` for the views ``[batch; batch]``."""
        return self.temperature(indices, epoch), None, None

    def observe(self, indices: torch.Tensor, per_anchor_loss: torch.Tensor) -> None:
        pass

    def epoch_summary(self, epoch: int) -> dict:
        tau = self.temperature(torch.arange(0), epoch)
        return {"tau_mean": tau, "tau_min": tau, "tau_max": tau, "w_min": 1.0, "w_max": 1.0}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class TS(SimCLR):
    """Temperature schedules: one cosine-scheduled τ for every pair, from epoch 0."""

    continues_warmup = False

    def temperature(self, indices, epoch):
        return ts_temperature(epoch, self.m.ts_tau_min, self.m.ts_tau_max, self.m.ts_period)


class TASE(SimCLR):
    """Cluster-balance stage: per-sample temperature and inverse-size re-weighting (SPEC §3)."""

    def __init__(self, cfg, n_samples, n_classes, device):
        super().__init__(cfg, n_samples, n_classes, device)
        self.start, self.ramp = cfg.warmup_epochs, cfg.ramp_epochs
        self.n_clusters = self.m.n_clusters or n_classes
        self.cluster_features = self.m.cluster_features
        self.labels: torch.Tensor | None = None  # (N,) pseudo-label of every training image
        self.tau_c: torch.Tensor | None = None  # (K,) full-ramp temperature per cluster
        self.w_c: torch.Tensor | None = None  # (K,) full-ramp weight per cluster

    def wants_clustering(self, epoch: int) -> bool:
        return epoch >= self.start and (epoch - self.start) % self.m.recluster_every == 0

    def set_clustering(self, epoch, labels, sizes):
        self.labels = labels.to(self.device)
        self.tau_c = cluster_temperatures(
            sizes, self.m.tau_tail, self.m.tau_head, self.m.tau_direction
        ).to(self.device)
        self.w_c = cluster_weights(sizes, self.m.alpha).to(self.device)

    def per_sample(self, indices: torch.Tensor, epoch: int):
        """(τ_i(t), w_i(t)) for the samples ``indices`` (SPEC §3), before views are doubled."""
        if self.labels is None:
            ones = torch.ones(len(indices), device=self.device)
            return ones * self.m.tau0, ones
        lam = progressive_factor(epoch, self.start, self.ramp)
        c = self.labels[indices]
        tau = self.m.tau0 + lam * (self.tau_c[c] - self.m.tau0)
        if not self.m.use_temperature:
            tau = torch.full_like(tau, self.m.tau0)
        weight = 1 + lam * (self.w_c[c] - 1)
        return tau, weight

    def terms(self, indices, epoch):
        tau, weight = self.per_sample(indices, epoch)
        tau2, weight2 = torch.cat([tau, tau]), torch.cat([weight, weight])
        if self.m.reweight == "negatives":
            return tau2, weight2, None
        if self.m.reweight == "anchors":
            return tau2, None, weight2
        return tau2, None, None

    def epoch_summary(self, epoch):
        tau, weight = self.per_sample(torch.arange(self.n_samples, device=self.device), epoch)
        if self.m.reweight == "none":
            weight = torch.ones_like(weight)
        return {
            "tau_mean": tau.mean().item(), "tau_min": tau.min().item(),
            "tau_max": tau.max().item(), "w_min": weight.min().item(),
            "w_max": weight.max().item(),
        }

    def state_dict(self):
        if self.labels is None:
            return {}
        return {"labels": self.labels.cpu(), "tau_c": self.tau_c.cpu(), "w_c": self.w_c.cpu()}

    def load_state_dict(self, state):
        if state:
            self.labels = state["labels"].to(self.device)
            self.tau_c = state["tau_c"].to(self.device)
            self.w_c = state["w_c"].to(self.device)


POLICIES = {"simclr": SimCLR, "tase": TASE, "ts": TS}


def build_policy(cfg: TrainConfig, n_samples: int, n_classes: int, device) -> SimCLR:
    """The policy of ``cfg.method.name``."""
    try:
        cls = POLICIES[cfg.method.name]
    except KeyError:
        raise ValueError(
            f"method {cfg.method.name!r} has no policy; valid: {', '.join(POLICIES)}"
        ) from None
    return cls(cfg, n_samples, n_classes, torch.device(device))
