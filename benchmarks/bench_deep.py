"""Deep-feature throughput: ovfdlr's extraction against a bare torchvision ResNet-50 forward.

On prepared inputs of the synthetic cohort, in one run, for batch sizes 1, 16 and 32:

- ``ovfdlr``: :func:`ovfdlr.deep.features.embed` (normalisation, batching, inference mode,
  the 2048-D pooled output) with a seeded ResNet-50;
- ``bare``: ``torchvision.models.resnet50()`` called on the same, already normalised tensors
  under ``torch.inference_mode``.

Input preparation (reading the CT, sampling the mid-sagittal plane, windowing) is timed
separately, per case. Reports images per second (median of ``--repeats`` passes of each, timed
in turn after a warm-up), the median ratio over those pairs, and the peak resident memory.
``--device cuda`` runs both on a GPU; ``--mixed-precision`` autocasts ovfdlr's side.

    python benchmarks/bench_deep.py --n 64
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from ovfdlr.cohort import load_manifest
from ovfdlr.deep.backbones import load_backbone
from ovfdlr.deep.features import embed
from ovfdlr.deep.inputs import InputSettings, normalize, prepare_case
from ovfdlr.synthetic import generate_cohort


def paired(fn_a, fn_b, n: int, repeats: int, synchronize) -> tuple[float, float, float]:
    """Median images/s of a and b, timed in turn (a, b, a, b ...), and the median a/b ratio of
    speeds over the pairs, so machine drift affects both alike."""

    def once(fn) -> float:
        start = time.perf_counter()
        fn()
        synchronize()
        return time.perf_counter() - start

    once(fn_a), once(fn_b)  # warm-up
    pairs = [(once(fn_a), once(fn_b)) for _ in range(repeats)]
    speed_a = [n / a for a, _ in pairs]
    speed_b = [n / b for _, b in pairs]
    ratio = [b / a for a, b in pairs]
    return statistics.median(speed_a), statistics.median(speed_b), statistics.median(ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--mixed-precision", action="store_true", help="autocast ovfdlr's side (not the bare one)"
    )
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    work = args.work or Path(tempfile.mkdtemp(prefix="ovfdlr-bench-deep-"))
    if not (work / "manifest.csv").is_file():
        generate_cohort(work, args.n, seed=0, jobs=0, progress=False)
    cohort = load_manifest(work / "manifest.csv")
    settings = InputSettings()
    start = time.perf_counter()
    images = np.stack(
        [prepare_case(r.image, r.mask, r.mask_label, settings).image for r in cohort.itertuples()]
    )
    preparation = (time.perf_counter() - start) / len(cohort)

    backbone = load_backbone("random:0")
    backbone.model.to(device)
    bare = torchvision.models.resnet50(weights=None).eval().to(device)
    bare.load_state_dict(
        {**backbone.model.state_dict(), **{f"fc.{k}": v for k, v in bare.fc.state_dict().items()}}
    )
    bare.fc = torch.nn.Identity()
    normalised = torch.from_numpy(normalize(images, "imagenet")).to(device)

    def ours(batch):
        return lambda: embed(
            backbone.model,
            images,
            "imagenet",
            batch,
            device=device.type,
            mixed_precision=args.mixed_precision,
        )

    def plain(batch):
        def run():
            with torch.inference_mode():
                for i in range(0, len(normalised), batch):
                    bare(normalised[i : i + batch]).float().cpu()

        return run

    print(f"device: {device}, torch threads: {torch.get_num_threads()}, images: {len(images)}")
    print(f"input preparation: {preparation * 1000:.1f} ms per case ({1 / preparation:.1f}/s)")
    print(f"{'batch':>5s} {'ovfdlr img/s':>13s} {'bare img/s':>11s} {'ovfdlr/bare':>12s}")
    for batch in (1, 16, 32):
        a, b, ratio = paired(ours(batch), plain(batch), len(images), args.repeats, synchronize)
        print(f"{batch:5d} {a:13.1f} {b:11.1f} {ratio:12.3f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
