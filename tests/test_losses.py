"""Oracles for the TASE contrastive loss: a NumPy reference, closed forms and NT-Xent."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tase.losses import contrastive_loss, mean_over_anchors, per_anchor_loss


def reference_terms(z1, z2, tau, neg_weight=None):
    """SPEC §3's l_i written out with loops, in float64 NumPy."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    m = len(z)
    n = m // 2
    tau = np.broadcast_to(np.asarray(tau, dtype=np.float64), (m,))
    w = np.ones(m) if neg_weight is None else np.asarray(neg_weight, dtype=np.float64)
    losses = []
    for i in range(m):
        p = (i + n) % m
        positive = np.exp(z[i] @ z[p] / tau[i])
        negatives = sum(w[j] * np.exp(z[i] @ z[j] / tau[i]) for j in range(m) if j not in (i, p))
        losses.append(-np.log(positive / (positive + negatives)))
    return np.array(losses)


def reference_loss(z1, z2, tau, neg_weight=None, anchor_weight=None):
    terms = reference_terms(z1, z2, tau, neg_weight)
    a = np.ones(len(terms)) if anchor_weight is None else np.asarray(anchor_weight, np.float64)
    return float(np.sum(a * terms) / np.sum(a))


def views(n, d, seed=0, dtype=torch.float32):
    """Two correlated views (the second a noisy copy of the first), as real training produces."""
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1.to(dtype), z2.to(dtype)


def weights(m, seed, zeros=False):
    w = torch.rand(m, generator=torch.Generator().manual_seed(seed)) * 3
    if zeros:
        w[::3] = 0
    return w


@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("d", [2, 16, 128])
@pytest.mark.parametrize("tau0", [0.05, 0.2, 1.0])
@pytest.mark.parametrize("per_view", [False, True], ids=["scalar-tau", "per-view-tau"])
@pytest.mark.parametrize("weighting", ["none", "neg", "anchor", "both"])
def test_matches_numpy_reference(n, d, tau0, per_view, weighting):
    z1, z2 = views(n, d, seed=n * 1000 + d)
    tau = (
        tau0 * (0.5 + torch.rand(2 * n, generator=torch.Generator().manual_seed(1)))
        if per_view
        else tau0
    )
    neg = weights(2 * n, 2, zeros=True) if weighting in ("neg", "both") else None
    anchor = weights(2 * n, 3) + 0.1 if weighting in ("anchor", "both") else None
    loss = contrastive_loss(z1, z2, tau, neg_weight=neg, anchor_weight=anchor)
    expected = reference_loss(
        z1.numpy(),
        z2.numpy(),
        np.asarray(tau),
        None if neg is None else neg.numpy(),
        None if anchor is None else anchor.numpy(),
    )
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_per_anchor_terms_match_reference_and_average_to_the_loss():
    z1, z2 = views(5, 16)
    tau = torch.linspace(0.05, 1.0, 10)
    w, a = weights(10, 2, zeros=True), weights(10, 3) + 0.1
    terms = per_anchor_loss(z1, z2, tau, neg_weight=w)
    expected = reference_terms(z1.numpy(), z2.numpy(), tau.numpy(), w.numpy())
    assert terms.shape == (10,) and terms.dtype == torch.float32
    np.testing.assert_allclose(terms.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(mean_over_anchors(terms), terms.mean())
    loss = contrastive_loss(z1, z2, tau, neg_weight=w, anchor_weight=a)
    assert torch.allclose(mean_over_anchors(terms, a), loss)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_identical_embeddings_give_log_2n_minus_1(n):
    z = torch.ones(n, 4)
    assert contrastive_loss(z, z, 0.2).item() == pytest.approx(math.log(2 * n - 1), abs=1e-6)


@pytest.mark.parametrize("n", [2, 5])
def test_identical_embeddings_with_weights_closed_form(n):
    # All similarities are 1, so tau cancels: l_i = log(1 + sum of w_j over j not in {i, p(i)}).
    m = 2 * n
    z = torch.ones(n, 4)
    w = weights(m, 0, zeros=True).double()
    a = weights(m, 1).double() + 0.5
    tau = torch.linspace(0.05, 1.0, m)
    per_anchor = [
        math.log(1 + w.sum().item() - w[i].item() - w[(i + n) % m].item()) for i in range(m)
    ]
    expected = sum(ai * li for ai, li in zip(a.tolist(), per_anchor, strict=True)) / a.sum().item()
    loss = contrastive_loss(z, z, tau, neg_weight=w, anchor_weight=a)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    unweighted_anchors = contrastive_loss(z, z, tau, neg_weight=w)
    assert unweighted_anchors.item() == pytest.approx(np.mean(per_anchor), rel=1e-6)


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0])
def test_aligned_positives_orthogonal_negatives_closed_form(n, tau):
    # s_ip = 1, s_ij = 0 otherwise: l_i = -1/tau + log(e^(1/tau) + 2n - 2).
    z = torch.eye(n, 2 * n)
    expected = -1 / tau + math.log(math.exp(1 / tau) + 2 * n - 2)
    assert contrastive_loss(z, z, tau).item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    w = weights(2 * n, 0, zeros=True)
    tau_i = tau * (1 + torch.arange(2 * n) / (2 * n))
    expected = np.mean(
        [
            -1 / t
            + math.log(math.exp(1 / t) + w.sum().item() - w[i].item() - w[(i + n) % (2 * n)].item())
            for i, t in enumerate(tau_i.tolist())
        ]
    )
    assert contrastive_loss(z, z, tau_i, neg_weight=w).item() == pytest.approx(
        expected, rel=1e-5, abs=1e-7
    )


def nt_xent(z1, z2, tau):
    """SimCLR's NT-Xent as usually written: cross-entropy over the similarity matrix minus self."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    logits = (z @ z.T / tau).fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, targets)


@pytest.mark.parametrize("tau", [0.05, 0.2, 0.5])
def test_equals_nt_xent_with_constant_tau_and_unit_weights(tau):
    ones = torch.ones(32)
    for dtype, rtol in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
        z1, z2 = views(16, 32, seed=7, dtype=dtype)
        z2 = z2 + torch.randn(16, 32, generator=torch.Generator().manual_seed(8), dtype=dtype)
        expected = nt_xent(z1, z2, tau)
        assert torch.allclose(contrastive_loss(z1, z2, tau), expected, rtol=rtol)
        per_view = torch.full((32,), tau, dtype=dtype)
        assert torch.allclose(contrastive_loss(z1, z2, per_view), expected, rtol=rtol)
        loss = contrastive_loss(z1, z2, tau, neg_weight=ones, anchor_weight=ones * 4)
        assert torch.allclose(loss, expected, rtol=rtol)


def test_anchor_weight_is_normalised_to_mean_one():
    z1, z2 = views(4, 8)
    a = weights(8, 5) + 0.1
    assert torch.allclose(
        contrastive_loss(z1, z2, 0.2, anchor_weight=a),
        contrastive_loss(z1, z2, 0.2, anchor_weight=7 * a),
    )


def test_zero_neg_weight_removes_that_negative_without_nan():
    z1, z2 = views(4, 8)
    z1.requires_grad_(True)
    w = torch.ones(8)
    w[2] = 0.0
    loss = contrastive_loss(z1, z2, 0.05, neg_weight=w)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all()
    # Dropping image 2 as a negative equals the reference that skips it.
    expected = reference_loss(z1.detach().numpy(), z2.numpy(), 0.05, w.numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # All negatives at zero weight: each anchor only sees its positive, so the loss is 0.
    assert contrastive_loss(z1, z2, 0.2, neg_weight=torch.zeros(8)).item() == 0.0


def test_finite_under_bf16_autocast_at_small_tau():
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(64, 32, generator=g), torch.randn(64, 32, generator=g)
    head = torch.randn(32, 128, generator=g, requires_grad=True)
    tau = torch.full((128,), 0.05)
    w = weights(128, 1, zeros=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = x1 @ head, (x1 + 0.1 * x2) @ head
        assert z1.dtype == torch.bfloat16
        loss = contrastive_loss(z1, z2, tau, neg_weight=w)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(head.grad).all() and head.grad.abs().sum() > 0
    # The loss itself runs in float32: same value as on the bf16 projections cast outside autocast.
    outside = contrastive_loss(z1.float(), z2.float(), tau, neg_weight=w)
    assert torch.equal(loss, outside)


def test_gradcheck_float64():
    z1, z2 = views(3, 4, dtype=torch.float64)
    tau = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25, 0.5], dtype=torch.float64)
    w = torch.tensor([1.0, 0.5, 0.0, 2.0, 1.0, 0.3], dtype=torch.float64)
    a = torch.tensor([1.0, 2.0, 0.5, 1.0, 1.5, 3.0], dtype=torch.float64)
    inputs = (z1.requires_grad_(), z2.requires_grad_(), tau.requires_grad_())
    assert contrastive_loss(*inputs).dtype == torch.float64
    assert torch.autograd.gradcheck(
        lambda a1, a2, t: contrastive_loss(a1, a2, t, neg_weight=w, anchor_weight=a), inputs
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tau": 0.0}, "tau must be finite"),
        ({"tau": -0.1}, "tau must be finite"),
        ({"tau": 1e-7}, "tau must be finite"),
        ({"tau": float("nan")}, "tau must be finite"),
        ({"tau": float("inf")}, "tau must be finite"),
        ({"tau": torch.tensor([0.2] * 7 + [0.0])}, "tau must be finite"),
        ({"tau": torch.full((4,), 0.2)}, r"tau must be a scalar or of shape \(8,\)"),
        ({"neg_weight": torch.ones(7)}, r"neg_weight must have shape \(8,\)"),
        ({"neg_weight": -torch.ones(8)}, "neg_weight must be finite and >= 0"),
        ({"neg_weight": torch.full((8,), float("nan"))}, "neg_weight must be finite"),
        ({"anchor_weight": torch.ones(2, 4)}, r"anchor_weight must have shape \(8,\)"),
        ({"anchor_weight": torch.full((8,), float("inf"))}, "anchor_weight must be finite"),
        ({"anchor_weight": -torch.ones(8)}, "anchor_weight must be finite and >= 0"),
        ({"anchor_weight": torch.zeros(8)}, "anchor_weight must not be all zero"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    z1, z2 = views(4, 8)
    kwargs = {"tau": 0.2, **kwargs}
    with pytest.raises(ValueError, match=message):
        contrastive_loss(z1, z2, **kwargs)


@pytest.mark.parametrize(
    ("z1", "z2", "message"),
    [
        (torch.randn(4, 8), torch.randn(5, 8), "z1 and z2 must both be"),
        (torch.randn(4, 8), torch.randn(4, 9), "z1 and z2 must both be"),
        (torch.randn(4), torch.randn(4), "z1 and z2 must both be"),
        (torch.randn(0, 8), torch.randn(0, 8), "N >= 1"),
    ],
)
def test_invalid_views_raise(z1, z2, message):
    with pytest.raises(ValueError, match=message):
        contrastive_loss(z1, z2, 0.2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("tau_kind", ["scalar", "per-view"])
def test_matches_numpy_reference_on_cuda(tau_kind):
    n, d = 8, 16
    z1, z2 = views(n, d)
    tau = 0.2 if tau_kind == "scalar" else torch.linspace(0.05, 1.0, 2 * n)
    w, a = weights(2 * n, 2, zeros=True), weights(2 * n, 3) + 0.1
    expected = reference_loss(z1.numpy(), z2.numpy(), np.asarray(tau), w.numpy(), a.numpy())
    on_gpu = tau if tau_kind == "scalar" else tau.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = contrastive_loss(
            z1.cuda(), z2.cuda(), on_gpu, neg_weight=w.cuda(), anchor_weight=a.cuda()
        )
    assert loss.device.type == "cuda" and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=1e-5)
