"""Where the backbone runs: ``deep.device`` (``--device``) ``auto``, ``cpu`` or ``cuda``.

``cpu`` is the tested path and gives the same features as before the option existed, bit for
bit. ``cuda`` runs inference and fine-tuning on the first CUDA device; its float32 features
differ from the CPU's in the last bits (other kernels, other summation orders), so the device is
part of the features' cache key whenever it is not the CPU. ``auto`` takes CUDA when torch sees
a device and the CPU otherwise, and says so (``run.json``'s warnings and the report).

``mixed_precision`` (off by default) runs the forward pass under ``torch.autocast``: float16 on
CUDA, bfloat16 on the CPU. It trades the features' precision for speed: see docs/deep.md for its
measured effect on the 2048 features; it is part of the cache key.
"""

from __future__ import annotations

import contextlib

from ovfdlr.deep.errors import DeviceError

DEVICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(requested: str, option: str = "deep.device") -> tuple[str, str | None]:
    """(``cpu`` or ``cuda``, a note when ``auto`` fell back to the CPU).

    Raises :class:`DeviceError` for ``cuda`` where torch sees no CUDA device, and for a name
    that is not one of :data:`DEVICES`."""
    if requested not in DEVICES:
        raise DeviceError(f"{option}: '{requested}' is not one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return "cpu", None
    if cuda_available():
        return "cuda", None
    if requested == "cuda":
        import torch

        built = "built without CUDA" if torch.version.cuda is None else "sees no CUDA device"
        raise DeviceError(
            f"{option} cuda: no CUDA device here (torch {torch.__version__} {built}); use "
            "auto or cpu"
        )
    return "cpu", f"{option} auto: no CUDA device here, the deep features ran on the CPU"


def autocast(device: str, mixed_precision: bool):
    """The forward pass's precision context: nothing, or ``torch.autocast`` (float16 on CUDA,
    bfloat16 on the CPU)."""
    if not mixed_precision:
        return contextlib.nullcontext()
    import torch

    dtype = torch.float16 if device == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device, dtype=dtype)


def identity(device: str, mixed_precision: bool) -> dict:
    """What the device adds to a features' cache key: nothing for float32 on the CPU (so the
    features cached before the option existed stay valid)."""
    out = {}
    if device != "cpu":
        out["device"] = device
    if mixed_precision:
        out["mixed_precision"] = True
    return out
