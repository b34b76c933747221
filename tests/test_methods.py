"""Temperature and weight policies against SPEC §3 closed forms."""

import math

import pytest
import torch

from tase import config as C
from tase.methods import (
    TASE,
    build_policy,
    cluster_temperatures,
    cluster_weights,
    progressive_factor,
    ts_temperature,
)


def test_tail_gets_tau_tail_and_head_tau_head():
    sizes = torch.tensor([400, 100, 20, 5])
    tau = cluster_temperatures(sizes, 0.1, 0.3)
    assert tau[0] == pytest.approx(0.3) and tau[3] == pytest.approx(0.1)
    g = (math.log(100) - math.log(5)) / (math.log(400) - math.log(5))
    assert tau[1] == pytest.approx(0.1 + 0.2 * g)
    flipped = cluster_temperatures(sizes, 0.1, 0.3, "tail-high")
    assert flipped[0] == pytest.approx(0.1) and flipped[3] == pytest.approx(0.3)


def test_balanced_clusters_get_tau0():
    tau = cluster_temperatures(torch.tensor([50, 50, 50]), 0.1, 0.3)
    assert torch.allclose(tau, torch.full((3,), 0.2))


def test_empty_cluster_is_refused():
    with pytest.raises(ValueError, match="positive"):
        cluster_temperatures(torch.tensor([3, 0]), 0.1, 0.3)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_weights_have_dataset_mean_one_and_are_inverse_to_size(alpha):
    sizes = torch.tensor([400.0, 100.0, 20.0, 5.0])
    w = cluster_weights(sizes, alpha)
    assert (sizes * w).sum() / sizes.sum() == pytest.approx(1.0)
    assert w[3] / w[0] == pytest.approx((400 / 5) ** alpha, rel=1e-5)
    assert torch.allclose(cluster_weights(sizes, 0.0), torch.ones(4))


def test_progressive_factor_ramp():
    assert progressive_factor(9, start=10, ramp=4) == 0.0
    assert [progressive_factor(t, 10, 4) for t in (10, 11, 12, 13, 20)] == [0.25, 0.5, 0.75, 1, 1]


def test_ts_schedule_values():
    assert ts_temperature(0, 0.1, 1.0, 200) == pytest.approx(1.0)
    assert ts_temperature(200, 0.1, 1.0, 200) == pytest.approx(0.1)
    assert ts_temperature(100, 0.1, 1.0, 200) == pytest.approx(0.55)
    assert ts_temperature(400, 0.1, 1.0, 200) == pytest.approx(1.0)


def _tase(**method):
    cfg = C.from_dict(
        {"optim": {"epochs": 20}, "method": {"warmup_epochs": 10, "ramp_epochs": 2, **method}}
    )
    policy = build_policy(cfg, n_samples=6, n_classes=2, device="cpu")
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    policy.set_clustering(10, labels, torch.bincount(labels))
    return policy


def test_tase_per_sample_terms_follow_the_ramp():
    p = _tase()
    assert isinstance(p, TASE)
    idx = torch.tensor([0, 4])
    tau, w = p.per_sample(idx, epoch=10)  # lambda = 1/2
    assert tau.tolist() == pytest.approx([0.2 + 0.5 * 0.1, 0.2 - 0.5 * 0.1])
    w_hat = cluster_weights(torch.tensor([4, 2]), 1.0).tolist()
    assert w.tolist() == pytest.approx([1 + 0.5 * (w_hat[0] - 1), 1 + 0.5 * (w_hat[1] - 1)])
    tau2, neg, anchor = p.terms(idx, epoch=11)  # lambda = 1
    assert tau2.tolist() == pytest.approx([0.3, 0.1, 0.3, 0.1])
    assert neg.tolist() == pytest.approx(w_hat + w_hat)
    assert anchor is None


def test_tase_switches():
    idx = torch.tensor([0, 4])
    tau, neg, anchor = _tase(use_temperature=False).terms(idx, 15)
    assert torch.allclose(tau, torch.full((4,), 0.2)) and neg is not None
    tau, neg, anchor = _tase(reweight="anchors").terms(idx, 15)
    assert neg is None and anchor is not None
    tau, neg, anchor = _tase(reweight="none").terms(idx, 15)
    assert neg is None and anchor is None


def test_tase_clusters_on_schedule():
    p = _tase(recluster_every=3)
    assert [e for e in range(20) if p.wants_clustering(e)] == [10, 13, 16, 19]


def test_unknown_method_policy():
    cfg = C.TrainConfig()
    object.__setattr__(cfg.method, "name", "moco")
    with pytest.raises(ValueError, match="no policy"):
        build_policy(cfg, 10, 2, "cpu")
