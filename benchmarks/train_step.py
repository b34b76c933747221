"""Images/s of a full training step, SimCLR against TASE, under each precision and memory layout.

    python benchmarks/train_step.py [--device cuda] [--batch 512] [--repeats 5] [--steps N]
                                    [--archs small,resnet18] [--variants fp32,bf16+cl,...]
                                    [--compile | --no-compile] [--model-only] [--size 32]
                                    [--threads N] [--json PATH]

One step is what ``tase.train.Trainer.train_step`` does on one process: two views of a uint8
batch already on the device (``tase.augment.simclr_views``, CIFAR preset, 32×32), both through
``TwoViews(encoder)`` in one forward under the variant's autocast and memory layout, the
method's ``terms`` (``tase.methods`` policies), ``per_anchor_loss`` then ``mean_over_anchors``,
the trainer's finiteness check, backward, and an SGD step (momentum, weight decay).

- SimCLR: the ``SimCLR`` policy, one scalar τ0 = 0.2.
- TASE: the ``TASE`` policy after its ramp, with long-tailed pseudo-labels of N = 11,165 images
  (CIFAR-10-LT's size, K = 10): a (2B,) tensor of per-sample temperatures and a (2B,) tensor of
  negative weights gathered for the batch. TASE/SimCLR is the ratio of step times (its overhead).

Both methods share one model and optimiser per architecture and variant and are timed
alternately within each repetition, so background load hits both alike. A repetition is
``--steps`` steps after ``--warmup`` untimed steps per method (compilation happens there); CUDA
is synchronised before every clock read. Variants: ``fp32`` or ``bf16`` (autocast; the loss
always runs in float32), ``+cl`` channels_last weights and views, ``+compile`` ``torch.compile``
of the two-view forward (as ``run.compile`` does). ``--compile`` (default on CUDA, opt-in on CPU
where it takes minutes) adds the last variant with ``+compile``; a compile failure is reported
and the variant skipped. ``--model-only`` adds a SimCLR row whose views are made once, outside
the clock: the model's share of a step, and the GPU step of a pipeline that augments elsewhere.
Before each architecture's table, "loss alone" times ``terms`` and the loss forward and backward
on fixed random projections (d = 128, 20 calls per repetition, 100 on CUDA): TASE's extra work
without the network's noise. images/s counts images (each gives two views); ``--json`` writes
every repetition (gpu_check.sh reads it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tase import config as C  # noqa: E402
from tase.augment import cifar_params, simclr_views  # noqa: E402
from tase.losses import mean_over_anchors, per_anchor_loss  # noqa: E402
from tase.methods import TwoViews, build_policy  # noqa: E402
from tase.models import build_model  # noqa: E402

SIZE = 32  # CIFAR-sized views for every architecture (--size changes it)
N_SAMPLES = 11_165  # CIFAR-10-LT training images of the paper's run
N_CLUSTERS = 10
# CPU defaults that keep the whole script to minutes (a ResNet-18 step at batch 64 is seconds).
CPU_BATCH = {"small": 128, "resnet18": 64, "resnet50": 16}
PROJ_DIM = 128


@dataclass(frozen=True)
class Variant:
    name: str
    bf16: bool
    channels_last: bool
    compile: bool


def parse_variant(name: str) -> Variant:
    precision, *flags = name.split("+")
    if precision not in ("fp32", "bf16") or not set(flags) <= {"cl", "compile"}:
        raise SystemExit(
            f"variant {name!r}: expected fp32 or bf16, optionally followed by +cl and +compile"
        )
    return Variant(name, precision == "bf16", "cl" in flags, "compile" in flags)


def policies(device: torch.device):
    """The SimCLR and TASE policies; TASE's with long-tailed pseudo-labels, past its ramp."""
    cfg = C.TrainConfig(
        method=C.MethodConfig(name="tase", warmup_epochs=0, ramp_epochs=1, recluster_every=5)
    )
    tase = build_policy(cfg, N_SAMPLES, N_CLUSTERS, device)
    g = torch.Generator().manual_seed(0)
    share = 100.0 ** (-torch.arange(N_CLUSTERS) / (N_CLUSTERS - 1))
    labels = torch.multinomial(share, N_SAMPLES, replacement=True, generator=g)
    tase.set_clustering(0, labels, torch.bincount(labels, minlength=N_CLUSTERS))
    simclr = build_policy(cfg.replace(method={"name": "simclr"}), N_SAMPLES, N_CLUSTERS, device)
    return {"SimCLR": simclr, "TASE": tase}


class Step:
    """One architecture and variant: a model, its optimiser, and the step of each method."""

    def __init__(self, arch: str, variant: Variant, batch: int, size: int, device: torch.device):
        self.variant, self.device = variant, device
        torch.manual_seed(0)
        encoder = build_model(arch, size).to(device)
        if variant.channels_last:
            encoder = encoder.to(memory_format=torch.channels_last)
        self.module = TwoViews(encoder)
        self.forward = torch.compile(self.module) if variant.compile else self.module
        # A small learning rate keeps random-data training finite over many steps.
        self.optimizer = torch.optim.SGD(
            self.module.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4
        )
        g = torch.Generator().manual_seed(1)
        pool = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
        self.images = pool.to(device)
        self.indices = torch.randperm(N_SAMPLES, generator=g)[:batch].to(device)
        self.params = cifar_params(size)
        self.epoch = 0
        self.fixed_views = None

    def views(self, fixed: bool):
        if fixed:
            if self.fixed_views is None:
                self.fixed_views = self.make_views()
            return self.fixed_views
        return self.make_views()

    def make_views(self):
        self.epoch += 1  # fresh randomness at every step, as across epochs
        v1, v2 = simclr_views(self.images, self.params, 0, self.epoch, self.indices)
        if self.variant.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        return v1, v2

    def __call__(self, policy, fixed_views: bool = False) -> None:
        v1, v2 = self.views(fixed_views)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.variant.bf16):
            _, z1, _, z2 = self.forward(v1, v2)
        tau, neg_weight, anchor_weight = policy.terms(self.indices, 10)
        per_anchor = per_anchor_loss(z1.float(), z2.float(), tau, neg_weight)
        loss = mean_over_anchors(per_anchor, anchor_weight)
        if torch.isfinite(loss):  # the trainer's check (one host sync per step)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step: Step, arms: dict, args, batch: int) -> dict[str, list[float]]:
    """images/s of each repetition for every arm ``name -> (policy, fixed_views)``."""
    for policy, fixed in arms.values():
        for _ in range(args.warmup):
            step(policy, fixed)
    sync(step.device)
    rates: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, (policy, fixed) in arms.items():
            sync(step.device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step(policy, fixed)
            sync(step.device)
            rates[name].append(args.steps * batch / (time.perf_counter() - start))
    return rates


def measure_loss(arms_of: dict, batch: int, device: torch.device, args) -> dict[str, list[float]]:
    """Microseconds of ``terms`` + loss forward and backward alone, on fixed projections."""
    g = torch.Generator().manual_seed(2)
    z1, z2 = (
        torch.randn(batch, PROJ_DIM, generator=g).to(device).requires_grad_() for _ in range(2)
    )
    indices = torch.randperm(N_SAMPLES, generator=g)[:batch].to(device)
    calls = 100 if device.type == "cuda" else 20

    def run(policy) -> None:
        for _ in range(calls):
            tau, neg_weight, anchor_weight = policy.terms(indices, 10)
            mean_over_anchors(per_anchor_loss(z1, z2, tau, neg_weight), anchor_weight).backward()

    for policy in arms_of.values():
        run(policy)
    times: dict[str, list[float]] = {name: [] for name in arms_of}
    for _ in range(args.repeats):
        for name, policy in arms_of.items():
            sync(device)
            start = time.perf_counter()
            run(policy)
            sync(device)
            times[name].append((time.perf_counter() - start) / calls * 1e6)
    return times


def spread(rates: list[float]) -> str:
    return f"{statistics.median(rates):>8,.0f} [{min(rates):,.0f}-{max(rates):,.0f}]"


def write_json(path: str, device: torch.device, records: list[dict]) -> None:
    blob = {"device": str(device), "torch": torch.__version__, "records": records}
    Path(path).write_text(json.dumps(blob, indent=1))


def print_environment(device: torch.device, args) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}; {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}; device {device} ({name}); load average "
        f"{os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"{args.size}×{args.size} CIFAR-preset views; {args.repeats} repetitions of "
        f"{args.steps} steps after {args.warmup} warm-up steps per method; "
        "images/s median [min-max]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="images per step (default 512 on CUDA; on CPU "
        + ", ".join(f"{a} {b}" for a, b in CPU_BATCH.items())
        + ")",
    )
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (CUDA), 3 (CPU)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per repetition (default 10 on CUDA, 1 on CPU)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed steps per method first (default 3 on CUDA, 1 on CPU)",
    )
    parser.add_argument("--archs", default="small,resnet18")
    parser.add_argument("--size", type=int, default=SIZE, help="image and view side")
    parser.add_argument(
        "--variants",
        default="fp32,fp32+cl,bf16,bf16+cl",
        help="comma-separated: fp32|bf16, then optionally +cl and +compile",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the last variant with +compile (default: on for CUDA only)",
    )
    parser.add_argument(
        "--model-only",
        action="store_true",
        help="add SimCLR with views made once, outside the clock",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--json", default=None, help="also write every measurement here")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.repeats = args.repeats or (5 if cuda else 3)
    args.steps = args.steps or (10 if cuda else 1)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    variants = [parse_variant(v) for v in args.variants.split(",")]
    add_compile = cuda if args.compile is None else args.compile
    if add_compile and not variants[-1].compile:
        variants.append(parse_variant(variants[-1].name + "+compile"))

    print_environment(device, args)
    arms_of = policies(device)
    records = []
    loss_done: set[int] = set()
    for arch in args.archs.split(","):
        batch = args.batch or (512 if cuda else CPU_BATCH.get(arch, 64))
        print(f"\n{arch}, batch {batch}")
        if batch not in loss_done:
            loss_done.add(batch)
            us = measure_loss(arms_of, batch, device, args)
            simclr, tase = statistics.median(us["SimCLR"]), statistics.median(us["TASE"])
            print(
                f"loss alone (terms, forward, backward; float32, d={PROJ_DIM}): SimCLR "
                f"{simclr:,.0f} µs, TASE {tase:,.0f} µs per step (medians): TASE/SimCLR "
                f"{tase / simclr:.2f}×, TASE − SimCLR {tase - simclr:,.0f} µs"
            )
            records += [
                {
                    "arch": "loss",
                    "variant": "fp32",
                    "batch": batch,
                    "method": name,
                    "microseconds": values,
                    "median": statistics.median(values),
                }
                for name, values in us.items()
            ]
        header = f"{'variant':<18} {'SimCLR images/s':>24} {'TASE images/s':>24}  TASE/SimCLR"
        header += f"  {'vs ' + variants[0].name:>9}"
        print(header + ("  SimCLR, views given" if args.model_only else ""))
        baseline = None
        for variant in variants:
            arms = {name: (policy, False) for name, policy in arms_of.items()}
            if args.model_only:
                arms["SimCLR, views given"] = (arms_of["SimCLR"], True)
            try:
                step = Step(arch, variant, batch, args.size, device)
                rates = measure(step, arms, args, batch)
            except Exception as error:  # compile and bf16 support vary by platform and version
                if not variant.compile:
                    raise
                message = str(error).strip().splitlines()[0][:160] if str(error) else ""
                print(
                    f"{variant.name:<18} skipped: torch.compile failed "
                    f"({type(error).__name__}: {message})"
                )
                continue
            simclr, tase = statistics.median(rates["SimCLR"]), statistics.median(rates["TASE"])
            baseline = baseline or simclr
            line = (
                f"{variant.name:<18} {spread(rates['SimCLR']):>24} {spread(rates['TASE']):>24}"
                f"  {simclr / tase:>10.3f}×  {simclr / baseline:>8.2f}×"
            )
            if args.model_only:
                line += f"  {spread(rates['SimCLR, views given'])}"
            print(line, flush=True)
            records += [
                {
                    "arch": arch,
                    "variant": variant.name,
                    "batch": batch,
                    "method": name,
                    "images_per_s": values,
                    "median": statistics.median(values),
                }
                for name, values in rates.items()
            ]
            del step
            if cuda:
                torch.cuda.empty_cache()
            if args.json:  # after every variant, so a run stopped later keeps what it measured
                write_json(args.json, device, records)
    print(
        f"\nTASE/SimCLR: step time ratio (> 1: TASE slower); vs {variants[0].name}: SimCLR "
        f"speed-up over the first variant. Load average {os.getloadavg()[0]:.2f} at end"
    )


if __name__ == "__main__":
    main()
