"""Signed ablative margin: numeric core (:mod:`.core`) and image API (:mod:`.api`)."""

from a0verify.margin.api import (
    DeficitPatch,
    LesionMargin,
    MarginResult,
    SurfaceMesh,
    compute_margin,
    split_lesions,
)

__all__ = [
    "DeficitPatch",
    "LesionMargin",
    "MarginResult",
    "SurfaceMesh",
    "compute_margin",
    "split_lesions",
]
