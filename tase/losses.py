"""The TASE contrastive loss: NT-Xent with a temperature per anchor and weighted negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Smallest accepted temperature: below it the logits overflow float32 (lightly rejects ~0 too).
MIN_TEMPERATURE = 1e-6


def contrastive_loss(
    z1: Tensor,
    z2: Tensor,
    tau: float | Tensor,
    neg_weight: Tensor | None = None,
    anchor_weight: Tensor | None = None,
) -> Tensor:
    """NT-Xent (SimCLR, Chen et al. 2020) with TASE's per-anchor temperature and re-weighting.

    The 2N views z = [z1; z2] are L2-normalised, s_ij = z_i . z_j, view i's positive is
    p(i) = i ± N, and (SPEC §3; TASE, arXiv 2410.22883)

        l_i = -s_ip/tau_i + logsumexp([s_ip/tau_i] + [s_ij/tau_i + log w_j for j not in {i, p}])

    The loss is the mean of l_i over the 2N anchors, weighted by ``anchor_weight`` if given. With
    tau_i = tau and w = 1 it is exactly NT-Xent. In multi-process training the trainer all-gathers
    z1 and z2 (with gradients, e.g. ``torch.distributed.nn.all_gather``) and the matching tau and
    weights, and passes the global batch: every anchor then sees all global views as negatives.
    ``per_anchor_loss`` and ``mean_over_anchors`` are its two halves, for trainers that also need
    the l_i (BCL's per-sample loss).

    Args:
        z1, z2: (N, d) projections of the two views of the same N images.
        tau: temperature, a float or a (2N,) tensor with one per view (its anchor row); it divides
            both the positive and the negatives of that anchor.
        neg_weight: optional (2N,) weights w_j >= 0 of each view when it is a negative; a zero
            removes it. Positives are never weighted.
        anchor_weight: optional (2N,) weights >= 0 of the anchor terms, normalised to mean 1.

    Returns a 0-d float32 tensor (float64 if z1 and z2 are float64). Computed with autocast off
    and logsumexp (never a raw exp), so it stays finite at tau = 0.05 under bf16 autocast.

    Raises:
        ValueError: z1 or z2 not 2-D, shapes differ, or N < 1; tau not finite or below 1e-6, or a
            tensor not of shape (2N,); a weight not of shape (2N,), negative or not finite; all
            anchor weights zero.
    """
    return mean_over_anchors(per_anchor_loss(z1, z2, tau, neg_weight), anchor_weight)


def per_anchor_loss(
    z1: Tensor, z2: Tensor, tau: float | Tensor, neg_weight: Tensor | None = None
) -> Tensor:
    """The (2N,) terms l_i of :func:`contrastive_loss`, in the order of [z1; z2].

    Same arguments, dtype rules and errors as :func:`contrastive_loss` (without ``anchor_weight``).
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be (N, d); got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    n = z1.shape[0]
    if n < 1:
        raise ValueError("need at least one pair of views (N >= 1), got N = 0")
    dtype = torch.float64 if z1.dtype == z2.dtype == torch.float64 else torch.float32
    device = z1.device
    tau = _per_view(tau, "tau", 2 * n, dtype, device)
    if not bool(torch.isfinite(tau).all()) or bool((tau < MIN_TEMPERATURE).any()):
        raise ValueError(f"tau must be finite and >= {MIN_TEMPERATURE:g}, got {_show(tau)}")
    if neg_weight is not None:
        neg_weight = _weight(neg_weight, "neg_weight", 2 * n, dtype, device)

    with torch.autocast(device.type, enabled=False):
        z = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)
        views = torch.arange(2 * n, device=device)
        positive = (views + n) % (2 * n)
        logits = (z @ z.T) / tau[:, None]
        excluded = views[:, None] == views[None, :]
        if neg_weight is not None:
            is_positive = positive[:, None] == views[None, :]
            # log w_j on negatives only; zero weights are masked out below instead of log(0).
            log_w = torch.where(neg_weight > 0, neg_weight, 1.0).log()
            logits = logits + torch.where(is_positive, 0.0, log_w[None, :])
            excluded = excluded | ((neg_weight == 0)[None, :] & ~is_positive)
        # l_i = logsumexp_j(logit_ij - logit_ip): the positive term is exactly 0, so a loss near 0
        # keeps its precision instead of cancelling two large numbers (~1/tau).
        logits = logits - logits[views, positive][:, None]
        return torch.logsumexp(logits.masked_fill(excluded, float("-inf")), 1)


def mean_over_anchors(per_anchor: Tensor, anchor_weight: Tensor | None = None) -> Tensor:
    """Mean of the (2N,) anchor losses, weighted by ``anchor_weight`` normalised to mean 1.

    Raises ``ValueError`` if ``anchor_weight`` is not (2N,), negative, not finite or all zero.
    """
    if anchor_weight is None:
        return per_anchor.mean()
    anchor_weight = _weight(
        anchor_weight, "anchor_weight", per_anchor.shape[0], per_anchor.dtype, per_anchor.device
    )
    if not bool(anchor_weight.sum() > 0):
        raise ValueError("anchor_weight must not be all zero")
    return (per_anchor * anchor_weight).sum() / anchor_weight.sum()


def _per_view(value: float | Tensor, name: str, size: int, dtype, device) -> Tensor:
    """A scalar or (size,) tensor as a (size,) tensor of ``dtype`` on ``device``."""
    value = torch.as_tensor(value, dtype=dtype, device=device)
    if value.dim() == 0:
        return value.expand(size)
    if value.shape != (size,):
        raise ValueError(
            f"{name} must be a scalar or of shape ({size},) = (2N,), got {tuple(value.shape)}"
        )
    return value


def _weight(value: Tensor, name: str, size: int, dtype, device) -> Tensor:
    value = torch.as_tensor(value, dtype=dtype, device=device)
    if value.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},) = (2N,), got {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0, got {_show(value)}")
    return value


def _show(value: Tensor) -> str:
    return str(value.detach().flatten()[:8].tolist()) + (" ..." if value.numel() > 8 else "")
