"""Errors of the deep-feature stage, importable without importing torch."""


class WeightsError(ValueError):
    """Weights that cannot be loaded exactly; the message names the file and the tensors."""


class DeviceError(ValueError):
    """A compute device that is not here (``--device cuda`` without a CUDA device)."""
