"""Small CT DICOM series written with pydicom, for tests of reading, checks and de-identification.

:func:`write_ct_series` writes one uncompressed CT Image Storage file per slice from a numpy
(z, y, x) array of HU values. Every file carries the patient identifiers of
:data:`IDENTIFIERS` (distinctive values that no other test data hold), so a test can search any
output for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

# DICOM attributes that identify the patient, with values that appear nowhere else
IDENTIFIERS: dict[str, str] = {
    "PatientName": "Zzyzx^Quentavious",
    "PatientID": "PID-7Q4Z-93X1",
    "PatientBirthDate": "19310317",
    "AccessionNumber": "ACC-Q8W3-55K0",
    "InstitutionName": "Quillfeather Marsh Infirmary",
}


def write_ct_series(
    folder: Path,
    hu: np.ndarray,
    spacing: Sequence[float] = (0.8, 0.8, 2.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    series_uid: str | None = None,
    description: str = "CT test series",
    identifiers: dict[str, str] | None = None,
    rescale: bool = True,
    tilt_degrees: float = 0.0,
    edit: Callable[[int, Dataset], None] | None = None,
) -> list[Path]:
    """Write ``hu`` (z, y, x, HU) as a CT series in ``folder`` (one file per slice).

    ``spacing`` is (x, y, z) in mm; slices are axial (ImageOrientationPatient 1 0 0 0 1 0),
    slice k at ``origin + k * spacing_z`` along z. Stored values are HU + 1024 with Rescale
    Slope 1 and Intercept -1024; ``rescale=False`` stores the same values but leaves both
    attributes out, as a series that lost them would (a reader then sees HU + 1024).
    ``tilt_degrees`` shifts each slice along y by ``z * tan(tilt)`` and records Gantry/Detector
    Tilt, as a tilted-gantry acquisition does. ``edit(k, dataset)`` may change slice k before it
    is written. Returns the paths written, in slice order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    identifiers = IDENTIFIERS if identifiers is None else identifiers
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    frame_uid = generate_uid()
    hu = np.asarray(hu)
    shift = np.tan(np.radians(tilt_degrees))
    paths = []
    for k, plane in enumerate(hu):
        z = float(origin[2]) + k * float(spacing[2])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesDescription = description
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        for name, value in identifiers.items():
            setattr(ds, name, value)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        y0 = float(origin[1]) + (z - float(origin[2])) * shift
        ds.ImagePositionPatient = [float(origin[0]), float(f"{y0:.14g}"), z]
        ds.GantryDetectorTilt = tilt_degrees
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # row, column
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        if rescale:
            ds.RescaleSlope = 1
            ds.RescaleIntercept = -1024
        stored = np.clip(np.round(plane) + 1024, 0, 65535).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        if edit is not None:
            edit(k, ds)
        path = folder / f"slice{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def ct_phantom(shape: Sequence[int] = (12, 16, 16), seed: int = 0) -> np.ndarray:
    """A small CT-like volume in HU: air around a soft-tissue block with a bone cube."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    hu = np.full(shape, -1000.0)
    hu[:, 2 : y - 2, 2 : x - 2] = rng.normal(40, 10, (z, y - 4, x - 4))
    hu[2 : z - 2, 5 : y - 5, 5 : x - 5] += 300
    return np.round(hu)
