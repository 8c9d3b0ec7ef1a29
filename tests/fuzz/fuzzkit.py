"""Seed records for the fuzz suite and the hostile edits made to them.

Seeds are real records taken from ../shared/data where it is present (a dozen IU reports with their view
metadata, a dozen ChestX-ray14 rows with their boxes and downscaled images), else synthetic records of the
same shape. Each mutation returns the edited input and what the readers must then do with it: give the
reference result, a stated change of it, a counted exclusion with a reason, or a DataError.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import os
import re
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

PROFILE = os.environ.get("FUZZ_PROFILE", "fuzz")


def fuzz(examples: int) -> settings:
    """The suite's hypothesis settings with `examples` examples (FUZZ_EXAMPLES overrides it for a long run)."""
    return settings(settings.get_profile(PROFILE), max_examples=int(os.environ.get("FUZZ_EXAMPLES", examples)))


# --------------------------------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    """What a reader must do with a mutated input.

    kind: 'same' (the reference result), 'changed' (the reference with `changes`), 'excluded' (a counted
    exclusion whose reason matches `reason`), 'error' (a DataError whose message matches `reason`).
    """

    kind: str
    reason: str = ""
    changes: dict = field(default_factory=dict)


SAME = Outcome("same")


class Quiet(dict):
    """A dict whose repr is short: hypothesis prints every argument of a failing example, fixtures too."""

    def __repr__(self) -> str:
        return f"<{len(self)} entries>"


def excluded(reason: str) -> Outcome:
    return Outcome("excluded", reason)


def error(reason: str) -> Outcome:
    return Outcome("error", reason)


def changed(**changes) -> Outcome:
    return Outcome("changed", changes=changes)


# ------------------------------------------------------------------------------------------------- IU reports

REAL_IU_REPORTS = ("1", "2", "3", "7", "9", "10", "297", "1000", "1001", "1137", "1900", "2112", "2496")  # 297, 2112, 2496: a repeated major term; 1137: no text
SECTIONS = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")


@dataclass(repr=False)
class IuSeeds:
    source: str
    files: dict[str, bytes]  # "7.xml" → bytes
    metadata: pd.DataFrame  # imageid, View Position and a few other DICOM columns, as strings

    def __repr__(self) -> str:
        return f"IuSeeds({self.source}, {len(self.files)} reports)"

    def _repr_pretty_(self, printer, cycle) -> None:  # hypothesis' printer would otherwise list every field
        printer.text(repr(self))


def real_iu_seeds(root: Path) -> IuSeeds:
    wanted = {f"ecgen-radiology/{n}.xml" for n in REAL_IU_REPORTS}
    files = {}
    with tarfile.open(root / "NLMCXR_reports.tgz") as tar:
        for member in tar:
            if member.name in wanted:
                files[Path(member.name).name] = tar.extractfile(member).read()
    images = {re.sub(r"^(CXR\d+)_\d+_(IM-)", r"\1_\2", p.get("id")) for data in files.values() for p in ET.fromstring(data).iter("parentImage")}
    meta = pd.read_csv(root / "nlmcxr_dicom_metadata.csv.gz", dtype=str, keep_default_na=False)
    meta = meta.loc[meta["imageid"].isin(images), ["imageid", "Modality", "View Position", "Rows", "Columns"]].reset_index(drop=True)
    return IuSeeds(f"real: {root}", files, meta)


def synthetic_report(n: int, majors: tuple[str, ...], findings: str, impression: str, images: tuple[str, ...]) -> bytes:
    """An ecgen-radiology XML laid out like the real ones."""
    texts = "".join(f'\n         <AbstractText Label="{k}">{v}</AbstractText>' for k, v in
                    [("COMPARISON", "None."), ("INDICATION", "XXXX-year-old with cough"), ("FINDINGS", findings), ("IMPRESSION", impression)])
    mesh = "".join(f"<major>{m}</major>" for m in majors) + "<minor>lung/mild</minor>"
    parents = "".join(f'\n   <parentImage id="{i}"><url>/hadoop/storage/radiology/extract/{i}.jpg</url><caption>Xray Chest PA and Lateral</caption></parentImage>'
                      for i in images)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<eCitation>\n   <meta type="rr"/>\n   <uId id="CXR{n}"/>\n   <pmcId id="{n}"/>\n'
            f"   <title>Indiana University Chest X-ray Collection</title>\n   <MedlineCitation Owner=\"Indiana University\">\n"
            f"      <Article PubModel=\"Electronic\">\n         <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>\n"
            f"         <Abstract>{texts}\n         </Abstract>\n      </Article>\n   </MedlineCitation>\n   <MeSH>{mesh}</MeSH>{parents}\n</eCitation>\n").encode()


def synthetic_iu_seeds() -> IuSeeds:
    specs = [
        (1, ("normal",), "The lungs are clear. Heart size normal.", "Normal chest x-XXXX.", ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001")),
        (2, ("Cardiomegaly/borderline", "Pulmonary Artery/enlarged"), "Borderline cardiomegaly.", "No acute disease.", ("CXR2_1_IM-0652-1001", "CXR2_1_IM-0652-2001")),
        (3, ("normal",), "No focal consolidation.", "No active disease.", ("CXR3_1_IM-1384-1001",)),
        (4, ("Opacity/lung/base/left", "Opacity/lung/base/left"), "Left basilar opacity.", "Atelectasis versus pneumonia.", ("CXR4_1_IM-2050-1001",)),
        (5, ("normal",), "", "", ("CXR5_1_IM-2117-1003",)),
        (6, ("Granulomatous Disease", "normal"), "Calcified granuloma.", "", ()),
        (7, ("normal",), "Clear lungs.", "No acute cardiopulmonary abnormality.", ("CXR7_1_IM-2263-1001", "CXR7_1_IM-2263-2001")),
        (8, ("Nodule/lung/upper lobe/right",), "Right upper lobe nodule.", "Nodule.", ("CXR8_1_IM-2332-1001",)),
    ]
    files = {f"{n}.xml": synthetic_report(n, *rest) for n, *rest in specs}
    ids = [re.sub(r"^(CXR\d+)_\d+_(IM-)", r"\1_\2", i) for *_, images in specs for i in images]
    views = ["PA" if i.endswith("1001") or i.endswith("3001") else "LL" for i in ids]
    meta = pd.DataFrame({"imageid": ids, "Modality": "CR", "View Position": views, "Rows": "2048", "Columns": "2500"})
    return IuSeeds("synthetic", files, meta)


def report_fields(report) -> dict:
    """The reader's Report as the plain fields a mutation's outcome talks about."""
    return {"report_id": report.report_id, "sections": dict(report.sections), "mesh_major": list(report.mesh_major),
            "mesh_minor": list(report.mesh_minor), "images": list(report.images), "label": report.label}


def label_rule(majors: list[str]) -> int:
    """The paper's label, stated independently of the reader: normal iff the distinct terms are exactly 'normal'."""
    return 0 if {m.strip().lower() for m in majors} == {"normal"} else 1


def serialise(root: ET.Element, encoding: str = "utf-8", declared: str | None = "utf-8") -> bytes:
    text = ET.tostring(root, encoding="unicode")
    if declared is not None:
        text = f'<?xml version="1.0" encoding="{declared}"?>\n' + text
    return text.encode(encoding)


def _pick(draw, items: list):
    return items[draw(st.integers(0, len(items) - 1))]


def _parent_map(root: ET.Element) -> dict[ET.Element, ET.Element]:
    return {child: parent for parent in root.iter() for child in parent}


def _section_nodes(root: ET.Element) -> list[ET.Element]:
    return [n for n in root.iter("AbstractText") if (n.get("Label") or "").upper() in SECTIONS]


def _majors(root: ET.Element) -> list[ET.Element]:
    mesh = root.find("MeSH")
    return [] if mesh is None else mesh.findall("major")


def _after_major_edit(root: ET.Element, ref: dict) -> Outcome:
    terms = [(m.text or "").strip() for m in _majors(root)]
    terms = [t for t in terms if t]
    if not terms:
        return excluded(r"^no MeSH major term .*the source of the label")
    return changed(mesh_major=terms, label=label_rule(terms))


REPORT_EDITS = ("drop", "empty", "duplicate", "conflict", "reorder", "wrong_type", "encoding", "truncate", "huge")


def mutate_report(draw, data: bytes, ref: dict, kind: str | None = None) -> tuple[bytes, Outcome, str]:
    """One hostile edit of a report XML (of `kind`, else drawn from REPORT_EDITS): (bytes, outcome, description)."""
    root = ET.fromstring(data)
    kind = kind or draw(st.sampled_from(REPORT_EDITS))
    parents = _parent_map(root)
    if kind in ("drop", "empty"):
        target = draw(st.sampled_from(["uId", "MeSH", "major", "minor", "section", "parentImage", "other"]))
        if target == "uId":
            uid = root.find("uId")
            if kind == "drop":
                root.remove(uid)
            else:
                uid.set("id", draw(st.sampled_from(["", "   "])))
            return serialise(root), excluded(r"^no report id"), f"{kind} uId"
        if target == "MeSH":
            mesh = root.find("MeSH")
            if kind == "drop":
                root.remove(mesh)
            else:
                for child in list(mesh):
                    mesh.remove(child)
            return serialise(root), excluded(r"^no MeSH major term"), f"{kind} MeSH"
        if target == "major":
            node = _pick(draw, _majors(root))
            if kind == "drop":
                root.find("MeSH").remove(node)
            else:
                node.text = draw(st.sampled_from(["", " ", None]))
            return serialise(root), _after_major_edit(root, ref), f"{kind} a major term"
        if target == "minor":
            mesh = root.find("MeSH")
            minors = mesh.findall("minor")
            if not minors:
                return serialise(root), SAME, "no minor to edit"
            index = draw(st.integers(0, len(minors) - 1))
            if kind == "drop":
                mesh.remove(minors[index])
            else:
                minors[index].text = ""
            kept = [t for t in ((m.text or "").strip() for m in mesh.findall("minor")) if t]
            return serialise(root), changed(mesh_minor=kept), f"{kind} a minor term"
        if target == "section":
            nodes = _section_nodes(root)
            node = _pick(draw, nodes)
            label = node.get("Label").upper()
            if kind == "drop":
                parents[node].remove(node)
            else:
                node.text = None
                for child in list(node):
                    node.remove(child)
            return serialise(root), changed(sections={**ref["sections"], label: ""}), f"{kind} {label}"
        if target == "parentImage":
            nodes = root.findall("parentImage")
            if not nodes:
                return serialise(root), SAME, "no image to edit"
            index = draw(st.integers(0, len(nodes) - 1))
            if kind == "drop":
                root.remove(nodes[index])
            else:
                nodes[index].set("id", "")
            return serialise(root), changed(images=[i for k, i in enumerate(ref["images"]) if k != index]), f"{kind} parentImage {index}"
        others = [c for c in root if c.tag not in ("uId", "MeSH", "parentImage", "MedlineCitation")]
        node = _pick(draw, others)
        if kind == "drop":
            root.remove(node)
        else:
            node.text, node.attrib = "", {}
        return serialise(root), SAME, f"{kind} <{node.tag}>"
    if kind == "duplicate":
        target = draw(st.sampled_from(["uId", "MeSH", "major", "minor", "section", "parentImage", "other"]))
        pool = {
            "uId": root.findall("uId"), "MeSH": root.findall("MeSH"), "major": _majors(root),
            "minor": [] if root.find("MeSH") is None else root.find("MeSH").findall("minor"),
            "section": _section_nodes(root), "parentImage": root.findall("parentImage"),
            "other": [c for c in root if c.tag in ("meta", "pmcId", "title", "MedlineCitation")],
        }[target] or root.findall("uId")
        node = _pick(draw, pool)
        parent = parents[node]
        position = list(parent).index(node)
        parent.insert(position + 1, copy.deepcopy(node))
        if node.tag == "major":
            terms = [t for t in ((m.text or "").strip() for m in _majors(root)) if t]
            return serialise(root), changed(mesh_major=terms), "duplicate a major term (the label must not change)"
        if node.tag == "minor":
            terms = [t for t in ((m.text or "").strip() for m in root.find("MeSH").findall("minor")) if t]
            return serialise(root), changed(mesh_minor=terms), "duplicate a minor term"
        return serialise(root), SAME, f"duplicate <{node.tag}>"
    if kind == "conflict":
        target = draw(st.sampled_from(["uId", "MeSH", "section"]))
        if target == "uId":
            uid = root.find("uId")
            twin = copy.deepcopy(uid)
            twin.set("id", uid.get("id") + "0")
            root.insert(list(root).index(uid) + 1, twin)
            return serialise(root), excluded(r"^2 <uId> ids that differ; expected one"), "two different uIds"
        if target == "MeSH":
            mesh = root.find("MeSH")
            twin = copy.deepcopy(mesh)
            ET.SubElement(twin, "major").text = "Dragons"
            root.insert(list(root).index(mesh) + 1, twin)
            return serialise(root), excluded(r"^2 <MeSH> blocks that differ; expected one"), "two different MeSH blocks"
        node = _pick(draw, _section_nodes(root))
        twin = copy.deepcopy(node)
        twin.text, twin[:] = "Something else entirely.", []
        parents[node].insert(list(parents[node]).index(node) + 1, twin)
        return serialise(root), excluded(rf"^2 {node.get('Label').upper()} sections that differ; expected one"), "two different sections"
    if kind == "reorder":
        for parent in [root, root.find("MeSH"), root.find(".//Abstract")]:
            if parent is None:
                continue
            children = list(parent)
            keys = {tag: draw(st.floats(0, 1)) for tag in {c.tag for c in children}}
            if parent.tag == "Abstract":  # sections are keyed by their label, so any order
                keys = {id(c): draw(st.floats(0, 1)) for c in children}
                children.sort(key=lambda c: keys[id(c)])
            else:  # same-tag siblings keep their order (it is data: first image, term order)
                children.sort(key=lambda c: keys[c.tag])
            parent[:] = children
        return serialise(root), SAME, "reorder elements"
    if kind == "wrong_type":
        target = draw(st.sampled_from(["id", "label"]))
        if target == "id":
            bad = draw(st.sampled_from(["7", "CXR", "CXRseven", "CXR7a", "CXR-7", "cxr7", "CXR 7", "CXR7.0", "CXR\u0667", "CXR1e3"]))
            root.find("uId").set("id", bad)
            return serialise(root), excluded(r"expected CXR followed by digits"), f"report id {bad!r}"
        node = _pick(draw, _section_nodes(root))
        label = node.get("Label").upper()
        if draw(st.booleans()):
            node.set("Label", label.lower())  # case does not matter
            return serialise(root), SAME, "section label in lower case"
        node.set("Label", "42")
        return serialise(root), changed(sections={**ref["sections"], label: ""}), "section label a number"
    if kind == "encoding":
        node = _pick(draw, _section_nodes(root))
        label = node.get("Label").upper()
        node.text = (node.text or "") + " Façade ±2 cm"
        for child in list(node):
            node.remove(child)
        new_text = " ".join((node.text or "").split())
        how = draw(st.sampled_from(["utf-8", "latin-1", "cp1252", "utf-16", "utf-8-bom", "latin1-as-utf8", "utf16-as-utf8",
                                    "invalid-bytes", "unknown"]))
        ok = changed(sections={**ref["sections"], label: new_text})
        if how in ("utf-8", "latin-1", "cp1252", "utf-16"):
            return serialise(root, how, how), ok, f"{how}, declared"
        if how == "utf-8-bom":
            return b"\xef\xbb\xbf" + serialise(root), ok, "utf-8 with a byte-order mark"
        if how == "latin1-as-utf8":
            return serialise(root, "latin-1", "utf-8"), excluded(r"^invalid utf-8 text: .* at byte \d+"), "latin-1 bytes declared utf-8"
        if how == "utf16-as-utf8":
            return serialise(root, "utf-16", "utf-8"), excluded(r"^the byte-order mark says utf-16 but .*encoding='utf-8'"), "utf-16 declared utf-8"
        if how == "unknown":
            return serialise(root, "utf-8", "klingon"), excluded(r"^unknown text encoding 'klingon'"), "unknown encoding"
        blob = serialise(root)
        at = blob.index("Façade".encode())
        return blob[:at] + draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\x80", b"\xc3("])) + blob[at:], \
            excluded(r"^invalid utf-8 text: .* at byte \d+"), "invalid bytes"
    if kind == "truncate":
        blob = serialise(root)
        end = blob.rindex(b"</eCitation>") + len(b"</eCitation>")
        cut = draw(st.integers(0, len(blob) - 1))
        outcome = SAME if cut >= end else excluded(r"^(malformed XML \(.+\)|invalid utf-8 text: .+)$")
        return blob[:cut], outcome, f"cut at byte {cut} of {len(blob)}"
    # huge: an enormous section, many images
    if draw(st.booleans()):
        node = _pick(draw, _section_nodes(root))
        label = node.get("Label").upper()
        node.text, node[:] = " ".join(["opacity"] * 50_000), []
        return serialise(root), changed(sections={**ref["sections"], label: " ".join(["opacity"] * 50_000)}), f"huge {label}"
    ids = [f"CXR{ref['report_id'][3:]}_1_IM-9999-{k:04d}" for k in range(300)]
    for i in ids:
        ET.SubElement(root, "parentImage", id=i)
    return serialise(root), changed(images=ref["images"] + ids), "300 more images"


def make_tar(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"ecgen-radiology/{name}")
            info.size = len(files[name])
            info.mtime = 1375315200
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------- ChestX-ray14

ENTRY_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position",
                "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
BOX_HEADER = ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", ""]
SEED_SIDE = 32  # the seed images are downscaled copies of this size, their ORIGINAL_SIZES row says 1024x1024


@dataclass(repr=False)
class CxrSeeds:
    source: str
    entry: list[list[str]]  # header + rows, every cell a string
    boxes: list[list[str]]  # header (9 cells, as the release) + rows of 6
    images: dict[str, bytes]  # file name → PNG bytes
    absent_box: list[str]  # one box row whose image is not in images/ (as 219 of the release's are not in ../shared)

    def __repr__(self) -> str:
        return f"CxrSeeds({self.source}, {len(self.entry) - 1} rows)"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def _downscaled(path: Path, side: int) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((side, side), Image.Resampling.LANCZOS))


def real_cxr_seeds(root: Path) -> CxrSeeds:
    """By name, the first six images in ../shared with boxes, five with No Finding and three more; their rows and boxes."""
    entry = pd.read_csv(root / "Data_Entry_2017_v2020.csv.gz", dtype=str, keep_default_na=False)
    boxes = pd.read_csv(root / "BBox_List_2017.csv.gz", header=None, skiprows=1, usecols=range(6), dtype=str, keep_default_na=False)
    present = set(os.listdir(root / "images"))
    with_boxes = sorted(present & set(boxes[0]))[:6]
    others = entry[entry["Image Index"].isin(present - set(boxes[0]))].sort_values("Image Index")
    normal = others["Finding Labels"].eq("No Finding")
    names = set(with_boxes) | set(others.loc[normal, "Image Index"][:5]) | set(others.loc[~normal, "Image Index"][:3])
    rows = entry[entry["Image Index"].isin(names)].to_numpy().tolist()
    box_rows = boxes[boxes[0].isin(names)].to_numpy().tolist()
    absent = boxes[~boxes[0].isin(present)].iloc[0].tolist()
    images = {n: _png_bytes(_downscaled(root / "images" / n, SEED_SIDE)) for n in sorted(names)}
    return CxrSeeds(f"real: {root}", [ENTRY_HEADER] + rows, [BOX_HEADER] + box_rows, images, absent)


def synthetic_cxr_seeds() -> CxrSeeds:
    rng = np.random.default_rng(14)
    labels = ["Cardiomegaly", "Cardiomegaly|Emphysema", "No Finding", "Mass|Nodule", "Effusion", "No Finding", "Infiltration",
              "Atelectasis|Effusion|Pneumothorax", "No Finding", "Hernia", "Pneumonia", "No Finding", "No Finding", "Nodule"]
    rows, images = [], {}
    for k, found in enumerate(labels):
        patient, follow = (10, k) if k < 2 else (10 + k, 0)  # one patient with two studies
        name = f"{patient:08d}_{follow:03d}.png"
        rows.append([name, found, str(follow), str(patient), str(30 + k), "MF"[k % 2], "PA" if k % 3 else "AP", "2500", "2048", "0.143", "0.143"])
        images[name] = _png_bytes(rng.integers(0, 256, (SEED_SIDE, SEED_SIDE), dtype=np.uint8))
    boxed = [(0, "Cardiomegaly"), (3, "Mass"), (3, "Nodule"), (4, "Effusion"), (6, "Infiltrate"), (7, "Pneumothorax")]
    box_rows = [[rows[k][0], f, f"{100.5 + 37 * k:.6f}", f"{200.25 + 11 * k:.6f}", f"{150.125 + k:.6f}", f"{90.75 + 2 * k:.6f}"] for k, f in boxed]
    absent = ["00099999_000.png", "Mass", "10.0", "20.0", "30.0", "40.0"]
    return CxrSeeds("synthetic", [ENTRY_HEADER] + rows, [BOX_HEADER] + box_rows, images, absent)


def csv_text(rows: list[list[str]], line_end: str = "\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator=line_end).writerows(rows)
    return buf.getvalue()


def write_cxr(root: Path, seeds: CxrSeeds, entry: bytes | None = None, boxes: bytes | None = None, entry_name: str = "Data_Entry_2017_v2020.csv",
              original_sizes: str | None = None, images: dict[str, bytes] | None = None) -> Path:
    """A ChestX-ray14 folder laid out like ../shared/data/chestxray14 (downscaled copies + ORIGINAL_SIZES.csv)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / entry_name).write_bytes(entry if entry is not None else csv_text(seeds.entry).encode())
    (root / "BBox_List_2017.csv").write_bytes(boxes if boxes is not None else csv_text(seeds.boxes + [seeds.absent_box]).encode())
    images = seeds.images if images is None else images
    for name, data in images.items():
        (root / "images" / name).write_bytes(data)
    if original_sizes is None:
        original_sizes = "image,width,height\r\n" + "".join(f"{n},1024,1024\r\n" for n in sorted(seeds.images))
    (root / "images" / "ORIGINAL_SIZES.csv").write_text(original_sizes, newline="")
    return root


USED = ("Image Index", "Finding Labels", "Patient ID")  # the Data_Entry columns the cohort reads


ENTRY_EDITS = ("drop_col", "empty_cell", "dup_col", "reorder_cols", "wrong_type", "extreme", "labels",
               "dup_row", "reorder_rows", "drop_row", "encoding", "cut", "gz")


def mutate_entry(draw, rows: list[list[str]], kind: str | None = None):
    """One hostile edit of Data_Entry: (rows or bytes or ("gz", bytes), expected: 'same' | ('error', pattern) | ('drop_case', id) | ('view', {id: view}), what)."""
    header, body = rows[0], [list(r) for r in rows[1:]]
    r = draw(st.integers(0, len(body) - 1))
    case = body[r][0]
    kind = kind or draw(st.sampled_from(ENTRY_EDITS))
    col = draw(st.integers(0, len(header) - 1))
    name = header[col]
    if kind == "drop_col":
        out = [[v for k, v in enumerate(line) if k != col] for line in [header] + body]
        if name in USED:
            return out, ("error", rf"missing columns \['{re.escape(name)}'\]"), f"drop {name}"
        return out, ("view", {c[0]: "" for c in body}) if name == "View Position" else "same", f"drop {name}"
    if kind == "empty_cell":
        body[r][col] = draw(st.sampled_from(["", " "]))
        if name in USED:
            field = {"Image Index": "Image Index empty", "Finding Labels": "Finding Labels ' ?'", "Patient ID": "Patient ID"}[name]
            return [header] + body, ("error", rf"\[record row {r + 2}, .*\]: {field}"), f"empty {name} in row {r + 2}"
        return [header] + body, ("view", {case: ""}) if name == "View Position" else "same", f"empty {name}"
    if kind == "dup_col":
        out = [line[:col + 1] + [line[col]] + line[col + 1:] for line in [header] + body]
        if name in USED:
            return out, ("error", rf"column '{re.escape(name)}' appears more than once"), f"duplicate {name}"
        return out, "same", f"duplicate {name}"
    if kind == "reorder_cols":
        order = draw(st.permutations(range(len(header))))
        return [[line[k] for k in order] for line in [header] + body], "same", f"columns in the order {order}"
    if kind in ("wrong_type", "extreme"):
        values = ["abc", "12.5", "1e3", "-3", "NaN", "0x1F", "١٢"] if kind == "wrong_type" else \
            ["-1", "0", "-1e308", "1e308", "inf", "NaN", "99999999999999999999999", "413"]
        target = draw(st.sampled_from(["Patient ID", "Patient Age", "Follow-up #", "OriginalImage[Width", "OriginalImagePixelSpacing[x"]))
        value = draw(st.sampled_from(values))
        body[r][header.index(target)] = value
        if target == "Patient ID":  # used: a whole number, and the patient the Image Index names
            pattern = r"expected a whole number" if not value.isascii() or not value.isdigit() else r"contradicts the Image Index"
            return [header] + body, ("error", rf"\[record row {r + 2}, {re.escape(case)}\]: Patient ID .*{pattern}"), f"Patient ID {value!r}"
        return [header] + body, "same", f"{target} {value!r} (a column the cohort does not read)"
    if kind == "labels":
        cell = body[r][1]
        names = cell.split("|")
        how = draw(st.sampled_from(["spaces", "repeat", "reorder", "unknown", "lower", "with_no_finding", "empty_name"]))
        if how == "spaces":
            body[r][1] = " | ".join(f" {n} " for n in names)
        elif how == "repeat":
            body[r][1] = "|".join(names + names)
        elif how == "reorder":
            body[r][1] = "|".join(reversed(names))
        elif how == "empty_name":
            body[r][1] = "|".join(names) + "||"
        else:
            body[r][1] = {"unknown": cell + "|Dragons", "lower": cell.lower() if cell.lower() != cell else cell + "|mass",
                          "with_no_finding": ("No Finding|Mass" if cell == "No Finding" else cell + "|No Finding")}[how]
            return [header] + body, ("error", rf"\[record row {r + 2}, {re.escape(case)}\]: Finding Labels .*expected"), f"labels {body[r][1]!r}"
        return [header] + body, "same", f"labels {body[r][1]!r}"
    if kind == "dup_row":
        return [header] + body + [list(body[r])], ("error", r"duplicate Image Index"), f"row {r + 2} twice"
    if kind == "reorder_rows":
        return [header] + [body[k] for k in draw(st.permutations(range(len(body))))], "same", "rows reordered"
    if kind == "drop_row":
        return [header] + body[:r] + body[r + 1:], ("drop_case", case), f"row {r + 2} dropped"
    text = csv_text([header] + body)
    if kind == "encoding":
        how = draw(st.sampled_from(["bom", "latin-1", "crlf", "utf-16", "invalid-used", "invalid-unused"]))
        if how == "crlf":
            return csv_text([header] + body, "\r\n").encode(), "same", "CRLF line ends"
        if how in ("bom", "latin-1"):
            return (b"\xef\xbb\xbf" + text.encode()) if how == "bom" else text.encode("latin-1"), "same", how
        if how == "utf-16":
            return text.encode("utf-16"), ("error", r"not UTF-8 text"), how
        column = 0 if how == "invalid-used" else header.index("Patient Gender")
        body[r][column] = body[r][column][:2] + "\udcff" + body[r][column][2:]
        blob = csv_text([header] + body).encode("utf-8", "surrogateescape")
        return blob, ("error", r"not UTF-8 text") if how == "invalid-used" else ("either", r"not UTF-8 text"), how
    if kind == "cut":
        blob = text.encode()
        return blob[: draw(st.integers(0, len(blob) - 1))], ("cut", r"cut short|empty file|no rows|Finding Labels|Patient ID|Image Index|missing columns|unreadable"), "cut"
    packed = gz(text.encode())
    if draw(st.booleans()):
        return ("gz", packed[: draw(st.integers(0, len(packed) - 1))]), ("error", r"unreadable or truncated file|empty file"), "gz cut"
    at = draw(st.integers(10, len(packed) - 1))
    flipped = packed[:at] + bytes([packed[at] ^ draw(st.integers(1, 255))]) + packed[at + 1:]
    return ("gz", flipped), ("either", r"unreadable or truncated file"), f"gz byte {at} changed"


BOX_EDITS = ("drop_col", "reorder_cols", "empty", "wrong_type", "extreme", "tiny", "dup_row", "reorder_rows",
             "alias", "spaces", "encoding", "cut", "quoted_header")


def mutate_boxes(draw, header: list[str], rows: list[list[str]], kind: str | None = None):
    """One hostile edit of BBox_List: (rows or bytes, expected: 'same' | ('error' | 'cut', pattern) | ('dup' | 'tiny' | 'edge', ...), what)."""
    body = [list(r) for r in rows]
    r = draw(st.integers(0, len(body) - 1))
    case = body[r][0]
    kind = kind or draw(st.sampled_from(BOX_EDITS))
    coordinate = draw(st.sampled_from([2, 3, 4, 5]))
    axis = "xywh"[coordinate - 2]
    if kind == "drop_col":
        col = draw(st.integers(0, 5))
        return [[v for k, v in enumerate(line) if k != col] for line in [header] + body], ("error", r"header|unreadable CSV"), f"drop column {col}"
    if kind == "reorder_cols":
        order = draw(st.permutations(range(6)))
        if list(order) == list(range(6)):
            return [header] + body, "same", "identity order"
        return [[line[k] for k in order] + line[6:] for line in [header] + body], ("error", r"header .*expected 6 columns"), f"columns {order}"
    if kind == "empty":
        col = draw(st.integers(0, 5))
        body[r][col] = ""
        pattern = {0: "Image Index empty", 1: "unknown finding"}.get(col, f"Bbox {'xywh'[col - 2]} missing")
        return [header] + body, ("error", rf"\[record row {r + 2}, .*\]: {pattern}"), f"empty column {col}"
    if kind == "wrong_type":
        value = draw(st.sampled_from(["abc", "12,5", "1.2.3", "0x10", "--5", "True"]))
        body[r][coordinate] = value
        if value == "12,5":
            return [header] + body, ("error", r"."), "a decimal comma (one field more)"
        return [header] + body, ("error", rf"\[record row {r + 2}, {re.escape(case)}\]: Bbox {axis} '{re.escape(value)}' is not a number"), f"{axis}={value!r}"
    if kind == "extreme":
        value = draw(st.sampled_from(["-1", "-1e308", "NaN", "inf", "-inf", "1e308", "1e9", "1025", "0"]))
        body[r][coordinate] = value
        if value == "0" and axis in "xy":  # a box at the image's edge: valid
            if r == len(body) - 1:  # the row whose image is absent: not read either way
                return [header] + body, "same", f"{axis}=0 on an absent image"
            return [header] + body, ("edge", r, axis), f"{axis}=0"
        return [header] + body, ("error", rf"\[record row {r + 2}, {re.escape(case)}\]: Bbox ([xy] \+ )?{axis}"), f"{axis}={value}"
    if kind == "tiny":
        body[r][4 + draw(st.integers(0, 1))] = "1e-9"
        if r == len(body) - 1:  # the row whose image is absent: not read either way
            return [header] + body, "same", "a tiny box on an absent image"
        return [header] + body, ("tiny", r), "a box 1e-9 px wide or high"
    if kind == "dup_row":
        return [header] + body + [list(body[r])], ("dup", case + ": " + body[r][1]), "a row twice"
    if kind == "reorder_rows":
        return [header] + [body[k] for k in draw(st.permutations(range(len(body))))], "same", "rows reordered"
    if kind == "alias":
        swap = {"Infiltrate": "Infiltration", "Infiltration": "Infiltrate"}
        return [header] + [[line[0], swap.get(line[1], line[1])] + line[2:] for line in body], "same", "the two spellings of Infiltration"
    if kind == "spaces":
        body[r] = [body[r][0], f" {body[r][1]} "] + [f" {v} " for v in body[r][2:]]
        return [header] + body, "same", "spaces around the values"
    if kind == "quoted_header":
        return [["Image Index", "Finding Label", "Bbox [x,y,w,h]", "", "", ""]] + body, "same", "the header's Bbox cell quoted"
    text = csv_text([header] + body)
    if kind == "encoding":
        how = draw(st.sampled_from(["bom", "latin-1", "utf-16"]))
        blob = {"bom": b"\xef\xbb\xbf" + text.encode(), "latin-1": text.encode("latin-1"), "utf-16": text.encode("utf-16")}[how]
        return blob, ("error", r"not UTF-8 text") if how == "utf-16" else "same", how
    blob = text.encode()
    return blob[: draw(st.integers(0, len(blob) - 1))], ("cut", r"cut short|empty file|header|no boxes|unreadable"), "cut"


# ------------------------------------------------------------------------------------------------- radiographs


def real_radiographs(root: Path) -> list[np.ndarray]:
    names = ("00000001_000.png", "00000032_037.png", "00000013_003.png")
    return [_downscaled(root / "images" / n, 24) for n in names]


def synthetic_radiographs() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:24, 0:24]
    body = (120 + 80 * np.sin(xx / 4.0) * np.cos(yy / 5.0)).clip(0, 255)
    return [body.astype(np.uint8), rng.integers(0, 256, (24, 24), dtype=np.uint8), np.full((24, 24), 7, np.uint8)]


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma in Pillow's fixed-point rounding: the hand conversion of a colour pixel to grey."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# ------------------------------------------------------------------------------------ profiles and fixtures
# Here rather than in a tests/fuzz/conftest.py: a second module named `conftest` would shadow tests/conftest.py for
# the tests that `from conftest import REPO`. Each fuzz test module imports the fixtures it uses from here.
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture]
settings.register_profile("fuzz", derandomize=True, database=None, deadline=None, print_blob=True, suppress_health_check=_QUIET)
settings.register_profile("fuzz-explore", derandomize=False, deadline=None, print_blob=True, suppress_health_check=_QUIET)


def _seeds(request, fixture: str, real, synthetic):
    """Real records when the root conftest's fixture finds ../shared, else the synthetic stand-ins."""
    try:
        root = request.getfixturevalue(fixture)
    except pytest.skip.Exception:
        return synthetic()
    return real(root)


@pytest.fixture(scope="session")
def iu_seeds(request) -> "IuSeeds":
    return _seeds(request, "shared_iu_xray", real_iu_seeds, synthetic_iu_seeds)


@pytest.fixture(scope="session")
def cxr_seeds(request) -> "CxrSeeds":
    return _seeds(request, "shared_chestxray14", real_cxr_seeds, synthetic_cxr_seeds)


@pytest.fixture(scope="session")
def radiographs(request) -> list:
    """A few real radiographs (downscaled) as uint8 arrays, or synthetic ones."""
    return _seeds(request, "shared_chestxray14", real_radiographs, synthetic_radiographs)
