"""The result of a registration and writing it out (transform + QA images, atomically)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk


@dataclass
class RegistrationResult:
    """Transform post -> pre (ITK convention) plus quality figures.

    ``uncertainty_mm`` is an estimated 95 % half-width (mm) of the registration error near the
    zone; ``qa_images`` holds ``checkerboard`` and ``difference`` images (float32 HU, ROI grid).
    """

    method: str
    transform: sitk.Transform
    metrics: dict[str, Any] = field(default_factory=dict)
    uncertainty_mm: float = 0.0
    parameter_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    qa_images: dict[str, sitk.Image] = field(default_factory=dict, repr=False)
    uncertainty_terms: dict[str, float] = field(default_factory=dict)
    reliability_notes: list[str] = field(default_factory=list)

    @property
    def reliable(self) -> bool:
        """False when the evidence near the zone is weak (see ``reliability_notes``): the band
        is widened and a verdict must not be decisive in the unsafe direction."""
        return not self.reliability_notes

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (no images, no transform coefficients)."""
        return {
            "method": self.method,
            "metrics": self.metrics,
            "uncertainty_mm": self.uncertainty_mm,
            "uncertainty_terms_mm": self.uncertainty_terms,
            "reliable": self.reliable,
            "reliability_notes": self.reliability_notes,
            "parameter_files": self.parameter_files,
            "warnings": self.warnings,
            "timings_s": self.timings_s,
            "transform_type": self.transform.GetName(),
        }


def write_registration_outputs(result: RegistrationResult, out_dir: str | os.PathLike[str]
                               ) -> dict[str, Path]:
    """Write ``transform.h5`` and the QA images (``qa_<name>.nrrd``) into ``out_dir``, atomically.

    Returns {name: path}; ``"transform"`` is always present.
    """
    from a0verify.io import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    final = out / "transform.h5"
    with atomic_path(final) as tmp:
        sitk.WriteTransform(result.transform, str(tmp))
    paths["transform"] = final
    for name, img in result.qa_images.items():
        p = out / f"qa_{name}.nrrd"
        with atomic_path(p) as tmp:
            sitk.WriteImage(img, str(tmp), True)
        paths[name] = p
    return paths
