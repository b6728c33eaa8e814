"""2-D inputs for the ResNet-50: plane choice, crop, window and normalisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ovfdlr.cli import app
from ovfdlr.cohort import load_manifest
from ovfdlr.deep.inputs import (
    InputError,
    InputSettings,
    normalize,
    prepare,
    prepare_case,
    window,
)
from ovfdlr.imaging import read_image, read_mask


@pytest.fixture(scope="module")
def cohort(synthetic_cohort):
    return load_manifest(synthetic_cohort / "manifest.csv")


def test_mid_sagittal_crop_hits_the_vertebral_body(cohort):
    fractions, offsets = [], []
    for case in cohort.itertuples():
        prepared = prepare_case(case.image, case.mask, case.mask_label, InputSettings())
        assert prepared.image.shape == (3, 224, 224)
        fractions.append(prepared.roi_fraction)
        rows, cols = np.nonzero(prepared.mask)
        offsets.append(np.hypot(rows.mean() - 111.5, cols.mean() - 111.5))
    fractions = np.asarray(fractions)
    # the ROI fills 40-80 % of the crop for a typical body; a collapsed (burst) body is flatter
    assert 0.40 <= np.median(fractions) <= 0.80, np.median(fractions)
    assert fractions.min() >= 0.15 and fractions.max() <= 0.80
    assert np.max(offsets) < 12  # the body is centred (pixels of 224)


def test_sagittal_plane_shows_height_not_width(cohort, synthetic_cohort):
    truth = pd.read_csv(synthetic_cohort / "truth.csv", index_col="case_id")
    case = cohort.loc[truth.index[truth["fracture_type"] == "none"][0]]
    image, mask = read_image(case["image"]), read_mask(case["mask"])
    sagittal = prepare(image, mask, InputSettings(plane="sagittal"))
    axial = prepare(image, mask, InputSettings(plane="axial"))
    rows, cols = np.nonzero(sagittal.mask)
    # sagittal: depth across (columns), height down (rows); depth > height for an intact body
    assert np.ptp(cols) > np.ptp(rows)
    rows, cols = np.nonzero(axial.mask)
    assert np.ptp(cols) > np.ptp(rows)  # axial: width across > depth down


def test_every_plane_option(cohort):
    case = cohort.iloc[0]
    image, mask = read_image(case["image"]), read_mask(case["mask"])
    results = {
        p: prepare(image, mask, InputSettings(plane=p))
        for p in ("sagittal", "axial", "coronal", "max-area", "2.5d")
    }
    for plane, prepared in results.items():
        assert prepared.image.shape == (3, 224, 224), plane
        assert prepared.image.min() >= 0.0 and prepared.image.max() <= 1.0
    assert np.array_equal(results["sagittal"].image[0], results["sagittal"].image[2])
    channels = results["2.5d"].image
    assert not np.allclose(channels[0], channels[1]) and not np.allclose(channels[1], channels[2])
    largest = prepare(image, mask, InputSettings(plane="max-area", margin=0.2))
    mid = results["sagittal"]
    # the max-area slice has at least the mid-plane's ROI area (same crop size)
    assert largest.mask.sum() >= mid.mask.sum() * 0.98


def test_window_values():
    hu = np.array([-1000.0, -500.0, 400.0, 1300.0, 3000.0])
    np.testing.assert_allclose(window(hu, 400, 1800), [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(window(np.array([40.0]), 40, 400), [0.5])


def test_normalisation_presets():
    x = np.full((1, 3, 2, 2), 0.5, np.float32)
    x[:, 0] = 1.0  # "red" channel differs so the BGR flip shows
    imagenet = normalize(x, "imagenet")
    assert imagenet[0, 0, 0, 0] == pytest.approx((1.0 - 0.485) / 0.229)
    assert imagenet[0, 2, 0, 0] == pytest.approx((0.5 - 0.406) / 0.225)
    keras = normalize(x, "radimagenet-keras")
    assert keras[0, 0, 0, 0] == pytest.approx((127.5 - 103.939) / 255)  # B channel first
    assert keras[0, 2, 0, 0] == pytest.approx((255.0 - 123.68) / 255)  # R last
    torch_style = normalize(x, "radimagenet-torch")
    assert torch_style[0, 0, 0, 0] == pytest.approx(0.0)
    assert torch_style[0, 2, 0, 0] == pytest.approx(1.0)
    with pytest.raises(InputError, match="normalization 'caffe'"):
        normalize(x, "caffe")


def test_bad_settings_are_named():
    with pytest.raises(InputError, match="plane 'oblique'"):
        InputSettings(plane="oblique")
    with pytest.raises(InputError, match="window width"):
        InputSettings(window_width=0)


def test_preview_writes_contact_sheets(synthetic_cohort, tmp_path):
    result = CliRunner().invoke(
        app,
        ["preview", str(synthetic_cohort / "manifest.csv"), "--out", str(tmp_path), "--jobs", "2"],
    )
    assert result.exit_code == 0, result.output
    sheets = sorted(tmp_path.glob("inputs-*.png"))
    assert len(sheets) == 2  # 48 cases, 36 per sheet
    from PIL import Image

    with Image.open(sheets[0]) as picture:
        assert picture.size[0] > 800 and np.asarray(picture).std() > 10
