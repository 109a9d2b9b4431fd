"""Case orchestration: the functions behind ``a0verify run`` / ``a0verify margin`` (and Snakemake).

Output-directory contract ("nothing lost"): every file is written atomically; ``report.json`` is
written last and lists every output of the run. A new run into a directory that holds an earlier
result first removes the earlier ``report.json`` (so a half-finished new run never looks finished)
and the outputs it listed, then writes the new result: the directory never mixes two runs.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from a0verify import SIGN_CONVENTION, __version__, geometry, verdict
from a0verify.errors import InputError
from a0verify.io import (
    check_seed_inside,
    ensure_output_dir,
    read_image,
    read_mask,
    sha256_of,
    write_json_atomic,
)
from a0verify.io.masks import check_overlap
from a0verify.margin import MarginResult, compute_margin, start_loading_kernels

SCHEMA_VERSION = "1.0"
Seed = tuple[float, float, float]


@dataclass
class CaseResult:
    """What a run produced: the report dict (as written to report.json) and the output dir."""

    report: dict[str, Any]
    out_dir: Path
    margin: MarginResult | None = field(default=None, repr=False)

    @property
    def verdict(self) -> str:
        return str(self.report["verdict"])


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
                p.unlink()


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("SimpleITK", "itk-elastix", "numpy", "numba", "scipy", "scikit-image", "pyvista",
                "click"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _lesion_entries(margin: MarginResult, extra_uncertainty_mm: float) -> list[dict[str, Any]]:
    lesions = []
    for les in margin.lesions:
        u = verdict.combine_uncertainty(les.uncertainty_mm, extra_uncertainty_mm)
        v = verdict.classify(les.min_margin_mm, margin.threshold_mm, u)
        d = les.to_dict()
        d.update({"verdict": v.verdict, "verdict_reason": v.reason, "uncertainty_mm": u,
                  "discretisation_uncertainty_mm": les.uncertainty_mm})
        lesions.append(d)
    return lesions


def build_report(
    margin: MarginResult,
    *,
    command: str,
    inputs: dict[str, str | None],
    parameters: dict[str, Any],
    timings_s: dict[str, float],
    warnings: Sequence[str] = (),
    registration: dict[str, Any] | None = None,
    registration_uncertainty_mm: float = 0.0,
    outputs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Assemble the report.json dictionary (DESIGN.md section 6)."""
    lesions = _lesion_entries(margin, registration_uncertainty_mm)
    worst = min(lesions, key=lambda d: d["min_margin_mm"])
    case_verdict = verdict.worst(d["verdict"] for d in lesions)
    warn = list(warnings)
    if case_verdict == "indeterminate":
        warn.append("verdict indeterminate: " + "; ".join(
            f"lesion {d['id']}: {d['verdict_reason']}" for d in lesions
            if d["verdict"] == "indeterminate"))
    hashes = {k: (sha256_of(v) if v else None) for k, v in inputs.items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "verdict": case_verdict,
        "threshold_mm": margin.threshold_mm,
        "min_margin_mm": worst["min_margin_mm"],
        "min_margin_lesion_id": worst["id"],
        "min_margin_point_lps": worst["min_margin_point_lps"],
        "min_margin_point_ras": worst["min_margin_point_ras"],
        "uncertainty_mm": worst["uncertainty_mm"],
        "lesions": lesions,
        "warnings": warn,
        "registration": registration,
        "outputs": outputs or {},
        "provenance": {
            "a0verify_version": __version__,
            "package_versions": _versions(),
            "parameters": parameters,
            "inputs": {k: v for k, v in inputs.items()},
            "input_sha256": hashes,
            "sign_convention": SIGN_CONVENTION,
            "coordinate_system": "LPS mm (RAS given alongside where labelled)",
            "timings_s": timings_s,
        },
    }


def _finish(out: Path, report: dict[str, Any], *, margin: MarginResult, ablation: sitk.Image,
            tumor_post: sitk.Image | None, post: sitk.Image | None = None,
            pre: sitk.Image | None = None, registration: Any = None,
            render_worker: Any = None) -> CaseResult:
    """Write every artefact and the HTML report, then report.json (last). ``render_worker``:
    see :func:`a0verify.report.write_case_outputs`."""
    from a0verify.report import write_case_outputs

    t0 = time.perf_counter()
    retire_previous_result(out)
    report["outputs"].update(write_case_outputs(
        out, report, margin=margin, ablation=ablation, tumor_post=tumor_post, post=post, pre=pre,
        registration=registration, render_worker=render_worker))
    report["outputs"]["report_json"] = "report.json"
    report["provenance"]["timings_s"]["outputs"] = time.perf_counter() - t0
    write_json_atomic(out / "report.json", report)
    return CaseResult(report=report, out_dir=out, margin=margin)


def carry_tumor(tumor: sitk.Image, reference: sitk.Image,
                transform: sitk.Transform | None) -> tuple[Any, sitk.Image]:
    """Tumour labels (any grid) onto ``reference``'s grid through ``transform`` (reference points
    to tumour-grid points; identity when None).

    Returns (input for compute_margin: the labels themselves without a transform, else
    per-lesion signed-distance level sets resampled linearly (sub-voxel); the tumour labels on
    the reference grid for display).
    Raises InputError when the tumour falls outside the reference image.
    """
    if transform is None and geometry.same_grid(tumor, reference):
        return tumor, tumor  # already on the reference grid (and known not to be empty)
    from a0verify import registration as reg_mod

    tx = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    tumor_post = reg_mod.resample_tumor_to_post(tumor, reference, tx)
    if not np.any(sitk.GetArrayViewFromImage(tumor_post)):
        raise InputError("tumour mask falls outside the post-ablation grid after transfer")
    if transform is None:
        return tumor, tumor_post
    return reg_mod.tumor_levelsets_to_post(tumor, reference, tx), tumor_post


def margin_case(tumor_path: str | Path, ablation_path: str | Path, out_dir: str | Path,
                *, threshold_mm: float = 5.0, transform_path: str | Path | None = None,
                registration_json: str | Path | None = None,
                post_path: str | Path | None = None) -> CaseResult:
    """``a0verify margin``: the margin of a tumour and an ablation zone in one physical space.

    Without ``transform_path`` the masks must already be aligned in physical space (any grids).
    With it, the tumour mask is on the pre grid and the transform (post points -> pre points, as
    written by ``a0verify register``) carries it onto the ablation mask's grid; the registration
    record (``registration_json``) adds its QA and uncertainty. ``post_path`` (optional) is only
    used as the background of the report figures. The result is on the ablation mask's grid.
    """
    from a0verify.viz import warm_render_worker

    # While the inputs are read and the margin computed, a worker process loads VTK for the
    # 3-D views (other core) and a thread loads the margin kernels.
    render_worker = warm_render_worker()
    loader = start_loading_kernels()
    try:
        return _margin_case(tumor_path, ablation_path, out_dir, threshold_mm=threshold_mm,
                            transform_path=transform_path, registration_json=registration_json,
                            post_path=post_path, render_worker=render_worker)
    finally:
        loader.join()
        render_worker.close()


def _margin_case(tumor_path: str | Path, ablation_path: str | Path, out_dir: str | Path,
                 *, threshold_mm: float, transform_path: str | Path | None,
                 registration_json: str | Path | None, post_path: str | Path | None,
                 render_worker: Any) -> CaseResult:
    _check_threshold(threshold_mm)
    out = ensure_output_dir(out_dir)
    warnings: list[str] = []
    t0 = time.perf_counter()
    ablation = read_mask(ablation_path, what="ablation mask", warnings=warnings)
    transform = _read_transform(transform_path) if transform_path else None
    # The margin works in physical space on each mask's own grid (no resampling, which would
    # cost sub-voxel accuracy); without a transform the masks must overlap physically.
    tumor = read_mask(tumor_path, what="tumour mask", warnings=warnings)
    if transform is None:
        check_overlap(tumor, ablation, what="tumour mask", path=tumor_path)
    reg_record = _read_json(registration_json, "registration record") if registration_json else None
    post = read_image(post_path, what="post-ablation CT", warnings=warnings) if post_path else None
    timings = {"read": time.perf_counter() - t0}
    if reg_record:
        warnings += [str(w) for w in reg_record.get("warnings", [])]
    tumor_in, tumor_post = carry_tumor(tumor, ablation, transform)
    margin = compute_margin(tumor_in, ablation, threshold_mm)
    timings.update(margin.timings_s)
    reg_unc = float(reg_record.get("uncertainty_mm", 0.0)) if reg_record else 0.0
    report = build_report(
        margin, command="margin",
        inputs={"tumor": str(tumor_path), "ablation": str(ablation_path),
                "transform": str(transform_path) if transform_path else None,
                "registration_json": str(registration_json) if registration_json else None,
                "post": str(post_path) if post_path else None},
        parameters={"threshold_mm": threshold_mm}, timings_s=timings,
        warnings=warnings, registration=reg_record, registration_uncertainty_mm=reg_unc,
    )
    return _finish(out, report, margin=margin, ablation=ablation, tumor_post=tumor_post, post=post,
                   registration=transform, render_worker=render_worker)


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


def _check_threshold(threshold_mm: float) -> None:
    if not (0.0 <= threshold_mm <= 50.0):
        raise InputError(f"--threshold {threshold_mm} mm is outside 0-50 mm")


def run_case(
    pre_path: str | Path,
    post_path: str | Path,
    out_dir: str | Path,
    *,
    tumor_path: str | Path | None = None,
    ablation_path: str | Path | None = None,
    ablation_seeds: Sequence[Seed] = (),
    tumor_seeds: Sequence[Seed] = (),
    liver_path: str | Path | None = None,
    threshold_mm: float = 5.0,
    registration_method: str = "deformable",
    threads: int | None = None,
    pre_series: str | None = None,
    post_series: str | None = None,
) -> CaseResult:
    """``a0verify run``: register pre onto post, carry the tumour over, margin, verdict, report.

    The post CT is the fixed image; everything is reported on its grid (LPS mm).
    Exactly one of ``tumor_path`` / ``tumor_seeds`` and of ``ablation_path`` / ``ablation_seeds``
    must be given.
    """
    _check_threshold(threshold_mm)
    if (tumor_path is None) == (not tumor_seeds):
        raise InputError("give exactly one of --tumor MASK or --tumor-seed X,Y,Z")
    if (ablation_path is None) == (not ablation_seeds):
        raise InputError("give exactly one of --ablation MASK or --ablation-seed X,Y,Z")
    out = ensure_output_dir(out_dir)
    if threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    if registration_method != "none":
        from a0verify.registration import elastix_backend

        elastix_backend.preload()  # ~1 s of module loading, overlapping the image reading
    warnings: list[str] = []
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    pre = read_image(pre_path, what="pre-ablation CT", series_uid=pre_series, warnings=warnings)
    post = read_image(post_path, what="post-ablation CT", series_uid=post_series,
                      warnings=warnings)
    timings["read"] = time.perf_counter() - t0
    for s in tumor_seeds:
        check_seed_inside(pre, s, f"{pre_path} (tumour seed)")
    for s in ablation_seeds:
        check_seed_inside(post, s, f"{post_path} (ablation seed)")

    seg_info: dict[str, Any] = {}
    if tumor_path is not None:
        # kept on its own grid (the transfer to post space works in physical space)
        tumor = read_mask(tumor_path, what="tumour mask", warnings=warnings)
        check_overlap(tumor, pre, what="tumour mask", path=tumor_path)
    else:
        from a0verify.segmentation import segment_tumor

        t0 = time.perf_counter()
        segs = [segment_tumor(pre, s, source=str(pre_path)) for s in tumor_seeds]
        tumor = _labels_from_masks([s.mask for s in segs])
        warnings += [w for s in segs for w in s.warnings]
        seg_info["tumor"] = {"method": segs[0].method, "seeds_lps": [list(s) for s in tumor_seeds],
                             "stats": [s.stats for s in segs]}
        timings["segment_tumor"] = time.perf_counter() - t0
    if ablation_path is not None:
        ablation = read_mask(ablation_path, what="ablation mask", warnings=warnings,
                             reference=post)
    else:
        from a0verify.segmentation import segment_ablation

        t0 = time.perf_counter()
        seg = segment_ablation(post, list(ablation_seeds), source=str(post_path))
        ablation = seg.mask
        warnings += seg.warnings
        seg_info["ablation"] = {"method": seg.method, "stats": seg.stats,
                                "seeds_lps": [list(s) for s in ablation_seeds]}
        timings["segment_ablation"] = time.perf_counter() - t0
    focus = ablation
    liver = None
    if liver_path is not None:
        liver = read_mask(liver_path, what="liver mask", warnings=warnings, reference=post)

    from a0verify import registration as reg_mod

    t0 = time.perf_counter()
    reg = reg_mod.register(
        post, pre, reg_mod.RegistrationMasks(zone=focus, liver=liver,
                                             tumor=sitk.Cast(tumor != 0, sitk.sitkUInt8)),
        reg_mod.RegistrationSettings(method=registration_method, threads=threads))
    timings["registration"] = time.perf_counter() - t0
    warnings += reg.warnings

    t0 = time.perf_counter()
    tumor_in, tumor_post = carry_tumor(tumor, post, reg.transform)
    timings["transfer"] = time.perf_counter() - t0
    margin = compute_margin(tumor_in, ablation, threshold_mm)
    timings.update(margin.timings_s)
    registration = reg.to_dict()
    registration["timings_s"] = reg.timings_s
    report = build_report(
        margin, command="run",
        inputs={"pre": str(pre_path), "post": str(post_path),
                "tumor": str(tumor_path) if tumor_path else None,
                "ablation": str(ablation_path) if ablation_path else None,
                "liver": str(liver_path) if liver_path else None},
        parameters={"threshold_mm": threshold_mm, "registration": registration_method,
                    "ablation_seeds_lps": [list(s) for s in ablation_seeds],
                    "tumor_seeds_lps": [list(s) for s in tumor_seeds],
                    "pre_series": pre_series, "post_series": post_series,
                    "threads": threads},
        timings_s=timings, warnings=warnings, registration=registration,
        registration_uncertainty_mm=reg.uncertainty_mm,
    )
    if seg_info:
        report["segmentation"] = seg_info
    return _finish(out, report, margin=margin, ablation=ablation, tumor_post=tumor_post,
                   post=post, pre=pre, registration=reg)


def _labels_from_masks(masks: Sequence[sitk.Image]) -> sitk.Image:
    """Combine binary masks on one grid into a label image (1, 2, ... in order; later wins)."""
    out = sitk.Cast(masks[0] != 0, sitk.sitkUInt16)
    for i, m in enumerate(masks[1:], start=2):
        out = sitk.Mask(out, sitk.Cast(m == 0, sitk.sitkUInt8)) + sitk.Cast(m != 0,
                                                                         sitk.sitkUInt16) * i
    return out


def lesion_point_summary(report: dict[str, Any]) -> str:
    """One human line: verdict, MAM and where (LPS and RAS)."""
    p = report["min_margin_point_lps"]
    r = report["min_margin_point_ras"]
    return (f"verdict {report['verdict']}: minimal margin {report['min_margin_mm']:.1f} mm "
            f"(± {report['uncertainty_mm']:.1f}) at LPS ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) / "
            f"RAS ({r[0]:.1f}, {r[1]:.1f}, {r[2]:.1f}) mm, threshold {report['threshold_mm']:g} mm")
