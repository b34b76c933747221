"""SDCLR's pruned branch and BCL-I's boosted augmentation (SPEC §4) on small, exact cases."""

import copy

import pytest
import torch
from torch import nn

from tase import config as C
from tase.augment import counter_uniforms, rand_augment
from tase.methods import (
    BCL,
    SDCLR,
    DenseAndPruned,
    boost_weights,
    boosted_magnitude,
    build_policy,
    magnitude_masks,
    momentum_loss,
)
from tase.models import build_model


def _policy(name, **method):
    cfg = C.from_dict({"method": {"name": name, **method}, "run": {"seed": 3}})
    return build_policy(cfg, n_samples=6, n_classes=2, device="cpu")


def _sdclr(ratio=0.9, seed=0):
    torch.manual_seed(seed)
    encoder = build_model("small", 16, width=8, proj_dim=16)
    policy = _policy("sdclr", prune_ratio=ratio)
    module = policy.train_module(encoder)
    policy.start_epoch(0, encoder)
    return policy, module.train()


def _views(seed=1, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.rand(n, 3, 16, 16, generator=g)


def _bn_stats(modules):
    return [torch.cat([m.running_mean, m.running_var]).clone() for m in modules]


def _dense_bns(module):
    return [module.encoder.get_submodule(name) for name in module.bn_names]


# ---------------------------------------------------------------------------------------------
# SDCLR


def test_policies_are_registered_and_train_from_scratch():
    assert isinstance(_policy("sdclr"), SDCLR) and isinstance(_policy("bcl"), BCL)
    assert not SDCLR.continues_warmup and not BCL.continues_warmup


def test_magnitude_masks_prune_the_smallest_weights_globally():
    w1 = torch.tensor([[0.1, -0.5], [2.0, -0.05]])
    w2 = torch.tensor([0.3, -1.0, 0.2, 4.0])
    m1, m2 = magnitude_masks([w1, w2], 0.5)  # the 4 smallest of 8: 0.05, 0.1, 0.2, 0.3
    assert m1.tolist() == [[False, True], [True, False]]
    assert m2.tolist() == [False, True, False, True]
    assert all(m.all() for m in magnitude_masks([w1, w2], 0.0))
    with pytest.raises(ValueError, match="ratio"):
        magnitude_masks([w1], 1.0)


@pytest.mark.parametrize("ratio", [0.3, 0.9])
def test_pruned_branch_zeroes_the_ratio_of_conv_weights(ratio):
    _, module = _sdclr(ratio)
    tensors = module.pruned_tensors()
    pruned = torch.cat([tensors[name].flatten() for name in module.conv_names])
    dense = torch.cat([module.encoder.get_parameter(n).flatten() for n in module.conv_names])
    assert (pruned == 0).float().mean().item() == pytest.approx(ratio, abs=0.01)
    assert (dense != 0).all()  # the dense network is never pruned
    kept, dropped = dense[pruned != 0].abs(), dense[pruned == 0].abs()
    assert kept.min() > dropped.max()  # one global threshold across layers


def test_dense_branch_is_the_plain_encoder_and_pruned_branch_the_masked_copy():
    _, module = _sdclr()
    plain = copy.deepcopy(module.encoder)
    oracle = copy.deepcopy(module.encoder)  # masked weights and the pruned BNs, by hand
    with torch.no_grad():
        for name, mask in zip(module.conv_names, module.masks(), strict=True):
            oracle.get_parameter(name).mul_(mask)
    for name, bn in zip(module.bn_names, module.pruned_bn, strict=True):
        oracle.get_submodule(name).load_state_dict(bn.state_dict())
    with torch.no_grad():
        nn.init.normal_(module.pruned_bn[-1].weight)  # make the pruned BNs differ from the dense
        oracle.get_submodule(module.bn_names[-1]).weight.copy_(module.pruned_bn[-1].weight)
    v1, v2 = _views()
    h1, z1, h2, z2 = module(v1, v2)
    torch.testing.assert_close(h1, plain.backbone(v1.clone()), rtol=0, atol=0)
    torch.testing.assert_close(z1, plain(v1), rtol=0, atol=0)
    torch.testing.assert_close(h2, oracle.backbone(v2), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(z2, oracle(v2), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(module(v2, v2)[1], z2)  # pruning changes the output


def test_pruned_bn_statistics_update_in_place_and_apart_from_the_dense_ones():
    _, module = _sdclr(ratio=0.5)  # at 0.9 the small net's widest conv is pruned away entirely
    other, plain = copy.deepcopy(module), copy.deepcopy(module.encoder)
    before = _bn_stats(module.pruned_bn)
    v1, v2 = _views()
    module(v1, v2)
    other(v1, torch.flip(v2, dims=[3]) * 0.5)  # only view 2 differs
    plain(v1)  # the dense statistics are those of view 1 alone
    for a, b, c in zip(
        _bn_stats(_dense_bns(module)), _bn_stats(_dense_bns(other)),
        _bn_stats(plain.get_submodule(n) for n in module.bn_names), strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    for a, b, c in zip(
        _bn_stats(module.pruned_bn), _bn_stats(other.pruned_bn), before, strict=True
    ):
        assert not torch.equal(a, b) and not torch.equal(a, c)
    assert all(bn.num_batches_tracked.item() == 1 for bn in module.pruned_bn)
    assert all(bn.num_batches_tracked.item() == 1 for bn in _dense_bns(module))


def test_gradients_reach_the_shared_weights_from_both_branches():
    _, module = _sdclr(ratio=0.5)  # every conv keeps some weights
    v1, v2 = _views()
    probe = torch.randn(8, 16, generator=torch.Generator().manual_seed(5))
    conv = [module.encoder.get_parameter(name) for name in module.conv_names]

    _, z1, _, _ = module(v1, v2)
    (z1 * probe).sum().backward()
    assert all(w.grad is not None and (w.grad != 0).any() for w in conv)
    assert all(p.grad is None for p in module.pruned_bn.parameters())
    module.zero_grad(set_to_none=True)

    _, _, _, z2 = module(v1, v2)
    (z2 * probe).sum().backward()
    for w, mask in zip(conv, module.masks(), strict=True):
        assert (w.grad[~mask] == 0).all() and (w.grad[mask] != 0).any()
    assert all(p.grad is not None for p in module.pruned_bn.parameters())
    assert all(bn.weight.grad is None for bn in _dense_bns(module))


def test_masks_are_recomputed_from_the_current_weights_at_start_epoch():
    policy, module = _sdclr(ratio=0.5)
    first = [m.clone() for m in module.masks()]
    with torch.no_grad():
        module.encoder.get_parameter(module.conv_names[0]).mul_(1000)
    policy.start_epoch(1, module.encoder)
    assert module.masks()[0].all()  # now the largest weights: all kept
    assert not all(torch.equal(a, b) for a, b in zip(first, module.masks(), strict=True))
    with pytest.raises(RuntimeError, match="train_module"):
        _policy("sdclr").start_epoch(0, module.encoder)


def test_state_dict_keeps_the_encoder_prefix_and_the_masks():
    _, module = _sdclr()
    state = module.state_dict()
    encoder_keys = {k[len("encoder."):] for k in state if k.startswith("encoder.")}
    assert encoder_keys == set(module.encoder.state_dict())
    assert {f"mask_{j}" for j in range(len(module.conv_names))} <= set(state)
    fresh = DenseAndPruned(build_model("small", 16, width=8, proj_dim=16))
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.masks(), module.masks(), strict=True))


@pytest.mark.parametrize("train", [True, False])
def test_sync_batchnorm_conversion_keeps_both_branches(train):
    _, module = _sdclr()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(module))
    assert isinstance(synced.pruned_bn[0], nn.SyncBatchNorm)
    v1, v2 = _views()
    want = module.train(train)(v1, v2)
    got = synced.train(train)(v1, v2)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bf16_autocast_forward():
    _, module = _sdclr()
    v1, v2 = _views()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = module(v1, v2)
    assert all(torch.isfinite(o.float()).all() for o in outputs)


# ---------------------------------------------------------------------------------------------
# BCL-I


def test_momentum_loss_on_hand_values():
    policy = _policy("bcl", bcl_beta=0.9)
    policy.observe(torch.tensor([0, 2]), torch.tensor([1.0, 2.0]))  # first losses initialise
    assert policy.ema.tolist() == pytest.approx([1.0, 0, 2.0, 0, 0, 0])
    policy.observe(torch.tensor([2, 1]), torch.tensor([4.0, 3.0]))
    assert policy.ema.tolist() == pytest.approx([1.0, 3.0, 0.9 * 2 + 0.1 * 4, 0, 0, 0])
    assert policy.seen.tolist() == [True, True, True, False, False, False]
    ema = momentum_loss(torch.tensor([2.0, 5.0]), torch.tensor([True, False]),
                        torch.tensor([4.0, 1.0]), 0.97)
    assert ema.tolist() == pytest.approx([0.97 * 2 + 0.03 * 4, 1.0])


def test_observe_needs_one_loss_per_sample():
    with pytest.raises(ValueError, match="one loss per sample"):
        _policy("bcl").observe(torch.tensor([0, 1]), torch.tensor(0.7))


def test_boost_weights_are_min_max_over_seen_samples():
    ema = torch.tensor([3.0, 1.0, 2.0, 9.0])
    seen = torch.tensor([True, True, True, False])
    assert boost_weights(ema, seen).tolist() == pytest.approx([1.0, 0.0, 0.5, 0.0])
    assert boost_weights(torch.full((3,), 2.0), torch.ones(3, dtype=torch.bool)).eq(0).all()
    assert boost_weights(ema, torch.zeros(4, dtype=torch.bool)).eq(0).all()


def test_strength_is_base_plus_range_times_m(monkeypatch):
    m = torch.tensor([0.0, 0.25, 1.0])
    assert boosted_magnitude(m, 10, 20).tolist() == pytest.approx([10, 15, 30])
    policy = _policy("bcl")
    policy.load_state_dict({"ema": torch.zeros(6), "seen": torch.zeros(6, dtype=torch.bool),
                            "boost": torch.tensor([0.0, 0.25, 1.0, 0.5, 0.0, 0.0])})
    calls = []
    monkeypatch.setattr(
        "tase.methods.rand_augment", lambda x, mag, apply, u, k: calls.append(mag) or x
    )
    v1, v2 = _views(n=3)
    policy.views(None, torch.tensor([1, 2, 3]), 0, v1, v2)
    assert len(calls) == 2 and calls[0].tolist() == pytest.approx([15, 30, 20])


def test_views_unchanged_where_m_is_zero_and_rand_augmented_where_it_is_one():
    policy = _policy("bcl")
    boost = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    policy.load_state_dict({"ema": boost, "seen": torch.ones(6, dtype=torch.bool), "boost": boost})
    idx = torch.arange(6)
    v1, v2 = _views(n=6)
    a1, a2 = policy.views(None, idx, 4, v1, v2)
    zero = boost == 0
    assert torch.equal(a1[zero], v1[zero]) and torch.equal(a2[zero], v2[zero])
    for view_id, v, got in ((2, v1, a1), (3, v2, a2)):
        u = counter_uniforms(3, 4, view_id, idx, 3)
        want = rand_augment(v, 10 + 20 * boost, boost > 0, u[:, 1:], 1)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    # a sample's augmentation depends on (seed, epoch, view, index), not on its batch
    perm = torch.tensor([4, 1, 5, 3, 0, 2])
    b1, b2 = policy.views(None, idx[perm], 4, v1[perm], v2[perm])
    torch.testing.assert_close(b1, a1[perm], rtol=0, atol=0)
    torch.testing.assert_close(b2, a2[perm], rtol=0, atol=0)


def test_start_epoch_sets_m_from_the_ema():
    policy = _policy("bcl")
    policy.observe(torch.tensor([0, 1, 2]), torch.tensor([4.0, 2.0, 3.0]))
    assert policy.boost.eq(0).all()  # m changes only at an epoch boundary
    policy.start_epoch(1, None)
    assert policy.boost.tolist() == pytest.approx([1.0, 0.0, 0.5, 0, 0, 0])


def test_bcl_state_round_trip():
    policy = _policy("bcl")
    policy.observe(torch.tensor([0, 1, 2]), torch.tensor([4.0, 2.0, 3.0]))
    policy.start_epoch(1, None)
    policy.observe(torch.tensor([3, 0]), torch.tensor([1.0, 8.0]))
    restored = _policy("bcl")
    restored.load_state_dict(copy.deepcopy(policy.state_dict()))
    for p in (policy, restored):
        p.observe(torch.tensor([4, 0]), torch.tensor([0.5, 2.0]))
        p.start_epoch(2, None)
    for key in ("ema", "seen", "boost"):
        assert torch.equal(getattr(policy, key), getattr(restored, key))


def test_strength_beyond_randaugment_range_is_refused():
    with pytest.raises(ValueError, match="bcl_strength_base"):
        _policy("bcl", bcl_strength_base=20, bcl_strength_range=20)
