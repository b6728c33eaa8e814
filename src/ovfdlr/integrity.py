"""Input checks: is an image or label-map file complete and consistent, and what did ITK say
while reading it?

ITK reads some broken inputs without complaint: a ``.nii.gz`` cut short is filled with zeros,
as is an uncompressed NIfTI file holding fewer voxels than its header promises; a corrupt
compressed MetaImage stream is read anyway (MetaIO prints "Uncompress failed"); a negative
MetaImage spacing becomes a flipped axis and a NaN offset becomes 0; a NaN in a NIfTI sform
becomes a NaN direction; and a DICOM series with a slice missing is stacked with the average
slice distance (ITK prints a warning to stderr and goes on). :mod:`ovfdlr.imaging` runs the
checks of this module around every read, so validation, every feature stage, the previews and
``predict`` either get the complete image or a refusal that names its check.

Every check has a name (:data:`CHECKS`) and a severity: an ``error`` refuses the input
(:class:`ovfdlr.imaging.InputCheckError`); a ``warning`` keeps it and is reported by
``ovfdlr validate``. The checks are cheap: headers are parsed from their first bytes, a
compressed stream is decompressed once (and only once per file and process: the verdict is
remembered by path, size, modification time and inode) without keeping its output, and the
DICOM checks use the per-slice headers the series reader has already parsed.

ITK's own messages are captured while a file is read (ITK's output window is redirected to a
collector, and anything native code writes to the stderr file descriptor is caught as well), so
nothing is left on stderr; each message maps to a named check (:data:`ITK_MESSAGES`), and one
that maps to none fails as ``itk-warning`` with its text rather than passing silently.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

Severity = Literal["error", "warning"]

CHECKS: dict[str, tuple[Severity, str]] = {
    "truncated-file": (
        "error",
        "a compressed stream (.nii.gz, NRRD with gzip encoding, compressed MHA/MHD data) ends "
        "before its end marker: the file was cut short",
    ),
    "corrupt-stream": (
        "error",
        "a compressed stream does not decompress or fails its check (gzip CRC-32 and length, "
        "zlib Adler-32)",
    ),
    "voxel-count": (
        "error",
        "the file (or its decompressed stream, or its .raw / detached data file) holds fewer "
        "bytes than the header's size and voxel type promise",
    ),
    "header-spacing": (
        "error",
        "a voxel spacing in the header (NIfTI pixdim, MetaImage ElementSpacing, NRRD spacings "
        "or space directions) or of the image read is zero, negative or not a number",
    ),
    "header-direction": (
        "error",
        "direction cosines that are not orthonormal: a NIfTI sform with shear or with scales "
        "that disagree with pixdim (ITK falls back to the qform), a skewed MetaImage "
        "TransformMatrix or NRRD space directions",
    ),
    "header-affine": (
        "error",
        "NaN or infinity in the header's affine (NIfTI sform / qform, MetaImage Offset or "
        "TransformMatrix, NRRD space origin) or in the origin / direction read",
    ),
    "dicom-several-series": (
        "error",
        "the folder holds more than one DICOM series and the manifest's series_uid chooses "
        "none (the message lists each series with its slice count and description)",
    ),
    "dicom-series-uid": ("error", "the manifest's series_uid is not a series of the folder"),
    "dicom-missing-slice": (
        "error",
        "a gap between slice positions that is a multiple of the slice spacing: slices missing",
    ),
    "dicom-duplicate-slice": (
        "error",
        "two slices at the same position, or the same SOP Instance UID twice",
    ),
    "dicom-slice-spacing": (
        "error",
        "slice positions not evenly spaced (beyond SLICE_SPACING_TOLERANCE of the spacing)",
    ),
    "dicom-mixed-orientation": (
        "error",
        "Image Orientation (Patient) differs between slices of the series",
    ),
    "dicom-mixed-pixel-spacing": ("error", "Pixel Spacing differs between slices of the series"),
    "dicom-mixed-matrix": ("error", "Rows / Columns differ between slices of the series"),
    "dicom-gantry-tilt": (
        "warning",
        "slice positions offset along the slices' plane (a tilted gantry); read as is: ITK "
        "does not resample, so the volume is sheared by the tilt",
    ),
    "dicom-no-rescale": (
        "warning",
        "slices without Rescale Slope / Intercept: their stored values are read as they are",
    ),
    "ct-values": (
        "warning",
        "voxel values implausible for calibrated CT: no negative value at all (air is -1000 "
        "HU) and a maximum of 1024 or more, the form of stored values without their rescale",
    ),
    "mask-not-integer": ("error", "a label map with non-integer (or non-finite) values"),
    "mask-negative": ("error", "a label map with negative values"),
    "mask-is-image": (
        "error",
        "a 'mask' whose values look like an image: HU-like values (-500 or lower), more than "
        "1000 distinct values, or hardly any background (under 5 % zeros) with more than 16 "
        "distinct values",
    ),
    "itk-warning": (
        "error",
        "ITK (or a library under it) printed a message while reading that maps to no other check",
    ),
}

SLICE_SPACING_TOLERANCE = 0.01
"""Largest deviation of a gap between DICOM slice positions from the series' slice spacing, as
a fraction of the spacing (also given to ITK's series reader as its warning threshold)."""

ORIENTATION_TOLERANCE = 1e-4  # direction cosines (absolute)
PIXEL_SPACING_TOLERANCE = 1e-4  # relative
DIRECTION_TOLERANCE = 1e-4  # largest |D'D - I| of an image's direction matrix
GANTRY_TILT_DEGREES = 0.05  # smaller offsets are rounding of the positions

# ITK's (and its libraries') messages -> the check each one is about
ITK_MESSAGES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"Non uniform sampling or missing slices"), "dicom-slice-spacing"),
    (re.compile(r"unexpected scales in sform"), "header-direction"),
    (re.compile(r"No orthonormal definition found"), "header-direction"),
    (re.compile(r"Zero-valued spacing"), "header-spacing"),
    (re.compile(r"data not read completely"), "voxel-count"),
    (re.compile(r"Uncompress failed"), "corrupt-stream"),
    (re.compile(r"_nrrdGzRead|error reading from gzFile"), "corrupt-stream"),
    (re.compile(r"vnl_svd|suspicious return value"), "header-affine"),
)
# ITK messages that a check of this module has already explained in more detail
_EXPLAINED_BY = {
    "dicom-slice-spacing": {"dicom-missing-slice", "dicom-duplicate-slice", "dicom-slice-spacing"},
}


@dataclass(frozen=True)
class Finding:
    """One check's verdict on one file: the check's name, what was found, and its severity."""

    check: str
    message: str
    severity: Severity = "error"


def finding(check: str, message: str) -> Finding:
    """A :class:`Finding` of a named check, with the check's severity."""
    return Finding(check, message, CHECKS[check][0])


def errors(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def warnings(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "warning"]


def stat_key(path: Path) -> tuple:
    """What identifies a file's content without reading it: path, size, mtime and inode."""
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


# ---------------------------------------------------------------------------------------------
# compressed streams


@dataclass(frozen=True)
class _Stream:
    """What decompressing a stream found: its length, its first bytes, and any problem."""

    length: int
    head: bytes
    problem: Finding | None = None


_STREAMS: dict[tuple, _Stream] = {}
_CHUNK = 1 << 20
_OUTPUT_LIMIT = 16 << 20  # decompressed bytes per step: bounds memory for highly compressed data
GZIP = 31  # zlib's wbits for a gzip stream
ZLIB_OR_GZIP = 47  # automatic header detection


def _inflate(path: Path, offset: int, wbits: int, head_size: int, kind: str) -> _Stream:
    """Decompress the stream from ``offset`` to its end without keeping the output.

    Multi-member gzip streams are followed member by member; bytes after the last member are
    ignored (as gzip does). Remembered per file (path, size, mtime, inode) in this process.
    """
    key = (stat_key(path), offset, wbits, head_size)
    found = _STREAMS.get(key)
    if found is not None:
        return found
    head = bytearray()
    length = 0
    problem = None
    decompressor = zlib.decompressobj(wbits)
    with path.open("rb") as handle:
        handle.seek(offset)
        pending = b""
        while True:
            if not pending:
                pending = handle.read(_CHUNK)
                if not pending:
                    break
            try:
                out = decompressor.decompress(pending, _OUTPUT_LIMIT)
            except zlib.error as exc:
                problem = finding(
                    "corrupt-stream",
                    f"{kind} stream is corrupt: {exc} (after {length} bytes decompressed)",
                )
                break
            length += len(out)
            if len(head) < head_size:
                head += out[: head_size - len(head)]
            pending = decompressor.unconsumed_tail
            if decompressor.eof:
                rest = decompressor.unused_data + pending
                if wbits == GZIP and rest[:2] == b"\x1f\x8b":  # another gzip member
                    decompressor = zlib.decompressobj(wbits)
                    pending = rest
                    continue
                break
    if problem is None and not decompressor.eof:
        problem = finding(
            "truncated-file",
            f"{kind} stream ends early: the file stops after {path.stat().st_size} bytes, "
            f"{length} bytes decompressed, before the stream's end marker (file cut short?)",
        )
    found = _Stream(length, bytes(head), problem)
    _STREAMS[key] = found
    return found


def _short(path: Path, have: int, need: int, what: str) -> Finding:
    return finding(
        "voxel-count",
        f"{what} holds {have} bytes but the header describes {need} (file cut short, or a "
        f"header that does not belong to the data)",
    )


def _finite_positive(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


# ---------------------------------------------------------------------------------------------
# NIfTI


_NIFTI_SIZES = {348: "1", 540: "2"}


def _nifti_header(head: bytes) -> dict | None:
    """The fields of a NIfTI-1 or NIfTI-2 header the checks need; ``None`` when ``head`` is no
    NIfTI header (ITK then decides)."""
    for endian in "<>":
        if len(head) < 348:
            return None
        (size,) = struct.unpack_from(endian + "i", head, 0)
        version = _NIFTI_SIZES.get(size)
        if version == "1":
            dim = struct.unpack_from(endian + "8h", head, 40)
            bitpix = struct.unpack_from(endian + "h", head, 72)[0]
            pixdim = struct.unpack_from(endian + "8f", head, 76)
            vox_offset = struct.unpack_from(endian + "f", head, 108)[0]
            qform, sform = struct.unpack_from(endian + "2h", head, 252)
            quatern = struct.unpack_from(endian + "6f", head, 256)
            srow = struct.unpack_from(endian + "12f", head, 280)
        elif version == "2" and len(head) >= 540:
            bitpix = struct.unpack_from(endian + "h", head, 14)[0]
            dim = struct.unpack_from(endian + "8q", head, 16)
            pixdim = struct.unpack_from(endian + "8d", head, 104)
            vox_offset = struct.unpack_from(endian + "q", head, 168)[0]
            qform, sform = struct.unpack_from(endian + "2i", head, 344)
            quatern = struct.unpack_from(endian + "6d", head, 352)
            srow = struct.unpack_from(endian + "12d", head, 400)
        else:
            continue
        return {
            "dim": dim,
            "bitpix": bitpix,
            "pixdim": pixdim,
            "vox_offset": vox_offset,
            "qform": qform,
            "sform": sform,
            "quatern": quatern,
            "srow": srow,
        }
    return None


def _nifti_findings(path: Path) -> list[Finding]:
    with path.open("rb") as handle:
        magic = handle.read(2)
    compressed = magic == b"\x1f\x8b"
    stream = None
    if compressed:
        stream = _inflate(path, 0, GZIP, 540, "gzip")
        head = stream.head
    else:
        with path.open("rb") as handle:
            head = handle.read(540)
    header = _nifti_header(head)
    if header is None:
        return [stream.problem] if stream is not None and stream.problem else []
    findings = []
    ndim = header["dim"][0]
    if 1 <= ndim <= 7:
        spatial = header["pixdim"][1 : 1 + min(ndim, 3)]
        if not _finite_positive(spatial):
            findings.append(
                finding(
                    "header-spacing",
                    f"NIfTI pixdim (voxel size) {_fmt(spatial)} is zero, negative or not a "
                    "number (ITK would read 1 mm or flip an axis)",
                )
            )
    if header["qform"] > 0 and not _finite(header["quatern"]):
        findings.append(
            finding("header-affine", f"NIfTI qform has NaN or infinity: {_fmt(header['quatern'])}")
        )
    if header["sform"] > 0 and not _finite(header["srow"]):
        findings.append(
            finding("header-affine", f"NIfTI sform has NaN or infinity: {_fmt(header['srow'])}")
        )
    if 1 <= ndim <= 7 and header["bitpix"] > 0:
        voxels = math.prod(max(int(n), 1) for n in header["dim"][1 : ndim + 1])
        need = int(header["vox_offset"]) + voxels * header["bitpix"] // 8
        if stream is not None:
            if stream.problem is not None:
                return [*findings, stream.problem]
            if stream.length < need:
                findings.append(_short(path, stream.length, need, "the decompressed stream"))
        elif path.stat().st_size < need:
            findings.append(_short(path, path.stat().st_size, need, "the file"))
    elif stream is not None and stream.problem is not None:
        findings.append(stream.problem)
    return findings


# ---------------------------------------------------------------------------------------------
# NRRD and MetaImage headers

_HEADER_LIMIT = 1 << 16

_NRRD_TYPE_NAMES = {
    1: "signed char, int8, int8_t, uchar, unsigned char, uint8, uint8_t",
    2: "short, short int, signed short, signed short int, int16, int16_t, ushort, "
    "unsigned short, unsigned short int, uint16, uint16_t",
    4: "int, signed int, int32, int32_t, uint, unsigned int, uint32, uint32_t, float",
    8: "longlong, long long, long long int, signed long long, signed long long int, int64, "
    "int64_t, ulonglong, unsigned long long, unsigned long long int, uint64, uint64_t, double",
}
_NRRD_TYPES = {
    name.strip(): size for size, names in _NRRD_TYPE_NAMES.items() for name in names.split(",")
}

_META_TYPES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 4,
    "MET_ULONG": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}


def _numbers(text: str) -> list[float]:
    found = re.findall(r"[-+]?(?:nan|inf|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)", text, re.I)
    return [float(v) for v in found]


def _first_int(text: str, default: int) -> int:
    """The first number of a header value as an integer; ``default`` when there is none."""
    numbers = _numbers(text)
    return int(numbers[0]) if numbers and math.isfinite(numbers[0]) else default


def _data_findings(
    data: Path, offset: int, need: int | None, compressed: bool, wbits: int, kind: str
) -> list[Finding]:
    """The voxel-count / stream checks of a data stream starting at ``offset`` of ``data``."""
    if not data.is_file():
        return []  # ITK names the missing data file
    if compressed:
        stream = _inflate(data, offset, wbits, 0, kind)
        if stream.problem is not None:
            return [stream.problem]
        if need is not None and stream.length < need:
            return [_short(data, stream.length, need, "the decompressed stream")]
        return []
    have = data.stat().st_size - offset
    if need is not None and have < need:
        return [_short(data, have, need, f"{data.name} after its header")]
    return []


def _nrrd_findings(path: Path) -> list[Finding]:
    with path.open("rb") as handle:
        block = handle.read(_HEADER_LIMIT)
    if not block.startswith(b"NRRD"):
        return []
    end = re.search(rb"\r?\n\r?\n", block)
    header_end = end.end() if end else len(block)
    fields: dict[str, str] = {}
    for line in block[:header_end].decode("latin-1").splitlines()[1:]:
        if line.startswith("#") or ":=" in line or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    findings = []
    if "spacings" in fields:
        values = [v for v in _numbers(fields["spacings"]) if not math.isnan(v)]
        if not _finite_positive(values):
            findings.append(
                finding("header-spacing", f"NRRD spacings {fields['spacings']} not all positive")
            )
    if "space directions" in fields:
        vectors = re.findall(r"\(([^)]*)\)", fields["space directions"])
        numbers = [_numbers(v) for v in vectors]
        if not all(_finite(v) for v in numbers):
            findings.append(
                finding("header-affine", f"NRRD space directions {fields['space directions']}")
            )
        elif any(math.hypot(*v) == 0 for v in numbers if v):
            findings.append(
                finding(
                    "header-spacing",
                    f"NRRD space directions {fields['space directions']} has a zero vector",
                )
            )
    if "space origin" in fields and not _finite(_numbers(fields["space origin"])):
        findings.append(finding("header-affine", f"NRRD space origin {fields['space origin']}"))
    size = _NRRD_TYPES.get(fields.get("type", "").lower())
    sizes = [int(v) for v in re.findall(r"\d+", fields.get("sizes", ""))]
    need = math.prod(sizes) * size if size and sizes else None
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in ("raw", "gzip", "gz"):
        return findings  # ascii, hex, bzip2: left to ITK
    data_file = fields.get("data file") or fields.get("datafile")
    offset = header_end
    data = path
    if data_file:
        if " " in data_file or "%" in data_file or data_file.upper().startswith("LIST"):
            return findings  # several data files: left to ITK
        data = path.parent / data_file
        offset = 0
    skip = _first_int(fields.get("byte skip", "0"), 0)
    if skip < 0 or fields.get("line skip", "0").strip() != "0":
        return findings  # data counted from the end, or after text lines: left to ITK
    return findings + _data_findings(
        data, offset + skip, need, encoding != "raw", ZLIB_OR_GZIP, "NRRD gzip"
    )


def _metaimage_findings(path: Path) -> list[Finding]:
    with path.open("rb") as handle:
        block = handle.read(_HEADER_LIMIT)
    fields: dict[str, str] = {}
    header_end = None
    position = 0
    for raw in block.split(b"\n"):
        position += len(raw) + 1
        line = raw.decode("latin-1").strip()
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            header_end = position
            break
    if header_end is None:
        return []  # not a MetaImage header ITK can read: it will say so
    findings = []
    for key in ("elementspacing", "elementsize"):
        if key in fields and not _finite_positive(_numbers(fields[key])):
            findings.append(
                finding(
                    "header-spacing",
                    f"MetaImage {key} = {fields[key]} is zero, negative or not a number "
                    "(ITK would flip an axis or refuse)",
                )
            )
            break
    for key in ("offset", "position", "origin", "transformmatrix", "rotation", "orientation"):
        if key in fields and not _finite(_numbers(fields[key])):
            findings.append(finding("header-affine", f"MetaImage {key} = {fields[key]}"))
    sizes = [int(v) for v in re.findall(r"\d+", fields.get("dimsize", ""))]
    size = _META_TYPES.get(fields.get("elementtype", "").upper())
    channels = _first_int(fields.get("elementnumberofchannels", "1"), 1)
    need = math.prod(sizes) * size * channels if size and sizes else None
    compressed = fields.get("compresseddata", "false").lower() == "true"
    name = fields.get("elementdatafile", "")
    if name.upper() == "LOCAL":
        data, offset = path, header_end
    elif name and " " not in name and "%" not in name and name.upper() != "LIST":
        data = path.parent / name
        offset = _first_int(fields.get("headersize", "0"), 0)
        if offset < 0:  # data at the end of the file: nothing more to check than its length
            offset = 0
    else:
        return findings
    if compressed and "compresseddatasize" in fields and data.is_file():
        expected = _first_int(fields["compresseddatasize"], 0)
        have = data.stat().st_size - offset
        if have < expected:
            return [
                *findings,
                finding(
                    "truncated-file",
                    f"compressed data holds {have} of the {expected} bytes its header states "
                    "(file cut short?)",
                ),
            ]
    return findings + _data_findings(data, offset, need, compressed, ZLIB_OR_GZIP, "zlib")


def file_findings(path: str | Path) -> list[Finding]:
    """The checks of an image file before ITK reads it: complete (compressed streams end and
    pass their check, the voxel data are all there) and a consistent header (spacing, affine).

    NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``,
    ``.mhd``); other forms give no findings here (ITK and the checks after reading decide).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _nifti_findings(path)
    if name.endswith((".nrrd", ".nhdr")):
        return _nrrd_findings(path)
    if name.endswith((".mha", ".mhd")):
        return _metaimage_findings(path)
    return []


# ---------------------------------------------------------------------------------------------
# after reading: the image's geometry and values


def geometry_findings(image: sitk.Image) -> list[Finding]:
    """Spacing positive and finite, origin and direction finite, direction orthonormal."""
    spacing = np.asarray(image.GetSpacing(), float)
    origin = np.asarray(image.GetOrigin(), float)
    n = image.GetDimension()
    direction = np.asarray(image.GetDirection(), float).reshape(n, n)
    findings = []
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        findings.append(finding("header-spacing", f"spacing {_fmt(spacing)} read from the file"))
    if not (np.all(np.isfinite(origin)) and np.all(np.isfinite(direction))):
        findings.append(
            finding(
                "header-affine",
                f"origin {_fmt(origin)} / direction {_fmt(direction.ravel())} not finite",
            )
        )
    else:
        deviation = float(np.abs(direction.T @ direction - np.eye(n)).max())
        if deviation > DIRECTION_TOLERANCE:
            findings.append(
                finding(
                    "header-direction",
                    f"direction cosines {_fmt(direction.ravel())} are not orthonormal "
                    f"(largest deviation {deviation:.3g}): a skewed grid ovfdlr does not use",
                )
            )
    return findings


def _sample(array: np.ndarray, limit: int = 1 << 20) -> np.ndarray:
    flat = array.reshape(-1)
    return flat[:: max(1, flat.size // limit)]


def _distinct(sample: np.ndarray, lo: float, hi: float) -> int:
    if np.issubdtype(sample.dtype, np.integer) and hi - lo < (1 << 20):
        return int(np.count_nonzero(np.bincount((sample - lo).astype(np.int64))))
    return int(np.unique(sample).size)


_LABEL_MAPS: dict[tuple, list[Finding]] = {}


def label_map_findings(array: np.ndarray, key: tuple | None = None) -> list[Finding]:
    """The checks of a label map's values: an image given as a mask (``mask-is-image``), else
    non-integer or non-finite values (``mask-not-integer``) and negative ones
    (``mask-negative``).

    Distinct values and the share of zeros are counted on an even sample of at most about a
    million voxels; the minimum, maximum and integrality on every voxel. ``key`` (the file's
    :func:`stat_key`) remembers the verdict in this process.
    """
    if key is not None and key in _LABEL_MAPS:
        return _LABEL_MAPS[key]
    findings: list[Finding] = []
    if array.size == 0:
        return findings
    floating = np.issubdtype(array.dtype, np.floating)
    sample = _sample(array)
    if floating:
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            return [finding("mask-not-integer", "the label map holds no finite value")]
    lo = float(np.nanmin(array)) if floating else float(array.min())
    hi = float(np.nanmax(array)) if floating else float(array.max())
    distinct = _distinct(sample, lo, hi) if hi - lo > 16 else int(hi - lo) + 1
    zeros = float(np.count_nonzero(sample == 0)) / max(sample.size, 1)
    reasons = []
    if lo <= -500:
        reasons.append(f"values down to {lo:g} (air and lung in HU)")
    if distinct > 1000:
        reasons.append(f"{distinct} distinct values in a sample")
    if zeros < 0.05 and distinct > 16:
        reasons.append(f"{zeros:.1%} zeros and {distinct} distinct values")
    if reasons:
        findings.append(
            finding(
                "mask-is-image",
                "the mask looks like an image, not a label map: "
                + "; ".join(reasons)
                + f" (range {lo:g} to {hi:g}); give the vertebra label map as the mask",
            )
        )
    else:
        # slab by slab: NaN and infinity fail too (their remainder is NaN)
        slabs = array.reshape(array.shape[0], -1) if array.ndim > 1 else array[None]
        if floating and not all(np.all(np.mod(slab, 1) == 0) for slab in slabs):
            findings.append(
                finding(
                    "mask-not-integer",
                    "the label map has non-integer or non-finite values "
                    f"(range {lo:g} to {hi:g}): labels must be whole numbers (a probability "
                    "map or an interpolated mask must be thresholded first)",
                )
            )
        if lo < 0:
            findings.append(
                finding("mask-negative", f"the label map has negative values (down to {lo:g})")
            )
    if key is not None:
        _LABEL_MAPS[key] = findings
    return findings


def ct_value_findings(array: np.ndarray) -> list[Finding]:
    """``ct-values`` (a warning) when no voxel is negative and the maximum is 1024 or more: the
    form of a CT's stored values without Rescale Slope / Intercept, not HU."""
    if array.size == 0 or not np.issubdtype(array.dtype, np.number):
        return []
    lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
    if lo >= 0 and hi >= 1024:
        return [
            finding(
                "ct-values",
                f"no negative voxel value (range {lo:g} to {hi:g}): calibrated CT has air near "
                "-1000 HU; these look like stored values without their rescale (HU = stored x "
                "slope + intercept), and HU-based features will be wrong",
            )
        ]
    return []


# ---------------------------------------------------------------------------------------------
# DICOM series


@dataclass(frozen=True)
class SliceHeader:
    """The attributes of one DICOM slice the series checks use (``None``: absent)."""

    name: str
    position: tuple[float, ...] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, ...] | None = None
    matrix: tuple[int, int] | None = None
    sop_uid: str = ""
    rescale: bool = True
    tilt: float | None = None


def dicom_findings(
    slices: Sequence[SliceHeader], tolerance: float = SLICE_SPACING_TOLERANCE
) -> list[Finding]:
    """The checks of one DICOM series from its slices' headers: mixed orientation, pixel
    spacing or matrix; duplicated, missing or unevenly spaced slices; gantry tilt and missing
    rescale (warnings)."""
    findings: list[Finding] = []
    if not slices:
        return findings
    first = slices[0]

    def differs(attribute: str, close) -> list[SliceHeader]:
        ref = getattr(first, attribute)
        return [
            s
            for s in slices[1:]
            if (getattr(s, attribute) is None) != (ref is None)
            or (ref is not None and not close(ref, getattr(s, attribute)))
        ]

    def listed(odd: list[SliceHeader]) -> str:
        names = ", ".join(s.name for s in odd[:3]) + (" ..." if len(odd) > 3 else "")
        return f"{len(odd)} of {len(slices)} slices ({names})"

    def same_vector(a, b, tol, relative=False):
        a, b = np.asarray(a, float), np.asarray(b, float)
        scale = np.abs(a) if relative else 1.0
        return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol * scale))

    odd = differs("orientation", lambda a, b: same_vector(a, b, ORIENTATION_TOLERANCE))
    if odd:
        findings.append(
            finding(
                "dicom-mixed-orientation",
                f"Image Orientation differs from the first slice's {_fmt(first.orientation)} in "
                f"{listed(odd)}",
            )
        )
    odd = differs(
        "pixel_spacing", lambda a, b: same_vector(a, b, PIXEL_SPACING_TOLERANCE, relative=True)
    )
    if odd:
        findings.append(
            finding(
                "dicom-mixed-pixel-spacing",
                f"Pixel Spacing differs from the first slice's {_fmt(first.pixel_spacing)} mm "
                f"in {listed(odd)}",
            )
        )
    odd = differs("matrix", lambda a, b: tuple(a) == tuple(b))
    if odd:
        findings.append(
            finding(
                "dicom-mixed-matrix",
                f"Rows x Columns differ from the first slice's {first.matrix} in {listed(odd)}",
            )
        )
    uids = [s.sop_uid for s in slices if s.sop_uid]
    repeated = sorted({u for u in uids if uids.count(u) > 1}) if len(set(uids)) < len(uids) else []
    if repeated:
        findings.append(
            finding(
                "dicom-duplicate-slice",
                f"{len(repeated)} SOP Instance UID(s) occur in more than one file (the same "
                "slice copied twice?)",
            )
        )
    if not any(f.check == "dicom-mixed-orientation" for f in findings):
        findings += _position_findings(slices, tolerance, bool(repeated))
    missing_rescale = [s for s in slices if not s.rescale]
    if missing_rescale:
        findings.append(
            finding(
                "dicom-no-rescale",
                f"{listed(missing_rescale)} have no Rescale Slope / Intercept: their stored "
                "values are read as they are (HU only if the scanner stores HU)",
            )
        )
    return findings


def _position_findings(
    slices: Sequence[SliceHeader], tolerance: float, duplicates_known: bool
) -> list[Finding]:
    placed = [s for s in slices if s.position is not None and s.orientation is not None]
    if len(placed) < 2 or len(placed[0].orientation) != 6 or len(slices) != len(placed):
        return []
    row, column = np.asarray(placed[0].orientation[:3]), np.asarray(placed[0].orientation[3:])
    normal = np.cross(row, column)
    if not np.isfinite(normal).all() or np.linalg.norm(normal) == 0:
        return []
    normal /= np.linalg.norm(normal)
    positions = np.asarray([s.position for s in placed], float)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    gaps = np.diff(along)
    findings = []
    positive = gaps[gaps > 1e-6]
    if positive.size == 0:
        return [finding("dicom-duplicate-slice", f"all {len(placed)} slices at one position")]
    spacing = float(np.median(positive))
    duplicate = gaps <= tolerance * spacing
    if duplicate.any() and not duplicates_known:
        where = ", ".join(
            f"{placed[order[i]].name} and {placed[order[i + 1]].name} at {along[i]:.4g} mm"
            for i in np.flatnonzero(duplicate)[:3]
        )
        findings.append(
            finding(
                "dicom-duplicate-slice",
                f"{int(duplicate.sum())} pair(s) of slices at the same position ({where})",
            )
        )
    kept = along[np.concatenate([[True], ~duplicate])]
    gaps = np.diff(kept)
    ratio = gaps / spacing
    multiple = np.rint(ratio)
    missing = (multiple >= 2) & (np.abs(ratio - multiple) <= 0.1)
    uneven = ~missing & (np.abs(ratio - 1) > tolerance)
    if missing.any():
        where = ", ".join(
            f"{int(multiple[i]) - 1} between {kept[i]:.4g} and {kept[i + 1]:.4g} mm"
            for i in np.flatnonzero(missing)[:3]
        )
        findings.append(
            finding(
                "dicom-missing-slice",
                f"{int((multiple[missing] - 1).sum())} slice(s) missing at a spacing of "
                f"{spacing:.4g} mm ({where}); ITK would stack the rest with an average spacing",
            )
        )
    if uneven.any():
        findings.append(
            finding(
                "dicom-slice-spacing",
                f"slice positions are unevenly spaced: gaps from {gaps[uneven].min():.4g} to "
                f"{gaps[uneven].max():.4g} mm where the spacing is {spacing:.4g} mm "
                f"(tolerance {tolerance:.0%})",
            )
        )
    offset = positions[order[-1]] - positions[order[0]]
    length = float(np.linalg.norm(offset))
    if length > 0:
        angle = math.degrees(math.acos(min(1.0, abs(float(offset @ normal)) / length)))
        if angle > GANTRY_TILT_DEGREES:
            tag = next((s.tilt for s in placed if s.tilt is not None), None)
            stated = f" (Gantry/Detector Tilt {tag:g} degrees)" if tag is not None else ""
            findings.append(
                finding(
                    "dicom-gantry-tilt",
                    f"slices are offset along their plane by {angle:.2f} degrees{stated}: read "
                    "as is, ITK does not resample; it stacks the slices on a grid "
                    "perpendicular to them with a slice distance of "
                    f"{length / (len(placed) - 1):.4g} mm (the distance between slice "
                    f"positions; {spacing:.4g} mm perpendicular to the slices), so the volume "
                    "is sheared by the tilt and stretched along it",
                )
            )
    return findings


# ---------------------------------------------------------------------------------------------
# what ITK and native libraries print


class _Collector(sitk.LoggerBase):
    """ITK's output window while a file is read: every message kept, none printed (the
    method names are ITK's)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def DisplayText(self, text: str) -> None:
        self.messages.append(text)

    def DisplayErrorText(self, text: str) -> None:
        self.messages.append(text)

    def DisplayWarningText(self, text: str) -> None:
        self.messages.append(text)

    def DisplayGenericOutputText(self, text: str) -> None:
        self.messages.append(text)

    def DisplayDebugText(self, text: str) -> None:
        self.messages.append(text)


_CAPTURE = threading.RLock()
_TERMINAL = re.compile(r"\x1b|\r")  # a progress bar's redraws: not a library's message


@contextlib.contextmanager
def captured_messages() -> Iterator[list[str]]:
    """Collect what ITK and the libraries under it print while the block runs.

    ITK's output window goes to a collector (``sitk.LoggerBase``); the stderr file descriptor
    is pointed at a temporary file, so messages that native code writes there directly
    (MetaIO, VNL, GDCM) are caught as well. One block at a time per process (a lock): the
    descriptor is the process's. Lines another thread writes meanwhile that carry terminal
    control characters (a progress bar) are written back to stderr. The list is filled when
    the block ends.
    """
    messages: list[str] = []
    with _CAPTURE:
        collector = _Collector()
        previous = collector.SetAsGlobalITKLogger()
        saved = sink = None
        try:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            try:
                saved = os.dup(2)
                sink = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the block ends
                os.dup2(sink.fileno(), 2)
            except OSError:  # no usable stderr descriptor: ITK's messages are still collected
                if saved is not None:
                    os.close(saved)
                saved = None
            yield messages
        finally:
            if saved is not None:
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
            previous.SetAsGlobalITKLogger()
            messages.extend(collector.messages)
            if sink is not None:
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace")
                sink.close()
                native = []
                for line in text.splitlines(keepends=True):
                    if _TERMINAL.search(line):
                        os.write(2, line.encode())
                    elif line.strip():
                        native.append(line)
                if native:
                    messages.append("".join(native))


def _clean(message: str) -> str:
    """An ITK message without its source-file line and object address, on one line."""
    lines = [
        ln.strip()
        for ln in message.splitlines()
        if ln.strip() and not re.match(r"(WARNING|ERROR): In ", ln.strip())
    ]
    return re.sub(r"\s+", " ", re.sub(r" ?\(0x[0-9a-fA-F]+\)", "", " ".join(lines))).strip()


def message_check(text: str) -> str | None:
    """The check an ITK (or native library) message is about, or ``None``."""
    for pattern, check in ITK_MESSAGES:
        if pattern.search(text):
            return check
    return None


def message_findings(messages: Sequence[str], known: Sequence[Finding] = ()) -> list[Finding]:
    """Findings for what was printed while reading: each message under the check it is about
    (unless ``known`` already explains it), ``itk-warning`` for one about no known check."""
    found = {f.check for f in known}
    findings: list[Finding] = []
    seen = set()
    for message in messages:
        text = _clean(message)
        if not text or text in seen:  # ITK repeats some messages
            continue
        seen.add(text)
        check = message_check(text)
        if check is None:
            findings.append(finding("itk-warning", f"ITK reported while reading: {text[:400]}"))
        elif not (_EXPLAINED_BY.get(check, {check}) & found):
            findings.append(finding(check, f"ITK reported: {text[:400]}"))
            found.add(check)
    return findings


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"
