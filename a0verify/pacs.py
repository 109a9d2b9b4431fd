"""Send DICOM files to a PACS node with C-STORE (pynetdicom, extra ``dicom``).

``a0verify send RESULT_DIR --to AET@HOST:PORT`` stores every file of ``RESULT_DIR/dicom`` (written
by ``export-dicom``): the synthesized CT copy first when there is one, then SEG, SR, PDF and SC,
so references resolve as soon as they arrive. Each attempt opens one association; files the node
did not store are retried (``retries`` times, waiting ``wait_s`` x attempt seconds). Nothing local
is changed or removed: a failed send can simply be repeated. A refused association, an
unreachable node or a failed store ends in :class:`SendError` with one line naming the node and the
reason.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from a0verify.errors import A0Error, InputError

#: exit code of a send that did not store everything (documented in ``a0verify --help``)
EXIT_SEND_FAILED = 6


class SendError(A0Error):
    """The PACS node refused or could not be reached, or did not store every file."""

    exit_code = EXIT_SEND_FAILED


@dataclass(frozen=True)
class Node:
    """A DICOM application entity: title, host, port."""

    aet: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


_NODE = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>\[[0-9a-fA-F:]+\]|[^:@]+):(?P<port>\d{1,5})$")


def parse_node(text: str) -> Node:
    """Parse ``AET@HOST:PORT`` (AE title at most 16 characters, no backslash; IPv6 host in
    brackets). InputError naming the text otherwise."""
    m = _NODE.match(text.strip())
    if not m or "\\" in m["aet"] or not 0 < int(m["port"]) < 65536 or not m["aet"].strip():
        raise InputError(f"--to {text!r}: expected AET@HOST:PORT (AE title of at most 16 "
                         "characters, e.g. ORTHANC@127.0.0.1:4242)")
    return Node(m["aet"].strip(), m["host"].strip("[]"), int(m["port"]))


@dataclass
class SendReport:
    """What a send did: files stored, attempts used, per-file failures of the last attempt."""

    node: Node
    stored: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    attempts: int = 0


def _probe(node: Node, timeout_s: float) -> str | None:
    """None when a TCP connection to the node opens; else the reason (refused, timeout, ...)."""
    import socket

    try:
        with socket.create_connection((node.host, node.port), timeout=min(timeout_s, 10.0)):
            return None
    except ConnectionRefusedError:
        return "connection refused (nothing listens on that port)"
    except TimeoutError:
        return "no answer (timed out connecting)"
    except OSError as exc:
        return f"cannot connect ({exc.strerror or type(exc).__name__})"


def _store_all(node: Node, files: Sequence[Path], calling_aet: str, timeout_s: float
               ) -> tuple[list[Path], dict[Path, str], str | None]:
    """One association: C-STORE each file. Returns (stored, failed {file: reason}, association
    problem or None)."""
    import pydicom
    from pynetdicom import AE

    datasets = []
    for f in files:
        try:
            datasets.append(pydicom.dcmread(f))
        except Exception as exc:  # a local file we wrote ourselves: report, do not crash
            raise InputError(f"{f}: cannot read DICOM file to send ({type(exc).__name__})") \
                from None
    problem = _probe(node, timeout_s)
    if problem:
        return [], {}, problem
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    contexts = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                       for ds in datasets})
    for sop, ts in contexts:
        ae.add_requested_context(sop, [ts])
    assoc = ae.associate(node.host, node.port, ae_title=node.aet)
    if not assoc.is_established:
        if assoc.is_rejected:
            return [], {}, "association rejected (check the called AE title and that this " \
                           f"calling AE title {calling_aet} is allowed)"
        if assoc.is_aborted:
            return [], {}, "association aborted by the node"
        return [], {}, "no answer (node unreachable, or not a DICOM port)"
    stored: list[Path] = []
    failed: dict[Path, str] = {}
    try:
        for f, ds in zip(files, datasets, strict=True):
            try:
                status = assoc.send_c_store(ds)
            except (RuntimeError, ValueError) as exc:  # e.g. no accepted presentation context
                failed[f] = str(exc).splitlines()[0][:120]
                continue
            code = int(getattr(status, "Status", -1)) if status else -1
            if code == 0x0000 or code in (0xB000, 0xB007, 0xB006):  # success or warning
                stored.append(f)
            elif code == -1:
                failed[f] = "no response (connection lost or timed out)"
            else:
                failed[f] = f"status 0x{code:04X}"
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    for f in files:
        if f not in stored and f not in failed:
            failed[f] = "association ended before it was sent"
    return stored, failed, None


def send_files(files: Sequence[Path], node: Node, *, calling_aet: str = "A0VERIFY",
               retries: int = 2, wait_s: float = 1.0, timeout_s: float = 30.0) -> SendReport:
    """C-STORE ``files`` to ``node``, retrying the files not stored up to ``retries`` times.

    Returns the SendReport when every file was stored; raises SendError with one line (node,
    count stored, first reason) otherwise.
    """
    from a0verify.dicom_out import require

    require("pynetdicom", what="Sending to PACS")
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # no log lines on stderr
    rep = SendReport(node)
    todo = list(files)
    problem: str | None = None
    for attempt in range(retries + 1):
        rep.attempts = attempt + 1
        stored, failed, problem = _store_all(node, todo, calling_aet, timeout_s)
        rep.stored += stored
        rep.failed = failed
        todo = [f for f in todo if f not in stored]
        if not todo:
            return rep
        if attempt < retries:
            time.sleep(wait_s * (attempt + 1))
    reason = problem or next(iter(rep.failed.values()), "unknown reason")
    first = next(iter(rep.failed), None)
    where = f" ({first.name}: {reason})" if first is not None and not problem else f" ({reason})"
    raise SendError(f"{node}: stored {len(rep.stored)} of {len(files)} file(s) after "
                    f"{rep.attempts} attempt(s){where}; nothing was removed locally, run "
                    "`a0verify send` again")
