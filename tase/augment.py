"""Batched SimCLR augmentations on the training device (SPEC §2), and BCL-I's RandAugment (SPEC §4).

Every function works on a whole batch at once: images ``N×3×H×W``, one random parameter per sample
held in a tensor, no Python loop over samples and no PIL. One view is

    uint8 --RandomResizedCrop + horizontal flip--> float (size×size) --ColorJitter (p)-->
          --RandomGrayscale (p)--> --GaussianBlur (p, optional)--> float32 in [0, 1]

with the parameter distributions of ``torchvision.transforms`` (``RandomResizedCrop``,
``RandomHorizontalFlip``, ``RandomApply([ColorJitter])``, ``RandomGrayscale``, ``GaussianBlur``),
and each op equal to ``torchvision.transforms.v2.functional`` on float images (``tests`` hold the
oracle comparisons). The output is not normalised: the encoder normalises inside (CONTRACTS.md).

Randomness. A view reads every random choice from one row of ``N_UNIFORMS`` uniforms per sample,
laid out by the ``U_*`` offsets below. The row comes either from :func:`counter_uniforms`, a pure
function of ``(seed, epoch, view, sample index)`` (so a sample's augmentation does not depend on the
batch it lands in, the number of ranks, or the device), or from
``torch.rand(B, N_UNIFORMS, generator=g)``. Sampling (``sample_*``) turns uniforms into explicit
per-sample parameters; the ops take those parameters, so tests can fix them.

Resampling. The crop is torchvision's bilinear resize of the cropped image (``align_corners=False``,
clamped at the crop's borders). When no crop can shrink (images no larger than ``size``: CIFAR,
digits) it is one ``grid_sample`` with per-sample coordinates, the flip folded in by reversing
them. When crops may shrink (ImageNet) and ``antialias`` is on (torchvision v2's default; PIL
antialiases too), it is two batched matmuls ``rows @ x @ colsᵀ`` with per-sample weight matrices of
PyTorch's antialiased bilinear filter. Gaussian blur is likewise ``K @ x @ Kᵀ`` with per-sample
matrices that fold in torchvision's reflect padding. Under TF32 matmuls
(``torch.backends.cuda.matmul.allow_tf32``) those two carry TF32's ~1e-3 relative error.

Speed. Work is in float32 after the crop (which already reduces to ``size``), colour ops run in
place on the view, hue only on the samples that draw it at each jitter position, and branches are
blended with 0/1 float factors rather than ``torch.where``: on CPU, comparisons, ``where`` and
fresh large tensors (page faults) cost several times an arithmetic pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

# Layout of one sample's uniforms for one view. RandomResizedCrop draws like torchvision: 10
# attempts of (area fraction, log aspect ratio), then the top-left corner of the accepted box.
CROP_ATTEMPTS = 10
U_CROP_AREA = slice(0, CROP_ATTEMPTS)
U_CROP_LOG_RATIO = slice(CROP_ATTEMPTS, 2 * CROP_ATTEMPTS)
U_CROP_TOP = 2 * CROP_ATTEMPTS
U_CROP_LEFT = U_CROP_TOP + 1
U_FLIP = U_CROP_LEFT + 1
U_JITTER = U_FLIP + 1  # whether ColorJitter is applied
U_JITTER_FACTORS = slice(U_JITTER + 1, U_JITTER + 5)  # brightness, contrast, saturation, hue
U_JITTER_ORDER = slice(U_JITTER + 5, U_JITTER + 9)  # argsort gives the order of the four ops
U_GRAY = U_JITTER + 9
U_BLUR = U_GRAY + 1
U_BLUR_SIGMA = U_BLUR + 1
N_UNIFORMS = U_BLUR_SIGMA + 1  # 35 uniforms per sample and view

# ColorJitter's ops, in torchvision's numbering of ``fn_idx``.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3

# ITU-R 601-2 luma, as torchvision.
_LUMA = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentParams:
    """Distributions of the SimCLR view augmentation (SPEC §2); validated at construction.

    Args:
        size: output side (square views).
        scale: RandomResizedCrop area fraction range, ``0 < lo <= hi <= 1``.
        ratio: RandomResizedCrop aspect-ratio (w/h) range, ``0 < lo <= hi``.
        hflip_p: probability of a horizontal flip.
        brightness, contrast, saturation: ColorJitter strengths ``x >= 0``; factors are uniform in
            ``[max(0, 1 - x), 1 + x]``.
        hue: ColorJitter hue strength in ``[0, 0.5]``; the shift is uniform in ``[-hue, hue]``.
        jitter_p: probability of applying ColorJitter (``RandomApply``).
        gray_p: probability of RandomGrayscale.
        blur_p: probability of GaussianBlur (0 switches it off).
        blur_sigma: GaussianBlur sigma range, ``0 < lo <= hi``.
        blur_kernel: odd kernel side with ``blur_kernel // 2 < size`` (reflect padding); ``None``
            means about 10% of ``size``, made odd (23 for 224).
        antialias: antialias the crop's resize when it shrinks (torchvision v2 and PIL do).

    Raises:
        ValueError: naming the field and its allowed range.
    """

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None
    antialias: bool = True

    def __post_init__(self) -> None:
        for name in ("scale", "ratio", "blur_sigma"):
            value = getattr(self, name)
            if not (isinstance(value, (tuple, list)) and len(value) == 2):
                raise ValueError(f"AugmentParams.{name} must be a pair (lo, hi), got {value!r}")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"AugmentParams.size must be an integer >= 1, got {self.size!r}")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(
                f"AugmentParams.scale must satisfy 0 < lo <= hi <= 1, got {self.scale}"
            )
        lo, hi = self.ratio
        if not 0 < lo <= hi:
            raise ValueError(f"AugmentParams.ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        lo, hi = self.blur_sigma
        if not 0 < lo <= hi:
            raise ValueError(
                f"AugmentParams.blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma}"
            )
        for name in ("hflip_p", "jitter_p", "gray_p", "blur_p"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"AugmentParams.{name} must be in [0, 1], got {value}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ValueError(f"AugmentParams.{name} must be in [0, inf), got {value}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"AugmentParams.hue must be in [0, 0.5], got {self.hue}")
        kernel = self.blur_kernel
        if kernel is not None and (
            isinstance(kernel, bool)
            or not isinstance(kernel, int)
            or kernel < 1
            or kernel % 2 == 0
            or kernel // 2 >= self.size
        ):
            raise ValueError(
                f"AugmentParams.blur_kernel must be None or an odd integer in "
                f"[1, {2 * self.size - 1}]"
                f" (reflect padding needs kernel // 2 < size), got {kernel!r}"
            )

    @property
    def blur_kernel_size(self) -> int:
        """The blur kernel side: ``blur_kernel``, or about 10% of ``size`` made odd."""
        if self.blur_kernel is not None:
            return self.blur_kernel
        kernel = int(0.1 * self.size)
        kernel += 1 - kernel % 2
        return min(kernel, 2 * self.size - 1)


def cifar_params(size: int = 32) -> AugmentParams:
    """SPEC §2, CIFAR: RRC(size, scale 0.1–1), h-flip, ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8,
    grayscale p=0.2, no blur."""
    return AugmentParams(size=size, scale=(0.1, 1.0))


def imagenet_params(size: int = 224) -> AugmentParams:
    """SPEC §2, ImageNet: RRC(size, 0.08–1), the CIFAR colour ops, GaussianBlur σ∈[0.1, 2]
    p=0.5 with a kernel of about 10% of ``size`` (23 at 224)."""
    return AugmentParams(size=size, scale=(0.08, 1.0), blur_p=0.5, blur_sigma=(0.1, 2.0))


# --------------------------------------------------------------------------------------------
# Counter-based uniforms
# --------------------------------------------------------------------------------------------

_MASK32 = 0xFFFFFFFF
_GOLDEN32 = 0x9E3779B9


def _mul32(a, c: int):
    """``(a * c) mod 2**32`` for ``0 <= a, c < 2**32`` without leaving int64: split ``a`` into
    16-bit halves; only the low 16 bits of ``a_hi * c`` survive the shift modulo ``2**32``."""
    low = (a & 0xFFFF) * c
    high = ((a >> 16) * c) & 0xFFFF
    return (low + (high << 16)) & _MASK32


def _fmix32(h):
    """MurmurHash3's 32-bit finaliser (a bijection with full avalanche); works on Python ints and
    int64 tensors holding 32-bit values."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _absorb(state, value):
    """Mix a 64-bit integer (Python int or int64 tensor) into a 32-bit hash state."""
    state = _fmix32(state ^ (value & _MASK32))
    return _fmix32(state ^ ((value >> 32) & _MASK32))


def counter_uniforms(
    seed: int, epoch: int, view: int, indices: torch.Tensor, n: int = N_UNIFORMS
) -> torch.Tensor:
    """Uniforms in [0, 1) as a pure function of ``(seed, epoch, view, sample index, k)``.

    Each value is the top 24 bits of a MurmurHash3-finalised key (splitmix-style: a Weyl step per
    ``k`` on a per-sample state), computed with int64 tensor ops that never overflow, so the values
    are bit-identical on CPU and CUDA and a sample gets the same row in any batch.

    Args:
        seed, epoch, view: integers (any size; folded to 64 bits).
        indices: (B,) integer tensor of dataset indices; the result lives on its device.
        n: uniforms per sample (``N_UNIFORMS`` for one view of :func:`augment`).

    Returns:
        float32 tensor (B, n) with values in ``{0, 2**-24, ..., 1 - 2**-24}``.
    """
    indices = torch.as_tensor(indices)
    if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.ndim != 1:
        raise ValueError(
            f"indices must be a 1-D integer tensor, got {indices.dtype} {indices.shape}"
        )
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    state = 0x6A09E667  # arbitrary non-zero start
    for value in (seed, epoch, view):
        state = _absorb(state, int(value) & 0xFFFFFFFFFFFFFFFF)
    per_sample = _absorb(state, indices.to(torch.int64))
    steps = torch.arange(1, n + 1, dtype=torch.int64, device=indices.device) * _GOLDEN32
    bits = _fmix32((per_sample[:, None] + steps[None, :]) & _MASK32)
    return (bits >> 8).to(torch.float32) * (2.0**-24)


# --------------------------------------------------------------------------------------------
# Parameter sampling (uniforms -> explicit per-sample parameters)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewParams:
    """Explicit per-sample parameters of one view; every field is a (B,) tensor except ``order``.

    ``top, left, crop_height, crop_width`` (int64) is the crop box; ``flip, jitter, gray, blur``
    (bool) say whether each op is applied; ``brightness, contrast, saturation`` are factors, ``hue``
    the shift, ``order`` (B, 4) int64 lists the jitter ops (``BRIGHTNESS``…``HUE``) in the order
    they are applied; ``sigma`` is the blur's standard deviation.
    """

    top: torch.Tensor
    left: torch.Tensor
    crop_height: torch.Tensor
    crop_width: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    order: torch.Tensor
    gray: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor


def sample_crop(
    uniforms: torch.Tensor,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's ``RandomResizedCrop.get_params``, vectorised over samples and attempts.

    Attempt ``a`` draws the area ``uniform(scale)·H·W`` and the aspect ratio
    ``exp(uniform(log ratio))``, rounds ``w = sqrt(area·r)``, ``h = sqrt(area/r)`` (half to even,
    as Python's ``round``) and is accepted if ``0 < w <= W`` and ``0 < h <= H``; the first accepted
    attempt wins and its corner is uniform over the valid positions. With no accepted attempt in
    ``CROP_ATTEMPTS``, the centre crop of the whole image clamped to the ratio range.

    Args:
        uniforms: (B, >= N_UNIFORMS) rows laid out as ``U_*`` (only the crop columns are read).

    Returns:
        ``top, left, crop_height, crop_width``: (B,) int64 tensors.
    """
    u = uniforms.to(torch.float64)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, U_CROP_AREA])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, U_CROP_LOG_RATIO])
    w = torch.sqrt(area * aspect).round()
    h = torch.sqrt(area / aspect).round()
    accepted = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = accepted.to(torch.uint8).argmax(dim=1, keepdim=True)  # first True (or 0)
    found = accepted.any(dim=1)

    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fallback_w, fallback_h = int(round(height * max(ratio))), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(found, w.gather(1, first).squeeze(1), float(fallback_w))
    h = torch.where(found, h.gather(1, first).squeeze(1), float(fallback_h))
    top = torch.floor(u[:, U_CROP_TOP] * (height - h + 1)).clamp(max=height - h)
    left = torch.floor(u[:, U_CROP_LEFT] * (width - w + 1)).clamp(max=width - w)
    top = torch.where(found, top, float((height - fallback_h) // 2))
    left = torch.where(found, left, float((width - fallback_w) // 2))
    return top.long(), left.long(), h.long(), w.long()


def _uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u.to(torch.float32)


def sample_view_params(
    uniforms: torch.Tensor, params: AugmentParams, height: int, width: int
) -> ViewParams:
    """Turn a (B, N_UNIFORMS) block of uniforms into the explicit parameters of one view."""
    if uniforms.ndim != 2 or uniforms.shape[1] < N_UNIFORMS:
        raise ValueError(f"uniforms must be (B, >= {N_UNIFORMS}), got {tuple(uniforms.shape)}")
    top, left, crop_height, crop_width = sample_crop(
        uniforms, height, width, params.scale, params.ratio
    )
    factors = uniforms[:, U_JITTER_FACTORS]
    b, c, s = params.brightness, params.contrast, params.saturation
    return ViewParams(
        top=top,
        left=left,
        crop_height=crop_height,
        crop_width=crop_width,
        flip=uniforms[:, U_FLIP] < params.hflip_p,
        jitter=uniforms[:, U_JITTER] < params.jitter_p,
        brightness=_uniform(factors[:, 0], max(0.0, 1 - b), 1 + b),
        contrast=_uniform(factors[:, 1], max(0.0, 1 - c), 1 + c),
        saturation=_uniform(factors[:, 2], max(0.0, 1 - s), 1 + s),
        hue=_uniform(factors[:, 3], -params.hue, params.hue),
        # argsort of i.i.d. uniforms is a uniform random permutation, like torch.randperm(4)
        order=uniforms[:, U_JITTER_ORDER].argsort(dim=1),
        gray=uniforms[:, U_GRAY] < params.gray_p,
        blur=uniforms[:, U_BLUR] < params.blur_p,
        sigma=_uniform(uniforms[:, U_BLUR_SIGMA], *params.blur_sigma),
    )


# --------------------------------------------------------------------------------------------
# Ops with explicit per-sample parameters
# --------------------------------------------------------------------------------------------


def _per_sample(value: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """A (B,) or scalar parameter as a (B, 1, 1, 1) float tensor on x's device."""
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    return value.reshape(-1, 1, 1, 1) if value.ndim else value.reshape(1, 1, 1, 1)


def _antialias_matrix(
    start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int
) -> torch.Tensor:
    """(B, out_size, in_size) weights of an antialiased bilinear resize of
    ``[start, start + length)`` (PyTorch's ``antialias=True`` kernel, like PIL's).

    Output ``o`` is centred at ``start + (o + ½)·length/out_size`` in input pixel units; the
    triangle filter has half-width ``max(1, length/out_size)``; weights are cut to the crop and
    renormalised, which for enlarging equals ``align_corners=False`` clamping at the crop borders.
    """
    start = start.to(torch.float32)[:, None, None]
    length = length.to(torch.float32)[:, None, None]
    device = start.device
    out_pos = torch.arange(out_size, dtype=torch.float32, device=device)[None, :, None]
    in_pos = torch.arange(in_size, dtype=torch.float32, device=device)[None, None, :]
    step = length / out_size
    centre = start + (out_pos + 0.5) * step
    weights = (1 - ((in_pos + 0.5 - centre) / step.clamp(min=1.0)).abs()).clamp(min=0)
    weights = weights * ((in_pos >= start) & (in_pos < start + length))
    return weights / weights.sum(dim=2, keepdim=True)


def _sample_grid_axis(
    start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int
) -> torch.Tensor:
    """(B, out_size) ``grid_sample`` coordinates of a bilinear resize of ``[start, start+length)``:
    source ``start + (o + ½)·length/out_size − ½``, clamped to the crop as resizing the cropped
    image clamps to its borders, normalised for ``align_corners=False``."""
    start = start.to(torch.float32)[:, None]
    length = length.to(torch.float32)[:, None]
    out_pos = torch.arange(out_size, dtype=torch.float32, device=start.device)[None, :]
    source = start + (out_pos + 0.5) * (length / out_size) - 0.5
    source = torch.minimum(torch.maximum(source, start), start + length - 1)
    return (2 * source + 1) / in_size - 1


def _crop_resize(
    pixels: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    crop_height: torch.Tensor,
    crop_width: torch.Tensor,
    size: int,
    flip: torch.Tensor | None,
    antialias: bool,
) -> torch.Tensor:
    """Crop, resize and flip float images (see :func:`resized_crop`)."""
    batch, _, height, width = pixels.shape
    if antialias and max(height, width) > size:
        # a crop may shrink: antialiased weights, applied as rows @ x @ colsᵀ
        rows = _antialias_matrix(top, crop_height, height, size)
        cols = _antialias_matrix(left, crop_width, width, size)
        if flip is not None:
            cols = torch.where(flip[:, None, None], cols.flip(1), cols)
        x = torch.matmul(pixels, cols.transpose(1, 2).unsqueeze(1))  # (B, C, H, size)
        return torch.matmul(rows.unsqueeze(1), x)
    # every crop is enlarged (or antialias is off): 2×2-tap bilinear, cheapest as grid_sample
    grid_x = _sample_grid_axis(left, crop_width, width, size)
    if flip is not None:
        grid_x = torch.where(flip[:, None], grid_x.flip(1), grid_x)
    grid_y = _sample_grid_axis(top, crop_height, height, size)
    grid = torch.stack(
        [
            grid_x[:, None, :].expand(batch, size, size),
            grid_y[:, :, None].expand(batch, size, size),
        ],
        dim=-1,
    )
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resized_crop(
    images: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    crop_height: torch.Tensor,
    crop_width: torch.Tensor,
    size: int,
    flip: torch.Tensor | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """Crop box ``(top, left, crop_height, crop_width)`` of each image, bilinear-resized to
    ``size × size``, then horizontally flipped where ``flip``.

    Equals ``TF.resized_crop(x, top, left, h, w, [size, size], antialias=antialias)`` per sample
    (followed by ``TF.horizontal_flip``). Enlarging crops use ``grid_sample`` (2×2 taps);
    antialiased shrinking uses separable weight matrices. uint8 input is scaled to [0, 1]; float
    input keeps its scale. Boxes must lie inside the image.

    Returns:
        float32 (B, C, size, size).
    """
    pixels = images.to(torch.float32)
    if images.dtype == torch.uint8:
        pixels = pixels / 255
    return _crop_resize(pixels, top, left, crop_height, crop_width, size, flip, antialias)


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images where ``flip`` (B,) is True."""
    return torch.where(flip.reshape(-1, 1, 1, 1), x.flip(-1), x)


def _luma(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 1, H, W) ITU-R 601-2 luma of RGB images, as torchvision (``out``: a (B, H, W) buffer)."""
    r, g, b = x.unbind(dim=1)
    return (
        torch.mul(r, _LUMA[0], out=out).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)
    )


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma replicated to 3 channels (``TF.rgb_to_grayscale(x, 3)``)."""
    return _luma(x).expand_as(x)


def random_grayscale(x: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    """Grayscale (3 channels) where ``gray`` (B,) is True."""
    return _random_grayscale_(x.clone(), gray)


def _random_grayscale_(x: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    # lerp with weight 0 or 1 returns exactly one end; cheaper than torch.where on CPU
    return x.lerp_(_luma(x).expand_as(x), _per_sample(gray, x))


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """``clamp(factor·x, 0, 1)`` per sample (``TF.adjust_brightness`` on float)."""
    return (x * _per_sample(factor, x)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend with the per-sample mean of the luma (``TF.adjust_contrast`` on float)."""
    factor = _per_sample(factor, x)
    mean = _luma(x).mean(dim=(1, 2, 3), keepdim=True)
    return torch.addcmul(mean * (1 - factor), x, factor).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend with the luma image (``TF.adjust_saturation`` on float)."""
    factor = _per_sample(factor, x)
    return torch.addcmul(_luma(x) * (1 - factor), x, factor).clamp_(0, 1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns, ``shift`` in [-0.5, 0.5] (``TF.adjust_hue`` on float).

    Goes through HSV like torchvision, in closed form. With ``V = max``, ``V·S = max − min`` and
    the hue ``H ∈ [−1, 5]`` in sextants (torchvision's formula before wrapping), HSV→RGB of the
    rotated hue gives channel ``c`` as ``max − (max − min)·ramp_c``, where ``ramp_c`` is 1 within
    1 sextant of the centre ``a_c − 6·shift`` (``a = 3, 5, 1`` for R, G, B) on the hue circle and
    falls to 0 at 2 sextants: ``clamp(||H − a'_c| − 3| − 1, 0, 1)`` with ``a'_c`` wrapped to
    [0, 6), which is torchvision's ``clamp(min(k, 4 − k), 0, 1)``, ``k = (n_c + H') mod 6``.
    """
    return _adjust_hue_(x.clone(), shift)


def _adjust_hue_(x: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """:func:`adjust_hue` in place. On CPU, fresh large tensors cost page faults that outweigh
    the arithmetic, so a few buffers are reused and branches are blended with 0/1 float masks
    (``sign`` of a non-negative difference) rather than ``torch.where``."""
    r, g, b = x.unbind(dim=1)
    maxc = torch.maximum(r, g)
    torch.maximum(maxc, b, out=maxc)
    delta = torch.minimum(r, g)
    torch.minimum(delta, b, out=delta)
    torch.sub(maxc, delta, out=delta)
    # hue in sextants, with torchvision's branch priority: R is the max, else G, else B
    r_not_max = torch.sub(maxc, r).sign_()
    g_not_max = torch.sub(maxc, g).sign_()
    hue = torch.sub(r, g).add_(delta, alpha=4)  # B is the max
    other = torch.sub(b, r).add_(delta, alpha=2)  # G is the max
    hue.sub_(other).mul_(g_not_max).add_(other)
    torch.sub(g, b, out=other)  # R is the max
    hue.sub_(other).mul_(r_not_max).add_(other)
    hue.div_(torch.clamp(delta, min=1e-30, out=other))  # grey pixels: 0 / tiny = 0
    centres = torch.tensor([3.0, 5.0, 1.0], dtype=x.dtype, device=x.device)
    centres = torch.remainder(centres - 6 * _per_sample(shift, x).reshape(-1, 1), 6.0)  # (B, 3)
    ramp = r_not_max
    for channel in range(3):
        centre = centres[:, channel, None, None]
        torch.sub(hue, centre, out=ramp).abs_().sub_(3).abs_().sub_(1).clamp_(0, 1)
        torch.addcmul(maxc, delta, ramp, value=-1, out=x[:, channel])
    return x.clamp_(0, 1)


def color_jitter(
    x: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    hue: torch.Tensor,
    order: torch.Tensor,
    apply: torch.Tensor | None = None,
) -> torch.Tensor:
    """torchvision's ``ColorJitter`` with per-sample factors and per-sample op order.

    Position ``k`` applies op ``order[:, k]`` (``BRIGHTNESS``, ``CONTRAST``, ``SATURATION``,
    ``HUE``) to each sample. Brightness, contrast and saturation are all
    ``clamp(f·x + (1 − f)·ref)`` with ``ref`` = 0, the mean luma, or the luma image, so one fused
    blend per position serves all three (``f = 1`` leaves a sample exactly unchanged); hue runs on
    the samples that draw it at that position only. Samples where ``apply`` is False are unchanged.
    """
    return _color_jitter_(x.clone(), brightness, contrast, saturation, hue, order, apply)


def _color_jitter_(
    x: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    hue: torch.Tensor,
    order: torch.Tensor,
    apply: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`color_jitter` in place."""
    apply = torch.ones_like(order[:, 0], dtype=torch.bool) if apply is None else apply
    one = torch.ones_like(brightness)
    factors = torch.stack([brightness, contrast, saturation, one], dim=1)  # (B, 4)
    luma_buffer = torch.empty_like(x[:, 0])
    for position in range(4):
        op = order[:, position]
        factor = torch.where(apply, factors.gather(1, op[:, None]).squeeze(1), one)
        luma_weight = (1 - factor) * ((op == SATURATION) & apply)
        mean_weight = (1 - factor) * ((op == CONTRAST) & apply)
        luma = _luma(x, out=luma_buffer)
        mean = luma.mean(dim=(1, 2, 3), keepdim=True)
        ref = luma.mul_(_per_sample(luma_weight, x)).add_(mean * _per_sample(mean_weight, x))
        x.mul_(_per_sample(factor, x)).add_(ref).clamp_(0, 1)
        hue_rows = ((op == HUE) & apply).nonzero().squeeze(1)
        if hue_rows.numel():
            x.index_copy_(0, hue_rows, _adjust_hue_(x.index_select(0, hue_rows), hue[hue_rows]))
    return x


def _gaussian_kernel1d(kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """(B, kernel_size) kernels, torchvision's ``_get_gaussian_kernel1d`` per sample."""
    lim = (kernel_size - 1) / (2.0 * math.sqrt(2.0))
    x = torch.linspace(-lim, lim, steps=kernel_size, dtype=torch.float32, device=sigma.device)
    return torch.softmax(-(x[None, :] / sigma.to(torch.float32)[:, None]).pow(2), dim=1)


def _blur_matrix(kernel1d: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size, size) matrices of a 1-D convolution with reflect padding."""
    batch, kernel_size = kernel1d.shape
    radius = kernel_size // 2
    device = kernel1d.device
    taps = torch.arange(size, device=device)[:, None] + torch.arange(
        -radius, radius + 1, device=device
    )
    taps = taps.abs()  # reflect at the start: -p -> p
    taps = torch.where(taps > size - 1, 2 * (size - 1) - taps, taps)  # reflect at the end
    matrix = torch.zeros(batch, size, size, dtype=kernel1d.dtype, device=device)
    values = kernel1d[:, None, :].expand(batch, size, kernel_size)
    return matrix.scatter_add_(2, taps[None].expand(batch, size, kernel_size), values)


def gaussian_blur(
    x: torch.Tensor, kernel_size: int, sigma: torch.Tensor, apply: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample Gaussian blur (``TF.gaussian_blur(x, [k, k], [s, s])``, reflect padding) where
    ``apply`` (B,) is True. Requires ``kernel_size`` odd and ``kernel_size // 2 < min(H, W)``."""
    _, _, height, width = x.shape
    if kernel_size % 2 == 0 or kernel_size // 2 >= min(height, width):
        raise ValueError(
            f"kernel_size must be odd and < 2·min(H, W) = {2 * min(height, width)}, "
            f"got {kernel_size}"
        )
    kernel = _gaussian_kernel1d(kernel_size, sigma)
    if apply is not None:
        identity = torch.zeros_like(kernel)
        identity[:, kernel_size // 2] = 1
        kernel = torch.where(apply[:, None], kernel, identity)
    rows = _blur_matrix(kernel, height).unsqueeze(1)
    cols = rows if width == height else _blur_matrix(kernel, width).unsqueeze(1)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(2, 3))


# --------------------------------------------------------------------------------------------
# SimCLR views
# --------------------------------------------------------------------------------------------


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 N×3×H×W, got {images.dtype} {tuple(images.shape)}")


def _apply_view(pixels: torch.Tensor, view: ViewParams, params: AugmentParams) -> torch.Tensor:
    """One view from float pixels in [0, 1]."""
    x = _crop_resize(
        pixels,
        view.top,
        view.left,
        view.crop_height,
        view.crop_width,
        params.size,
        view.flip,
        params.antialias,
    )
    if params.jitter_p > 0:
        x = _color_jitter_(
            x, view.brightness, view.contrast, view.saturation, view.hue, view.order, view.jitter
        )
    if params.gray_p > 0:
        x = _random_grayscale_(x, view.gray)
    if params.blur_p > 0:
        x = gaussian_blur(x, params.blur_kernel_size, view.sigma, view.blur)
    return x.clamp_(0, 1)  # resampling sums to 1 up to float rounding


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32).mul_(1 / 255)


def apply_view(images: torch.Tensor, view: ViewParams, params: AugmentParams) -> torch.Tensor:
    """One augmented view of uint8 images N×3×H×W with explicit parameters; float32 in [0, 1]."""
    _check_images(images)
    return _apply_view(_to_unit(images), view, params)


def augment(images: torch.Tensor, params: AugmentParams, uniforms: torch.Tensor) -> torch.Tensor:
    """One augmented view of uint8 images N×3×H×W, random choices read from ``uniforms``
    (B, N_UNIFORMS), e.g. ``counter_uniforms(...)`` or ``torch.rand(B, N_UNIFORMS, generator=g)``.

    Returns:
        float32 (N, 3, size, size) in [0, 1] on the images' device.
    """
    _check_images(images)
    _, _, height, width = images.shape
    view = sample_view_params(uniforms.to(images.device), params, height, width)
    return _apply_view(_to_unit(images), view, params)


def simclr_views(
    images: torch.Tensor,
    params: AugmentParams,
    seed: int,
    epoch: int,
    indices: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two SimCLR views of a uint8 batch; view ``v`` uses ``counter_uniforms(seed, epoch, v,
    indices)``, so each view of a sample depends only on (seed, epoch, view, dataset index).

    Returns:
        two float32 (N, 3, size, size) tensors in [0, 1] on the images' device.
    """
    _check_images(images)
    _, _, height, width = images.shape
    indices = torch.as_tensor(indices, device=images.device)
    if indices.shape != (images.shape[0],):
        raise ValueError(f"indices must be ({images.shape[0]},), got {tuple(indices.shape)}")
    pixels = _to_unit(images)  # converted once for both views
    views = []
    for view_id in (0, 1):
        uniforms = counter_uniforms(seed, epoch, view_id, indices)
        views.append(
            _apply_view(pixels, sample_view_params(uniforms, params, height, width), params)
        )
    return views[0], views[1]


# --------------------------------------------------------------------------------------------
# RandAugment (BCL-I)
# --------------------------------------------------------------------------------------------

# torchvision's RandAugment op list; op k's magnitude at level m (0..30, num_magnitude_bins=31)
# is torchvision's table value m/30·max (Posterize: round(8 − m/7.5) bits; Solarize: threshold
# 1 − m/30), negated with probability ½ for the signed ops. Non-integer m interpolates the table.
RAND_AUGMENT_OPS = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
)
_GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
RAND_AUGMENT_MAX_MAGNITUDE = 30
RAND_AUGMENT_UNIFORMS_PER_OP = 2  # op choice, sign


def adjust_sharpness(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend with torchvision's 3×3 smoothing of the interior, borders kept
    (``TF.adjust_sharpness`` on float) with per-sample factors."""
    _, channels, height, width = x.shape
    if height <= 2 or width <= 2:
        return x
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], dtype=x.dtype, device=x.device)
    smooth = F.conv2d(x, kernel.expand(channels, 1, 3, 3), groups=channels)
    out = x.clone()
    interior = out[..., 1:-1, 1:-1]
    interior.add_((smooth - interior) * (1 - _per_sample(factor, x)))
    return out.clamp_(0, 1)


def _inverse_affine(
    angle: torch.Tensor,
    translate_x: torch.Tensor,
    translate_y: torch.Tensor,
    shear_x: torch.Tensor,
    shear_y: torch.Tensor,
    centre_x: torch.Tensor,
    centre_y: torch.Tensor,
) -> torch.Tensor:
    """(B, 2, 3) per-sample version of torchvision's ``_get_inverse_affine_matrix`` (scale 1;
    angles in degrees; centre in pixels relative to the image centre)."""
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear_x), torch.deg2rad(shear_y)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -(a * torch.tan(sx) + torch.sin(rot))
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = torch.cos(rot) - c * torch.tan(sx)
    cx_tx, cy_ty = centre_x + translate_x, centre_y + translate_y
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = centre_x - m0 * cx_tx - m1 * cy_ty
    m5 = centre_y - m3 * cx_tx - m4 * cy_ty
    return torch.stack([m0, m1, m2, m3, m4, m5], dim=1).reshape(-1, 2, 3)


def _affine_nearest(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """torchvision's tensor ``affine`` (nearest, fill 0) with a per-sample inverse matrix."""
    batch, _, height, width = x.shape
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=x.device)
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=x.device)
    base = torch.stack(
        [
            xs.expand(height, width),
            ys[:, None].expand(height, width),
            torch.ones(height, width, device=x.device),
        ],
        dim=-1,
    ).reshape(1, height * width, 3)
    scale = torch.tensor([0.5 * width, 0.5 * height], device=x.device)
    grid = base.matmul(theta.to(torch.float32).transpose(1, 2) / scale)  # (B, H·W, 2)
    grid = grid.reshape(batch, height, width, 2).to(x.dtype)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _rand_augment_geometric(
    x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor
) -> torch.Tensor:
    """Shear, translate and rotate: one nearest-neighbour grid_sample per sample."""
    _, _, height, width = x.shape
    zero = torch.zeros_like(level)
    is_op = {name: op == RAND_AUGMENT_OPS.index(name) for name in _GEOMETRIC}
    shear = torch.rad2deg(torch.atan(0.3 * level * sign))
    angle = torch.where(is_op["Rotate"], -30.0 * level * sign, zero)  # rotate() negates the angle
    translate_x = torch.where(
        is_op["TranslateX"], torch.trunc(150 / 331 * width * level * sign), zero
    )
    translate_y = torch.where(
        is_op["TranslateY"], torch.trunc(150 / 331 * height * level * sign), zero
    )
    shear_x = torch.where(is_op["ShearX"], shear, zero)
    shear_y = torch.where(is_op["ShearY"], shear, zero)
    # shears are about the top-left corner (center=[0, 0]); translate and rotate about the centre
    is_shear = (is_op["ShearX"] | is_op["ShearY"]).to(level.dtype)
    centre_x = -0.5 * width * is_shear
    centre_y = -0.5 * height * is_shear
    theta = _inverse_affine(angle, translate_x, translate_y, shear_x, shear_y, centre_x, centre_y)
    return _affine_nearest(x, theta)


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    levels = _per_sample(torch.exp2(bits.to(x.dtype)), x)
    return (x * levels).floor_().clamp_(min=0).minimum(levels - 1) / levels


def _solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= _per_sample(threshold, x), 1 - x, x)


def _rand_augment_step_(
    x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor
) -> torch.Tensor:
    """Apply op ``op[i]`` (an index into ``RAND_AUGMENT_OPS``) at ``level[i]`` ∈ [0, 1] to
    sample ``i``, in place; ``sign`` negates the magnitude of the signed ops."""
    signed = level * sign
    photometric = {
        "Brightness": lambda v, s: adjust_brightness(v, 1 + 0.9 * s),
        "Color": lambda v, s: adjust_saturation(v, 1 + 0.9 * s),
        "Contrast": lambda v, s: adjust_contrast(v, 1 + 0.9 * s),
        "Sharpness": lambda v, s: adjust_sharpness(v, 1 + 0.9 * s),
        "Posterize": lambda v, s: _posterize(v, torch.round(8 - 4 * s.abs())),
        "Solarize": lambda v, s: _solarize(v, 1 - s.abs()),
        "AutoContrast": lambda v, s: TF.autocontrast(v),
        "Equalize": lambda v, s: TF.equalize(v),
    }
    geometric = torch.zeros_like(op, dtype=torch.bool)
    for name in _GEOMETRIC:
        geometric |= op == RAND_AUGMENT_OPS.index(name)
    rows = geometric.nonzero().squeeze(1)
    if rows.numel():
        moved = _rand_augment_geometric(x.index_select(0, rows), op[rows], level[rows], sign[rows])
        x.index_copy_(0, rows, moved)
    for name, fn in photometric.items():
        rows = (op == RAND_AUGMENT_OPS.index(name)).nonzero().squeeze(1)
        if rows.numel():
            x.index_copy_(0, rows, fn(x.index_select(0, rows), signed[rows]))
    return x


def rand_augment(
    images: torch.Tensor,
    magnitude: torch.Tensor,
    apply: torch.Tensor,
    uniforms: torch.Tensor,
    num_ops: int = 2,
) -> torch.Tensor:
    """Batched RandAugment (torchvision's op list and magnitude table) with per-sample magnitude,
    for BCL-I (SPEC §4: strength ``10 + 20·m_i`` applied with probability ``m_i``).

    Each of ``num_ops`` rounds picks one of the 14 ``RAND_AUGMENT_OPS`` uniformly per sample and
    negates signed magnitudes with probability ½, as ``torchvision.transforms.v2.RandAugment``
    (nearest interpolation, fill 0). Geometric ops are one ``grid_sample`` per round; the others run
    on the samples that drew them. AutoContrast and Equalize are torchvision's batched kernels
    (Equalize is exact: it bins the float image to uint8 like torchvision).

    Args:
        images: float (B, 3, H, W) in [0, 1].
        magnitude: (B,) float in [0, RAND_AUGMENT_MAX_MAGNITUDE]; integer values reproduce
            torchvision's ``magnitude`` with ``num_magnitude_bins=31``.
        apply: (B,) bool; samples where False are returned unchanged.
        uniforms: (B, >= RAND_AUGMENT_UNIFORMS_PER_OP · num_ops): per round, op choice and sign.

    Returns:
        float (B, 3, H, W) in [0, 1].
    """
    if not images.is_floating_point() or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be float B×3×H×W, got {images.dtype} {tuple(images.shape)}")
    batch = images.shape[0]
    magnitude = torch.as_tensor(magnitude, dtype=torch.float32, device=images.device)
    if magnitude.shape != (batch,) or apply.shape != (batch,):
        raise ValueError(f"magnitude and apply must be ({batch},)")
    if bool(((magnitude < 0) | (magnitude > RAND_AUGMENT_MAX_MAGNITUDE)).any()):
        raise ValueError(f"magnitude must be in [0, {RAND_AUGMENT_MAX_MAGNITUDE}]")
    needed = RAND_AUGMENT_UNIFORMS_PER_OP * num_ops
    if uniforms.ndim != 2 or uniforms.shape[0] != batch or uniforms.shape[1] < needed:
        raise ValueError(f"uniforms must be ({batch}, >= {needed}), got {tuple(uniforms.shape)}")
    uniforms = uniforms.to(images.device)
    apply = apply.to(images.device)
    level = magnitude / RAND_AUGMENT_MAX_MAGNITUDE
    n_ops = len(RAND_AUGMENT_OPS)
    x = images.clone()
    for round_ in range(num_ops):
        u_op = uniforms[:, RAND_AUGMENT_UNIFORMS_PER_OP * round_]
        u_sign = uniforms[:, RAND_AUGMENT_UNIFORMS_PER_OP * round_ + 1]
        op = (u_op * n_ops).long().clamp(max=n_ops - 1)
        op = torch.where(apply, op, 0)  # 0 = Identity
        sign = torch.where(u_sign <= 0.5, -1.0, 1.0).to(level.dtype)
        x = _rand_augment_step_(x, op, level, sign)
    return x
