"""Regenerate the small committed test cases (deterministic): python testdata/make_testdata.py"""

from __future__ import annotations

import csv
from pathlib import Path

from a0verify import phantom as ph

HERE = Path(__file__).resolve().parent

CASES = {
    # id: (spacing, direction_deg, target margin mm, seed)
    "case01": ([1.9, 1.9, 2.5], [0.0, 0.0, 0.0], 6.5, 1),
    "case02": ([1.9, 1.9, 2.5], [4.0, -3.0, 6.0], 2.5, 2),
    "case03": ([1.9, 1.9, 2.5], [0.0, 0.0, 0.0], -2.0, 3),
}


def main() -> None:
    rows = []
    for cid, (spacing, direction, m, seed) in CASES.items():
        spec = ph.PhantomSpec(
            # whole-torso field of view (as a clinical scan: body outline for initialisation)
            # at a coarse in-plane spacing, few slices: keeps each case a few hundred KB
            spacing=spacing, size=[164, 128, 22], center_lps=[0.0, 5.0, 0.0],
            direction_deg=direction, seed=seed,
            lesions=[ph.LesionSpec(center_lps=[-60.0, 5.0, 0.0], radius_mm=9.0,
                                   target_margin_mm=m)],
        )
        case = ph.make_phantom(spec)
        paths = ph.write_case(case, HERE / cid)
        rows.append({"case_id": cid, **{k: str(v.relative_to(HERE.parent)) for k, v in paths.items()
                                        if k != "truth"}})
        print(cid, f"MAM {case.min_mam_mm:.2f} mm")
    with open(HERE / "cases.tsv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["case_id", "pre", "post", "tumor", "ablation"],
                           delimiter="\t")
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
