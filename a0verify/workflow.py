"""The batch workflow's location and its input contract, the sample sheet (one reader for the
``a0verify batch`` command, the Snakemake rules and the cohort summary).

The workflow (``Snakefile`` and ``pipelines/``) sits at the top of a source checkout and is
installed with the package as data files under ``<prefix>/share/a0verify`` (a wheel carries it),
so ``a0verify batch`` works from a plain ``pip install 'a0verify[batch]'``.
"""

from __future__ import annotations

import csv
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

from a0verify.errors import InputError

#: Sample-sheet columns that name input files (resolved against the base directory).
PATH_COLUMNS = ("pre", "post", "tumor", "ablation", "liver")


def _candidates() -> list[Path]:
    checkout = Path(__file__).resolve().parent.parent  # a source checkout / editable install
    shares = [Path(sysconfig.get_path("data")), Path(sys.prefix), Path(sys.base_prefix)]
    user = sysconfig.get_path("data", f"{os.name}_user") if os.name == "posix" else None
    if user:
        shares.append(Path(user))
    return [checkout, *(p / "share" / "a0verify" for p in shares)]


def workflow_root() -> Path:
    """The directory holding ``Snakefile`` and ``pipelines/``.

    ``$A0VERIFY_WORKFLOW`` (a directory) wins; else the source checkout the package runs from;
    else the copy installed with the package (``<prefix>/share/a0verify``). Raises InputError
    when no workflow is found.
    """
    env = os.environ.get("A0VERIFY_WORKFLOW")
    roots = [Path(env)] if env else _candidates()
    for root in roots:
        if (root / "Snakefile").is_file() and (root / "pipelines").is_dir():
            return root
    raise InputError(f"no Snakefile/pipelines found (looked in {', '.join(map(str, roots))}); "
                     "reinstall a0verify or set A0VERIFY_WORKFLOW to a checkout")


def _load_yaml(path: Path) -> Any:
    import yaml

    with open(path) as fh:
        return yaml.safe_load(fh)


def read_sample_sheet(path: str | Path, root: Path | None = None) -> list[dict[str, str]]:
    """Read and validate a sample sheet (TSV, header, '#' comment lines, empty cell = absent).

    Returns one dict per case (stripped strings, empty cells dropped), in sheet order.
    Raises InputError (one line naming the sheet, row and problem) when the file is missing,
    empty, has duplicate case ids or a row fails ``samples.schema.yaml``.
    """
    import jsonschema

    p = Path(path)
    try:
        with open(p, newline="") as fh:
            lines = [ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    except FileNotFoundError:
        raise InputError(f"{p}: sample sheet does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read sample sheet ({exc})") from None
    reader = csv.DictReader(lines, delimiter="\t")
    if not reader.fieldnames or "case_id" not in [f.strip() for f in reader.fieldnames]:
        raise InputError(f"{p}: sample sheet needs a tab-separated header with case_id, pre, "
                         "post, tumor|tumor_seed, ablation|ablation_seed")
    schema = _load_yaml((root or workflow_root()) / "pipelines/schemas/samples.schema.yaml")
    validator = jsonschema.Draft202012Validator(schema)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, raw in enumerate(reader, start=1):
        if None in raw:
            raise InputError(f"{p}: row {i} has more cells than the header")
        row = {k.strip(): v.strip() for k, v in raw.items() if k and v is not None and v.strip()}
        errors = sorted(validator.iter_errors(row), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            where = f"column {e.path[0]}" if e.path else "row"
            msg = e.message if e.validator not in ("oneOf", "not") else (
                "give exactly one of tumor/tumor_seed and one of ablation/ablation_seed"
                if not e.path else "unsafe value (letters, digits, _ - . only; no '..')")
            raise InputError(f"{p}: row {i} (case_id {row.get('case_id', '?')!r}), {where}: "
                             f"{msg}")
        if row["case_id"] in seen:
            raise InputError(f"{p}: duplicate case_id {row['case_id']!r} (row {i})")
        seen.add(row["case_id"])
        rows.append(row)
    if not rows:
        raise InputError(f"{p}: sample sheet has no cases")
    return rows


def case_path(row: dict[str, str], key: str, base_dir: str | Path | None = None) -> str | None:
    """The input file ``key`` of a sheet row, a relative path resolved against ``base_dir``
    (default: the current directory); None when the row has no such cell."""
    v = row.get(key)
    if not v:
        return None
    return v if os.path.isabs(v) else str(Path(base_dir or Path.cwd()) / v)


def case_paths(row: dict[str, str], base_dir: str | Path | None = None) -> dict[str, str]:
    """Every input file of a sheet row (:data:`PATH_COLUMNS`), resolved (see :func:`case_path`)."""
    return {k: p for k in PATH_COLUMNS if (p := case_path(row, k, base_dir)) is not None}


def seeds(row: dict[str, str], kind: str) -> list[str]:
    """The ``<kind>_seed`` cell of a row as a list of ``X,Y,Z`` strings (';'-separated)."""
    v = row.get(f"{kind}_seed", "")
    return [",".join(c.strip() for c in p.split(",")) for p in v.split(";") if p.strip()]


__all__ = ["PATH_COLUMNS", "case_path", "case_paths", "read_sample_sheet", "seeds",
           "workflow_root"]
