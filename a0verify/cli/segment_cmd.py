"""``a0verify segment ablation|tumor``: masks from seed points (LPS mm).

Writes a UInt8 0/1 mask on the input image's grid (atomic write). Warnings (suspected leak, low
contrast, truncated region) go to stderr and, with ``--stats``, into a JSON file with the
statistics. Exit codes: 0 written, 2 bad input (seed outside the image, unreadable image, bad
output suffix), 4 segmentation failed (leak, no zone at the seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from a0verify.cli.options import SEED, threads_option
from a0verify.errors import InputError

_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def _check_out(path: Path) -> None:
    name = path.name.lower()
    if not name.endswith(_SUFFIXES):
        raise InputError(f"{path}: output mask must end with one of {', '.join(_SUFFIXES)}")
    if path.parent and not path.parent.exists():
        raise InputError(f"{path}: output directory {path.parent} does not exist")


def _finish(res: object, out: Path, stats_path: Path | None) -> None:
    from a0verify.io import write_image, write_json_atomic
    from a0verify.segmentation import SegmentationResult

    assert isinstance(res, SegmentationResult)
    write_image(res.mask, out)
    for w in res.warnings:
        click.echo(f"a0verify: warning: {w}", err=True)
    if stats_path is not None:
        write_json_atomic(stats_path, {"method": res.method, "warnings": res.warnings,
                                       "stats": res.stats, "mask": str(out)})
    click.echo(f"{out}: {res.stats.get('volume_ml', 0.0):.2f} ml "
               f"({int(res.stats.get('n_components', 0))} component(s))")


def _threads(n: int | None) -> None:
    if n is not None:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


_stats_option = click.option(
    "--stats", "stats_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Also write method, warnings and statistics (volume ml, HU) as JSON.")


@click.group("segment")
def segment() -> None:
    """Segment the ablation zone (post CT) or a tumour (pre CT) from seed points in LPS mm.

    Exit codes: 0 mask written, 2 bad input (e.g. seed outside the image), 4 segmentation failed
    (region leaked or no lesion at the seed).
    """


@segment.command("ablation")
@click.option("--image", "image_path", required=True, type=click.Path(path_type=Path),
              help="Post-ablation contrast CT (file or DICOM series directory).")
@click.option("--seed", "seeds", type=SEED, multiple=True, required=True,
              help="Point X,Y,Z (LPS mm) inside the ablation zone; repeat for several probes.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output mask (.nii.gz, .nrrd, .mha), UInt8 0/1 on the image grid.")
@_stats_option
@threads_option
def ablation(image_path: Path, seeds: Sequence[tuple[float, float, float]], out: Path,
             stats_path: Path | None, threads: int | None) -> None:
    """Ablation-zone mask from one or more seeds (non-enhancing zone; gas inside included,
    enhancing rim excluded; several seeds give the union of their zones)."""
    from a0verify.io import read_image
    from a0verify.segmentation import segment_ablation

    _check_out(out)
    _threads(threads)
    img = read_image(image_path, what="post-ablation CT")
    res = segment_ablation(img, list(seeds), source=str(image_path))
    _finish(res, out, stats_path)


@segment.command("tumor")
@click.option("--image", "image_path", required=True, type=click.Path(path_type=Path),
              help="Pre-ablation (planning) CT (file or DICOM series directory).")
@click.option("--seed", "seed", type=SEED, required=True,
              help="Point X,Y,Z (LPS mm) inside the tumour.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output mask (.nii.gz, .nrrd, .mha), UInt8 0/1 on the image grid.")
@_stats_option
@threads_option
def tumor(image_path: Path, seed: tuple[float, float, float], out: Path,
          stats_path: Path | None, threads: int | None) -> None:
    """Tumour mask from one seed (hypo- or hyper-dense lesion against its surroundings)."""
    from a0verify.io import read_image
    from a0verify.segmentation import segment_tumor

    _check_out(out)
    _threads(threads)
    img = read_image(image_path, what="pre-ablation CT")
    res = segment_tumor(img, seed, source=str(image_path))
    _finish(res, out, stats_path)
