"""Low-level checks that SimpleITK cannot do for us.

* ITK's NIfTI reader silently turns NaN voxels into 0 and reads a truncated uncompressed ``.nii``
  without complaint; :func:`nifti_problem` reads the raw NIfTI-1/-2 data to detect both.
* ITK's MetaIO/GDCM layers print diagnostics straight to the C++ ``stderr``;
  :func:`native_stderr_captured` redirects file descriptor 2 while a reader runs so the CLI keeps
  its one-line error contract (the captured text is returned for the error message).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import numpy as np

# NIfTI datatype code -> numpy dtype (float types only need the NaN scan)
_FLOAT_CODES = {16: "f4", 64: "f8", 32: "c8", 1792: "c16"}
_CHUNK = 1 << 24


def _open(path: Path) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def nifti_problem(path: str | os.PathLike[str], *, full: bool = False) -> str | None:
    """Describe what is wrong with the raw data of a NIfTI file (``.nii`` / ``.nii.gz``):
    ``"truncated ..."`` when the file holds fewer data bytes than its header declares, or
    ``"non-finite ..."`` when a floating-point voxel is NaN or infinite. None when fine or when
    the file is not NIfTI (other readers then report their own errors). Integer ``.nii.gz``
    data are decompressed to the end only when ``full`` or when the gzip trailer's size does
    not match the header (ITK reads a cut gzip stream without complaint).
    """
    p = Path(path)
    name = p.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return None
    try:
        with _open(p) as fh:
            head = fh.read(540)
            if len(head) < 348:
                return "not a NIfTI file, or a truncated header"
            hdr = _parse_header(head)
            if hdr is None:
                return None
            endian, datatype, bitpix, nvox, vox_offset = hdr
            nbytes = nvox * (bitpix // 8)
            if p.suffix.lower() != ".gz":
                size = p.stat().st_size
                if size < vox_offset + nbytes:
                    return (f"truncated file ({size} bytes, header declares "
                            f"{vox_offset + nbytes})")
                if datatype not in _FLOAT_CODES:
                    return None
            elif datatype not in _FLOAT_CODES:
                # A complete single-member gzip stream ends with ISIZE = uncompressed size mod
                # 2**32: an O(1) test; only on a mismatch is the stream read to the end.
                if not full and _gzip_isize(p) == (vox_offset + nbytes) % (1 << 32):
                    return None
                # integer data: a gzip stream cut short is detected by reading it to the end
                fh.seek(vox_offset)
                got = 0
                while chunk := fh.read(_CHUNK):
                    got += len(chunk)
                return None if got >= nbytes else f"truncated data ({got} of {nbytes} bytes)"
            dtype = np.dtype(endian + _FLOAT_CODES[datatype])
            fh.seek(vox_offset)
            got = 0
            bad = False
            step = _CHUNK - _CHUNK % dtype.itemsize
            while got < nbytes:
                chunk = fh.read(min(step, nbytes - got))
                if not chunk:
                    break
                usable = len(chunk) - len(chunk) % dtype.itemsize
                arr = np.frombuffer(chunk[:usable], dtype=dtype)
                if not bad and not np.all(np.isfinite(arr)):
                    bad = True
                got += len(chunk)
            if got < nbytes:
                return f"truncated data ({got} of {nbytes} bytes)"
            return "non-finite voxel values (NaN or Inf)" if bad else None
    except (EOFError, zlib.error, gzip.BadGzipFile):
        return "truncated or corrupt gzip data"
    except OSError:
        return None


def _gzip_isize(p: Path) -> int | None:
    with open(p, "rb") as raw:
        raw.seek(0, os.SEEK_END)
        if raw.tell() < 18:
            return None
        raw.seek(-4, os.SEEK_END)
        return int(struct.unpack("<I", raw.read(4))[0])


def _parse_header(head: bytes) -> tuple[str, int, int, int, int] | None:
    for endian in ("<", ">"):
        (size,) = struct.unpack(endian + "i", head[:4])
        if size == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
            (vox_offset,) = struct.unpack(endian + "f", head[108:112])
            break
        if size == 540 and len(head) >= 540:
            datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            (vox_offset,) = struct.unpack(endian + "q", head[168:176])
            break
    else:
        return None
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or bitpix <= 0 or bitpix % 8:
        return None
    nvox = 1
    for d in dims[1:ndim + 1]:
        nvox *= max(int(d), 1)
    return endian, int(datatype), int(bitpix), nvox, int(vox_offset)


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Redirect OS-level stderr (fd 2) to a temporary file while the block runs; the captured
    text is appended to the yielded list after the block. No-op when fd 2 is unavailable."""
    captured: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield captured
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace").strip()
            if text:
                captured.append(text)
