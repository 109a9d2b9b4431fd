"""``a0verify segment ablation|tumor``: masks from clicks and diameter lines (LPS mm).

Writes the mask (UInt8 0/1 on the input image's grid, atomic write) and, beside it, the same
mask as a 3D Slicer segmentation ``<name>.seg.nrrd`` to correct by hand and pass back to
``a0verify run --ablation/--tumor`` (when ``--out`` itself ends in ``.seg.nrrd`` only that file
is written). The quality line and warnings go to stderr and, with ``--stats``, into a JSON file.
Exit codes: 0 written, 2 bad input (point outside the image, unreadable file, bad suffix),
4 segmentation failed (no lesion at the clicks, flooded region).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from a0verify.cli.options import LINE, SEED, threads_option
from a0verify.errors import InputError

_SUFFIXES = (".seg.nrrd", ".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def seg_nrrd_path(out: Path) -> Path:
    """The ``.seg.nrrd`` written beside ``out`` (``out`` itself when it already is one)."""
    name = out.name
    if name.lower().endswith(".seg.nrrd"):
        return out
    for suf in sorted(_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
            break
    return out.with_name(name + ".seg.nrrd")


def _check_out(path: Path) -> None:
    if not path.name.lower().endswith(_SUFFIXES):
        raise InputError(f"{path}: output mask must end with one of {', '.join(_SUFFIXES)}")
    if path.parent and not path.parent.exists():
        raise InputError(f"{path}: output directory {path.parent} does not exist")


def _finish(res: Any, out: Path, stats_path: Path | None, structure: str,
            inputs: dict[str, Any]) -> None:
    from a0verify.io import write_image, write_json_atomic
    from a0verify.report.slicer import ABLATION_RGB, TUMOR_RGB, write_structure_segmentation
    from a0verify.segmentation import SegmentationResult

    assert isinstance(res, SegmentationResult)
    seg = seg_nrrd_path(out)
    name, rgb = ("ablation zone", ABLATION_RGB) if structure == "ablation" else \
        ("tumour", TUMOR_RGB)
    if seg != out:
        write_image(res.mask, out)
    write_structure_segmentation(seg, res.mask, name, rgb)
    for w in res.warnings:
        click.echo(f"a0verify: warning: {w}", err=True)
    if stats_path is not None:
        doc = res.to_json() | {"mask": str(out), "seg_nrrd": str(seg), "inputs": inputs}
        write_json_atomic(stats_path, doc)
    written = str(out) if seg == out else f"{out} (+ {seg.name})"
    level = res.quality.level if res.quality is not None else "unknown"
    click.echo(f"{written}: {res.stats.get('volume_ml', 0.0):.2f} ml, quality {level}")


def _threads(n: int | None) -> None:
    if n is not None:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


_stats_option = click.option(
    "--stats", "stats_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Also write method, quality, warnings and statistics (volume ml, HU) as JSON.")
_markups_option = click.option(
    "--markups", "markups_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="3D Slicer markups file (.mrk.json): points (and, for a tumour, a line) to use "
         "besides the options; points named or labelled 'out...' are outside clicks.")
_out_option = click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Output mask (.nii.gz, .nrrd, .mha, or .seg.nrrd), UInt8 0/1 on the image grid; a "
         "Slicer .seg.nrrd is written beside it for correction.")


@click.group("segment")
def segment() -> None:
    """Segment the ablation zone (post CT) or a tumour (pre CT) from clicks in LPS mm.

    Every mask is also written as a 3D Slicer .seg.nrrd: edit it in Slicer and pass it back to
    `a0verify run --ablation/--tumor`. Exit codes: 0 mask written, 2 bad input (e.g. a point
    outside the image), 4 segmentation failed (no lesion at the clicks).
    """


@segment.command("ablation")
@click.option("--image", "image_path", required=True, type=click.Path(path_type=Path),
              help="Post-ablation contrast CT (file or DICOM series directory).")
@click.option("--seed", "seeds", type=SEED, multiple=True,
              help="Point X,Y,Z (LPS mm) inside the ablation zone (repeatable; one per "
                   "separate zone, anywhere inside it).")
@_markups_option
@_out_option
@_stats_option
@threads_option
def ablation(image_path: Path, seeds: Sequence[tuple[float, float, float]],
             markups_path: Path | None, out: Path, stats_path: Path | None,
             threads: int | None) -> None:
    """Ablation-zone mask from one or more clicks (non-enhancing zone; gas, tract and needle
    inside included, enhancing rim excluded; several clicks give the union of their zones)."""
    from a0verify.io import read_image
    from a0verify.io.markups import read_markups
    from a0verify.segmentation import segment_ablation

    _check_out(out)
    pts = [list(s) for s in seeds]
    if markups_path is not None:
        pts += [p for p in read_markups(markups_path).inside]
    if not pts:
        raise InputError("segment ablation: give at least one --seed X,Y,Z or a --markups file "
                         "with points")
    _threads(threads)
    img = read_image(image_path, what="post-ablation CT")
    res = segment_ablation(img, pts, source=str(image_path),
                           option="--seed/--markups" if markups_path else "--seed")
    _finish(res, out, stats_path, "ablation", {"seeds_lps": pts})


@segment.command("tumor")
@click.option("--image", "image_path", required=True, type=click.Path(path_type=Path),
              help="Pre-ablation (planning) CT (file or DICOM series directory).")
@click.option("--line", "line", type=LINE, default=None,
              help="Longest diameter X1,Y1,Z1:X2,Y2,Z2 (two LPS points on the tumour border, "
                   "as measured for RECIST). Best input.")
@click.option("--seed", "seeds", type=SEED, multiple=True,
              help="Point X,Y,Z (LPS mm) inside the tumour (repeatable).")
@click.option("--outside", "outside", type=SEED, multiple=True,
              help="Point X,Y,Z (LPS mm) that is NOT tumour, e.g. a touching vessel or lesion "
                   "(repeatable).")
@_markups_option
@_out_option
@_stats_option
@threads_option
def tumor(image_path: Path, line: tuple[tuple[float, ...], tuple[float, ...]] | None,
          seeds: Sequence[tuple[float, float, float]],
          outside: Sequence[tuple[float, float, float]], markups_path: Path | None, out: Path,
          stats_path: Path | None, threads: int | None) -> None:
    """Tumour mask from a diameter line and/or inside clicks, optionally outside clicks
    (hypo-, hyper- or near-iso-dense lesions; necrotic centres and enhancing parts kept)."""
    from a0verify.io import read_image
    from a0verify.segmentation import segment_tumor

    _check_out(out)
    line_pts, ins, outs = merge_tumor_inputs(line, seeds, outside, markups_path)
    _threads(threads)
    img = read_image(image_path, what="pre-ablation CT")
    res = segment_tumor(img, line_lps=line_pts, seeds_lps=ins, outside_lps=outs,
                        source=str(image_path))
    _finish(res, out, stats_path, "tumor", {"line_lps": line_pts, "seeds_lps": ins,
                                            "outside_lps": outs})


def merge_tumor_inputs(line: Sequence[Sequence[float]] | None,
                       seeds: Sequence[Sequence[float]], outside: Sequence[Sequence[float]],
                       markups_path: Path | None) -> tuple[
        tuple[list[float], list[float]] | None, list[list[float]], list[list[float]]]:
    """Line, inside and outside points from the options plus a markups file (LPS mm). A line
    given as an option wins over one in the file; a file with several lines is an InputError."""
    from a0verify.io.markups import read_markups

    line_pts = None if line is None else ([float(v) for v in line[0]],
                                          [float(v) for v in line[1]])
    ins = [list(map(float, s)) for s in seeds]
    outs = [list(map(float, s)) for s in outside]
    if markups_path is not None:
        mk = read_markups(markups_path)
        ins += mk.inside
        outs += mk.outside
        if line_pts is None and mk.lines:
            if len(mk.lines) > 1:
                raise InputError(f"{markups_path}: holds {len(mk.lines)} lines; keep one "
                                 "diameter line per tumour (or pass --line)")
            _, a, b = mk.lines[0]
            line_pts = (a.tolist(), b.tolist())
    return line_pts, ins, outs
