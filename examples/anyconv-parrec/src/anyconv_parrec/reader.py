"""Read Philips PAR/REC with nibabel's parser, sort order and affine; voxel data stays lazy.

One PAR/REC export can hold several image types (magnitude, real, imaginary, phase, maps),
several echoes and, for a survey, several stacks of different orientation. Like dcm2niix we
return one ``Image`` per (stack, image type, echo); within it nibabel's ``strict_sort`` order
puts slices on the third axis and every other label (cardiac phase, diffusion direction and
b-value, ASL label, dynamic) on the fourth. The affine of each image is the one nibabel's
``PARRECHeader.get_affine()`` gives for the same header.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from anyconv.errors import ReadError, UsageError
from anyconv.model import Image, Meta
from anyconv.specs import ReadOptions

# reader.py is imported only when a PAR file is read, so nibabel may load here.
from nibabel import parrec

#: PAR versions read; nibabel knows the image-line columns of exactly these.
SUPPORTED_VERSIONS = tuple(parrec.supported_versions)
#: A PAR header is text of a few hundred KiB at most; refuse to load more.
MAX_PAR_BYTES = 64 * 2**20
SCALINGS = ("dv", "fp")
#: PAR positions are printed to 0.01 mm; beyond this a slice is not where the affine says.
POSITION_TOLERANCE_MM = 0.5

# PAR ``image_type_mr`` codes (column "ty") as DICOM/BIDS ImageType values and the file-name
# suffix dcm2niix gives them; other codes (derived maps) become ``TYPE<n>`` / ``t<n>``.
_IMAGE_TYPES = {0: ("M", ""), 1: ("R", "real"), 2: ("I", "imaginary"), 3: ("P", "ph")}
# PAR "Scan mode" (MS = multi-slice) as BIDS MRAcquisitionType.
_ACQUISITION_TYPES = {"MS": "2D", "M2D": "2D", "2D": "2D", "3D": "3D"}
_ORIENT_SUFFIX = {1: "tra", 2: "sag", 3: "cor"}
# Identity stays in Meta.patient / Meta.study, where an anonymizer looks for it.
_IDENTITY_FIELDS = ("patient_name", "exam_name", "exam_date")
# Counts that describe the whole export, not one image of it.
_WHOLE_FILE_MAXIMA = (
    "max_echoes",
    "max_dynamics",
    "max_diffusion_values",
    "max_gradient_orient",
    "max_cardiac_phases",
)


def read_parrec(path: Path, options: ReadOptions) -> list[Image]:
    """Read a .PAR header and its .REC data: one image per stack, image type and echo."""
    scaling = options.extra.get("scaling", "dv").lower()
    if scaling not in SCALINGS:
        raise UsageError(
            f"scaling={scaling!r} is not a PAR/REC scaling", hint="use -O scaling=dv or fp"
        )
    permit = options.extra.get("permit_truncated", "0").lower() in ("1", "true", "yes")
    text = _read_text(path)
    version = par_version(text)
    if version is None:
        raise ReadError(f"{path}: no 'image export tool' version line: not a PAR header")
    if version not in SUPPORTED_VERSIONS:
        raise ReadError(
            f"{path}: PAR version {version} is not supported "
            f"(supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    info, idefs = _parse(path, text)
    if len(idefs) == 0:
        raise ReadError(f"{path}: the PAR header lists no image")
    full = _header(path, info, idefs, permit)
    incomplete = _incomplete(info, idefs) if permit else None
    rec = find_rec(path)
    nrows, row_bytes = _check_rec(path, rec, full, idefs)
    rec_rows, index_note = _rec_rows(idefs)
    orientations = np.unique(idefs["slice orientation"])
    images = []
    for rows in _groups(idefs, split_stacks=len(orientations) > 1):
        sub_info, sub_defs = _group_header_input(
            path, info, idefs, rows, stack=len(orientations) > 1
        )
        header = _header(path, sub_info, sub_defs, permit)
        image = _image(path, rec, header, rec_rows[rows], nrows, scaling)
        image.meta = _meta(info, header, len(np.unique(idefs["echo number"])) > 1)
        _name(image, header, idefs, multi_stack=len(orientations) > 1)
        image.extras["parrec"] = {
            "version": version,
            "scaling": scaling,
            "general_info": {k: _plain(v) for k, v in info.items() if k not in _IDENTITY_FIELDS},
            "rec_file": rec.name,
            "rec_row_bytes": row_bytes,
        }
        if index_note:
            image.notes.append(index_note)
        if incomplete:
            image.notes.append(f"incomplete recording read as permitted: {incomplete}")
        dropped = len(rows) - int(np.prod(header.get_data_shape()[2:]))
        if dropped:
            image.notes.append(f"{dropped} image(s) of incomplete volumes left out")
        images.append(image)
    return images


def par_version(text: str) -> str | None:
    """The ``V4.2``-style version of the export tool line, as nibabel reads it."""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith("#"):
            return None  # the general information started without a version line
        if "image export tool" in line:
            return line.split()[-1]
    return None


def find_rec(path: Path) -> Path:
    """The .REC beside a .PAR: same stem, extension in any case."""
    for suffix in (".REC", ".rec", ".Rec"):
        cand = path.with_suffix(suffix)
        if cand.is_file():
            return cand
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        siblings = []
    for cand in siblings:
        if cand.stem == path.stem and cand.suffix.lower() == ".rec" and cand.is_file():
            return cand
    raise ReadError(f"{path}: its data file {path.stem}.REC is missing")


def _read_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_PAR_BYTES:
        raise ReadError(f"{path}: {size} bytes is too large for a PAR header")
    # PAR headers are 8-bit text (patient names may hold Latin-1 letters).
    return path.read_bytes().decode("latin-1")


def _parse(path: Path, text: str) -> tuple[dict[str, Any], np.ndarray]:
    """Parse the general information and the image lines."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return parrec.parse_PAR_header(io.StringIO(text))
    except KeyError as exc:
        raise ReadError(f"{path}: unknown general information field {exc}") from exc
    except (IndexError, ValueError, AttributeError, TypeError) as exc:
        raise ReadError(f"{path}: malformed PAR header: {_first_line(exc)}") from exc


def _header(path: Path, info: dict[str, Any], idefs: np.ndarray, permit: bool = False) -> Any:
    """Build nibabel's PARRECHeader with strict sorting; its checks become ReadError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return parrec.PARRECHeader(info, idefs, permit_truncated=permit, strict_sort=True)
    except parrec.PARRECError as exc:
        text = _first_line(exc)
        truncated = "inconsistency" in text or "partial volume" in text
        hint = (
            "-O permit_truncated=1 reads the complete volumes" if truncated and not permit else None
        )
        raise ReadError(f"{path}: {text}", hint=hint) from exc
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ReadError(f"{path}: inconsistent PAR header: {_first_line(exc)}") from exc


def _incomplete(info: dict[str, Any], idefs: np.ndarray) -> str | None:
    """What nibabel's truncation check says of a recording read with permit_truncated."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parrec.PARRECHeader(info, idefs, permit_truncated=False, strict_sort=True)
    except parrec.PARRECError as exc:
        return _first_line(exc)
    return None


def _check_rec(path: Path, rec: Path, header: Any, idefs: np.ndarray) -> tuple[int, int]:
    """Refuse a REC too small for the images the header lists, before anything is mapped."""
    nx, ny = (int(v) for v in header.get_data_shape()[:2])
    row_bytes = nx * ny * header.get_data_dtype().itemsize
    nrows = len(idefs)
    need = nrows * row_bytes
    have = rec.stat().st_size
    if have < need:
        raise ReadError(
            f"{path}: {rec.name} is truncated: the header lists {nrows} images of "
            f"{nx}x{ny} ({need} bytes), the file has {have}"
        )
    return nrows, row_bytes


def _rec_rows(idefs: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Row of the REC holding each image line: its 'index in REC file', else its position.

    nibabel assumes the REC holds images in the order of the lines; the index column says so
    explicitly and is used when it is a permutation of the lines.
    """
    order = np.arange(len(idefs))
    index = np.asarray(idefs["index in REC file"], dtype=np.int64)
    if np.array_equal(np.sort(index), order):
        if np.array_equal(index, order):
            return order, None
        return index, "REC images are stored out of line order; 'index in REC file' followed"
    return order, "'index in REC file' is not a permutation of the image lines; line order used"


def _groups(idefs: np.ndarray, *, split_stacks: bool) -> list[np.ndarray]:
    """Row indices of each output image: per stack (if several), image type and echo."""
    keys = [idefs["image_type_mr"], idefs["echo number"]]
    if split_stacks:
        keys.insert(0, idefs["slice orientation"])
    table = np.stack([np.asarray(k, dtype=np.int64) for k in keys], axis=1)
    uniq = np.unique(table, axis=0)
    return [np.flatnonzero((table == u).all(axis=1)) for u in uniq]


def _group_header_input(
    path: Path, info: dict[str, Any], idefs: np.ndarray, rows: np.ndarray, *, stack: bool
) -> tuple[dict[str, Any], np.ndarray]:
    """General info and image lines describing one output image on its own.

    Whole-export maxima (echoes, dynamics...) would fail nibabel's truncation check for a
    part, so they go; completeness of each volume is still checked by slice numbers. A survey
    stack gets its own slice numbers, angulation and centre from its image lines (the general
    information describes one stack only).
    """
    sub = {k: v for k, v in info.items() if k not in _WHOLE_FILE_MAXIMA}
    defs = idefs[rows].copy()
    slice_nos = np.unique(defs["slice number"])
    sub["max_slices"] = len(slice_nos)
    if stack:
        defs["slice number"] = np.searchsorted(slice_nos, defs["slice number"]) + 1
        angulation = np.unique(defs["image angulation"], axis=0)
        if len(angulation) != 1:
            raise ReadError(f"{path}: a survey stack has slices of varying angulation")
        sub["angulation"] = angulation[0].astype(np.float64)
        first = defs["image offcentre"][defs["slice number"] == 1][0]
        last = defs["image offcentre"][defs["slice number"] == len(slice_nos)][0]
        sub["off_center"] = (np.asarray(first) + np.asarray(last)) / 2.0
    return sub, defs


class RecProxy:
    """Lazy voxels of one image: chosen REC rows, reshaped i, j, k[, t], maybe scaled.

    ``rows`` lists REC images in output order (slices fastest). With ``slopes``/``inters``
    (one per REC image), real values are computed as float64 because PAR scaling can differ
    from slice to slice; otherwise the stored unsigned integers are returned.
    """

    def __init__(
        self,
        rec: Path,
        rec_shape: tuple[int, int, int],
        rec_dtype: np.dtype,
        rows: np.ndarray,
        shape: tuple[int, ...],
        scaling: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self._rec = rec
        self._rec_shape = rec_shape
        self._rec_dtype = np.dtype(rec_dtype)
        self._rows = np.asarray(rows, dtype=np.int64)
        self._shape = tuple(int(s) for s in shape)
        self._scaling = scaling

    @property
    def shape(self) -> tuple[int, ...]:
        """Output shape, without reading."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """Stored unsigned integers, or float64 when per-slice scaling is applied."""
        if self._scaling is not None:
            return np.dtype(np.float64)
        return self._rec_dtype.newbyteorder("=")

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self._shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raw = np.memmap(
            self._rec, dtype=self._rec_dtype, mode="r", shape=self._rec_shape, order="F"
        )
        try:
            arr = raw[:, :, self._rows].astype(self._rec_dtype.newbyteorder("="))
        finally:
            del raw
        arr = arr.reshape(self._shape, order="F")
        if self._scaling is not None:
            slopes, inters = self._scaling
            arr = arr * slopes + inters
        return arr if dtype is None else arr.astype(dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self)[index]


def _image(path: Path, rec: Path, header: Any, rows: np.ndarray, nrows: int, scaling: str) -> Image:
    """One output image from its own nibabel header and its REC rows."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            order = header.get_sorted_slice_indices()
            slope, inter = header.get_data_scaling(scaling)
            affine = header.get_affine()
    except parrec.PARRECError as exc:
        raise ReadError(f"{path}: {_first_line(exc)}") from exc
    except (ValueError, ZeroDivisionError, FloatingPointError) as exc:
        raise ReadError(f"{path}: inconsistent PAR header: {_first_line(exc)}") from exc
    shape = tuple(int(s) for s in header.get_data_shape())
    nx, ny = shape[:2]
    slope = np.asarray(slope, dtype=np.float64)
    inter = np.asarray(inter, dtype=np.float64)
    if not (np.all(np.isfinite(slope)) and np.all(np.isfinite(inter))):
        raise ReadError(f"{path}: {scaling} scaling is not finite (a zero scale slope?)")
    uniform = bool(np.all(slope == slope.flat[0]) and np.all(inter == inter.flat[0]))
    proxy = RecProxy(
        rec,
        (nx, ny, nrows),
        header.get_data_dtype(),
        rows[order],
        shape,
        None if uniform else (slope, inter),
    )
    image = Image(
        proxy,
        affine,
        slope=float(slope.flat[0]) if uniform else 1.0,
        inter=float(inter.flat[0]) if uniform else 0.0,
        format="parrec",
        source=str(path),
    )
    if not uniform:
        image.notes.append(f"{scaling} scaling varies between slices: values stored as float64")
    off = slice_position_error(header.image_defs, shape, affine)
    if off > POSITION_TOLERANCE_MM:
        image.notes.append(
            f"per-slice offcentres in the PAR lie up to {off:.1f} mm from the midslice "
            "geometry; the midslice geometry (nibabel's affine) is used"
        )
    return image


def slice_position_error(defs: np.ndarray, shape: tuple[int, ...], affine: np.ndarray) -> float:
    """Largest distance (mm) between a slice's centre by ``affine`` and its PAR offcentre.

    ``defs`` are the image lines of one image, numbered 1..n by slice; ``shape`` its shape.

    nibabel builds the affine from the midslice angulation and offcentre only; each image
    line also gives its own offcentre (ap, fh, rl), so disagreement shows a header whose
    slice numbering or midslice fields do not describe the stored slices.
    """
    nx, ny = (int(v) for v in shape[:2])
    k = np.asarray(defs["slice number"], dtype=np.float64) - 1.0
    vox = np.stack(
        [np.full_like(k, (nx - 1) / 2), np.full_like(k, (ny - 1) / 2), k, np.ones_like(k)]
    )
    world = (affine @ vox)[:3].T
    ap, fh, rl = np.asarray(defs["image offcentre"], dtype=np.float64).T
    par = np.stack([-rl, -ap, fh], axis=1)  # (ap, fh, rl) is P, S, L: RAS is (-rl, -ap, fh)
    return float(np.abs(world - par).max()) if len(par) else 0.0


def _meta(info: dict[str, Any], header: Any, multi_echo: bool) -> Meta:
    """Common metadata; PAR times are milliseconds, Meta's seconds."""
    defs = header.image_defs
    order = header.get_sorted_slice_indices()
    first = defs[order[0]]
    meta = Meta(modality="MR", manufacturer="Philips", slice_axis=2)
    meta.series_number = int(info["acq_nr"]) if "acq_nr" in info else None
    protocol = str(info.get("protocol_name", "")).strip() or None
    meta.protocol_name = protocol
    meta.series_description = protocol
    tr = np.atleast_1d(info.get("repetition_time", []))
    if len(tr) and tr[0] > 0:
        meta.repetition_time = float(tr[0]) / 1000.0
    if float(first["echo_time"]) > 0:
        meta.echo_time = float(first["echo_time"]) / 1000.0
    if float(first["image_flip_angle"]) > 0:
        meta.flip_angle = float(first["image_flip_angle"])
    if float(first["Inversion delay"]) > 0:
        meta.inversion_time = float(first["Inversion delay"]) / 1000.0
    if info.get("patient_name"):
        meta.patient["name"] = str(info["patient_name"]).strip()
    for key, name in (("exam_name", "description"), ("exam_date", "date_time")):
        if info.get(key):
            meta.study[name] = str(info[key]).strip()
    bids: dict[str, Any] = {"Manufacturer": "Philips"}
    code = int(first["image_type_mr"])
    if code in _IMAGE_TYPES:
        bids["ImageType"] = ["ORIGINAL", "PRIMARY", _IMAGE_TYPES[code][0]]
    else:  # maps the scanner computed (ADC, FA, B0...)
        bids["ImageType"] = ["DERIVED", "SECONDARY", f"TYPE{code}"]
    if multi_echo:
        bids["EchoNumber"] = int(first["echo number"])
    mode = _ACQUISITION_TYPES.get(str(info.get("scan_mode", "")).strip().upper())
    if mode:
        bids["MRAcquisitionType"] = mode
    if info.get("tech"):
        bids["PulseSequenceDetails"] = str(info["tech"]).strip()
    bids["SliceThickness"] = float(first["slice thickness"])
    bids["SpacingBetweenSlices"] = float(first["slice thickness"] + first["slice gap"])
    if info.get("water_fat_shift") is not None:
        bids["WaterFatShift"] = float(info["water_fat_shift"])
    if info.get("epi_factor") is not None and int(info["epi_factor"]) > 1:
        bids["EchoTrainLength"] = int(info["epi_factor"])
    bids["PhilipsRescaleSlope"] = float(first["rescale slope"])
    bids["PhilipsRescaleIntercept"] = float(first["rescale intercept"])
    bids["PhilipsScaleSlope"] = float(first["scale slope"])
    meta.bids = bids
    _diffusion(meta, header)
    return meta


def _diffusion(meta: Meta, header: Any) -> None:
    """b-values, and gradient directions turned from nibabel's frame into RAS+ world.

    nibabel's ``get_bvals_bvecs`` returns the PAR ``diffusion (ap, fh, rl)`` vectors after
    undoing only the slice-orientation permutation (``ACQ_TO_PSL``), not the angulation: a
    frame that is the voxel frame only for unangulated scans (nibabel issue #285). The PAR
    vectors themselves are patient-frame (ap, fh, rl) components, as dcm2niix reads them, so
    re-applying ``ACQ_TO_PSL`` gives PSL world vectors and ``PSL_TO_RAS`` gives RAS+.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bvals, bvecs = header.get_bvals_bvecs()
    except AssertionError as exc:
        raise ReadError("diffusion b-value or direction varies within a volume") from exc
    if bvals is None:
        return
    meta.bvals = [float(b) for b in bvals]
    if bvecs is None:
        return
    to_psl = parrec.ACQ_TO_PSL[header.get_slice_orientation()][:3, :3]
    ras = np.asarray(bvecs, dtype=np.float64) @ to_psl.T @ parrec.PSL_TO_RAS[:3, :3].T
    norms = np.linalg.norm(ras, axis=1)
    ras[norms > 0] /= norms[norms > 0, None]
    meta.bvecs = [[float(v) + 0.0 for v in row] for row in ras]


def _name(image: Image, header: Any, idefs: np.ndarray, *, multi_stack: bool) -> None:
    """Suffix the description so that images of one export get distinct output names."""
    first = header.image_defs[0]
    code = int(first["image_type_mr"])
    parts = [image.meta.series_description or ""]
    if multi_stack:
        parts.append(_ORIENT_SUFFIX.get(int(first["slice orientation"]), "stack"))
    suffix = _IMAGE_TYPES.get(code, (None, f"t{code}"))[1]
    if suffix and (code in _IMAGE_TYPES or len(np.unique(idefs["image_type_mr"])) > 1):
        parts.append(suffix)
    description = "_".join(p for p in parts if p)
    image.meta.series_description = description or None


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
