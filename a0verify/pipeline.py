"""One case, one sequence of stages (DESIGN.md section 2)::

    read_inputs ─► segment ─► register ─► transfer ─► margin ─► verdict ─► write_outputs

1. :func:`a0verify.inputs.read_inputs` reads and checks every input once, where it enters
   (files, masks on their grids, overlap, seeds inside their images, a given transform);
   input hashes are computed in a background thread meanwhile.
2. :func:`segment` gives the tumour labels (pre grid) and the ablation zone (post grid): the
   masks given, or masks segmented from the seeds.
3. :func:`register` gives the transform post points -> pre points with its 95 % half-width:
   elastix (``a0verify run``), a transform from a file or none (``a0verify margin``).
4. :func:`a0verify.transfer.transfer_tumor` carries the tumour onto the post grid (sub-voxel
   level sets).
5. :func:`a0verify.margin.compute_margin`: the signed margin, positive inside the zone.
6. :func:`a0verify.verdict.judge`: verdict per lesion and case (uncertainty band).
7. :func:`write_outputs`: Slicer files, figures, the HTML page and report.json (last).

``a0verify run`` runs all of them (:func:`run_case`); ``a0verify margin`` runs the same sequence
with masks given and the transform from a file (:func:`margin_case`); the Snakemake workflow
calls ``a0verify run``. Each stage's seconds go to ``provenance.timings_s``.

Output-directory contract ("nothing lost"): every file is written atomically; ``report.json``
is written last and lists every output of the run. A new run into a directory that holds an
earlier result first removes the earlier ``report.json`` (so a half-finished new run never looks
finished) and the outputs it listed, then writes the new result: the directory never mixes two
runs. Bad input raises InputError before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from a0verify import SECOND_THRESHOLD_MM, parallel, transfer, verdict
from a0verify.inputs import CaseInputs, CaseRequest, CaseSettings, Seed, read_inputs
from a0verify.io import ensure_output_dir, write_json_atomic
from a0verify.margin import MarginResult, compute_margin, load_kernels
from a0verify.progress import Progress, silent
from a0verify.report import identity
from a0verify.report.model import build_report, lesion_point_summary

__all__ = ["CaseInputs", "CaseRequest", "CaseResult", "CaseSettings", "lesion_point_summary",
           "margin_case", "read_inputs", "run_case", "run_stages"]


# --------------------------------------------------------------------------- stage results
@dataclass
class Segmentation:
    """Stage ``segment``: tumour labels (pre grid; one lesion per label) and the ablation zone
    (post grid), with a record of how they were made for report.json (``{}``: masks given)."""

    tumor: sitk.Image
    ablation: sitk.Image
    record: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: masks a0verify segmented (role -> binary mask), written as .seg.nrrd for correction
    made: dict[str, sitk.Image] = field(default_factory=dict)


@dataclass
class Registration:
    """Stage ``register``: the transform post points -> pre points (None: one physical space),
    its 95 % half-width (mm), the report.json ``registration`` section and, from elastix, the
    full result (QA images for the outputs)."""

    transform: sitk.Transform | None
    uncertainty_mm: float = 0.0
    record: dict[str, Any] | None = None
    result: Any = None
    warnings: list[str] = field(default_factory=list)
    caveat: str | None = None  # "registration unreliable: ..." (goes into the verdict reason)


@dataclass
class CaseResult:
    """What a run produced: the report dict (as written to report.json) and the output dir."""

    report: dict[str, Any]
    out_dir: Path
    margin: MarginResult | None = field(default=None, repr=False)

    @property
    def verdict(self) -> str:
        return str(self.report["verdict"])


# --------------------------------------------------------------------------- 2. segment
def segment(inputs: CaseInputs, req: CaseRequest, progress: Progress | None = None
            ) -> Segmentation:
    """Stage ``segment``: the tumour labels and the ablation zone, given or from the seeds.

    Raises SegmentationError when a seeded segmentation gives no usable mask.
    """
    progress = progress or silent()
    record: dict[str, Any] = {}
    warnings: list[str] = []
    made: dict[str, sitk.Image] = {}
    tumor = inputs.tumor
    if tumor is None:
        from a0verify.segmentation import lesion_inputs, segment_tumor

        assert inputs.pre is not None
        with progress.stage("segment_tumor", "segment tumour"):
            segs = [segment_tumor(inputs.pre, line_lps=line, seeds_lps=seeds,
                                  outside_lps=req.tumor_outside, source=str(req.pre),
                                  options=("--tumor-line", "--tumor-seed", "--tumor-outside"))
                    for line, seeds in lesion_inputs(req.tumor_lines, req.tumor_seeds)]
        tumor = _labels_from_masks([s.mask for s in segs])
        made["tumor"] = sitk.Cast(tumor > 0, sitk.sitkUInt8)
        warnings += [w for s in segs for w in s.warnings]
        record["tumor"] = {"method": segs[0].method,
                           "lines_lps": [[list(p) for p in ln] for ln in req.tumor_lines],
                           "seeds_lps": [list(s) for s in req.tumor_seeds],
                           "outside_lps": [list(s) for s in req.tumor_outside],
                           "stats": [s.stats for s in segs],
                           "quality": [s.quality.to_json() for s in segs if s.quality]}
        record.setdefault("quality_notes", []).extend(
            {"structure": f"tumour {i + 1}" if len(segs) > 1 else "tumour",
             "level": s.quality.level,
             "text": s.quality.sentence(f"Tumour {i + 1}" if len(segs) > 1 else "Tumour")}
            for i, s in enumerate(segs) if s.quality)
    ablation = inputs.ablation
    if ablation is None:
        from a0verify.segmentation import segment_ablation

        assert inputs.post is not None
        with progress.stage("segment_ablation", "segment ablation zone"):
            seg = segment_ablation(inputs.post, list(req.ablation_seeds), source=str(req.post),
                                   option="--ablation-seed")
        ablation = seg.mask
        made["ablation"] = seg.mask
        warnings += seg.warnings
        record["ablation"] = {"method": seg.method, "stats": seg.stats,
                              "seeds_lps": [list(s) for s in req.ablation_seeds],
                              "quality": seg.quality.to_json() if seg.quality else None}
        if seg.quality:
            record.setdefault("quality_notes", []).append(
                {"structure": "ablation zone", "level": seg.quality.level,
                 "text": seg.quality.sentence("Ablation-zone")})
    return Segmentation(tumor=tumor, ablation=ablation, record=record, warnings=warnings,
                        made=made)


def _labels_from_masks(masks: Sequence[sitk.Image]) -> sitk.Image:
    """Combine binary masks on one grid into a label image (1, 2, ... in order; later wins)."""
    out = sitk.Cast(masks[0] != 0, sitk.sitkUInt16)
    for i, m in enumerate(masks[1:], start=2):
        out = sitk.Mask(out, sitk.Cast(m == 0, sitk.sitkUInt8)) + sitk.Cast(m != 0,
                                                                         sitk.sitkUInt16) * i
    return out


# --------------------------------------------------------------------------- 3. register
def register(inputs: CaseInputs, seg: Segmentation, settings: CaseSettings,
             restart_worker: parallel.Worker | None = None) -> Registration:
    """Stage ``register``: pre CT onto post CT with elastix (``run``), or the transform and
    record given (``margin``). Raises RegistrationError when registration fails after retries.
    """
    if inputs.pre is None:  # `margin`: the transform (if any) comes from a file
        rec = inputs.registration_record
        return Registration(
            transform=inputs.transform,
            uncertainty_mm=float(rec.get("uncertainty_mm", 0.0)) if rec else 0.0,
            record=rec, warnings=[str(w) for w in rec.get("warnings", [])] if rec else [],
            caveat=_caveat(rec.get("reliability_notes", []) if rec else []))
    from a0verify import registration as reg_mod

    assert inputs.post is not None
    res = reg_mod.register(
        inputs.post, inputs.pre,
        reg_mod.RegistrationMasks(zone=seg.ablation, liver=inputs.liver,
                                  tumor=sitk.Cast(seg.tumor != 0, sitk.sitkUInt8)),
        reg_mod.RegistrationSettings(method=settings.registration, threads=settings.threads),
        restart_worker=restart_worker)
    record = res.to_dict()
    return Registration(transform=res.transform, uncertainty_mm=res.uncertainty_mm,
                        record=record, result=res, warnings=list(res.warnings),
                        caveat=_caveat(res.reliability_notes))


def _caveat(notes: Sequence[str]) -> str | None:
    """The verdict caveat of a registration with reliability notes (None: no caveat)."""
    return "registration unreliable: " + "; ".join(notes) if notes else None


# --------------------------------------------------------------------------- 7. write_outputs
def retire_previous_result(out: Path) -> None:
    """Remove an earlier result from ``out``: its report.json first (so nothing looks finished),
    then the outputs that report listed. Called only once the new run has its results in hand,
    so a run that fails on bad input leaves an earlier result untouched."""
    old = out / "report.json"
    if not old.exists():
        return
    try:
        listed = json.loads(old.read_text()).get("outputs", {})
    except (OSError, ValueError):
        listed = {}
    old.unlink()
    for name in listed.values() if isinstance(listed, dict) else []:
        p = out / str(name)
        if p.parent == out and p.name != "report.json":
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():  # e.g. dicom/ (export-dicom)
                    shutil.rmtree(p)
                else:
                    p.unlink()


def write_outputs(out: Path, report: dict[str, Any], *, margin: MarginResult,
                  seg: Segmentation, tumor_post: sitk.Image, reg: Registration,
                  post: sitk.Image | None, workers: Any = None) -> CaseResult:
    """Stage ``write_outputs``: registration outputs (transform, QA images), Slicer files,
    figures and report.html, then report.json (last). ``workers``: the report's figure workers
    started earlier (:func:`a0verify.report.html.start_figure_workers`)."""
    from a0verify.io import atomic_path
    from a0verify.report import write_case_outputs

    t0 = time.perf_counter()
    retire_previous_result(out)
    outputs: dict[str, str] = {}
    qa: dict[str, sitk.Image] = {}
    if reg.result is not None:
        from a0verify.registration import write_registration_outputs

        for role, p in write_registration_outputs(reg.result, out).items():
            outputs[f"registration_{role}"] = Path(p).name
        qa = dict(reg.result.qa_images)
    elif reg.transform is not None:  # a transform given to `a0verify margin`
        with atomic_path(out / "transform.h5") as tmp:
            sitk.WriteTransform(reg.transform, str(tmp))
        outputs["registration_transform"] = "transform.h5"
    report["outputs"].update(outputs)
    report["outputs"].update(write_case_outputs(
        out, report, margin=margin, ablation=seg.ablation, tumor_post=tumor_post, post=post,
        qa_images=qa, workers=workers))
    report["outputs"].update(_write_made_segmentations(out, seg))
    report["outputs"]["report_json"] = "report.json"
    report["provenance"]["timings_s"]["outputs"] = time.perf_counter() - t0
    write_json_atomic(out / "report.json", report)
    return CaseResult(report=report, out_dir=out, margin=margin)


def _write_made_segmentations(out: Path, seg: Segmentation) -> dict[str, str]:
    """Each mask a0verify segmented as a Slicer ``.seg.nrrd`` on its own CT's grid (tumour:
    pre CT, ablation zone: post CT), to correct and pass back as --tumor/--ablation."""
    from a0verify.report.slicer import ABLATION_RGB, TUMOR_RGB, write_structure_segmentation

    names = {"tumor": ("tumour", TUMOR_RGB), "ablation": ("ablation zone", ABLATION_RGB)}
    written = {}
    for role, mask in seg.made.items():
        fname = f"{role}_segmentation.seg.nrrd"
        write_structure_segmentation(out / fname, mask, *names[role])
        written[f"{role}_segmentation"] = fname
    return written


# --------------------------------------------------------------------------- the sequence
def run_stages(req: CaseRequest, settings: CaseSettings, out_dir: str | Path,
               progress: Progress | None = None) -> CaseResult:
    """Run one case through every stage (see the module docstring) into ``out_dir``."""
    from a0verify.report.html import start_figure_workers

    progress = progress or silent()
    parallel.limit_threads(settings.threads)
    out = ensure_output_dir(out_dir)
    elastix = req.command == "run" and settings.registration != "none"
    restart_worker = None
    if elastix:
        from a0verify.registration import elastix_backend

        elastix_backend.preload()  # ~1 s of module loading, overlapping the image reading
        # the uncertainty restart's worker loads elastix meanwhile (run beside the main run)
        restart_worker = parallel.Worker("registration restart", warm=elastix_backend.load,
                                         start=parallel.usable_cpus() > 1
                                         and (settings.threads or 2) > 1)
    parallel.in_thread("load margin kernels", load_kernels)  # Numba cache, beside the reading
    workers = start_figure_workers()
    try:
        timings = progress.timings
        with progress.stage("read", "read inputs"):
            inputs = read_inputs(req)
        seg = segment(inputs, req, progress)
        for kind in ("tumor", "ablation"):
            if kind in seg.record:
                progress.info(f"{kind} segmented: {seg.record[kind].get('stats')}")
        if elastix:
            with progress.stage("registration", f"register ({settings.registration})"):
                reg = register(inputs, seg, settings, restart_worker)
            attempts = len((reg.record or {}).get("metrics", {}).get("attempts", [])) or 1
            progress.info(f"registration: {attempts} attempt(s), 95 % half-width "
                          f"{reg.uncertainty_mm:.2f} mm, {len(reg.warnings)} warning(s)")
        else:
            reg = register(inputs, seg, settings)
        post_grid = inputs.post if req.command == "run" else seg.ablation
        assert post_grid is not None
        with progress.stage("transfer", "transfer tumour to the post grid"):
            moved = transfer.transfer_tumor(seg.tumor, post_grid, reg.transform)
        with progress.stage("margin", "margin"):  # waits for the kernels if still loading
            margin = compute_margin(moved.margin_input, seg.ablation, settings.threshold_mm,
                                    settings.second_threshold_mm)
        timings.update(margin.timings_s)  # the computation itself, apart from kernel loading
        for les in margin.lesions:
            progress.info(f"lesion {les.id}: minimal margin {les.min_margin_mm:.2f} mm "
                          f"(± {les.uncertainty_mm:.2f} mm discretisation), tumour "
                          f"{les.tumor_volume_ml:.2f} ml")
        judged = verdict.judge(((les.id, les.min_margin_mm, les.uncertainty_mm)
                                for les in margin.lesions), settings.threshold_mm,
                               reg.uncertainty_mm, reg.caveat)
        assert inputs.hashes is not None
        report = build_report(
            margin, judged, command=req.command, inputs=req.input_paths(),
            input_sha256=inputs.hashes.result(), parameters=_parameters(req, settings),
            timings_s=timings, warnings=[*inputs.warnings, *seg.warnings, *reg.warnings],
            registration=_registration_section(reg), segmentation=seg.record)
        report = identity.attach(report, inputs.identity, inputs.mask_sources)
        with progress.stage("outputs", "write outputs"):
            return write_outputs(out, report, margin=margin, seg=seg, tumor_post=moved.labels,
                                 reg=reg, post=inputs.post, workers=workers)
    finally:
        workers.close()
        if restart_worker is not None:
            restart_worker.close()


def _registration_section(reg: Registration) -> dict[str, Any] | None:
    if reg.record is None:
        return None
    rec = dict(reg.record)
    if reg.result is not None:
        rec["timings_s"] = reg.result.timings_s
    return rec


def _parameters(req: CaseRequest, settings: CaseSettings) -> dict[str, Any]:
    thresholds = {"threshold_mm": settings.threshold_mm,
                  "second_threshold_mm": settings.second_threshold_mm}
    if req.command != "run":
        return thresholds
    return {**thresholds, "registration": settings.registration,
            "ablation_seeds_lps": [list(s) for s in req.ablation_seeds],
            "tumor_seeds_lps": [list(s) for s in req.tumor_seeds],
            "tumor_lines_lps": [[list(p) for p in ln] for ln in req.tumor_lines],
            "tumor_outside_lps": [list(s) for s in req.tumor_outside],
            "pre_series": req.pre_series, "post_series": req.post_series,
            "threads": settings.threads}


# --------------------------------------------------------------------------- entry points
def run_case(pre_path: str | Path, post_path: str | Path, out_dir: str | Path, *,
             tumor_path: str | Path | None = None, ablation_path: str | Path | None = None,
             ablation_seeds: Sequence[Seed] = (), tumor_seeds: Sequence[Seed] = (),
             tumor_lines: Sequence[tuple[Seed, Seed]] = (),
             tumor_outside: Sequence[Seed] = (),
             liver_path: str | Path | None = None, threshold_mm: float = 5.0,
             second_threshold_mm: float | None = SECOND_THRESHOLD_MM,
             registration_method: str = "deformable", threads: int | None = None,
             pre_series: str | None = None, post_series: str | None = None,
             progress: Progress | None = None, anonymize: bool = False,
             tumor_structures: Sequence[str] = (),
             ablation_structures: Sequence[str] = ()) -> CaseResult:
    """``a0verify run``: register pre onto post, carry the tumour over, margin, verdict, report.

    The post CT is the fixed image; everything is reported on its grid (LPS mm). Exactly one of
    ``tumor_path`` / tumour points (``tumor_lines``: RECIST diameter lines, one lesion each,
    ``tumor_seeds``, ``tumor_outside``; see :func:`a0verify.segmentation.lesion_inputs`) and of
    ``ablation_path`` / ``ablation_seeds`` must be given. Segmented masks are also written as
    ``<role>_segmentation.seg.nrrd`` for correction.
    Masks may be RT Structure Sets (rasterised onto the pre / post CT; ``*_structures`` choose
    ROIs by name); ``anonymize``: no patient identifiers in any output.
    """
    settings = CaseSettings(threshold_mm, registration_method, threads,
                            second_threshold_mm=second_threshold_mm)
    req = CaseRequest(command="run", pre=pre_path, post=post_path, tumor=tumor_path,
                      ablation=ablation_path, tumor_seeds=tuple(tumor_seeds),
                      ablation_seeds=tuple(ablation_seeds), liver=liver_path,
                      tumor_lines=tuple((_seed(a), _seed(b)) for a, b in tumor_lines),
                      tumor_outside=tuple(_seed(p) for p in tumor_outside),
                      pre_series=pre_series, post_series=post_series, anonymize=anonymize,
                      tumor_structures=tuple(tumor_structures),
                      ablation_structures=tuple(ablation_structures))
    return run_stages(req, settings, out_dir, progress)


def _seed(p: Sequence[float]) -> Seed:
    return (float(p[0]), float(p[1]), float(p[2]))


def margin_case(tumor_path: str | Path, ablation_path: str | Path, out_dir: str | Path,
                *, threshold_mm: float = 5.0,
                second_threshold_mm: float | None = SECOND_THRESHOLD_MM,
                transform_path: str | Path | None = None,
                registration_json: str | Path | None = None,
                post_path: str | Path | None = None,
                progress: Progress | None = None, anonymize: bool = False,
                tumor_structures: Sequence[str] = (),
                ablation_structures: Sequence[str] = ()) -> CaseResult:
    """``a0verify margin``: the margin of a tumour and an ablation zone in one physical space.

    Without ``transform_path`` the masks must already be aligned in physical space (any grids).
    With it, the tumour mask is on the pre grid and the transform (post points -> pre points, as
    written by ``a0verify register``) carries it onto the ablation mask's grid; the registration
    record (``registration_json``) adds its QA and uncertainty. ``post_path`` (optional) is only
    used as the background of the report figures (and the image RT Structure Sets are
    rasterised onto). The result is on the ablation mask's grid.
    """
    settings = CaseSettings(threshold_mm, "none", second_threshold_mm=second_threshold_mm)
    req = CaseRequest(command="margin", tumor=tumor_path, ablation=ablation_path,
                      transform=transform_path, registration_json=registration_json,
                      post=post_path, anonymize=anonymize,
                      tumor_structures=tuple(tumor_structures),
                      ablation_structures=tuple(ablation_structures))
    return run_stages(req, settings, out_dir, progress)
