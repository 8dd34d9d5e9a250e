"""Known plugin/core bugs the hostile suite finds, kept as strict xfails.

Each group names the bug and where it is; its case ids are exact (ids depend on HOSTILE_SEED,
default 20261126). When a bug is fixed its cases XPASS and strict xfail fails the run: delete
the ids then. ``PATTERNS`` holds fnmatch patterns for ids of test_paths.py and test_fuzz.py.
"""

from __future__ import annotations

import fnmatch

#: group -> (format it needs installed, the bug and where it is)
REASONS: dict[str, tuple[str, str]] = {
    "NIFTI_DIMS": (
        "nifti1",
        "plugins/anyconv-nifti/src/anyconv_nifti/reader.py:read_nifti does not validate dim[0] "
        "(1..7) nor zero/negative sizes: nibabel accepts them, the image is converted (or the "
        "writer fails with exit 5 at anyconv_nifti/writer.py:116 _set_geometry 'Expecting N "
        "zoom values')",
    ),
    "NIFTI_SIZE": (
        "nifti1",
        "plugins/anyconv-nifti/src/anyconv_nifti/reader.py:_check_size returns early for .gz "
        "('gzip hides the size') and np.prod(dims, int64) can wrap: dims 32767^3 / 2^31 reach "
        "core/src/anyconv/model.py:309 UnscaledProxy.__array__ and stop only on MemoryError "
        "(bound the declared bytes by ~1032x the compressed size, or read the gzip ISIZE "
        "trailer)",
    ),
    "NIFTI_FIELDS": (
        "nifti1",
        "plugins/anyconv-nifti/src/anyconv_nifti/writer.py:162 _set_fields copies raw "
        "intent_code / aux_file of a corrupt input from extras: KeyError 'Unknown intent code' "
        "or UnicodeEncodeError, exit 5 (reader.py:_extras should validate or drop them)",
    ),
    "NIFTI_ZERO_AXIS": (
        "nifti1",
        "plugins/anyconv-nifti/src/anyconv_nifti/reader.py:read_nifti accepts a flipped dim[] "
        "that gives an empty axis; the NIfTI written does not load (nibabel: 'Integer index 0 "
        "too large')",
    ),
    "NIFTI_GEOM": (
        "nifti1",
        "plugins/anyconv-nifti/src/anyconv_nifti/reader.py:read_nifti passes NaN/inf/zero "
        "pixdim, srow, quatern, qoffset through: exit 5 from the writer (nibabel 'Could not "
        "decompose affine') or a written file whose affine is non-finite or singular; should "
        "be ReadError",
    ),
    "MINC_STEP0": (
        "minc2",
        "plugins/anyconv-minc/src/anyconv_minc/_minc.py:affine_of accepts step=0 (singular "
        "affine): exit 5 from the NIfTI writer ('Could not decompose affine') instead of exit "
        "4",
    ),
    "MGH_ZERO": (
        "mgh",
        "plugins/anyconv-mgh/src/anyconv_mgh/reader.py:vox2ras accepts zero delta or zero Mdc "
        "with goodRASflag=1 (singular affine): exit 5 from the writer instead of exit 4",
    ),
    "NRRD_DIRS": (
        "nrrd",
        "plugins/anyconv-nrrd/src/anyconv_nrrd/reader.py:read_nrrd accepts all-zero space "
        "directions (singular, exit 5 at the writer) and 1e308 directions whose affine "
        "overflows to inf",
    ),
    "META_SPACING": (
        "metaimage",
        "plugins/anyconv-metaimage/src/anyconv_metaimage/reader.py:read_metaimage accepts "
        "ElementSpacing 1e308: the affine overflows to inf and is written",
    ),
    "META_DEVZERO": (
        "metaimage",
        "plugins/anyconv-metaimage/src/anyconv_metaimage/_header.py:164 read_header_text is "
        "quadratic on input without newlines (buf += chunk; buf.find from pos over the whole "
        "buffer): --from metaimage on /dev/zero takes ~35 s to reach its 64 MiB limit",
    ),
    "AFNI_DEV": (
        "afni",
        "plugins/anyconv-afni/src/anyconv_afni/reader.py:75 _load_header: nibabel "
        "AFNIHeader.from_fileobj reads the whole HEAD: --from afni on /dev/zero or /dev/urandom "
        "(or any huge .HEAD) grows past 2.7 GiB until MemoryError; cap the header size first",
    ),
    "PARREC_DEV": (
        "parrec",
        "examples/anyconv-parrec/src/anyconv_parrec/reader.py:139 _read_text: path.read_bytes() "
        "of the whole .PAR: --from parrec on /dev/zero reads until MemoryError (>2.5 GiB), on "
        "/dev/urandom past 10 s; cap the header size first",
    ),
    "CORE_FIFO": (
        "nifti1",
        "core/src/anyconv/detect.py:read_head opens a FIFO named like an image and blocks "
        "forever: Registry.read checks only exists()/is_dir(); non-regular files should be "
        "refused (ReadError) before opening",
    ),
}

#: group -> exact case ids of test_corrupt.py
CASES: dict[str, list[str]] = {
    "NIFTI_DIMS": [
        "analyze:spm99/avg152T1.hdr:dim0=-1",
        "analyze:spm99/avg152T1.hdr:dim0=0",
        "analyze:spm99/avg152T1.hdr:dim0=100",
        "analyze:spm99/avg152T1.hdr:dim0=9",
        "analyze:spm99/avg152T1.hdr:dim1=0",
        "nifti1:nibabel/anatomical.nii:dim0=-1",
        "nifti1:nibabel/anatomical.nii:dim0=0",
        "nifti1:nibabel/anatomical.nii:dim0=100",
        "nifti1:nibabel/anatomical.nii:dim0=9",
        "nifti1:nibabel/anatomical.nii:dim1=0",
        "nifti1:nibabel/example4d.nii.gz:dim0=0",
        "nifti1:nibabel/example4d.nii.gz:dim1=0",
        "nifti1:niivue/ras.hdr:dim0=-1",
        "nifti1:niivue/ras.hdr:dim0=0",
        "nifti1:niivue/ras.hdr:dim1=0",
        "nifti2:nibabel/example_nifti2.nii.gz:dim0=0",
        "nifti2:nibabel/example_nifti2.nii.gz:dim1=0",
    ],
    "NIFTI_GEOM": [
        "analyze:spm99/avg152T1.hdr:pixdim123=1e38",
        "analyze:spm99/avg152T1.hdr:pixdim1=-inf",
        "analyze:spm99/avg152T1.hdr:pixdim1=inf",
        "analyze:spm99/avg152T1.hdr:pixdim1=nan",
        "nifti1:nibabel/anatomical.nii:pixdim1=-inf",
        "nifti1:nibabel/anatomical.nii:pixdim1=inf",
        "nifti1:nibabel/anatomical.nii:pixdim1=nan",
        "nifti1:nibabel/anatomical.nii:qoffset=inf",
        "nifti1:nibabel/anatomical.nii:quatern=nan",
        "nifti1:nibabel/anatomical.nii:srow=0",
        "nifti1:nibabel/anatomical.nii:srow=1e38",
        "nifti1:nibabel/anatomical.nii:srow=inf",
        "nifti1:nibabel/anatomical.nii:srow=nan",
        "nifti1:nibabel/example4d.nii.gz:pixdim1=-inf",
        "nifti1:nibabel/example4d.nii.gz:pixdim1=inf",
        "nifti1:nibabel/example4d.nii.gz:pixdim1=nan",
        "nifti1:nibabel/example4d.nii.gz:qoffset=inf",
        "nifti1:nibabel/example4d.nii.gz:quatern=nan",
        "nifti1:nibabel/example4d.nii.gz:srow=0",
        "nifti1:nibabel/example4d.nii.gz:srow=1e38",
        "nifti1:nibabel/example4d.nii.gz:srow=inf",
        "nifti1:nibabel/example4d.nii.gz:srow=nan",
        "nifti1:niivue/ras.hdr:pixdim1=-inf",
        "nifti1:niivue/ras.hdr:pixdim1=inf",
        "nifti1:niivue/ras.hdr:pixdim1=nan",
        "nifti1:niivue/ras.hdr:qoffset=inf",
        "nifti1:niivue/ras.hdr:quatern=nan",
        "nifti1:niivue/ras.hdr:srow=0",
        "nifti1:niivue/ras.hdr:srow=1e38",
        "nifti1:niivue/ras.hdr:srow=inf",
        "nifti1:niivue/ras.hdr:srow=nan",
        "nifti1:niivue_nifti_space/LPS.nii.gz:flip0",
        "nifti2:nibabel/example_nifti2.nii.gz:flip4",
        "nifti2:nibabel/example_nifti2.nii.gz:pixdim123=inf",
        "nifti2:nibabel/example_nifti2.nii.gz:pixdim1=nan",
        "nifti2:nibabel/example_nifti2.nii.gz:quatern=nan",
        "nifti2:nibabel/example_nifti2.nii.gz:srow=0",
        "nifti2:nibabel/example_nifti2.nii.gz:srow=1e308",
        "nifti2:nibabel/example_nifti2.nii.gz:srow=nan",
    ],
    "NIFTI_SIZE": [
        "bomb:nifti1:huge",
        "nifti1:nibabel/example4d.nii.gz:dim123=32767",
        "nifti1:nibabel/example4d.nii.gz:dim4=32767",
        "nifti2:nibabel/example_nifti2.nii.gz:dim1=2^31",
        "nifti2:nibabel/example_nifti2.nii.gz:flip0",
    ],
    "AFNI_DEV": [
        "fs:afni:/dev/urandom",
        "fs:afni:/dev/zero",
    ],
    "CORE_FIFO": [
        "fs:any:fifo.nii",
    ],
    "META_DEVZERO": [
        "fs:metaimage:/dev/zero",
    ],
    "PARREC_DEV": [
        "fs:parrec:/dev/urandom",
        "fs:parrec:/dev/zero",
    ],
    "META_SPACING": [
        "metaimage:i2nii/mha.mha:spacing=1e308",
        "metaimage:panimg/image10x10x10.mhd:spacing=1e308",
    ],
    "MGH_ZERO": [
        "mgh:i2nii/mgh.mgz:delta=0",
        "mgh:i2nii/mgh.mgz:mdc=0",
        "mgh:nibabel/test.mgz:delta=0",
        "mgh:nibabel/test.mgz:mdc=0",
        "mgh:niivue/wm.mgz:delta=0",
        "mgh:niivue/wm.mgz:mdc=0",
    ],
    "MINC_STEP0": [
        "minc2:nibabel/minc2_4d.mnc:xspace.step=0.0",
        "minc2:nibabel/minc2_4d.mnc:yspace.step=0.0",
        "minc2:nibabel/minc2_4d.mnc:zspace.step=0.0",
        "minc2:nibabel/small.mnc:xspace.step=0.0",
        "minc2:nibabel/small.mnc:yspace.step=0.0",
        "minc2:nibabel/small.mnc:zspace.step=0.0",
    ],
    "NIFTI_ZERO_AXIS": [
        "nifti1:nibabel/anatomical.nii:flip4",
        "nifti1:nibabel/example4d.nii.gz:flip1",
    ],
    "NIFTI_FIELDS": [
        "nifti1:niivue/ras.hdr:flip5",
        "nifti1:niivue_nifti_space/RAS.nii.gz:flip4",
        "nifti1:niivue_nifti_space/RAS.nii.gz:flip7",
    ],
    "NRRD_DIRS": [
        "nrrd:i2nii/nrrd.nhdr:dirs=0",
        "nrrd:i2nii/nrrd.nhdr:dirs=1e308",
        "nrrd:pynrrd/BallBinary30x30x30.nhdr:dirs=0",
        "nrrd:pynrrd/BallBinary30x30x30.nhdr:dirs=1e308",
        "nrrd:pynrrd/BallBinary30x30x30.nrrd:dirs=0",
        "nrrd:pynrrd/BallBinary30x30x30.nrrd:dirs=1e308",
    ],
}

_FUZZ_NIFTI2 = (
    "fuzz: the NIfTI-2 reader lets huge declared dims of a .nii.gz reach np.asarray "
    "(core/src/anyconv/model.py:309 UnscaledProxy.__array__): MemoryError, see NIFTI_SIZE"
)

_FUZZ_MINC1 = (
    "fuzz: a MINC1 header with a huge attribute/variable count or length makes nibabel's "
    "netcdf_file allocate it: plugins/anyconv-minc/src/anyconv_minc/reader.py:201 read_minc1 "
    "stops only on MemoryError (check NetCDF counts and lengths against the file size first)"
)
_CLI_NIBABEL_LOG = (
    "stderr is not one line: nibabel's own logger prints 'sizeof_hdr should be 540; set "
    "sizeof_hdr to 540', 'qform_code ... not valid' before the error; "
    "core/src/anyconv/cli.py:_setup_logging configures only the 'anyconv' logger (silence "
    "library loggers such as nibabel.imageglobals.logger there, or in the NIfTI reader)"
)
_CLI_DICOM_WARNING = (
    "stderr is not one line: for a single-file input plugins/anyconv-dicom/src/anyconv_dicom/"
    "reader.py:43 logs 'anyconv: warning: skipping ... unusable DICOM header' and then the "
    "error 'no DICOM image found' (say it once, as the error)"
)

#: fnmatch pattern -> (format it needs installed, reason), for test_paths.py and test_fuzz.py
PATTERNS: dict[str, tuple[str, str]] = {
    "regression:nifti2/*": ("nifti2", _FUZZ_NIFTI2),
    "regression:minc1/*": ("minc1", _FUZZ_MINC1),
    "cli:nifti2:nibabel/example_nifti2.nii.gz:dim0=9": ("nifti2", _CLI_NIBABEL_LOG),
    "cli:dicom:pydicom/rtdose.dcm:SamplesPerPixel=5": ("dicom", _CLI_DICOM_WARNING),
}

#: format -> substrings of fuzz findings that are known bugs (the short CI run tolerates
#: them and prints them; their saved inputs under regressions/ are strict xfails)
FUZZ_KNOWN: dict[str, list[str]] = {
    "nifti1": ["failed allocation: core/src/anyconv/model.py"],
    "nifti2": ["failed allocation: core/src/anyconv/model.py"],
    "minc1": ["failed allocation: plugins/anyconv-minc/src/anyconv_minc/reader.py"],
}


def fuzz_known(fmt: str, why: str) -> bool:
    """Whether a fuzz finding is a known bug."""
    return any(s in why for s in FUZZ_KNOWN.get(fmt, []))


_BY_ID = {i: group for group, ids in CASES.items() for i in ids}


def reason_for(case_id: str) -> str | None:
    """The known bug a case shows, if any."""
    group = _BY_ID.get(case_id)
    if group is not None:
        return f"[{group}] {REASONS[group][1]}"
    for pattern, (_, reason) in PATTERNS.items():
        if fnmatch.fnmatchcase(case_id, pattern):
            return reason
    return None


def entries(installed: set[str]) -> list[tuple[str, str]]:
    """``(case id, group)`` of every known corrupt-input case whose format is installed."""
    return [(i, g) for g, ids in CASES.items() if REASONS[g][0] in installed for i in ids]
