"""Stage ``read_inputs``: what a case is asked to do (:class:`CaseRequest`, :class:`CaseSettings`)
and every input file read and checked once, where it enters (:func:`read_inputs`).

Images are LPS mm as stored; masks are UInt16 label images on their own grid (the ablation zone
and the liver are put on the post grid in ``run``); seeds are LPS mm. Every problem is an
InputError naming the file (or option) and the problem, raised before anything is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from a0verify import parallel
from a0verify.errors import InputError
from a0verify.io import check_seed_inside, read_image, read_mask, sha256_of
from a0verify.io.masks import check_overlap
from a0verify.io.rtstruct import read_mask_input
from a0verify.report.identity import identity_record

Seed = tuple[float, float, float]
#: Registration methods (``none``: the images share one physical space).
METHODS = ("none", "rigid", "deformable")


@dataclass(frozen=True)
class CaseSettings:
    """How to analyse a case: threshold (mm), registration method, thread bound (None: all
    usable CPUs). Validated on construction (InputError naming the option)."""

    threshold_mm: float = 5.0
    registration: str = "deformable"
    threads: int | None = None

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.threshold_mm) <= 50.0):
            raise InputError(f"--threshold {self.threshold_mm} mm is outside 0-50 mm")
        if self.registration not in METHODS:
            raise InputError(f"--registration {self.registration!r}: use one of "
                             f"{', '.join(METHODS)}")
        if self.threads is not None and int(self.threads) < 1:
            raise InputError(f"--threads {self.threads}: must be at least 1")


@dataclass(frozen=True)
class CaseRequest:
    """The inputs of a case as the user named them (paths; seeds in LPS mm).

    ``a0verify run``: ``pre`` and ``post`` CTs, the tumour as a mask on the pre CT or seeds,
    the ablation zone as a mask on the post CT or seeds, optional liver mask (post grid).
    ``a0verify margin``: ``tumor`` and ``ablation`` masks (aligned in physical space, or the
    tumour on the pre grid with ``transform``: post points -> pre points), optional
    ``registration_json`` (QA, uncertainty) and ``post`` (figure background only; the image
    RT Structure Sets are rasterised onto).
    Masks may be RT Structure Sets (``*_structures`` choose ROIs by name).
    """

    command: str = "run"
    pre: str | Path | None = None
    post: str | Path | None = None
    tumor: str | Path | None = None
    ablation: str | Path | None = None
    tumor_seeds: tuple[Seed, ...] = ()
    ablation_seeds: tuple[Seed, ...] = ()
    liver: str | Path | None = None
    pre_series: str | None = None
    post_series: str | None = None
    transform: str | Path | None = None
    registration_json: str | Path | None = None
    #: RT Structure Set ROIs to use (by name; tumour: one lesion label each)
    tumor_structures: tuple[str, ...] = ()
    ablation_structures: tuple[str, ...] = ()
    #: no patient identifiers in any output (:mod:`a0verify.report.identity`)
    anonymize: bool = False

    def input_paths(self) -> dict[str, str | None]:
        """The input files of this command, by role (None: not given)."""
        keys = (("pre", "post", "tumor", "ablation", "liver") if self.command == "run" else
                ("tumor", "ablation", "transform", "registration_json", "post"))
        return {k: (str(v) if (v := getattr(self, k)) is not None else None) for k in keys}


# --------------------------------------------------------------------------- stage results
@dataclass
class CaseInputs:
    """Stage ``read_inputs``: every input read and checked (images LPS mm; masks UInt16 labels
    on their own grid, except the ablation zone and liver, put on the post grid in ``run``)."""

    pre: sitk.Image | None
    post: sitk.Image | None
    tumor: sitk.Image | None
    ablation: sitk.Image | None
    liver: sitk.Image | None = None
    transform: sitk.Transform | None = None
    registration_record: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    hashes: parallel.Task[dict[str, str | None]] | None = field(default=None, repr=False)
    #: report.json ``identity`` (DICOM UIDs, patient, study; or anonymized) and
    #: ``mask_sources`` (masks from RT Structure Sets), see :mod:`a0verify.report.identity`
    identity: dict[str, Any] = field(default_factory=dict)
    mask_sources: dict[str, dict[str, Any] | None] = field(default_factory=dict)


def read_inputs(req: CaseRequest) -> CaseInputs:
    """Stage ``read_inputs``: read and check every input of ``req`` once.

    Raises InputError (one line naming the file and the problem) for a missing or unreadable
    file, an empty mask, a mask that does not overlap its image, a seed outside its image,
    or a missing or contradictory combination of inputs.
    """
    hashes = parallel.in_thread("hash inputs", _hash_inputs, req.input_paths())
    if req.command == "run":
        return _read_run_inputs(req, hashes)
    return _read_margin_inputs(req, hashes)


def _hash_inputs(paths: dict[str, str | None]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for k, v in paths.items():
        try:
            out[k] = sha256_of(v) if v else None
        except OSError:  # a missing file is reported by the reader, with its name
            out[k] = None
    return out


def _read_run_inputs(req: CaseRequest, hashes: parallel.Task[dict[str, str | None]]
                     ) -> CaseInputs:
    if req.pre is None or req.post is None:
        raise InputError("give both --pre IMG and --post IMG")
    if (req.tumor is None) == (not req.tumor_seeds):
        raise InputError("give exactly one of --tumor MASK or --tumor-seed X,Y,Z")
    if (req.ablation is None) == (not req.ablation_seeds):
        raise InputError("give exactly one of --ablation MASK or --ablation-seed X,Y,Z")
    warnings: list[str] = []
    pre = read_image(req.pre, what="pre-ablation CT", series_uid=req.pre_series,
                     warnings=warnings)
    post = read_image(req.post, what="post-ablation CT", series_uid=req.post_series,
                      warnings=warnings)
    for s in req.tumor_seeds:
        check_seed_inside(pre, s, f"{req.pre} (tumour seed)")
    for s in req.ablation_seeds:
        check_seed_inside(post, s, f"{req.post} (ablation seed)")
    tumor = ablation = None
    sources: dict[str, dict[str, Any] | None] = {}
    if req.tumor is not None:  # kept on its own grid (the transfer works in physical space)
        tumor, sources["tumor"] = read_mask_input(
            req.tumor, what="tumour mask", image=pre, structures=req.tumor_structures,
            option="--tumor-structure", warnings=warnings)
        check_overlap(tumor, pre, what="tumour mask", path=req.tumor)
    if req.ablation is not None:
        ablation, sources["ablation"] = read_mask_input(
            req.ablation, what="ablation mask", image=post, structures=req.ablation_structures,
            option="--ablation-structure", align=True, warnings=warnings)
    liver = None
    if req.liver is not None:
        liver = read_mask(req.liver, what="liver mask", warnings=warnings, reference=post)
    identity = identity_record({"pre": (str(req.pre), req.pre_series),
                                "post": (str(req.post), req.post_series)},
                               anonymize=req.anonymize, warnings=warnings)
    return CaseInputs(pre=pre, post=post, tumor=tumor, ablation=ablation, liver=liver,
                      warnings=warnings, hashes=hashes, identity=identity, mask_sources=sources)


def _read_margin_inputs(req: CaseRequest, hashes: parallel.Task[dict[str, str | None]]
                        ) -> CaseInputs:
    if req.tumor is None or req.ablation is None:
        raise InputError("give both --tumor MASK and --ablation MASK")
    warnings: list[str] = []
    post = (read_image(req.post, what="post-ablation CT", warnings=warnings)
            if req.post else None)
    sources: dict[str, dict[str, Any] | None] = {}
    ablation, sources["ablation"] = read_mask_input(
        req.ablation, what="ablation mask", image=post, structures=req.ablation_structures,
        option="--ablation-structure", warnings=warnings)
    transform = _read_transform(req.transform) if req.transform else None
    # the margin works in physical space on each mask's own grid (no resampling, which would
    # cost sub-voxel accuracy); without a transform the masks must overlap physically
    tumor, sources["tumor"] = read_mask_input(
        req.tumor, what="tumour mask", image=post if post is not None else ablation,
        structures=req.tumor_structures, option="--tumor-structure", warnings=warnings)
    if transform is None:
        check_overlap(tumor, ablation, what="tumour mask", path=req.tumor)
    record = (_read_json(req.registration_json, "registration record")
              if req.registration_json else None)
    identity = identity_record({"post": (str(req.post) if req.post else None, None)},
                               anonymize=req.anonymize, warnings=warnings)
    return CaseInputs(pre=None, post=post, tumor=tumor, ablation=ablation, transform=transform,
                      registration_record=record, warnings=warnings, hashes=hashes,
                      identity=identity, mask_sources=sources)


def _read_transform(path: str | Path) -> sitk.Transform:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: transform file does not exist")
    try:
        return sitk.ReadTransform(str(p))
    except RuntimeError:
        raise InputError(f"{p}: cannot read transform (not an ITK transform file)") from None


def _read_json(path: str | Path, what: str) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{p}: {what} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read {what} ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: {what} is not a JSON object")
    return data
