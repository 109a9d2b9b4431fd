"""Send to PACS: a real Orthanc (Debian package) started on loopback ports with a temporary
configuration and storage; the DICOM outputs of a result are stored with C-STORE, queried back
with C-FIND and Orthanc's REST API, and the stored SEG/SR read back with highdicom equal
report.json. A refusing node (wrong called AE title) and an unreachable one give a one-line
error, exit code 6, and leave every local file in place.

When Orthanc is not installed or does not start, the tests are skipped with the reason (CI
installs it: .ci/run).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pynetdicom")
pytest.importorskip("highdicom")
import pydicom
from click.testing import CliRunner
from dicom_helpers import assert_sr_matches_report

from a0verify.pacs import Node, SendError, parse_node, send_files

AET = "A0TESTPACS"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """A running Orthanc: DICOM node and REST base URL."""

    def __init__(self, node: Node, http: str) -> None:
        self.node, self.http = node, http

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.http + path, timeout=20) as r:
            data = r.read()
        return json.loads(data) if data[:1] in (b"{", b"[") else data


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    exe = shutil.which("Orthanc")
    if exe is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc; .ci/run installs it)")
    root = tmp_path_factory.mktemp("orthanc")
    dport, hport = _free_port(), _free_port()
    cfg = {"Name": "a0verify-test", "StorageDirectory": str(root / "db"),
           "IndexDirectory": str(root / "db"), "DicomAet": AET, "DicomPort": dport,
           "HttpPort": hport, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
           "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True,
           "DicomAlwaysAllowFind": True, "Plugins": [], "HttpServerEnabled": True,
           "DicomServerEnabled": True, "ConcurrentJobs": 1}
    (root / "orthanc.json").write_text(json.dumps(cfg))
    log = open(root / "orthanc.log", "wb")
    proc = subprocess.Popen([exe, str(root / "orthanc.json")], stdout=log,
                            stderr=subprocess.STDOUT, cwd=root)
    http = f"http://127.0.0.1:{hport}"
    server = Orthanc(Node(AET, "127.0.0.1", dport), http)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                server.get("/system")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (root / "orthanc.log").read_text(errors="replace")[-400:]
                    pytest.skip(f"Orthanc did not start: {tail.strip()}")
                time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture()
def exported(dicom_result: dict[str, Any]) -> dict[str, Any]:
    return dicom_result


def test_parse_node() -> None:
    assert parse_node("PACS@10.1.2.3:104") == Node("PACS", "10.1.2.3", 104)
    assert parse_node("X@[::1]:4242") == Node("X", "::1", 4242)
    from a0verify.errors import InputError

    for bad in ("PACS10.1.2.3:104", "P@h:0", "P@h:abc", "THIS_AE_TITLE_IS_TOO_LONG@h:104"):
        with pytest.raises(InputError, match="AET@HOST:PORT"):
            parse_node(bad)


def test_send_query_and_read_back(orthanc: Orthanc, exported: dict[str, Any]) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    from a0verify.cli import main
    from a0verify.dicom_out.sr import read_sr_values

    d = exported["dir"]
    r = CliRunner().invoke(main, ["send", str(d), "--to", f"{AET}@127.0.0.1:{orthanc.node.port}"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"sent 4 file(s) to {orthanc.node}"
    report = json.loads((d / "report.json").read_text())
    study_uid = report["dicom_export"]["study_instance_uid"]
    # C-FIND: the study and its series (SEG, SR, DOC, SC)
    ae = AE(ae_title="A0VERIFY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", orthanc.node.port, ae_title=AET)
    assert assoc.is_established
    q = pydicom.Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = ""
    q.Modality = ""
    found = [ds.Modality for status, ds in assoc.send_c_find(
        q, StudyRootQueryRetrieveInformationModelFind) if status and status.Status in (0xFF00,
                                                                                       0xFF01)]
    assoc.release()
    assert sorted(found) == ["DOC", "OT", "SEG", "SR"]
    # REST: fetch the stored SEG and SR and read them back
    stored = {}
    for iid in orthanc.get("/instances"):
        tags = orthanc.get(f"/instances/{iid}/simplified-tags")
        stored[tags["SOPInstanceUID"]] = iid
    seg_uid = report["dicom_export"]["seg_sop_instance_uid"]
    sr_uid = report["dicom_export"]["sr_sop_instance_uid"]
    tmp = d.parent / "from_orthanc"
    tmp.mkdir(exist_ok=True)
    (tmp / "seg.dcm").write_bytes(orthanc.get(f"/instances/{stored[seg_uid]}/file"))
    (tmp / "sr.dcm").write_bytes(orthanc.get(f"/instances/{stored[sr_uid]}/file"))
    import highdicom as hd

    seg = hd.seg.segread(tmp / "seg.dcm")
    assert seg.SOPInstanceUID == seg_uid and seg.number_of_segments == 2
    sr = pydicom.dcmread(tmp / "sr.dcm")
    assert_sr_matches_report(read_sr_values(sr), report)


def test_refused_and_unreachable_nodes(orthanc: Orthanc, exported: dict[str, Any]) -> None:
    from a0verify.cli import main

    d = exported["dir"]
    before = sorted(p.name for p in (d / "dicom").iterdir())
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["send", str(d), "--to",
                                  f"WRONGAET@127.0.0.1:{orthanc.node.port}", "--retries", "1"])
    assert r.exit_code == 6, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "association rejected" in lines[0] and "stored 0 of 4" in \
        lines[0] and "2 attempt(s)" in lines[0], lines
    assert time.monotonic() - t0 < 30
    closed = _free_port()
    files = sorted((d / "dicom").glob("*.dcm"))
    with pytest.raises(SendError, match=r"stored 0 of 4 file\(s\) after 1 attempt\(s\) "
                                        r"\(connection refused"):
        send_files(files, Node("X", "127.0.0.1", closed), retries=0, timeout_s=5)
    assert sorted(p.name for p in (d / "dicom").iterdir()) == before
    r = CliRunner().invoke(main, ["send", str(d.parent), "--to", "X@127.0.0.1:104"])
    assert r.exit_code == 2 and "no DICOM export here" in r.output


def test_margin_dicom_out_and_send_non_dicom_inputs(orthanc: Orthanc,
                                                   small_case: dict[str, Path],
                                                   tmp_path: Path) -> None:
    """`margin --send` on NIfTI inputs: the synthesized CT series travels with the SEG/SR, so
    the SEG's referenced instances all exist on the node."""
    from a0verify.cli import main

    out = tmp_path / "res"
    r = CliRunner().invoke(main, [
        "margin", "--tumor", str(small_case["tumor"]), "--ablation", str(small_case["ablation"]),
        "--post", str(small_case["post"]), "--out", str(out),
        "--send", f"{AET}@127.0.0.1:{orthanc.node.port}"])
    assert r.exit_code == 0, r.output
    n_ct = len(list((out / "dicom" / "ct").glob("*.dcm")))
    assert f"sent {n_ct + 4} file(s) to {AET}@127.0.0.1:{orthanc.node.port}" in r.output
    seg = pydicom.dcmread(out / "dicom" / "seg.dcm")
    series = orthanc.get("/series")
    uids = {orthanc.get(f"/series/{s}")["MainDicomTags"]["SeriesInstanceUID"]: s for s in series}
    ct_series = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    assert ct_series in uids
    stored = {orthanc.get(f"/instances/{i}/simplified-tags")["SOPInstanceUID"]
              for i in orthanc.get(f"/series/{uids[ct_series]}")["Instances"]}
    refs = {str(i.ReferencedSOPInstanceUID)
            for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs and refs <= stored
