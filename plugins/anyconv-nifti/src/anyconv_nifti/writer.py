"""Write NIfTI-1/2 with nibabel's header code, keeping stored values and scaling as given.

nibabel's own ``save`` recomputes scaling from the data; we write the header and the stored
array ourselves so an int16 image with a slope stays int16 with that slope.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
from anyconv import geometry
from anyconv.errors import LossyConversionError
from anyconv.io import open_output, write_fortran
from anyconv.lazy import import_nibabel
from anyconv.model import Image
from anyconv.specs import WriteOptions

nib = import_nibabel()

_TIME_UNIT_SCALE = {"sec": 1.0, "msec": 1e3, "usec": 1e6}
_SPACE_UNIT = {"mm": "mm", "m": "meter", "um": "micron"}
_RGB = {3: np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]),
        4: np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])}  # fmt: skip


def write_nifti1(image: Image, path: Path, options: WriteOptions) -> None:
    """Write NIfTI-1 (``.nii``, ``.nii.gz``, or an ``.hdr``/``.img`` pair)."""
    _write(image, path, options, version=1)


def write_nifti2(image: Image, path: Path, options: WriteOptions) -> None:
    """Write NIfTI-2 (``.nii``, ``.nii.gz``, or an ``.hdr``/``.img`` pair)."""
    _write(image, path, options, version=2)


def _write(image: Image, path: Path, options: WriteOptions, version: int) -> None:
    pair = path.name.lower().endswith((".hdr", ".hdr.gz"))
    header = _header_class(version, pair)()
    # lazy data stays lazy: write_fortran streams it when the reader can
    data = image.data
    if image.meta.intent in ("rgb", "rgba") and data.dtype == np.uint8 and data.shape[-1] in _RGB:
        data = np.ascontiguousarray(image.stored()).view(_RGB[data.shape[-1]])[..., 0]
    if version == 1 and max(data.shape, default=0) > 32767:
        raise LossyConversionError(
            f"{path.name}: NIfTI-1 sizes stop at 32767, shape is {data.shape}",
            hint="use --to nifti2",
        )
    try:
        header.set_data_shape(data.shape)
    except nib.spatialimages.HeaderDataError as exc:
        raise LossyConversionError(
            f"{path.name}: NIfTI-{version} cannot hold shape {data.shape}: {exc}",
            hint="use --to nifti2" if version == 1 else None,
        ) from exc
    header.set_data_dtype(data.dtype)
    _set_geometry(header, image)
    _set_fields(header, image)
    if image.is_scaled:
        header.set_slope_inter(image.slope, image.inter)
    else:
        header.set_slope_inter(np.nan, np.nan)
    level = options.compress_level
    if pair:
        img_name = re.sub(r"\.hdr(\.gz)?$", r".img\1", path.name, flags=re.IGNORECASE)
        header.set_data_offset(0)
        with open_output(path, level) as fh:
            header.write_to(fh)
        with open_output(path.with_name(img_name), level) as fh:
            write_fortran(fh, data)
    else:
        buf = io.BytesIO()
        header.write_to(buf)
        head = buf.getvalue()
        offset = int(header.get_data_offset())
        with open_output(path, level) as fh:
            fh.write(head + b"\0" * (offset - len(head)))
            write_fortran(fh, data)


def _header_class(version: int, pair: bool) -> Any:
    if version == 2:
        return nib.nifti2.Nifti2PairHeader if pair else nib.Nifti2Header
    return nib.nifti1.Nifti1PairHeader if pair else nib.Nifti1Header


def _chosen_affine(ext: dict[str, Any]) -> np.ndarray | None:
    """The affine nibabel would read from the source header."""
    affine = ext.get("affine")
    return None if affine is None else np.asarray(affine, dtype=np.float64)


def _set_geometry(header: Any, image: Image) -> None:
    """Qform and sform: the source's own when they still describe this image, else ours.

    A new affine (another format, or reoriented) goes in both with code 1 (scanner), as ITK
    and dcm2niix write; a sheared one goes whole in sform, and qform gets its nearest rigid
    approximation, which we say in the image's notes.
    """
    affine = image.affine
    zooms = geometry.zooms(affine)
    ext = image.extras.get("nifti") or {}
    source_affine = _chosen_affine(ext)
    same = (
        source_affine is not None
        and ext.get("version", 0) > 0
        and np.allclose(source_affine, affine, atol=1e-6)
    )
    if same:
        qform, sform = ext.get("qform"), ext.get("sform")
        qcode, scode = ext.get("qform_code", 0), ext.get("sform_code", 0)
        if qcode > 0 and qform is not None and np.all(np.isfinite(qform)):
            header.set_qform(np.asarray(qform), code=int(qcode))
        elif qcode > 0:
            # the source's qform was broken (NaN pixdim): the affine it gave is what holds
            header.set_qform(affine, code=int(qcode), strip_shears=True)
        else:
            header.set_qform(None, code=0)
            header.set_zooms(tuple(zooms) + tuple(header.get_zooms()[3:]))
        if scode > 0 and sform is not None and np.all(np.isfinite(sform)):
            header.set_sform(np.asarray(sform), code=int(scode))
        else:
            header.set_sform(None, code=0)
        if qcode == 0 and scode == 0:
            # Only pixdim gives the geometry; keep the affine in sform so nothing is lost.
            header.set_sform(affine, code=1)
        return
    code = int(ext.get("sform_code") or 1) if ext.get("version", 0) > 0 else 1
    header.set_sform(affine, code=code)
    header.set_qform(affine, code=code, strip_shears=True)
    if geometry.is_sheared(affine):
        image.notes.append("sheared affine kept in sform; qform holds its rigid approximation")


def _set_fields(header: Any, image: Image) -> None:
    meta = image.meta
    ext = image.extras.get("nifti") or {}
    space = _SPACE_UNIT.get(meta.spatial_unit or "mm", "mm")
    time = "sec"
    if ext.get("xyzt_units") and ext["xyzt_units"][1] in _TIME_UNIT_SCALE:
        time = ext["xyzt_units"][1]
    header.set_xyzt_units(space, time)
    zooms = list(header.get_zooms())
    ndim = len(image.shape)
    if ndim >= 4:
        if meta.repetition_time:
            zooms[3] = meta.repetition_time * _TIME_UNIT_SCALE[time]
        elif ext.get("pixdim") and len(ext["pixdim"]) > 4:
            zooms[3] = ext["pixdim"][4]
        for axis in range(4, ndim):
            pix = ext.get("pixdim") or []
            if len(pix) > axis + 1 and pix[axis + 1] > 0:
                zooms[axis] = pix[axis + 1]
        header.set_zooms(zooms)
    freq, phase, slice_ = meta.frequency_axis, meta.phase_axis, meta.slice_axis
    if any(a is not None for a in (freq, phase, slice_)):
        header.set_dim_info(freq, phase, slice_)
    if meta.slice_duration and slice_ is not None:
        header["slice_duration"] = meta.slice_duration * _TIME_UNIT_SCALE[time]
    if ext.get("version", 0) > 0:
        for key in ("slice_code", "slice_start", "slice_end", "toffset", "cal_min", "cal_max"):
            header[key] = ext[key]
        header["aux_file"] = ext.get("aux_file", "")[:24].encode("latin-1", "replace")
        params = ext.get("intent_params") or []
        name = str(ext.get("intent_name", "")).encode("ascii", "replace").decode()[:16]
        try:
            header.set_intent(ext.get("intent", 0), tuple(params), name=name)
        except (KeyError, ValueError, UnicodeError):
            # a source header with an intent code NIfTI does not define: keep none
            image.notes.append(f"intent code {ext.get('intent')!r} is not NIfTI's; not stored")
        for code, content in ext.get("extensions") or []:
            header.extensions.append(nib.nifti1.Nifti1Extension(code, content))
    elif meta.intent not in (None, "rgb", "rgba"):
        try:
            header.set_intent(meta.intent)
        except KeyError:
            image.notes.append(f"intent {meta.intent!r} has no NIfTI code; not stored")
    descrip = meta.description if meta.description is not None else ext.get("descrip", "")
    header["descrip"] = (descrip or "").encode("latin-1", "replace")[:80]


#: Where each voxel axis of an Analyze image points, as SPM and nibabel read it: i to the
#: left (radiological storage, SPM's default "flip"), j anterior, k superior.
ANALYZE_AXES = ((0, -1), (1, 1), (2, 1))
#: Recorded as a loss (the CLI shows losses as warnings): the file itself says nothing of
#: orientation, only the convention below places it.
ANALYZE_WARNING = (
    "orientation (Analyze 7.5 stores none): voxels written in SPM's radiological order "
    "(LAS, i to the left); tools assuming neurological order will mirror left and right"
)


def write_analyze(image: Image, path: Path, options: WriteOptions) -> None:
    """Write an Analyze 7.5 pair the SPM2 way: LAS voxel order, origin in the SPM field.

    Analyze keeps voxel sizes and nothing of orientation. SPM (and nibabel's
    ``Spm2AnalyzeImage``) read the first axis as running right to left, the others
    posterior-anterior and inferior-superior, with the world origin at the 1-based voxel in
    the ``origin`` field (``originator``). So the writer reorders the voxels of an axis-aligned
    image into that order and stores the origin; slope and intercept go in SPM2's
    ``funused1``/``funused2``. An origin between voxels cannot be stored: without ``--lossy``
    that is refused, with it the origin moves to the nearest voxel and the loss is recorded.
    """
    data = image.stored()
    while data.ndim < 3:
        data = data[..., np.newaxis]
    data, affine = _reorder(data, image.affine, ANALYZE_AXES)
    zooms = geometry.zooms(affine)
    header = nib.spm2analyze.Spm2AnalyzeHeader()
    header.set_data_shape(data.shape)
    header.set_data_dtype(data.dtype)
    extra = list(header.get_zooms()[3:])
    if data.ndim >= 4 and image.meta.repetition_time:
        extra[0] = image.meta.repetition_time
    header.set_zooms((*zooms, *extra))
    header["origin"][:3] = _spm_origin(image, affine, data.shape[:3], options, path)
    # SPM2 keeps the slope in funused1 and the intercept in funused2 (nibabel: scl_*);
    # nibabel's setter refuses an intercept for SPM headers, so the fields are set directly.
    header["scl_slope"] = image.slope
    header["scl_inter"] = image.inter
    descrip = image.meta.description or ""
    header["descrip"] = descrip.encode("latin-1", "replace")[:80]
    image.record_loss(ANALYZE_WARNING)
    img_name = re.sub(r"\.hdr$", ".img", path.name, flags=re.IGNORECASE)
    with open_output(path, options.compress_level) as fh:
        header.write_to(fh)
    with open_output(path.with_name(img_name), options.compress_level) as fh:
        write_fortran(fh, data)


def _reorder(
    data: np.ndarray, affine: np.ndarray, target: tuple[tuple[int, int], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip the first three voxel axes so axis n runs along ``target[n]``.

    ``target[n]`` is (world axis, sign). Returns the data and the affine of the same world
    points.
    """
    cos = geometry.direction_cosines(affine)
    world_of = [int(np.argmax(np.abs(cos[:, v]))) for v in range(3)]
    if sorted(world_of) != [0, 1, 2]:
        raise LossyConversionError(f"voxel axes do not map onto world axes ({world_of})")
    perm = [world_of.index(w) for w, _ in target]
    out = np.transpose(data, [*perm, *range(3, data.ndim)])
    new = np.eye(4)
    new[:3, :3] = affine[:3, perm]
    new[:3, 3] = affine[:3, 3]
    for n, (w, sign) in enumerate(target):
        if np.sign(new[w, n]) != sign:
            out = np.flip(out, axis=n)
            new[:3, 3] += new[:3, n] * (out.shape[n] - 1)
            new[:3, n] = -new[:3, n]
    return out, new


def _spm_origin(
    image: Image, affine: np.ndarray, shape: tuple[int, ...], options: WriteOptions, path: Path
) -> list[int]:
    """The 1-based voxel holding world (0, 0, 0), as SPM's int16 ``origin`` field wants.

    All zeros means "centre of the volume" to SPM and nibabel, which also covers centred
    images whose centre lies between voxels.
    """
    zooms = geometry.zooms(affine)
    dims = np.asarray(shape, dtype=np.float64)
    centred = -(dims - 1) / 2.0 * np.array([-zooms[0], zooms[1], zooms[2]])
    if np.allclose(affine[:3, 3], centred, atol=1e-5):
        return [0, 0, 0]
    diag = np.diag(affine)[:3]
    vox0 = -affine[:3, 3] / diag + 1.0  # 1-based voxel of the world origin
    origin = np.rint(vox0)
    usable = np.any(origin != 0) and np.all(origin > -dims) and np.all(origin < 2 * dims)
    shift = float(np.abs((origin - vox0) * diag).max()) if usable else float("inf")
    if usable and shift <= 1e-4:
        return [int(o) for o in origin]
    if usable:
        loss = f"origin moved {shift:.3g} mm to the nearest voxel (Analyze stores whole voxels)"
        why = f"the SPM origin is a whole voxel; this one lies {shift:.3g} mm off"
    else:
        loss = "world origin too far outside the volume for the SPM origin field: centred"
        why = "the world origin lies too far outside the volume for the SPM origin field"
    if not options.lossy:
        raise LossyConversionError(
            f"{path.name}: analyze cannot hold the origin: {why}",
            hint="use --lossy to convert anyway and record the loss",
        )
    image.record_loss(loss)
    return [int(o) for o in origin] if usable else [0, 0, 0]
