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

import copy
import itertools
import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .augment import (
    RAND_AUGMENT_MAX_MAGNITUDE,
    RAND_AUGMENT_UNIFORMS_PER_OP,
    counter_uniforms,
    rand_augment,
)
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


# ---------------------------------------------------------------------------------------------
# SDCLR and BCL-I (SPEC §4): baselines with their own machinery in the same trainer


def magnitude_masks(weights: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """Global magnitude pruning: boolean keep-masks for ``weights``, pruning ``ratio`` of them.

    The ``k = round(ratio · n)`` entries of smallest magnitude over all tensors together (``n``
    entries in all) are pruned (mask False); entries tied with the k-th smallest are pruned too.
    SDCLR's ``prune/mask.py`` (``Mask.magnitudePruning``) does the same with a NumPy sort; this
    uses ``torch.kthvalue`` on the device.

    Raises:
        ValueError: ``ratio`` outside [0, 1), or no weights.
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if not weights:
        raise ValueError("no weights to prune")
    magnitudes = torch.cat([w.detach().abs().flatten().float() for w in weights])
    k = round(ratio * magnitudes.numel())
    if k == 0:
        return [torch.ones_like(w, dtype=torch.bool) for w in weights]
    threshold = magnitudes.kthvalue(k).values
    return [w.detach().abs().float() > threshold for w in weights]


class DenseAndPruned(nn.Module):
    """SDCLR's two branches (Jiang et al., ICML 2021): view 1 through the dense encoder, view 2
    through its pruned version.

    The pruned network holds no weights of its own: it is the dense ``encoder`` called through
    ``torch.func.functional_call`` with

    - every convolution weight of the backbone multiplied by a binary mask (buffers ``mask_<j>``,
      the ``j``-th name of ``conv_names``; all True until :meth:`prune` is called), and
    - every BatchNorm of the backbone and projector replaced by its own copy in ``pruned_bn``
      (SDCLR's dual BN: trained affine parameters, separate running statistics, which BatchNorm
      updates in place on the copies).

    Both branches backpropagate into the shared dense weights (the pruned one through the mask,
    so a pruned entry gets no gradient from it), as SDCLR's ``prune/prune_simCLR.py`` does in
    two half-steps. The encoder stays under the ``encoder.`` prefix of the state dict, so
    ``tase.train.load_encoder`` reads the dense network; masks and pruned BNs are saved alongside.

    Works under DDP (every parameter is used in each forward) and after
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` (modules are looked up by name at each forward;
    the copies are converted too, and the pruned branch then synchronises its own statistics).
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.conv_names = tuple(
            f"{name}.weight"
            for name, module in encoder.backbone.named_modules(prefix="backbone")
            if isinstance(module, nn.Conv2d)
        )
        if not self.conv_names:
            raise ValueError("the encoder's backbone has no convolution to prune")
        for j, name in enumerate(self.conv_names):
            weight = encoder.get_parameter(name)
            self.register_buffer(f"mask_{j}", torch.ones_like(weight, dtype=torch.bool))
        self.bn_names = tuple(
            name for name, module in encoder.named_modules() if isinstance(module, _BatchNorm)
        )
        self.pruned_bn = nn.ModuleList(
            copy.deepcopy(encoder.get_submodule(name)) for name in self.bn_names
        )

    def masks(self) -> list[torch.Tensor]:
        """The keep-masks, in the order of ``conv_names``."""
        return [getattr(self, f"mask_{j}") for j in range(len(self.conv_names))]

    @torch.no_grad()
    def prune(self, ratio: float) -> None:
        """Recompute the masks from the current dense weights (global magnitude pruning)."""
        weights = [self.encoder.get_parameter(name) for name in self.conv_names]
        for mask, new in zip(self.masks(), magnitude_masks(weights, ratio), strict=True):
            mask.copy_(new)

    def pruned_tensors(self) -> dict[str, torch.Tensor]:
        """Encoder-relative name -> tensor, for what differs in the pruned network."""
        tensors = {
            name: self.encoder.get_parameter(name) * mask
            for name, mask in zip(self.conv_names, self.masks(), strict=True)
        }
        for name, bn in zip(self.bn_names, self.pruned_bn, strict=True):
            for key, tensor in itertools.chain(bn.named_parameters(), bn.named_buffers()):
                tensors[f"{name}.{key}"] = tensor
        return tensors

    def forward(self, v1: torch.Tensor, v2: torch.Tensor):
        """``(h1, z1, h2, z2)``: features and projections of view 1 (dense) and view 2 (pruned)."""
        h1 = self.encoder.backbone(v1)
        z1 = self.encoder.projector(h1)
        tensors = self.pruned_tensors()
        h2 = _call_with(self.encoder.backbone, "backbone.", tensors, v2)
        z2 = _call_with(self.encoder.projector, "projector.", tensors, h2)
        return h1, z1, h2, z2


def _call_with(module: nn.Module, prefix: str, tensors: dict, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with the entries of ``tensors`` under ``prefix`` substituted."""
    own = {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}
    return torch.func.functional_call(module, own, (x,))


class SDCLR(SimCLR):
    """Self-Damaging Contrastive Learning (Jiang et al., ICML 2021), trained from scratch.

    At the start of every epoch the backbone's convolution weights are magnitude-pruned
    (globally, ``method.prune_ratio`` of them: 0.9 on CIFAR, 0.3 on ImageNet); view 1 goes
    through the dense network and view 2 through the pruned one with its own BatchNorms
    (:class:`DenseAndPruned`); NT-Xent with τ0 between them. Its state lives in the module
    (masks and pruned BNs are buffers and parameters), so the policy's state dict is empty.
    """

    continues_warmup = False

    def __init__(self, cfg, n_samples, n_classes, device):
        super().__init__(cfg, n_samples, n_classes, device)
        self.branches: DenseAndPruned | None = None

    def train_module(self, encoder):
        self.branches = DenseAndPruned(encoder)
        return self.branches

    def start_epoch(self, epoch, encoder):
        if self.branches is None or self.branches.encoder is not encoder:
            raise RuntimeError("SDCLR.start_epoch needs the encoder given to train_module first")
        self.branches.prune(self.m.prune_ratio)


# RandAugment rounds per view. BCL's code (MediaBrain-SJTU/BCL, ``--rand_k``, default 1, kept by
# its CIFAR scripts) draws one op; each round is applied with probability m_i.
BCL_RAND_AUGMENT_OPS = 1


def momentum_loss(
    ema: torch.Tensor, seen: torch.Tensor, loss: torch.Tensor, beta: float
) -> torch.Tensor:
    """BCL's per-sample momentum loss: ``beta·ema + (1 − beta)·loss``; where ``seen`` is False
    (the sample's first loss) the loss itself."""
    return torch.where(seen, beta * ema + (1 - beta) * loss, loss)


def boost_weights(ema: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """m_i ∈ [0, 1]: the momentum loss min–max normalised over the samples seen (min → 0,
    max → 1); unseen samples, and every sample when all seen losses are equal, get 0.

    BCL's code (``calculate_momentum_weight`` in ``data/memoboosted_cifar100.py``) standardises
    instead, ``z = (L − mean L)/std L`` and ``m = z/(2·max|z|) + ½``: that also lies in [0, 1]
    but puts the mean loss at ½ and reaches only one of 0 and 1 (on the side of the more extreme
    sample). Min–max uses the whole range on both sides; the ranking of samples is the same.
    """
    weights = torch.zeros_like(ema)
    if not bool(seen.any()):
        return weights
    values = ema[seen]
    low, high = values.min(), values.max()
    if high > low:
        weights[seen] = (values - low) / (high - low)
    return weights


def boosted_magnitude(weights: torch.Tensor, base: float, span: float) -> torch.Tensor:
    """BCL-I's RandAugment strength per sample, ``base + span·m_i`` (SPEC §4: 10 + 20·m_i)."""
    return base + span * weights


class BCL(SimCLR):
    """BCL-I, Contrastive Learning with Boosted Memorization (Zhou et al., ICML 2022).

    Every step's per-sample losses feed an EMA (``method.bcl_beta``; :func:`momentum_loss`). At
    the start of each epoch the EMA becomes m_i ∈ [0, 1] (:func:`boost_weights`); each SimCLR
    view of image i then gets, with probability m_i, RandAugment of strength
    ``bcl_strength_base + bcl_strength_range·m_i`` (:func:`boosted_magnitude`), so samples the
    network has memorised least (high loss, typically the tail) are augmented hardest. The
    randomness is ``counter_uniforms(seed, epoch, view, index)`` with views 2 and 3 (0 and 1 are
    the SimCLR views), a function of the sample and not of its batch.

    BCL's code draws the strength uniformly in [0, 30·m_i] instead of 10 + 20·m_i; this follows
    SPEC §4.
    """

    continues_warmup = False

    def __init__(self, cfg, n_samples, n_classes, device):
        super().__init__(cfg, n_samples, n_classes, device)
        top = self.m.bcl_strength_base + self.m.bcl_strength_range
        if top > RAND_AUGMENT_MAX_MAGNITUDE:
            raise ValueError(
                f"method.bcl_strength_base + method.bcl_strength_range must be <= "
                f"{RAND_AUGMENT_MAX_MAGNITUDE} (RandAugment's largest magnitude), got {top}"
            )
        self.ema = torch.zeros(n_samples, device=self.device)  # momentum loss per sample
        self.seen = torch.zeros(n_samples, dtype=torch.bool, device=self.device)
        self.boost = torch.zeros(n_samples, device=self.device)  # m_i, fixed during an epoch

    def start_epoch(self, epoch, encoder):
        self.boost = boost_weights(self.ema, self.seen)

    def views(self, images, indices, epoch, v1, v2):
        weights = self.boost[indices.to(self.device)].to(v1.device)
        magnitude = boosted_magnitude(
            weights, self.m.bcl_strength_base, self.m.bcl_strength_range
        ).clamp(max=RAND_AUGMENT_MAX_MAGNITUDE)  # float rounding only; checked at construction
        n_uniforms = 1 + RAND_AUGMENT_UNIFORMS_PER_OP * BCL_RAND_AUGMENT_OPS
        out = []
        for view_id, view in ((2, v1), (3, v2)):
            u = counter_uniforms(self.cfg.run.seed, epoch, view_id, indices, n_uniforms)
            u = u.to(view.device)
            apply = u[:, 0] < weights
            out.append(rand_augment(view, magnitude, apply, u[:, 1:], BCL_RAND_AUGMENT_OPS))
        return out[0], out[1]

    def observe(self, indices, per_sample_loss):
        """Fold ``per_sample_loss`` (B,), the mean of each sample's two anchor losses, into the
        EMA of the samples ``indices`` (B,)."""
        if indices.ndim != 1 or per_sample_loss.shape != indices.shape:
            raise ValueError(
                f"BCL.observe needs one loss per sample: indices and per_sample_loss must both be "
                f"(B,), got {tuple(indices.shape)} and {tuple(per_sample_loss.shape)}"
            )
        idx = indices.to(self.device)
        loss = per_sample_loss.detach().to(self.device, torch.float32)
        self.ema[idx] = momentum_loss(self.ema[idx], self.seen[idx], loss, self.m.bcl_beta)
        self.seen[idx] = True

    def state_dict(self):
        return {"ema": self.ema.cpu(), "seen": self.seen.cpu(), "boost": self.boost.cpu()}

    def load_state_dict(self, state):
        if state:
            self.ema = state["ema"].to(self.device, torch.float32)
            self.seen = state["seen"].to(self.device, torch.bool)
            self.boost = state["boost"].to(self.device, torch.float32)


POLICIES = {"simclr": SimCLR, "tase": TASE, "ts": TS, "sdclr": SDCLR, "bcl": BCL}


def build_policy(cfg: TrainConfig, n_samples: int, n_classes: int, device) -> SimCLR:
    """The policy of ``cfg.method.name``."""
    try:
        cls = POLICIES[cfg.method.name]
    except KeyError:
        raise ValueError(
            f"method {cfg.method.name!r} has no policy; valid: {', '.join(POLICIES)}"
        ) from None
    return cls(cfg, n_samples, n_classes, torch.device(device))
