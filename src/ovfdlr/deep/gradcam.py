"""Grad-CAM heat maps of a fine-tuned model over its prepared inputs.

Grad-CAM (Selvaraju et al., ICCV 2017): for class c, the feature maps ``A^k`` of the last
residual block are weighted by the spatial mean of the gradient of the class score,
``alpha_k = mean_ij dy_c / dA^k_ij``, and ``L = ReLU(sum_k alpha_k A^k)`` is upsampled to the
input and scaled to [0, 1]. Computed with the ``grad-cam`` package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ovfdlr.atomic import atomic_path


def grad_cam(backbone, head, images: np.ndarray, targets: list[int] | None = None) -> np.ndarray:
    """Heat maps (N, H, W) in [0, 1] for prepared images (N, 3, H, W) in [0, 1].

    ``backbone`` is the fine-tuned :class:`ovfdlr.deep.backbones.Backbone` and ``head`` its
    3-class linear head; ``targets`` are the classes to explain (default: each image's
    predicted class).
    """
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from ovfdlr.deep.inputs import normalize

    model = torch.nn.Sequential(backbone.model, head).eval()
    layer = backbone.model.layer4[-1]
    x = torch.from_numpy(normalize(images, backbone.normalization))
    if targets is None:
        with torch.inference_mode():
            targets = model(x).argmax(1).tolist()
    with GradCAM(model=model, target_layers=[layer]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return np.asarray(maps, dtype=np.float32)


def save_overlays(
    images: np.ndarray,
    maps: np.ndarray,
    names: list[str],
    folder: str | Path,
    titles: list[str] | None = None,
) -> list[Path]:
    """One PNG per case: the input's first channel in grey with the heat map over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, name in enumerate(names):
        figure, axes = plt.subplots(1, 2, figsize=(6, 3.2))
        axes[0].imshow(images[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[1].imshow(images[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[1].imshow(maps[i], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        for axis in axes:
            axis.axis("off")
        figure.suptitle(titles[i] if titles else name, fontsize=9)
        figure.tight_layout()
        path = folder / f"gradcam-{name}.png"
        try:  # each file renamed into place when complete
            with atomic_path(path) as temporary:
                figure.savefig(temporary, format="png", dpi=100)
            with atomic_path(path.with_suffix(".svg")) as temporary:
                figure.savefig(temporary, format="svg", dpi=100, metadata={"Date": None})
        finally:
            plt.close(figure)
        written.append(path)
    return written
