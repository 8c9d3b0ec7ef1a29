"""IU X-ray (Open-i, Indiana University chest X-ray collection): reports, labels, frontal images.

Layout read (what `replication fetch iu-xray` writes, or the files placed by hand):

    <root>/NLMCXR_reports.tgz          the official reports archive (or an extracted ecgen-radiology/)
    <root>/images/*.png                the official PNGs (optional: without them, a reports-only cohort)
    <root>/nlmcxr_dicom_metadata.csv.gz  View Position per image (optional: heuristic fallback)

Label as the paper: normal (0) when the report's MeSH major terms are exactly "normal", abnormal (1)
otherwise. On the real archive that gives 3955 reports, 1391 normal.
"""

from __future__ import annotations

import os
import re
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from replication.data.images import list_pngs, load_images
from replication.data.store import Cohort, Exclusions
from replication.errors import DataError

SECTIONS = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")
FRONTAL_VIEWS = frozenset({"PA", "AP"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LARGE LATERAL"})
REPORTS_ARCHIVE = "NLMCXR_reports.tgz"
METADATA_FILE = "nlmcxr_dicom_metadata.csv.gz"


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
    """0 (normal) when the MeSH major terms are exactly ["normal"], else 1 (abnormal), as the paper."""
    return 0 if [m.strip().lower() for m in mesh_major] == ["normal"] else 1


def normalise_image_id(image_id: str) -> str:
    """`CXR1_1_IM-0001-3001` (report XML, PNG archive) → `CXR1_IM-0001-3001` (DICOM metadata, Kaggle copies)."""
    return re.sub(r"^(CXR\d+)_\d+_(IM-)", r"\1_\2", image_id)


def parse_report(data: bytes, source: str) -> Report:
    """Parse one ecgen-radiology XML; DataError naming the file when it is malformed or has no id."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise DataError(source, f"malformed XML ({e})") from None
    uid = root.find("uId")
    report_id = (uid.get("id") or "").strip() if uid is not None else ""
    if not report_id:
        raise DataError(source, "no report id (<uId id=...> missing or empty)")
    sections = {s: "" for s in SECTIONS}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").upper()
        if label in sections:
            sections[label] = " ".join("".join(node.itertext()).split())
    mesh = root.find("MeSH")
    major = [(m.text or "").strip() for m in mesh.findall("major")] if mesh is not None else []
    minor = [(m.text or "").strip() for m in mesh.findall("minor")] if mesh is not None else []
    images = [p.get("id", "") for p in root.findall("parentImage") if p.get("id")]
    return Report(report_id, sections, major, minor, images, source)


def iter_report_files(path: str | os.PathLike) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every report XML, from the .tgz or from an extracted folder, in name order."""
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
            for m in members:
                handle = tar.extractfile(m)
                yield m.name, handle.read() if handle else b""
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(path, f"truncated or corrupt archive ({type(e).__name__}: {e}); delete it and fetch again") from None


def read_reports(path: str | os.PathLike) -> tuple[list[Report], Exclusions]:
    """All parseable reports; malformed files and duplicate ids are excluded and counted, not raised."""
    reports: list[Report] = []
    excluded = Exclusions()
    seen: set[str] = set()
    for name, data in iter_report_files(path):
        try:
            report = parse_report(data, f"{path}:{name}")
        except DataError as e:
            excluded.add("read_reports", e.problem.split(" (")[0], [name])
            continue
        if report.report_id in seen:
            excluded.add("read_reports", "duplicate report id (the first file was kept)", [f"{report.report_id} ({name})"])
            continue
        seen.add(report.report_id)
        reports.append(report)
    return reports, excluded


def read_view_positions(path: str | os.PathLike) -> dict[str, str]:
    """Normalised image id → DICOM View Position ('' where the header has none)."""
    try:
        frame = pd.read_csv(path, usecols=["imageid", "View Position"], dtype=str)
    except ValueError as e:
        raise DataError(path, f"expected columns 'imageid' and 'View Position' ({e})") from None
    except (OSError, EOFError) as e:
        raise DataError(path, f"unreadable ({type(e).__name__}: {e})") from None
    return {normalise_image_id(i): (v or "").strip().upper() for i, v in zip(frame["imageid"], frame["View Position"].fillna(""))}


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
            "source_file": Path(r.source_file).name,
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
