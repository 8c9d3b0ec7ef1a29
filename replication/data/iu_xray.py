"""IU X-ray (Open-i, Indiana University chest X-ray collection): reports, labels, frontal images.

Layout read (what `replication fetch iu-xray` writes, or the files placed by hand):

    <root>/NLMCXR_reports.tgz          the official reports archive (or an extracted ecgen-radiology/)
    <root>/images/*.png                the official PNGs (optional: without them, a reports-only cohort)
    <root>/nlmcxr_dicom_metadata.csv.gz  View Position per image (optional: heuristic fallback)

Label as the paper: normal (0) when the report's MeSH major terms are exactly "normal", abnormal (1)
otherwise. On the real archive that gives 3955 reports, 1391 normal.
"""

from __future__ import annotations

import codecs
import os
import re
import tarfile
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from replication.data.chestxray14 import read_csv_checked
from replication.data.images import list_pngs, load_images
from replication.data.store import Cohort, Exclusions
from replication.errors import DataError

SECTIONS = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")
FRONTAL_VIEWS = frozenset({"PA", "AP"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LARGE LATERAL"})
REPORTS_ARCHIVE = "NLMCXR_reports.tgz"
METADATA_FILE = "nlmcxr_dicom_metadata.csv.gz"
REPORT_ID = re.compile(r"CXR[0-9]+")
# what a damaged archive raises while it is read: tarfile's own errors, a stream cut short, or bad deflate data
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)
_DECLARED_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")


@dataclass
class Report:
    report_id: str
    sections: dict[str, str]
    mesh_major: list[str]
    mesh_minor: list[str]
    images: list[str] = field(default_factory=list)
    source_file: str = ""

    @property
    def label(self) -> int:
        return label_from_mesh(self.mesh_major)


def label_from_mesh(mesh_major: list[str]) -> int:
    """0 (normal) when the MeSH major terms are exactly "normal", else 1 (abnormal), as the paper.

    A term repeated is the same term (["normal", "normal"] is normal). With no terms there is no label:
    the readers exclude such a report instead of calling it abnormal.
    """
    terms = {m.strip().lower() for m in mesh_major if m.strip()}
    if not terms:
        raise ValueError("no MeSH major terms: the label is undefined (such a report is excluded, not labelled)")
    return 0 if terms == {"normal"} else 1


def normalise_image_id(image_id: str) -> str:
    """`CXR1_1_IM-0001-3001` (report XML, PNG archive) → `CXR1_IM-0001-3001` (DICOM metadata, Kaggle copies)."""
    return re.sub(r"^(CXR\d+)_\d+_(IM-)", r"\1_\2", image_id)


def _codec_family(name: str) -> str:
    """'utf-8' for utf-8 / utf_8 / UTF-8-sig, 'utf-16' for its byte orders, else Python's codec name."""
    codec = codecs.lookup(name).name
    return next((f for f in ("utf-8", "utf-16", "utf-32") if codec.startswith(f)), codec)


def _xml_problem(data: bytes, error: Exception) -> str:
    """Why expat refused the bytes, with its detail; an encoding fault is named as one, not as 'malformed XML'."""
    bom = next((f for f, marks in (("utf-8", (codecs.BOM_UTF8,)), ("utf-16", (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)))
                if data.startswith(marks)), None)
    head = {"utf-8": data[len(codecs.BOM_UTF8):400], "utf-16": data[:800].decode("utf-16", "ignore").encode("utf-8", "ignore")}.get(bom, data[:400])
    match = _DECLARED_ENCODING.match(head)
    declared = match.group(1).decode("ascii", "replace").strip() if match else None
    if declared is not None:
        try:
            codecs.lookup(declared)
        except LookupError:
            return f"unknown text encoding {declared!r} declared in <?xml ... encoding=...?>; expected UTF-8"
    if bom and declared and _codec_family(declared) != bom:
        return f"the byte-order mark says {bom} but <?xml ... encoding={declared!r}?>; expected one encoding"
    encoding = bom or declared or "utf-8"
    try:
        data.decode("utf-8-sig" if _codec_family(encoding) == "utf-8" else encoding)
    except UnicodeDecodeError as e:
        return (f"invalid {encoding} text: {e.reason} at byte {e.start} ({data[e.start:e.start + 4]!r}); "
                f"expected the encoding the file {'declares' if declared else 'implies'} ({encoding})")
    return f"malformed XML ({error})"


def _one_value(values: list, what: str, source: str) -> object:
    """The value of an element a report has once; a repeated element must repeat the same value."""
    if any(v != values[0] for v in values[1:]):
        raise DataError(source, f"{len(values)} {what} that differ; expected one")
    return values[0]


def parse_report(data: bytes, source: str) -> Report:
    """Parse one ecgen-radiology XML; DataError naming the file and the field when it cannot be used.

    Refused (the reader counts them as exclusions): bytes that are not XML or not in their declared
    encoding, no or a malformed report id, no MeSH major term (the label source: a report without one
    is not given a label), and elements that should appear once repeated with different contents.
    """
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, LookupError, ValueError) as e:  # LookupError: an encoding expat does not know
        raise DataError(source, _xml_problem(data, e)) from None
    if root.tag != "eCitation":
        raise DataError(source, f"root element <{root.tag}>; expected <eCitation>")
    ids = [(uid.get("id") or "").strip() for uid in root.findall("uId")]
    report_id = str(_one_value(ids, "<uId> ids", source)) if ids else ""
    if not report_id:
        raise DataError(source, "no report id (<uId id=...> missing or empty)")
    if not REPORT_ID.fullmatch(report_id):
        raise DataError(source, f"report id <uId id={report_id!r}>: expected CXR followed by digits", record=report_id)
    found: dict[str, list[str]] = {s: [] for s in SECTIONS}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").upper()
        if label in found:
            found[label].append(" ".join("".join(node.itertext()).split()))
    sections = {s: str(_one_value(v, f"{s} sections", source)) if v else "" for s, v in found.items()}
    terms = [([(m.text or "").strip() for m in mesh.findall("major")], [(m.text or "").strip() for m in mesh.findall("minor")])
             for mesh in root.findall("MeSH")]
    major, minor = _one_value(terms, "<MeSH> blocks", source) if terms else ([], [])
    major, minor = [m for m in major if m], [m for m in minor if m]
    if not major:
        raise DataError(source, "no MeSH major term (<MeSH><major>...</major>), the source of the label; expected at least one",
                        record=report_id)
    images = list(dict.fromkeys(p.get("id", "").strip() for p in root.findall("parentImage") if (p.get("id") or "").strip()))
    return Report(report_id, sections, major, minor, images, source)


def _check_complete(tar: tarfile.TarFile, path: Path) -> None:
    """Refuse an archive that stops early or was damaged, which tarfile itself reads as a shorter archive.

    tarfile ends its member list silently at a cut or garbled header; a complete archive has an end
    marker (a zero block) there. Reading the stream to its end makes gzip check its CRC and length.
    """
    tar.fileobj.seek(tar.offset)
    marker = tar.fileobj.read(tarfile.BLOCKSIZE)
    if marker != tarfile.NUL * tarfile.BLOCKSIZE:
        raise DataError(path, f"truncated or corrupt archive (no end-of-archive marker after the member at byte {tar.offset}: "
                              f"{'the archive ends there' if not marker else 'a damaged header follows'}); delete it and fetch again")
    while tar.fileobj.read(1 << 20):
        pass


def iter_report_files(path: str | os.PathLike) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every report XML, from the .tgz or from an extracted folder, in name order.

    The whole archive is checked (complete, checksums right) before the first report is given.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.xml"))
        if not files:
            raise DataError(path, "no *.xml report files in this folder")
        for f in files:
            yield str(f.relative_to(path)), f.read_bytes()
        return
    if not path.is_file():
        raise DataError(path, "reports archive not found; run `replication fetch iu-xray` or place NLMCXR_reports.tgz there")
    try:
        with tarfile.open(path, "r:*") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")), key=lambda m: m.name)
            if not members:
                raise DataError(path, "archive holds no .xml reports")
            _check_complete(tar, path)
            for m in members:
                handle = tar.extractfile(m)
                yield m.name, handle.read() if handle else b""
    except ARCHIVE_ERRORS as e:
        raise DataError(path, f"truncated or corrupt archive ({type(e).__name__}: {e}); delete it and fetch again") from None


def read_reports(path: str | os.PathLike) -> tuple[list[Report], Exclusions]:
    """All usable reports; unusable files and duplicate ids are excluded and counted, not raised.

    The reason kept is the parser's whole message (an encoding fault stays an encoding fault).
    """
    reports: list[Report] = []
    excluded = Exclusions()
    seen: set[str] = set()
    for name, data in iter_report_files(path):
        try:
            report = parse_report(data, f"{path}:{name}")
        except DataError as e:
            excluded.add("read_reports", e.problem, [name])
            continue
        if report.report_id in seen:
            excluded.add("read_reports", "duplicate report id (the first file was kept)", [f"{report.report_id} ({name})"])
            continue
        seen.add(report.report_id)
        reports.append(report)
    return reports, excluded


def read_view_positions(path: str | os.PathLike) -> dict[str, str]:
    """Normalised image id → DICOM View Position ('' where the header has none).

    DataError naming the row when an image id is empty or one image is given two different views
    (the frontal choice would then depend on the row order).
    """
    wanted = ("imageid", "View Position")
    frame = read_csv_checked(path, "the columns 'imageid' and 'View Position'", usecols=lambda c: c in wanted, dtype=str)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(path, f"expected columns 'imageid' and 'View Position'; missing {missing}")
    ids = frame["imageid"].fillna("").str.strip()
    if ids.eq("").any():
        raise DataError(path, "empty imageid; expected an image id like CXR1_IM-0001-3001", record=f"row {int(ids.eq('').to_numpy().argmax()) + 2}")
    views: dict[str, str] = {}
    for row, (image_id, view) in enumerate(zip(ids.map(normalise_image_id), frame["View Position"].fillna("").str.strip().str.upper())):
        if views.setdefault(image_id, view) != view:
            raise DataError(path, f"View Position {view!r} contradicts {views[image_id]!r} given to the same image earlier; expected one view per image",
                            record=f"row {row + 2}, {image_id}")
    return views


def select_frontal(image_ids: list[str], views: dict[str, str] | None) -> tuple[str | None, str]:
    """Pick the report's frontal image and say how it was chosen.

    'metadata': the first image whose DICOM View Position is PA or AP.
    'heuristic': no image has a frontal View Position (or there is no metadata file); take the first
        listed image not known to be lateral. On the real archive this picks a frontal image for 96% (2288 of 2377)
        reports whose views are known (measured by tests/realdata/test_real_datasets.py).
    'none': no candidate.
    """
    views = views or {}
    known = [(i, views.get(normalise_image_id(i), "")) for i in image_ids]
    for image_id, view in known:
        if view in FRONTAL_VIEWS:
            return image_id, "metadata"
    for image_id, view in known:
        if view not in LATERAL_VIEWS:
            return image_id, "heuristic"
    return None, "none"


def find_image_file(image_id: str, pngs: dict[str, Path]) -> Path | None:
    """The official archive names files by the XML id; Kaggle-style copies by the normalised id."""
    return pngs.get(image_id) or pngs.get(normalise_image_id(image_id))


def read_iu_xray(root: str | os.PathLike, image_size: int, load_pixels: bool = True) -> Cohort:
    """The IU X-ray cohort: one case per report, its frontal image if the PNGs are present."""
    root = Path(root)
    archive = next((p for p in (root / REPORTS_ARCHIVE, root / "ecgen-radiology") if p.exists()), root)
    reports, excluded = read_reports(archive)
    if not reports:
        raise DataError(archive, "no readable reports")
    notes: list[str] = []
    meta_path = root / METADATA_FILE if root.is_dir() else None
    views = read_view_positions(meta_path) if meta_path is not None and meta_path.is_file() else None
    if views is None:
        notes.append(f"{METADATA_FILE} absent: frontal views chosen by the heuristic for every report")
    pngs = list_pngs(root / "images") if root.is_dir() else {}
    if not pngs:
        notes.append("no images/ folder with PNGs: reports-only cohort (text experiments only)")

    rows = []
    for r in reports:
        frontal, how = select_frontal(r.images, views)
        rows.append({
            "case_id": r.report_id,
            "patient_id": r.report_id,  # Open-i gives no patient id; one report is one study
            "comparison": r.sections["COMPARISON"],
            "indication": r.sections["INDICATION"],
            "findings": r.sections["FINDINGS"],
            "impression": r.sections["IMPRESSION"],
            "mesh_major": "; ".join(r.mesh_major),
            "mesh_minor": "; ".join(r.mesh_minor),
            "label": r.label,
            "images": "; ".join(r.images),
            "frontal_image": frontal or "",
            "view_source": how,
            "source_file": Path(r.source_file.rsplit(":", 1)[-1]).name,  # "<archive or folder>:<member>" → the XML's name
        })
    cases = pd.DataFrame(rows).sort_values("case_id", key=lambda s: s.str[3:].astype(int)).reset_index(drop=True)
    cases["image_index"] = -1

    no_frontal = cases["view_source"].eq("none")
    excluded.add("images", "no frontal image among the report's images (text only)", cases.loc[no_frontal, "case_id"])
    images = None
    if pngs:
        paths = cases["frontal_image"].map(lambda i: find_image_file(i, pngs) if i else None)
        missing = paths.isna() & ~no_frontal
        excluded.add("images", "frontal image file not found in images/ (text only)", cases.loc[missing, "case_id"])
        has = paths.notna().to_numpy()
        referenced = {normalise_image_id(i) for ids in cases["images"] for i in ids.split("; ") if i}
        orphans = [s for s in pngs if normalise_image_id(s) not in referenced]
        excluded.add("images", "image file referenced by no report (ignored)", orphans)
        if load_pixels:
            images, _, failures = load_images(list(paths[has]), image_size, desc="IU X-ray frontal images")
            positions = np.flatnonzero(has)
            failed = {positions[i] for i, _ in failures}
            for i, reason in failures:
                excluded.add("images", "unreadable image file (text only)", [f"{cases.at[positions[i], 'case_id']}: {reason}"])
            kept = [p for p in positions if p not in failed]
            cases.loc[kept, "image_index"] = np.arange(len(kept))
    for reason, n in cases["view_source"].value_counts().items():
        notes.append(f"frontal view by {reason}: {n} reports")
    return Cohort(
        name="iu_xray",
        source=str(root),
        synthetic=False,
        cases=cases,
        images=images,
        exclusions=excluded,
        parameters={"image_size": image_size},
        notes=notes,
    )
