"""Encoders: a backbone (images -> features) and the SimCLR projection head (SPEC §2).

- ``resnet18``: ResNet-18 with the CIFAR stem (conv1 3×3, stride 1, padding 1, no max-pool), as
  in SDCLR, BCL and TS. 11.2 M parameters, 512-d features.
- ``resnet50``: ResNet-50 with the standard ImageNet stem. 23.5 M parameters, 2048-d features.
- ``small``: a three-stage residual network for CPU profiles (``digits-lt`` at 16×16).
  With ``width=32``: 0.31 M parameters in the backbone, 128-d features. A full training step
  (augmentation of two 16×16 views, forward, loss, backward, SGD) at batch 128 runs at 687
  images/s in float32 and 1,160 under bf16 autocast on the 2-core development CPU with one thread
  (``python benchmarks/train_step.py --archs small --size 16 --variants fp32,bf16 --threads 1``);
  the quick profile's TASE stage trains at a median 1,264 images/s with two threads.

Every backbone takes float images in [0, 1] and normalises them inside with its own mean/std
buffers, so augmentation and evaluation can never disagree on normalisation.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

# Per-channel statistics of the training images (CIFAR-10's; close enough for the other sets and
# only a fixed affine map in front of the first convolution).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    def __init__(self, mean=MEAN, std=STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem conv, three residual stages (width, 2·width, 4·width; strides 1, 2, 2), average pool."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.layers = nn.Sequential(
            BasicBlock(width, width, 1),
            BasicBlock(width, 2 * width, 2),
            BasicBlock(2 * width, 4 * width, 2),
        )
        self.out_dim = 4 * width

    def forward(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1)


def _torchvision_resnet(name: str, cifar_stem: bool) -> tuple[nn.Module, int]:
    net = getattr(torchvision.models, name)(weights=None)
    if cifar_stem:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    out_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, out_dim


def projection_head(in_dim: int, out_dim: int = 128) -> nn.Sequential:
    """Linear(d,d)–BN–ReLU–Linear(d,out, no bias)–BN, as in SDCLR/BCL/TS's SimCLR heads."""
    return nn.Sequential(
        nn.Linear(in_dim, in_dim),
        nn.BatchNorm1d(in_dim),
        nn.ReLU(inplace=True),
        nn.Linear(in_dim, out_dim, bias=False),
        nn.BatchNorm1d(out_dim),
    )


class Encoder(nn.Module):
    """``backbone`` (normalise + network) followed by ``projector``.

    ``features(x)`` gives the representation that is evaluated; ``forward(x)`` the projection the
    contrastive loss sees.
    """

    def __init__(self, net: nn.Module, feature_dim: int, proj_dim: int, input_size: int):
        super().__init__()
        self.backbone = nn.Sequential(Normalize(), net)
        self.projector = projection_head(feature_dim, proj_dim)
        self.feature_dim = feature_dim
        self.input_size = input_size

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))


def build_model(name: str, input_size: int, width: int = 32, proj_dim: int = 128) -> Encoder:
    """``build_model("resnet18", 32)``; ``name`` in ``small``, ``resnet18``, ``resnet50``."""
    if name == "small":
        net = SmallResNet(width)
        dim = net.out_dim
    elif name == "resnet18":
        net, dim = _torchvision_resnet("resnet18", cifar_stem=True)
    elif name == "resnet50":
        net, dim = _torchvision_resnet("resnet50", cifar_stem=False)
    else:
        raise ValueError(f"unknown model {name!r}; valid: small, resnet18, resnet50")
    return Encoder(net, dim, proj_dim, input_size)
