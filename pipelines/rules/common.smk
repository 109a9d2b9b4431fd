import csv
import re


def _read_cases(path):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = {}
    for row in rows:
        cid = row["case_id"]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", cid) or ".." in cid:
            raise ValueError(f"{path}: case_id {cid!r} has unsafe characters")
        out[cid] = row
    return out


class _Cases(dict):
    @property
    def index(self):
        return list(self.keys())


CASES = _Cases(_read_cases(config["cases"]))
OUT = config.get("out", "results")
