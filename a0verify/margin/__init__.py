"""Signed ablative margin: numeric core (:mod:`.core`) and image API (:mod:`.api`)."""

from a0verify.margin.api import (
    DeficitPatch,
    LesionMargin,
    MarginResult,
    SurfaceMesh,
    compute_margin,
    load_kernels,
    split_lesions,
    start_loading_kernels,
)

__all__ = [
    "DeficitPatch",
    "LesionMargin",
    "MarginResult",
    "SurfaceMesh",
    "compute_margin",
    "load_kernels",
    "split_lesions",
    "start_loading_kernels",
]
