"""Batched SimCLR augmentation and RandAugment (SPEC §2, §4) against torchvision.

Oracles: every op with fixed per-sample parameters equals ``torchvision.transforms.v2.functional``
applied image by image; the whole view equals the torchvision chain built from the same
parameters; sampled parameters follow torchvision's distributions (two-sample KS against
``RandomResizedCrop.get_params``, KS against the uniform laws, binomial rates); the counter-based
uniforms are checked against a plain Python hash and for uniformity and batch independence.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2 as T2
import torchvision.transforms.v2.functional as TF
from scipy import stats
from torchvision.transforms import InterpolationMode

from tase import augment as A

N_DRAWS = 20_000
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _float_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Random float images with the cases colour ops branch on: grey pixels, saturated
    pixels, and ties between channels (values on a coarse grid)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, height, width, generator=g)
    x[:, :, : height // 4] = (x[:, :, : height // 4] * 4).round() / 4  # ties, 0s and 1s
    x[:, :, -2:] = x[:, :1, -2:]  # grey rows
    return x


def _uint8_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=g)


def _per_image(fn, x: torch.Tensor, *params) -> torch.Tensor:
    """torchvision applied image by image, parameter i to image i."""
    return torch.stack([fn(x[i], *(p[i] for p in params)) for i in range(x.shape[0])])


# ---------------------------------------------------------------------------------------------
# Ops with fixed parameters vs torchvision.transforms.v2.functional


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("size", [48, 32, 12], ids=["enlarge", "mixed", "shrink"])
def test_resized_crop_matches_torchvision(antialias, size):
    x = _float_images(12, 30, 40)
    g = torch.Generator().manual_seed(1)
    h = torch.randint(3, 31, (12,), generator=g)
    w = torch.randint(3, 41, (12,), generator=g)
    top = (torch.rand(12, generator=g) * (30 - h + 1)).long()
    left = (torch.rand(12, generator=g) * (40 - w + 1)).long()
    ours = A.resized_crop(x, top, left, h, w, size, antialias=antialias)

    def reference(image, i, j, hh, ww):
        return TF.resized_crop(
            image, int(i), int(j), int(hh), int(ww), [size, size], antialias=antialias
        )

    torch.testing.assert_close(ours, _per_image(reference, x, top, left, h, w), atol=1e-5, rtol=0)


def test_resized_crop_of_uint8_scales_to_unit_range():
    images = _uint8_images(4, 16, 16)
    box = [
        torch.tensor([2, 0, 5, 1]),
        torch.tensor([1, 3, 0, 2]),
        torch.full((4,), 9),
        torch.full((4,), 11),
    ]
    ours = A.resized_crop(images, *box, 16)
    torch.testing.assert_close(
        ours, A.resized_crop(images.float() / 255, *box, 16), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("size", [32, 12])
def test_flip_is_exact(size):
    x = _float_images(6, 32, 32)
    top, left = torch.tensor([0, 3, 5, 1, 0, 2]), torch.tensor([4, 0, 2, 2, 1, 0])
    h, w = torch.tensor([20, 29, 27, 9, 32, 30]), torch.tensor([25, 17, 30, 31, 32, 12])
    flip = torch.tensor([True, False, True, True, False, True])
    plain = A.resized_crop(x, top, left, h, w, size)
    flipped = A.resized_crop(x, top, left, h, w, size, flip=flip)
    assert torch.equal(flipped[flip], TF.horizontal_flip(plain[flip]))
    assert torch.equal(flipped[~flip], plain[~flip])
    assert torch.equal(A.hflip(x, flip), torch.where(flip[:, None, None, None], x.flip(-1), x))


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("brightness", 0.0, 2.0),
        ("contrast", 0.0, 2.0),
        ("saturation", 0.0, 2.0),
        ("hue", -0.5, 0.5),
    ],
)
def test_colour_ops_match_torchvision(name, low, high):
    x = _float_images(16, 12, 10)
    factor = torch.linspace(low, high, 16)
    ours = getattr(A, f"adjust_{name}")(x, factor)
    reference = _per_image(
        lambda image, f: getattr(TF, f"adjust_{name}")(image, float(f)), x, factor
    )
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    assert torch.equal(x, _float_images(16, 12, 10))  # the input is untouched


def test_hue_of_grey_and_primary_pixels():
    pixels = torch.tensor(
        [
            [0.5, 0.5, 0.5],
            [1, 0, 0],
            [0, 1, 0],
            [0, 0, 1],
            [1, 1, 0],
            [0, 1, 1],
            [1, 0, 1],
            [0, 0, 0],
        ]
    )
    x = pixels.T.reshape(1, 3, 1, 8).expand(5, 3, 1, 8)
    shift = torch.tensor([-0.5, -1 / 6, 0.0, 1 / 3, 0.5])
    reference = _per_image(lambda image, s: TF.adjust_hue(image, float(s)), x, shift)
    torch.testing.assert_close(A.adjust_hue(x, shift), reference, atol=1e-6, rtol=0)
    # a third of a turn maps red to green
    assert torch.allclose(A.adjust_hue(x, shift)[3, :, 0, 1], torch.tensor([0.0, 1.0, 0.0]))


def test_grayscale_matches_torchvision():
    x = _float_images(6, 9, 11)
    torch.testing.assert_close(A.rgb_to_grayscale(x), TF.rgb_to_grayscale(x, 3), atol=1e-6, rtol=0)
    gray = torch.tensor([True, False, False, True, True, False])
    ours = A.random_grayscale(x, gray)
    assert torch.equal(ours[~gray], x[~gray])
    torch.testing.assert_close(ours[gray], TF.rgb_to_grayscale(x[gray], 3), atol=1e-6, rtol=0)
    assert torch.equal(ours[gray][:, 0], ours[gray][:, 2])  # channels exactly equal


def test_color_jitter_applies_ops_in_each_samples_order():
    orders = torch.tensor(list(itertools.permutations(range(4))))  # all 24 orders
    x = _float_images(24, 8, 8)
    g = torch.Generator().manual_seed(3)
    brightness, contrast, saturation = (0.6 + 0.8 * torch.rand(3, 24, generator=g)).unbind(0)
    hue = 0.2 * torch.rand(24, generator=g) - 0.1
    apply = torch.rand(24, generator=g) < 0.8
    ours = A.color_jitter(x, brightness, contrast, saturation, hue, orders, apply)

    def reference(image, order, b, c, s, h, on):
        if not on:
            return image
        fns = {
            A.BRIGHTNESS: lambda v: TF.adjust_brightness(v, float(b)),
            A.CONTRAST: lambda v: TF.adjust_contrast(v, float(c)),
            A.SATURATION: lambda v: TF.adjust_saturation(v, float(s)),
            A.HUE: lambda v: TF.adjust_hue(v, float(h)),
        }
        for op in order.tolist():
            image = fns[op](image)
        return image

    want = _per_image(reference, x, orders, brightness, contrast, saturation, hue, apply)
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=0)
    assert torch.equal(ours[~apply], x[~apply])
    # the order matters: the same factors in a different order give a different image
    assert not torch.allclose(
        ours[0], A.color_jitter(x, brightness, contrast, saturation, hue, orders.flip(1))[0]
    )


@pytest.mark.parametrize("kernel_size", [3, 9, 23])
def test_gaussian_blur_matches_torchvision(kernel_size):
    x = _float_images(6, 24, 28)
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.7, 2.0, 0.8])
    apply = torch.tensor([True, True, True, True, True, False])
    ours = A.gaussian_blur(x, kernel_size, sigma, apply)
    reference = _per_image(
        lambda image, s: TF.gaussian_blur(image, [kernel_size, kernel_size], [float(s), float(s)]),
        x[:5],
        sigma[:5],
    )
    torch.testing.assert_close(ours[:5], reference, atol=1e-5, rtol=0)
    assert torch.equal(ours[5], x[5])
    with pytest.raises(ValueError, match="kernel_size"):
        A.gaussian_blur(x, 4, sigma)


def _reference_view(images: torch.Tensor, view: A.ViewParams, params: A.AugmentParams):
    """The torchvision v2 chain of SPEC §2, image by image, with the parameters of ``view``."""
    out = []
    for i in range(images.shape[0]):
        x = images[i].float() / 255
        box = [
            int(view.top[i]),
            int(view.left[i]),
            int(view.crop_height[i]),
            int(view.crop_width[i]),
        ]
        x = TF.resized_crop(x, *box, [params.size, params.size], antialias=params.antialias)
        if view.flip[i]:
            x = TF.horizontal_flip(x)
        if view.jitter[i]:
            for op in view.order[i].tolist():
                if op == A.BRIGHTNESS:
                    x = TF.adjust_brightness(x, float(view.brightness[i]))
                elif op == A.CONTRAST:
                    x = TF.adjust_contrast(x, float(view.contrast[i]))
                elif op == A.SATURATION:
                    x = TF.adjust_saturation(x, float(view.saturation[i]))
                else:
                    x = TF.adjust_hue(x, float(view.hue[i]))
        if view.gray[i]:
            x = TF.rgb_to_grayscale(x, 3)
        if view.blur[i]:
            k = params.blur_kernel_size
            x = TF.gaussian_blur(x, [k, k], [float(view.sigma[i])] * 2)
        out.append(x)
    return torch.stack(out)


@pytest.mark.parametrize(
    ("params", "height", "width"),
    [(A.cifar_params(), 32, 32), (A.imagenet_params(24), 40, 52), (A.cifar_params(16), 8, 8)],
    ids=["cifar", "imagenet-like-shrinking-blur", "digits-8-to-16"],
)
def test_view_matches_torchvision_chain(params, height, width):
    images = _uint8_images(48, height, width)
    uniforms = A.counter_uniforms(7, 2, 0, torch.arange(48))
    view = A.sample_view_params(uniforms, params, height, width)
    ours = A.augment(images, params, uniforms)
    torch.testing.assert_close(ours, _reference_view(images, view, params), atol=1e-4, rtol=0)
    torch.testing.assert_close(ours, A.apply_view(images, view, params), atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------
# Sampled distributions vs torchvision's


def _ks_p(a, b) -> float:
    return stats.ks_2samp(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)).pvalue


@pytest.mark.parametrize(
    ("height", "width", "scale"),
    [(32, 32, (0.1, 1.0)), (224, 224, (0.08, 1.0)), (24, 48, (0.5, 1.0))],
    ids=["cifar", "imagenet", "wide-image-fallbacks"],
)
def test_crop_parameters_follow_torchvision(height, width, scale):
    ratio = (3 / 4, 4 / 3)
    uniforms = A.counter_uniforms(0, 0, 0, torch.arange(N_DRAWS))
    top, left, h, w = (t.numpy() for t in A.sample_crop(uniforms, height, width, scale, ratio))
    torch.manual_seed(0)
    image = torch.zeros(3, height, width)
    theirs = np.array(
        [T.RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(N_DRAWS)]
    )
    t_top, t_left, t_h, t_w = theirs.T

    assert ((h >= 1) & (h <= height) & (w >= 1) & (w <= width)).all()
    assert ((top >= 0) & (top + h <= height) & (left >= 0) & (left + w <= width)).all()
    assert _ks_p(h * w / (height * width), t_h * t_w / (height * width)) > 0.01
    assert _ks_p(w / h, t_w / t_h) > 0.01
    assert _ks_p(top / height, t_top / height) > 0.01
    assert _ks_p(left / width, t_left / width) > 0.01
    # fallback (the centre crop clamped to the ratio range) at the same rate
    in_ratio = width / height
    fb_w = width if in_ratio <= ratio[1] else round(height * ratio[1])
    fb_h = height if in_ratio >= ratio[0] else round(width / ratio[0])
    fallback = (
        (h == fb_h) & (w == fb_w) & (top == (height - fb_h) // 2) & (left == (width - fb_w) // 2)
    )
    t_fallback = (
        (t_h == fb_h)
        & (t_w == fb_w)
        & (t_top == (height - fb_h) // 2)
        & (t_left == (width - fb_w) // 2)
    )
    pooled = (fallback.mean() + t_fallback.mean()) / 2
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * 2 / N_DRAWS)
    assert abs(fallback.mean() - t_fallback.mean()) < 4 * se + 1e-9
    if scale == (0.5, 1.0):
        assert fallback.mean() > 0.2  # the case exercises the fallback


def test_colour_and_flip_parameters_follow_torchvision_laws():
    params = A.imagenet_params(32)
    uniforms = A.counter_uniforms(1, 0, 0, torch.arange(N_DRAWS))
    view = A.sample_view_params(uniforms, params, 32, 32)
    for name, (low, high) in {
        "brightness": (0.6, 1.4),
        "contrast": (0.6, 1.4),
        "saturation": (0.6, 1.4),
        "hue": (-0.1, 0.1),
        "sigma": (0.1, 2.0),
    }.items():
        values = getattr(view, name).double().numpy()
        assert low <= values.min() and values.max() <= high, name
        assert stats.kstest(values, "uniform", args=(low, high - low)).pvalue > 0.01, name
    for name, p in {"flip": 0.5, "jitter": 0.8, "gray": 0.2, "blur": 0.5}.items():
        hits = int(getattr(view, name).sum())
        assert stats.binomtest(hits, N_DRAWS, p).pvalue > 0.001, name
    # the jitter order is a uniform random permutation, like torch.randperm(4)
    assert (view.order.sort(dim=1).values == torch.arange(4)).all()
    perms = torch.tensor(list(itertools.permutations(range(4))))
    counts = (view.order[:, None, :] == perms[None]).all(dim=2).sum(dim=0).numpy()
    assert counts.sum() == N_DRAWS
    assert stats.chisquare(counts).pvalue > 0.001


def test_colorjitter_factor_ranges_follow_strengths():
    params = A.AugmentParams(size=8, brightness=1.5, contrast=0.0, saturation=0.2, hue=0.5)
    view = A.sample_view_params(A.counter_uniforms(0, 0, 0, torch.arange(4000)), params, 8, 8)
    assert view.brightness.min() >= 0 and view.brightness.max() <= 2.5  # max(0, 1 - 1.5)
    assert torch.equal(view.contrast, torch.ones(4000))
    assert view.saturation.min() >= 0.8 and view.saturation.max() <= 1.2
    assert view.hue.min() < -0.45 and view.hue.max() > 0.45


# ---------------------------------------------------------------------------------------------
# Counter-based uniforms


def _fmix32_python(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def test_hash_matches_plain_python_arithmetic():
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 2**32, (1000,), dtype=torch.int64, generator=g)
    values[:3] = torch.tensor([0, 1, 2**32 - 1])
    got = A._fmix32(values).tolist()
    assert got == [_fmix32_python(v) for v in values.tolist()]
    assert _fmix32_python(1) == 0x514E28B7  # MurmurHash3 fmix32 reference value
    for c in (0x85EBCA6B, 0xC2B2AE35, 0x9E3779B9):
        assert A._mul32(values, c).tolist() == [(v * c) & 0xFFFFFFFF for v in values.tolist()]


def test_counter_uniforms_are_deterministic_and_in_range():
    idx = torch.arange(100)
    u = A.counter_uniforms(3, 4, 1, idx)
    assert u.dtype == torch.float32 and u.shape == (100, A.N_UNIFORMS)
    assert torch.equal(u, A.counter_uniforms(3, 4, 1, idx))
    assert float(u.min()) >= 0 and float(u.max()) < 1
    assert A.counter_uniforms(3, 4, 1, idx, 5).shape == (100, 5)
    torch.testing.assert_close(A.counter_uniforms(3, 4, 1, idx, 5), u[:, :5], atol=0, rtol=0)


def test_counter_uniforms_are_uniform_and_uncorrelated():
    u = A.counter_uniforms(0, 0, 0, torch.arange(N_DRAWS)).double()
    assert stats.kstest(u.flatten().numpy(), "uniform").pvalue > 0.01
    for column in range(A.N_UNIFORMS):
        assert stats.kstest(u[:, column].numpy(), "uniform").pvalue > 0.0001, column
    corr = torch.corrcoef(u.T) - torch.eye(A.N_UNIFORMS, dtype=torch.float64)
    assert corr.abs().max() < 0.035  # ~5 standard errors at 20k draws
    neighbours = torch.corrcoef(torch.stack([u[:-1].flatten(), u[1:].flatten()]))[0, 1]
    assert abs(float(neighbours)) < 0.01  # consecutive indices


def test_counter_uniforms_do_not_depend_on_the_batch():
    u = A.counter_uniforms(5, 2, 0, torch.tensor([7, 123, 4, 2**40 + 3]))
    other = A.counter_uniforms(5, 2, 0, torch.tensor([4, 99, 2**40 + 3, 7]))
    assert (
        torch.equal(u[0], other[3]) and torch.equal(u[2], other[0]) and torch.equal(u[3], other[2])
    )


@pytest.mark.parametrize(
    "other", [(6, 2, 0), (5, 3, 0), (5, 2, 1), (5 + 2**32, 2, 0), (-5, 2, 0)], ids=str
)
def test_counter_uniforms_change_with_seed_epoch_and_view(other):
    idx = torch.arange(64)
    u = A.counter_uniforms(5, 2, 0, idx)
    v = A.counter_uniforms(*other, idx)
    assert (u != v).float().mean() > 0.99
    assert abs(float(torch.corrcoef(torch.stack([u.flatten(), v.flatten()]))[0, 1])) < 0.05


def test_counter_uniforms_refuse_bad_indices():
    with pytest.raises(ValueError, match="indices"):
        A.counter_uniforms(0, 0, 0, torch.rand(4))


# ---------------------------------------------------------------------------------------------
# SimCLR views


def test_simclr_views_shapes_range_and_determinism():
    images = _uint8_images(64, 32, 32)
    idx = torch.arange(1000, 1064)
    v1, v2 = A.simclr_views(images, A.cifar_params(), 0, 3, idx)
    for v in (v1, v2):
        assert v.shape == (64, 3, 32, 32) and v.dtype == torch.float32
        assert float(v.min()) >= 0 and float(v.max()) <= 1
    assert not torch.allclose(v1, v2)
    w1, w2 = A.simclr_views(images, A.cifar_params(), 0, 3, idx)
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    assert not torch.allclose(A.simclr_views(images, A.cifar_params(), 0, 4, idx)[0], v1)
    # view v reads counter_uniforms(seed, epoch, v, indices)
    u2 = A.counter_uniforms(0, 3, 1, idx)
    torch.testing.assert_close(A.augment(images, A.cifar_params(), u2), v2, atol=0, rtol=0)


def test_simclr_views_do_not_depend_on_the_batch():
    images = _uint8_images(40, 32, 32)
    idx = torch.arange(40) * 3
    v1, v2 = A.simclr_views(images, A.cifar_params(), 1, 0, idx)
    part = torch.tensor([31, 2, 17, 5])
    p1, p2 = A.simclr_views(images[part], A.cifar_params(), 1, 0, idx[part])
    torch.testing.assert_close(p1, v1[part], atol=1e-6, rtol=0)
    torch.testing.assert_close(p2, v2[part], atol=1e-6, rtol=0)


def test_augment_accepts_a_generator():
    images = _uint8_images(8, 32, 32)
    a = A.augment(
        images,
        A.cifar_params(),
        torch.rand(8, A.N_UNIFORMS, generator=torch.Generator().manual_seed(1)),
    )
    b = A.augment(
        images,
        A.cifar_params(),
        torch.rand(8, A.N_UNIFORMS, generator=torch.Generator().manual_seed(1)),
    )
    assert torch.equal(a, b)


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        A.simclr_views(torch.rand(2, 3, 8, 8), A.cifar_params(8), 0, 0, torch.arange(2))
    with pytest.raises(ValueError, match="indices"):
        A.simclr_views(_uint8_images(2, 8, 8), A.cifar_params(8), 0, 0, torch.arange(3))
    with pytest.raises(ValueError, match="uniforms"):
        A.augment(_uint8_images(2, 8, 8), A.cifar_params(8), torch.rand(2, 3))


# ---------------------------------------------------------------------------------------------
# Parameters


def test_presets_follow_spec():
    cifar = A.cifar_params()
    assert (cifar.size, cifar.scale, cifar.blur_p) == (32, (0.1, 1.0), 0.0)
    assert (cifar.brightness, cifar.contrast, cifar.saturation, cifar.hue) == (0.4, 0.4, 0.4, 0.1)
    assert (cifar.hflip_p, cifar.jitter_p, cifar.gray_p) == (0.5, 0.8, 0.2)
    imagenet = A.imagenet_params()
    assert (imagenet.size, imagenet.scale, imagenet.blur_p) == (224, (0.08, 1.0), 0.5)
    assert imagenet.blur_sigma == (0.1, 2.0) and imagenet.blur_kernel_size == 23
    assert A.imagenet_params(96).blur_kernel_size == 9


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 0),
        ("size", 2.5),
        ("scale", (0.0, 1.0)),
        ("scale", (0.5, 0.2)),
        ("scale", (0.1, 1.5)),
        ("ratio", (2.0, 1.0)),
        ("ratio", (0.0, 1.0)),
        ("hflip_p", 1.5),
        ("jitter_p", -0.1),
        ("gray_p", 2.0),
        ("blur_p", -1.0),
        ("brightness", -0.1),
        ("contrast", -1.0),
        ("saturation", float("nan")),
        ("hue", 0.6),
        ("blur_sigma", (0.0, 1.0)),
        ("blur_kernel", 4),
        ("blur_kernel", 65),
        ("scale", 0.5),
    ],
)
def test_invalid_params_name_the_field(field, value):
    kwargs = {"size": 32, field: value}
    with pytest.raises(ValueError, match=f"AugmentParams.{field}"):
        A.AugmentParams(**kwargs)


# ---------------------------------------------------------------------------------------------
# RandAugment (BCL-I)


def _torchvision_op(image, name, level_bin, sign):
    """torchvision's RandAugment op ``name`` at magnitude bin ``level_bin`` (of 31)."""
    transform = T2.RandAugment()
    magnitudes, signed = transform._AUGMENTATION_SPACE[name]
    table = magnitudes(31, image.shape[-2], image.shape[-1])
    magnitude = 0.0 if table is None else float(table[level_bin])
    if signed:
        magnitude *= sign
    return transform._apply_image_or_video_transform(
        image, name, magnitude, interpolation=InterpolationMode.NEAREST, fill=transform._fill
    )


@pytest.mark.parametrize("level_bin", [0, 9, 30])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_rand_augment_ops_match_torchvision(level_bin, sign):
    x = _float_images(3, 20, 26)
    n_ops = len(A.RAND_AUGMENT_OPS)
    for k, name in enumerate(A.RAND_AUGMENT_OPS):
        # op k is drawn for u in [k/14, (k+1)/14); the sign is negative for u <= 0.5
        uniforms = torch.tensor([[(k + 0.5) / n_ops, 0.25 if sign < 0 else 0.75]]).expand(3, 2)
        ours = A.rand_augment(
            x, torch.full((3,), float(level_bin)), torch.ones(3, dtype=torch.bool), uniforms, 1
        )
        want = torch.stack([_torchvision_op(image, name, level_bin, sign) for image in x])
        torch.testing.assert_close(ours, want, atol=1e-5, rtol=0, msg=name)


def test_rand_augment_respects_apply_and_identity_magnitude():
    x = _float_images(16, 16, 16)
    u = A.counter_uniforms(0, 0, 2, torch.arange(16), 2 * A.RAND_AUGMENT_UNIFORMS_PER_OP)
    magnitude = torch.linspace(0, 30, 16)
    assert torch.equal(A.rand_augment(x, magnitude, torch.zeros(16, dtype=torch.bool), u), x)
    out = A.rand_augment(x, magnitude, torch.ones(16, dtype=torch.bool), u)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.allclose(out, x)
    for name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
        k = A.RAND_AUGMENT_OPS.index(name)
        uniforms = torch.tensor([[(k + 0.5) / len(A.RAND_AUGMENT_OPS), 0.9]]).expand(16, 2)
        same = A.rand_augment(x, torch.zeros(16), torch.ones(16, dtype=torch.bool), uniforms, 1)
        assert torch.equal(same, x), name


def test_rand_augment_refuses_bad_arguments():
    x = _float_images(2, 8, 8)
    ok = torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match="magnitude"):
        A.rand_augment(x, torch.tensor([5.0, 31.0]), ok, torch.rand(2, 4))
    with pytest.raises(ValueError, match="uniforms"):
        A.rand_augment(x, torch.tensor([5.0, 3.0]), ok, torch.rand(2, 3))
    with pytest.raises(ValueError, match="float"):
        A.rand_augment((x * 255).to(torch.uint8), torch.tensor([5.0, 3.0]), ok, torch.rand(2, 4))


# ---------------------------------------------------------------------------------------------
# CUDA


@pytest.mark.cuda
@CUDA
def test_cuda_matches_cpu():
    images = _uint8_images(64, 32, 32)
    idx = torch.arange(64)
    assert torch.equal(
        A.counter_uniforms(3, 1, 0, idx.cuda()).cpu(), A.counter_uniforms(3, 1, 0, idx)
    )
    for params, (h, w) in ((A.cifar_params(), (32, 32)), (A.imagenet_params(24), (40, 52))):
        images = _uint8_images(64, h, w)
        cpu = A.simclr_views(images, params, 3, 1, idx)
        gpu = A.simclr_views(images.cuda(), params, 3, 1, idx.cuda())
        for a, b in zip(cpu, gpu, strict=True):
            assert b.device.type == "cuda"
            torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=0)
    x = cpu[0]
    u = A.counter_uniforms(0, 0, 2, idx, 4)
    magnitude = torch.linspace(0, 30, 64)
    apply = torch.arange(64) % 3 > 0
    on_cpu = A.rand_augment(x, magnitude, apply, u)
    on_gpu = A.rand_augment(x.cuda(), magnitude.cuda(), apply.cuda(), u.cuda()).cpu()
    assert (on_gpu - on_cpu).abs().mean() < 1e-3  # nearest-neighbour ties may round apart
