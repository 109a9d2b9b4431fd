"""Benchmark: report generation (``write_case_outputs``: Slicer files, figures, 3-D render, HTML)
for a full-size case, and ``a0verify report DIR`` (re-render from the stored artefacts).

Run: ``.venv/bin/python benchmarks/bench_report.py [--quick] [--out FILE.md]``

Case: post CT 512 × 512 × 300 voxels at 0.75 × 0.75 × 1.0 mm (int16, 150 MB), one tumour (sphere,
radius 12 mm) in an ellipsoidal ablation zone with a 3 mm thinnest margin, two lesions' worth of
mask volume on the full grid, registration QA images on a 230 × 220 × 90 ROI. ``--quick``: a
256 × 256 × 120 grid. The margin is computed beforehand and not timed.

Reported per stage: wall time (s), process CPU time (s; the machine is shared, so wall time is
noisy) and the process's peak RSS so far (MB; includes the case's own images, ~0.5 GB at full
size). Reference, measured in the same run: what the first report code did for the
masks — SimpleITK ``WriteImage`` of the tumour and ablation masks on the full post grid
(compressed NRRD) — against our cropped two-layer ``.seg.nrrd``.

The page: its size (and the parts: vendored three.js, the interactive views' data) and the time
it takes to open in headless Chromium (Playwright; skipped when either is missing): from
navigation start until the 3-D view and the slice scroller are drawn, median of 3 loads, against
the same page without the interactive part (static figures only, until its load event).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from a0verify import geometry


def _ellipsoid_mask(shape_zyx: tuple[int, int, int], spacing_xyz: tuple[float, float, float],
                    origin: np.ndarray, center: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Voxel-centre inclusion of an axis-aligned ellipsoid, computed on its bounding box only."""
    out = np.zeros(shape_zyx, np.uint8)
    sp = np.asarray(spacing_xyz)
    lo = np.floor((center - axes - origin) / sp).astype(int)
    hi = np.ceil((center + axes - origin) / sp).astype(int) + 1
    xs, ys, zs = (origin[i] + sp[i] * np.arange(lo[i], hi[i]) for i in range(3))
    zz, yy, xx = np.meshgrid(zs, ys, xs, indexing="ij")
    inside = (((xx - center[0]) / axes[0]) ** 2 + ((yy - center[1]) / axes[1]) ** 2
              + ((zz - center[2]) / axes[2]) ** 2) <= 1.0
    out[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = inside
    return out


class FakeRegistration:
    """Registration stand-in with the public attributes write_case_outputs uses."""

    def __init__(self, post: sitk.Image, center: np.ndarray) -> None:
        roi = geometry.crop(post, geometry.roi_box_around_lps(post, center[None], 80.0))
        f = sitk.Cast(roi, sitk.sitkFloat32)
        self.method = "rigid"
        self.transform = sitk.Euler3DTransform()
        self.uncertainty_mm = 0.5
        self.qa_images = {"checkerboard": f, "difference": f * 0.05}

    def to_dict(self) -> dict[str, Any]:
        return {"method": "rigid", "metrics": {"similarity_roi": {"after": {"ncc": 0.9}}},
                "uncertainty_mm": 0.5}


def make_case(size: tuple[int, int, int]) -> dict[str, Any]:
    sp = (0.75, 0.75, 1.0)
    shape = (size[2], size[1], size[0])
    post = sitk.Image(list(size), sitk.sitkInt16)
    post.SetSpacing(sp)
    post.SetOrigin((-190.0, -190.0, -150.0))
    origin = np.asarray(post.GetOrigin())
    center = origin + np.asarray(sp) * np.asarray(size) * np.array([0.3, 0.5, 0.5])
    tumor = _ellipsoid_mask(shape, sp, origin, center, np.full(3, 12.0))
    zone = _ellipsoid_mask(shape, sp, origin, center + np.array([3.0, 0, 0]),
                           np.array([18.0, 20.0, 21.0]))
    rng = np.random.default_rng(0)
    ct = np.full(shape, 60, np.int16)
    ct[::2] += rng.integers(-15, 15, size=ct[::2].shape, dtype=np.int16)
    ct[zone != 0] -= 45
    ct_img = sitk.GetImageFromArray(ct)
    ct_img.CopyInformation(post)
    t_img = sitk.GetImageFromArray(tumor)
    t_img.CopyInformation(post)
    z_img = sitk.GetImageFromArray(zone)
    z_img.CopyInformation(post)
    return {"post": ct_img, "tumor": t_img, "ablation": z_img, "center": center}


def measure(fn: Callable[[], Any]) -> tuple[float, float, float, Any]:
    """(wall s, CPU s, process peak RSS so far in MB, result). No tracemalloc: its overhead
    on matplotlib's many small allocations would distort the timings."""
    c0, t0 = time.process_time(), time.perf_counter()
    res = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, res


def open_times(pages: dict[str, Path], repeats: int = 3) -> dict[str, float] | None:
    """Median milliseconds from navigation start until each page is ready (interactive pages:
    its views drawn; static ones: the load event), in headless Chromium; None when Playwright or
    Chromium is missing."""
    import statistics

    from a0verify.report import browser

    out: dict[str, float] = {}
    try:
        with browser.chromium() as chrome:
            for name, path in pages.items():
                times = []
                for _ in range(repeats):
                    if 'id="a0v-data"' in path.read_text("utf-8"):
                        page, ms = browser.open_page(chrome, path)
                    else:
                        page = chrome.new_page()
                        page.goto(path.as_uri(), wait_until="load")
                        ms = page.evaluate(
                            "performance.getEntriesByType('navigation')[0].loadEventEnd")
                    times.append(float(ms))
                    page.close()
                out[name] = statistics.median(times)
    except RuntimeError:
        return None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256 x 256 x 120 grid")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_report.md"),
                    help="also write the table to this file (default: RESULTS_report.md)")
    args = ap.parse_args(argv)

    from a0verify.io import write_json_atomic
    from a0verify.margin import compute_margin
    from a0verify.report import rerender, write_case_outputs
    from a0verify.report.model import build_report
    from a0verify.report.slicer import write_segmentation
    from a0verify.verdict import judge

    size = (256, 256, 120) if args.quick else (512, 512, 300)
    case = make_case(size)
    margin = compute_margin(case["tumor"], case["ablation"], 5.0)
    reg = FakeRegistration(case["post"], case["center"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in ("cold (imports, first EGL context)", "warm"):
            out = Path(tmp) / rep.split()[0]
            out.mkdir()
            verdict = judge(((les.id, les.min_margin_mm, les.uncertainty_mm)
                             for les in margin.lesions), 5.0, 0.5)
            report = build_report(margin, verdict, command="run", inputs={"post": None},
                                  parameters={"threshold_mm": 5.0}, timings_s={},
                                  registration=reg.to_dict())
            def job(out: Path = out, report: dict[str, Any] = report) -> dict[str, str]:
                return write_case_outputs(out, report, margin=margin, ablation=case["ablation"],
                                          tumor_post=case["tumor"], post=case["post"],
                                          qa_images=reg.qa_images)

            w, c, m, outputs = measure(job)
            rows.append((f"write_case_outputs, {rep}", w, c, m))
            report["outputs"].update(outputs)
            report["outputs"]["report_json"] = "report.json"
            write_json_atomic(out / "report.json", report)
        w, c, m, _ = measure(lambda: rerender(Path(tmp) / "warm"))
        rows.append(("a0verify report DIR (re-render, warm)", w, c, m))
        w, c, m, _ = measure(lambda: write_segmentation(Path(tmp) / "s.seg.nrrd",
                                                        case["ablation"], case["tumor"]))
        rows.append(("  .seg.nrrd (2 layers, cropped) [ours]", w, c, m))

        def reference() -> None:
            sitk.WriteImage(case["tumor"], str(Path(tmp) / "t.nrrd"), True)
            sitk.WriteImage(case["ablation"], str(Path(tmp) / "a.nrrd"), True)

        w, c, m, _ = measure(reference)
        rows.append(("  full-grid masks, sitk.WriteImage x2 [reference]", w, c, m))
        mask_rows = (rows[-2][1], rows[-1][1])
        # slicerio (the well-kept .seg.nrrd library, issue 14) on the same segmentation
        from a0verify.report.slicer import read_segmentation

        seg_path = Path(tmp) / "s.seg.nrrd"
        try:
            import slicerio
        except ImportError:
            slicerio = None
        if slicerio is not None:
            seg = slicerio.read_segmentation(str(seg_path))
            for level in (1, 9):
                w, c, m, _ = measure(lambda level=level: slicerio.write_segmentation(
                    str(Path(tmp) / f"sio{level}.seg.nrrd"), seg, compression_level=level))
                rows.append((f"  .seg.nrrd write, slicerio (gzip {level}) [library]", w, c, m))
        w, c, m, _ = measure(lambda: read_segmentation(seg_path))
        rows.append(("  .seg.nrrd read [ours]", w, c, m))
        if slicerio is not None:
            w, c, m, _ = measure(lambda: slicerio.read_segmentation(str(seg_path)))
            rows.append(("  .seg.nrrd read, slicerio [library]", w, c, m))
        sizes = {p.name: p.stat().st_size for p in (Path(tmp) / "warm").iterdir()}
        from a0verify.report import explore
        from a0verify.report.html import case_scale, load_report_data, render_html

        warm = Path(tmp) / "warm"
        import json

        rep = json.loads((warm / "report.json").read_text())
        data = load_report_data(warm, rep)
        w, c, m, payload = measure(lambda: explore.payload_json(rep, data, case_scale(rep, data)))
        rows.append(("  interactive views' data (explore.payload_json)", w, c, m))
        three_js, viewer_js = explore.scripts()
        static = warm / "static.html"
        figs = {role: ("", (warm / name).read_bytes()) for role, name in
                (("views", "figure_views.png"), ("histogram", "figure_histogram.png"),
                 ("render_a", "figure_3d_a.png"), ("render_b", "figure_3d_b.png"),
                 ("registration", "figure_registration.png"))}
        static.write_text(render_html(rep, figs), "utf-8")
        opened = open_times({"report.html": warm / "report.html", "static": static})
        page_parts = {"report.html": sizes["report.html"], "three.js": len(three_js),
                      "viewer script": len(viewer_js), "views' data": len(payload),
                      "static page (no interactive part)": static.stat().st_size}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"# Report generation benchmark ({'quick' if args.quick else 'full-size'} case)",
        "",
        f"Grid {size[0]} x {size[1]} x {size[2]} voxels at 0.75 x 0.75 x 1.0 mm; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average during the run {load}; process peak RSS "
        f"{rss:.0f} MB.",
        "",
        "| stage | wall (s) | CPU (s) | peak RSS so far (MB) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {n} | {w:.3f} | {c:.3f} | {m:.0f} |" for n, w, c, m in rows]
    ours, ref = mask_rows
    lines += ["", "The machine is shared (see the load average): wall time includes waiting for a "
              "core. CPU time is this process only: the figures are drawn in forked worker "
              "processes (2-D and 3-D at the same time, `a0verify.parallel`), whose CPU time is "
              "not counted here; the wall time is what a user waits.",
              "", f"Mask files: ours / reference wall-time ratio = {ours / max(ref, 1e-9):.3f}.",
              "", "Output sizes (bytes): " + ", ".join(f"{k} {v:,}" for k, v in sorted(
                  sizes.items())),
              "", "Page size (bytes): " + ", ".join(f"{k} {v:,}" for k, v in
                                                    page_parts.items()) + "."]
    if opened is None:
        lines += ["", "Page opening time: not measured (Playwright or Chromium missing)."]
    else:
        lines += ["", "Page opening time in headless Chromium (software WebGL, median of 3): "
                  f"interactive page ready (3-D view and slices drawn) after "
                  f"{opened['report.html'] / 1000:.2f} s; the static page without the "
                  f"interactive part loaded after {opened['static'] / 1000:.2f} s (reference)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
