"""Fast access to itk-elastix: the few ITK Python classes registration needs, loaded in ~1 s.

``import itk; itk.ElastixRegistrationMethod`` goes through ITK's lazy loader, which loads every
ITK module the Elastix module *declares* as a dependency, transitively: 58 extension modules,
including ``_ITKImageIntensityPython`` (137 MB, 6-7 s on its own). That costs 15-19 s of one core
and ~800 MB before the first registration, more than the registration itself.

The registration needs only five SWIG modules (the registration method, the parameter object,
the NumPy buffer bridge, the matrix type and the global thread setting). Importing those
directly loads what they import themselves (about 130 small modules), in ~1 s. The objects are
the same classes the lazy loader would return, so the numerical results are identical
(``tests/test_registration_backend.py`` checks this).

The direct imports use the module layout of the itk 5.4 wheels. If that layout is not found
(another itk version), :func:`load` falls back to the lazy loader: slower, never wrong.

Images cross this module as ``SimpleITK.Image``; NumPy arrays only inside. Axis order: NumPy
arrays are ``[z, y, x]``, ITK sizes/spacings/origins ``(x, y, z)`` in mm, like SimpleITK.
"""
from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from .. import geometry

__all__ = ["Elastix", "load", "preload", "set_threads"]

_FAST_MODULES = {
    "method": "itk.itkElastixRegistrationMethodPython",
    "params": "itk.elxParameterObjectPython",
    "buffer": "itk.itkPyBufferPython",
    "matrix": "itk.itkMatrixPython",
    "vnl": "itk.vnl_matrixPython",
    "common": "itk.ITKCommonBasePython",
    "duplicator": "itk.itkImageDuplicatorPython",
}


@dataclass(frozen=True)
class Elastix:
    """Handles on the itk-elastix classes a0verify uses (3-D, float32 images, uint8 masks)."""

    registration_cls: Any  # itk::ElastixRegistrationMethod<Image<float,3>, Image<float,3>>
    parameter_object_cls: Any  # elastix::ParameterObject
    buffer_f: Any  # itk::PyBuffer<Image<float,3>>
    buffer_uc: Any  # itk::PyBuffer<Image<unsigned char,3>>
    matrix_cls: Any  # itk::Matrix<double,3,3>
    vnl_matrix_cls: Any  # vnl_matrix<double>
    multithreader: Any  # itk::MultiThreaderBase
    duplicator_f: Any  # itk::ImageDuplicator<Image<float,3>>
    duplicator_uc: Any  # itk::ImageDuplicator<Image<unsigned char,3>>
    fast: bool  # True: direct SWIG imports; False: ITK's lazy loader

    def parameter_object(self) -> Any:
        """A new, empty ``elastix::ParameterObject``."""
        return self.parameter_object_cls.New()

    def registration(self, fixed: sitk.Image, moving: sitk.Image) -> Any:
        """A new ``ElastixRegistrationMethod`` on float32 copies of ``fixed`` and ``moving``."""
        return self.registration_cls.New(self.image(fixed), self.image(moving))

    def image(self, img: sitk.Image, pixel: str = "F") -> Any:
        """ITK copy of a 3-D SimpleITK image: ``pixel`` "F" (float32) or "UC" (uint8).

        Geometry (spacing and origin in mm, direction cosines) is copied exactly."""
        dtype = np.float32 if pixel == "F" else np.uint8
        arr = np.ascontiguousarray(sitk.GetArrayViewFromImage(img), dtype=dtype)
        buf, dup = ((self.buffer_f, self.duplicator_f) if pixel == "F"
                    else (self.buffer_uc, self.duplicator_uc))
        # a view of ``arr``, deep-copied so the ITK image owns its buffer (PyBuffer's own
        # GetImageFromArray does the same through the lazy loader, costing ~1 s once)
        duplicator = dup.New(buf.GetImageViewFromArray(arr, False, True))
        duplicator.Update()
        out = duplicator.GetOutput()
        out.SetSpacing([float(v) for v in img.GetSpacing()])
        out.SetOrigin([float(v) for v in img.GetOrigin()])
        direction = geometry.direction_matrix(img)
        vnl = self.vnl_matrix_cls(3, 3)
        for i in range(3):
            for j in range(3):
                vnl.put(i, j, float(direction[i, j]))
        out.SetDirection(self.matrix_cls(vnl))
        return out

    def set_threads(self, n: int) -> None:
        """ITK's global default thread count (bounds elastix)."""
        self.multithreader.SetGlobalDefaultNumberOfThreads(int(n))


_LOCK = threading.Lock()
_LOADED: Elastix | None = None
_PRELOADER: threading.Thread | None = None
_THREADS: int | None = None


def set_threads(n: int | None) -> None:
    """Bound ITK's (elastix's) global default thread count to ``n`` (``None``: ITK's default).

    Applied at once when loaded, otherwise as soon as :func:`load` finishes (no forced load)."""
    global _THREADS
    with _LOCK:
        _THREADS = int(n) if n else None
        if _LOADED is not None and _THREADS:
            _LOADED.set_threads(_THREADS)


def _load_fast() -> Elastix:
    import itk  # noqa: F401  (the package must be initialised before its submodules)

    mods = {k: importlib.import_module(v) for k, v in _FAST_MODULES.items()}
    return Elastix(
        registration_cls=mods["method"].itkElastixRegistrationMethodIF3IF3,
        parameter_object_cls=mods["params"].elastixParameterObject,
        buffer_f=mods["buffer"].itkPyBufferIF3,
        buffer_uc=mods["buffer"].itkPyBufferIUC3,
        matrix_cls=mods["matrix"].itkMatrixD33,
        vnl_matrix_cls=mods["vnl"].vnl_matrixD,
        multithreader=mods["common"].itkMultiThreaderBase,
        duplicator_f=mods["duplicator"].itkImageDuplicatorIF3,
        duplicator_uc=mods["duplicator"].itkImageDuplicatorIUC3,
        fast=True,
    )


def _load_lazy() -> Elastix:
    import itk

    img_f = itk.Image[itk.F, 3]
    img_uc = itk.Image[itk.UC, 3]
    return Elastix(
        registration_cls=itk.ElastixRegistrationMethod[img_f, img_f],
        parameter_object_cls=itk.ParameterObject,
        buffer_f=itk.PyBuffer[img_f],
        buffer_uc=itk.PyBuffer[img_uc],
        matrix_cls=itk.Matrix[itk.D, 3, 3],
        vnl_matrix_cls=itk.vnl_matrix[itk.D],
        multithreader=itk.MultiThreaderBase,
        duplicator_f=itk.ImageDuplicator[img_f],
        duplicator_uc=itk.ImageDuplicator[img_uc],
        fast=False,
    )


def load() -> Elastix:
    """The itk-elastix handles, loaded once per process (thread-safe; waits for :func:`preload`).

    The environment variable ``A0VERIFY_ITK_LAZY=1`` forces ITK's lazy loader (the tests use it
    to check that both paths give identical registrations)."""
    global _LOADED
    with _LOCK:
        if _LOADED is None:
            if os.environ.get("A0VERIFY_ITK_LAZY") != "1":
                try:
                    _LOADED = _load_fast()
                except (ImportError, AttributeError):
                    _LOADED = _load_lazy()
            else:
                _LOADED = _load_lazy()
            if _THREADS:
                _LOADED.set_threads(_THREADS)
        return _LOADED


def preload() -> None:
    """Start :func:`load` in a background thread (about 1 s; overlaps SimpleITK work)."""
    global _PRELOADER
    if _LOADED is None and _PRELOADER is None:
        _PRELOADER = threading.Thread(target=load, name="a0verify-elastix-load", daemon=True)
        _PRELOADER.start()
