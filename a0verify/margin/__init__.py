"""Signed ablative margin: numeric core (:mod:`.core`, :mod:`.lp`) and the image API
(:mod:`.api`) built from small modules: :mod:`.results` (types), :mod:`.lesions`,
:mod:`.levelset`, :mod:`.field`, :mod:`.surface`, :mod:`.refinement`, :mod:`.uncertainty`,
:mod:`.bordervoxel`."""

from a0verify.margin.api import compute_margin, load_kernels, start_loading_kernels
from a0verify.margin.lesions import split_lesions
from a0verify.margin.results import DeficitPatch, LesionMargin, MarginResult, SurfaceMesh

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
