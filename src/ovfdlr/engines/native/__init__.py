"""The native radiomics engine: PyRadiomics' features and names, computed here, faster.

Why it exists: PyRadiomics spends most of a case on work that is repeated or serial (each of
six feature classes re-bins each filtered image; each texture matrix is a full pass over the
voxels per angle in C that holds the GIL; features are computed in Python loops). This engine
prepares the image with the same library calls (:mod:`.imageops`: SimpleITK resampling and
filters, PyWavelets), bins each filtered image once and shares it across the classes, counts
the texture matrices in numba kernels that release the GIL (GLCM, GLDM and NGTDM in one pass
over the ROI; GLRLM and GLSZM in one each) and computes the features from the matrices with
numpy. Values equal PyRadiomics' (``tests/test_native_engine.py``; docs/radiomics.md).

Per case: the label's mask, normalisation, resampling or pre-crop, the ROI checks and bounding
box, re-segmentation, shape on the cropped mask, then for every image type and filtered image
the crop to the bounding box, the discretisation and the feature classes; the column names and
their order are PyRadiomics' (``<image>_<class>_<Feature>``).
"""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import SimpleITK as sitk

from ovfdlr.engines.base import CaseFeatures, check_inputs, roi_error
from ovfdlr.engines.native import imageops
from ovfdlr.engines.native.support import check_supported
from ovfdlr.engines.native.texture import compute_classes

NAME = "native"
NEIGHBOURHOOD = ("glcm", "gldm", "ngtdm")


def version() -> str:
    from ovfdlr import __version__

    return f"{NAME} {__version__}"


def _module(name: str):
    return importlib.import_module(f"ovfdlr.engines.native.{name}")


class NativeEngine:
    """PyRadiomics' features for one image and mask; ``threads`` > 1 computes the filtered
    images' features in that many threads (the kernels release the GIL)."""

    name = NAME

    def __init__(self, params: dict[str, Any], threads: int = 1):
        self.params = params
        self.resolved = check_supported(params)
        self.version = version()
        self.threads = max(1, int(threads))
        # Image types and classes in alphabetical order: the column order ovfdlr's tables have
        # always had (its PyRadiomics extractor is built from the parameters with sorted keys).
        classes = dict(sorted(self.resolved["featureClass"].items()))
        self._image_types = dict(sorted(self.resolved["imageType"].items()))
        self._classes = {
            name: (_module(name), features or None)
            for name, features in classes.items()
            if name not in ("shape", "shape2D")  # shape2D: nothing without force2D (refused)
        }
        self._shape = (_module("shape"), classes["shape"] or None) if "shape" in classes else None

    def extract(self, image: sitk.Image, mask: sitk.Image, label: int) -> CaseFeatures:
        settings = dict(self.resolved["setting"], label=int(label))
        check_inputs(image, mask, settings)
        try:
            return self._extract(image, mask, int(label), settings)
        except imageops.ROIError as exc:
            message = str(exc).splitlines()[0]
            raise roi_error(label, settings.get("resampledPixelSpacing"), message) from exc

    def _extract(
        self, image: sitk.Image, mask: sitk.Image, label: int, settings: dict[str, Any]
    ) -> CaseFeatures:
        original_spacing, original_size = image.GetSpacing(), image.GetSize()
        mask = imageops.label_mask(mask, label)
        # Original alone reads no voxel outside the ROI's box: resample only that box
        roi_only = set(self._image_types) == {"Original"}
        image, mask, same_grid = imageops.prepare(image, mask, settings, label, roi_only)
        box, corrected = imageops.check_mask(image, mask, settings, label, same_grid)
        if corrected is not None:
            mask = corrected
        resegmented = None
        if settings.get("resegmentRange") is not None:
            resegmented = imageops.resegment(image, mask, settings, label)
            box, _ = imageops.check_mask(image, resegmented, settings, label, True)
        window = (slice(box[4], box[5] + 1), slice(box[2], box[3] + 1), slice(box[0], box[1] + 1))
        spacing = tuple(image.GetSpacing())
        roi_mask = resegmented if resegmented is not None else mask
        roi = sitk.GetArrayViewFromImage(roi_mask)[window] == label
        features: dict[str, float] = {}
        if self._shape is not None:
            module, names = self._shape
            # shape reads the mask before re-segmentation unless resegmentShape says otherwise
            shape_roi = (
                sitk.GetArrayViewFromImage(mask)[window] == label
                if resegmented is not None and not settings.get("resegmentShape")
                else roi
            )
            for feature, value in module.compute(shape_roi, spacing, settings, names).items():
                features[f"original_shape_{feature}"] = value
        jobs = []
        for image_type, custom in self._image_types.items():
            type_settings = dict(settings, **custom)
            for filtered, image_name in imageops.filtered_images(image, image_type, type_settings):
                array = (
                    filtered
                    if isinstance(filtered, np.ndarray)
                    else sitk.GetArrayViewFromImage(filtered)
                )
                jobs.append((image_name, np.array(array[window]), type_settings))
        if self.threads > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                results = list(pool.map(lambda job: self._image_features(job, roi, spacing), jobs))
        else:
            results = [self._image_features(job, roi, spacing) for job in jobs]
        for result in results:
            features.update(result)
        diagnostics = {
            "diagnostics_Versions_Engine": self.version,
            "diagnostics_Configuration_Settings": str(settings),
            "diagnostics_Configuration_EnabledImageTypes": str(self.resolved["imageType"]),
            "diagnostics_Image-original_Spacing": str(tuple(original_spacing)),
            "diagnostics_Image-original_Size": str(tuple(original_size)),
            "diagnostics_Image-interpolated_Spacing": str(spacing),
            "diagnostics_Image-interpolated_Size": str(tuple(image.GetSize())),
            "diagnostics_Mask-interpolated_BoundingBox": str(tuple(int(b) for b in box)),
            "diagnostics_Mask-interpolated_VoxelNum": str(int(roi.sum())),
        }
        return CaseFeatures(features, diagnostics)

    def _image_features(
        self, job: tuple[str, np.ndarray, dict[str, Any]], roi: np.ndarray, spacing
    ) -> dict[str, float]:
        """Every feature class on one filtered image, binned once for all of them."""
        image_name, array, settings = job
        try:
            binned, _ = imageops.discretize(array, roi, settings)
        except imageops.ROIError as exc:
            raise imageops.ROIError(f"{image_name} image: {exc}") from exc
        neighbourhood = {
            name: names for name, (_, names) in self._classes.items() if name in NEIGHBOURHOOD
        }
        # GLCM, GLDM and NGTDM from one pass over the ROI
        shared = (
            compute_classes(binned, roi, spacing, settings, neighbourhood) if neighbourhood else {}
        )
        out: dict[str, float] = {}
        for class_name, (module, names) in self._classes.items():
            if class_name in shared:
                values = shared[class_name]
            elif class_name == "firstorder":
                values = module.compute(array, binned, roi, spacing, settings, names)
            else:
                values = module.compute(binned, roi, spacing, settings, names)
            for feature, value in values.items():
                out[f"{image_name}_{class_name}_{feature}"] = value
        return out


def warm_up() -> None:
    """Load (or, on a machine's first run, compile) every kernel the engine uses, on a tiny
    synthetic case, so that the first real case pays nothing extra (a resident service, or a
    benchmark that tells start-up from steady state)."""
    values = np.zeros((12, 12, 12), dtype=np.int16)
    values[3:9, 3:9, 3:9] = np.arange(216, dtype=np.int16).reshape(6, 6, 6) * 7
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.8, 0.8, 1.2))
    roi = np.zeros((12, 12, 12), dtype=np.uint8)
    roi[3:9, 3:9, 3:9] = 1
    mask = sitk.GetImageFromArray(roi)
    mask.CopyInformation(image)
    params = {
        "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}},
        "setting": {"resampledPixelSpacing": [1, 1, 1], "padDistance": 2, "binWidth": 25},
    }
    NativeEngine(params).extract(image, mask, 1)


Engine = NativeEngine


def check(params: dict[str, Any]) -> None:
    """What the native engine does not compute, refused (:mod:`.support`)."""
    check_supported(params)
