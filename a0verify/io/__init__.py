"""File I/O: images, masks and atomic output writing. The only package that touches disk formats.

Calls go one way: ``images`` (CT volumes) -> ``masks`` (label maps on top of the image
readers) -> the format modules (``dicom``, ``rawcheck``, ``atomic``)."""

from a0verify.io.atomic import atomic_path, write_json_atomic, write_text_atomic
from a0verify.io.checks import check_seed_inside, ensure_output_dir
from a0verify.io.images import read_image, sha256_of, write_image
from a0verify.io.masks import SegmentInfo, align_mask, read_mask, read_mask_with_segments

__all__ = [
    "SegmentInfo",
    "align_mask",
    "atomic_path",
    "check_seed_inside",
    "ensure_output_dir",
    "read_image",
    "read_mask",
    "read_mask_with_segments",
    "sha256_of",
    "write_image",
    "write_json_atomic",
    "write_text_atomic",
]
