"""One plain example of every defect the fuzz suite found in the readers (each failed before its fix)."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from replication.data import chestxray14 as cx
from replication.data.images import ImageReadError, list_pngs, load_image
from replication.data.iu_xray import parse_report, read_iu_xray, read_reports, read_view_positions
from replication.errors import DataError, ParameterError

ENTRY = "Image Index,Finding Labels,Patient ID\n"
BOXES = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"


def xml(body: str, uid: str = "CXR1", encoding: str = "utf-8") -> str:
    return f'<?xml version="1.0" encoding="{encoding}"?><eCitation><uId id="{uid}"/>{body}</eCitation>'


NORMAL = "<MeSH><major>normal</major></MeSH>"


def iu_folder(root: Path, files: dict[str, bytes]) -> Path:
    (root / "ecgen-radiology").mkdir(parents=True)
    for name, data in files.items():
        (root / "ecgen-radiology" / name).write_bytes(data)
    return root


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# ------------------------------------------------------------------------------------------------- IU reports


def test_a_report_without_mesh_is_excluded_not_labelled_abnormal(tmp_path):
    root = iu_folder(tmp_path, {"1.xml": xml(NORMAL).encode(), "2.xml": xml("", "CXR2").encode(),
                                "3.xml": xml("<MeSH><major> </major><minor>mild</minor></MeSH>", "CXR3").encode()})
    cohort = read_iu_xray(root, image_size=16)
    assert cohort.cases["case_id"].tolist() == ["CXR1"]
    reasons = cohort.exclusions.frame().set_index("record")["reason"]
    assert reasons["2.xml"].startswith("no MeSH major term") and reasons["3.xml"].startswith("no MeSH major term")


def test_a_repeated_normal_term_is_still_normal():
    assert parse_report(xml("<MeSH><major>normal</major><major>normal</major></MeSH>").encode(), "a.xml").label == 0


def test_an_encoding_fault_keeps_its_detail():
    with pytest.raises(DataError, match=r"a.xml: invalid utf-8 text: invalid continuation byte at byte \d+"):
        parse_report(xml(NORMAL + "<t>Façade</t>").encode("latin-1"), "a.xml")
    with pytest.raises(DataError, match=r"the byte-order mark says utf-16 but <\?xml ... encoding='utf-8'\?>"):
        parse_report(xml(NORMAL).encode("utf-16"), "a.xml")
    # declared and used consistently, another encoding is fine
    assert parse_report(xml(NORMAL + "<t>é</t>", encoding="latin-1").encode("latin-1"), "a.xml").label == 0


def test_an_unknown_declared_encoding_is_a_data_error_not_a_lookup_error():
    with pytest.raises(DataError, match="unknown text encoding 'klingon'"):
        parse_report(xml(NORMAL, encoding="klingon").encode(), "a.xml")


def test_a_malformed_report_id_is_excluded_instead_of_crashing_the_sort(tmp_path):
    root = iu_folder(tmp_path, {"1.xml": xml(NORMAL).encode(), "2.xml": xml(NORMAL, "CXRabc").encode(), "3.xml": xml(NORMAL, "CXR\u0663").encode()})
    cohort = read_iu_xray(root, image_size=16)
    assert cohort.cases["case_id"].tolist() == ["CXR1"]
    assert cohort.exclusions.frame()["reason"].str.contains("expected CXR followed by digits").sum() == 2


def test_elements_repeated_with_different_contents_are_refused():
    two_findings = '<AbstractText Label="FINDINGS">a</AbstractText><AbstractText Label="FINDINGS">b</AbstractText>'
    with pytest.raises(DataError, match="2 FINDINGS sections that differ"):
        parse_report(xml(NORMAL + two_findings).encode(), "a.xml")
    with pytest.raises(DataError, match="2 <MeSH> blocks that differ"):
        parse_report(xml(NORMAL + "<MeSH><major>Mass</major></MeSH>").encode(), "a.xml")
    with pytest.raises(DataError, match="2 <uId> ids that differ"):
        parse_report(xml('<uId id="CXR2"/>' + NORMAL).encode(), "a.xml")
    # repeated with the same contents: read once
    same = parse_report(xml(NORMAL + NORMAL + '<AbstractText Label="FINDINGS">a</AbstractText>' * 2
                            + '<parentImage id="CXR1_1_IM-1"/><parentImage id="CXR1_1_IM-1"/>').encode(), "a.xml")
    assert same.sections["FINDINGS"] == "a" and same.images == ["CXR1_1_IM-1"] and same.mesh_major == ["normal"]


def test_an_extracted_folder_names_the_source_file_as_the_archive_does(tmp_path):
    assert read_iu_xray(iu_folder(tmp_path, {"1.xml": xml(NORMAL).encode()}), 16).cases["source_file"].tolist() == ["1.xml"]


def _tar(n: int, mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for k in range(n):
            data = xml(NORMAL, f"CXR{k + 1}").encode()
            info = tarfile.TarInfo(f"ecgen-radiology/{k + 1}.xml")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_tar_cut_at_a_member_boundary_is_refused_not_read_short(tmp_path):
    path = write(tmp_path / "r.tar", _tar(5, "w")[: 512 * 4])  # tarfile reads this as a 2-report archive
    with pytest.raises(DataError, match=r"r.tar: truncated or corrupt archive \(no end-of-archive marker"):
        read_reports(path)


def test_a_damaged_header_inside_a_tgz_is_refused_not_read_short(tmp_path):
    raw = bytearray(_tar(5, "w"))
    raw[512 * 2 + 100] ^= 0xFF  # the second member's header: tarfile silently stops there
    with pytest.raises(DataError, match="truncated or corrupt archive .*a damaged header follows"):
        read_reports(write(tmp_path / "r.tgz", gzip.compress(bytes(raw))))


def test_a_tgz_with_a_bad_checksum_is_refused(tmp_path):
    blob = bytearray(gzip.compress(_tar(3, "w"), mtime=0))
    blob[-6] ^= 0x01  # the CRC-32 in the gzip trailer
    with pytest.raises(DataError, match="truncated or corrupt archive"):
        read_reports(write(tmp_path / "r.tgz", bytes(blob)))
    assert len(read_reports(write(tmp_path / "ok.tgz", gzip.compress(_tar(3, "w"))))[0]) == 3


def test_view_metadata_with_an_empty_id_or_two_views_for_an_image_names_the_row(tmp_path):
    with pytest.raises(DataError, match=r"m.csv \[record row 2\]: empty imageid"):
        read_view_positions(write(tmp_path / "m.csv", "imageid,View Position\n,PA\nCXR1_IM-1,LL\n"))
    with pytest.raises(DataError, match=r"\[record row 3, CXR1_IM-1\]: View Position 'LL' contradicts 'PA'"):
        read_view_positions(write(tmp_path / "m.csv", "imageid,View Position\nCXR1_IM-1,PA\nCXR1_IM-1,LL\n"))
    assert read_view_positions(write(tmp_path / "m.csv", "imageid,View Position\nCXR1_IM-1,PA\nCXR1_IM-1,PA\n")) == {"CXR1_IM-1": "PA"}


# ------------------------------------------------------------------------------------------------- ChestX-ray14


def test_an_empty_data_entry_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="e.csv: empty file"):
        cx.read_data_entry(write(tmp_path / "e.csv", ""))
    with pytest.raises(DataError, match="e.csv: no rows"):
        cx.read_data_entry(write(tmp_path / "e.csv", ENTRY))


@pytest.mark.parametrize("row, message", [
    ("00000001_000.png,Mass,\n", r"\[record row 2, 00000001_000.png\]: Patient ID '': expected a whole number"),
    ("00000001_000.png,Mass,abc\n", r"\[record row 2, 00000001_000.png\]: Patient ID 'abc': expected a whole number"),
    ("00000001_000.png,Mass,2\n", r"Patient ID '2' contradicts the Image Index"),
    (",Mass,1\n", r"\[record row 2, \(no Image Index\)\]: Image Index empty"),
    ("00000001_000.png,No Finding|Mass,1\n", r"Finding Labels 'No Finding\|Mass': .*'No Finding' alone"),
])
def test_a_data_entry_field_of_the_wrong_kind_names_row_and_field(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        cx.read_data_entry(write(tmp_path / "e.csv", ENTRY + row))


def test_a_blank_view_position_reads_as_no_view(tmp_path):
    entry = cx.read_data_entry(write(tmp_path / "e.csv", "Image Index,Finding Labels,Patient ID,View Position\n00000001_000.png,Mass,1, \n00000002_000.png,Mass,2, PA\n"))
    assert entry["view_position"].tolist() == ["", "PA"]


def test_a_repeated_data_entry_column_is_refused(tmp_path):
    with pytest.raises(DataError, match="column 'Patient ID' appears more than once"):
        cx.read_data_entry(write(tmp_path / "e.csv", "Image Index,Finding Labels,Patient ID,Patient ID\n00000001_000.png,Mass,1,2\n"))


def test_a_corrupt_gzip_is_a_data_error_not_a_zlib_error(tmp_path):
    blob = gzip.compress((ENTRY + "00000001_000.png,Mass,1\n" * 200).encode())
    with pytest.raises(DataError, match=r"e.csv.gz: unreadable or truncated file \(error: Error -3"):
        cx.read_data_entry(write(tmp_path / "e.csv.gz", blob[:30] + b"\0" * 40 + blob[70:]))


@pytest.mark.parametrize("row, message", [
    ("00000001_000.png,Mass,1,2,abc,4\n", r"\[record row 2, 00000001_000.png\]: Bbox w 'abc' is not a number"),
    ("00000001_000.png,Mass,-50,2,3,4\n", r"Bbox x -50 is negative"),
    ("00000001_000.png,Mass,1,2,inf,4\n", r"Bbox w inf: expected a finite number"),
    ("00000001_000.png,Mass,1e9,2,3,4\n", r"Bbox x \+ w = 1000000003.0: expected a box inside the 1024x1024 release image"),
])
def test_a_box_value_of_the_wrong_kind_names_row_and_field(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        cx.read_boxes(write(tmp_path / "b.csv", BOXES + row))


def test_box_columns_in_another_order_are_refused_not_swapped(tmp_path):
    with pytest.raises(DataError, match=r"header \[.*'h\]', 'w'\]; expected 6 columns"):
        cx.read_boxes(write(tmp_path / "b.csv", "Image Index,Finding Label,Bbox [x,y,h],w,,\n00000001_000.png,Mass,1,2,40,3\n"))


def test_a_csv_cut_inside_its_last_row_is_refused(tmp_path):
    with pytest.raises(DataError, match="the last line has no line end: the file was cut short"):
        cx.read_boxes(write(tmp_path / "b.csv", BOXES + "00000001_000.png,Mass,1,2,3,456.75"))  # 456.75 might be 456.7512


def _cxr_root(root: Path, original_sizes: str | None = None, lists: dict[str, str] | None = None, side: int = 512) -> Path:
    (root / "images").mkdir(parents=True)
    write(root / "Data_Entry_2017_v2020.csv", ENTRY + "00000001_000.png,Mass,1\n00000002_000.png,No Finding,2\n")
    write(root / "BBox_List_2017.csv", BOXES + "00000001_000.png,Mass,512,512,100,100\n00000001_000.png,Mass,512,512,100,100\n")
    for name in ("00000001_000.png", "00000002_000.png"):
        Image.fromarray(np.zeros((side, side), np.uint8)).save(root / "images" / name)
    if original_sizes is not None:
        write(root / "images" / "ORIGINAL_SIZES.csv", original_sizes)
    for name, text in (lists or {}).items():
        write(root / name, text)
    return root


def test_box_scaling_never_guesses_the_original_size_of_a_downscaled_copy(tmp_path):
    cohort = cx.read_chestxray14(_cxr_root(tmp_path), image_size=64)  # a 512 file, no ORIGINAL_SIZES.csv
    assert len(cohort.boxes) == 0
    reasons = {e["reason"]: e["count"] for e in cohort.exclusions.summary()}
    assert reasons["box image of unknown original size (the file is 512x512, not the 1024x1024 release, and ORIGINAL_SIZES.csv has no row for it)"] == 1
    with pytest.raises(DataError, match=r"\[record 00000001_000.png\]: box image of unknown original size"):
        cx.rescale_boxes(cx.read_boxes(tmp_path / "BBox_List_2017.csv"), cohort.cases, [(512, 512)] * 2, 64, tmp_path / "none.csv")


def test_a_repeated_box_row_is_counted_once(tmp_path):
    cohort = cx.read_chestxray14(_cxr_root(tmp_path, "image,width,height\n00000001_000.png,1024,1024\n"), image_size=64)
    assert cohort.boxes[["x", "y", "w", "h"]].to_numpy().tolist() == [[32.0, 32.0, 6.25, 6.25]]
    assert {e["reason"]: e["count"] for e in cohort.exclusions.summary()}["box row repeated exactly (the first was kept)"] == 1


@pytest.mark.parametrize("table, message", [
    ("image,width,height\n00000001_000.png,abc,1024\n", r"\[record row 2, 00000001_000.png\]: width 'abc': expected a positive whole number"),
    ("image,width,height\n00000001_000.png,-1024,1024\n", r"width '-1024': expected a positive whole number"),
    ("image,w,h\n00000001_000.png,1024,1024\n", r"ORIGINAL_SIZES.csv: missing columns \['width', 'height'\]"),
    ("image,width,height\n00000001_000.png,1024,1024\n00000001_000.png,512,512\n", r"size 512x512 contradicts 1024x1024"),
])
def test_a_bad_original_size_names_row_and_field(tmp_path, table, message):
    with pytest.raises(DataError, match=message):
        cx.read_chestxray14(_cxr_root(tmp_path, table), image_size=64)


@pytest.mark.parametrize("lists, message", [
    ({"train_val_list.txt": "00000001_000.png\n", "test_list.txt": ""}, r"test_list.txt: empty file"),
    ({"train_val_list.txt": "00000001_000.png\n", "test_list.txt": "00000001_000.png\n"}, r"is in both train_val_list and test_list"),
    ({"train_val_list.txt": "00000001_000.png\n"}, r"test_list.txt\(.gz\) is missing beside it"),
    ({"train_val_list.txt": "00000001_000.png\n", "test_list.txt": "00000002_000.pn"}, r"'00000002_000.pn' is not a PNG file name"),
])
def test_official_split_lists_that_disagree_or_are_damaged_are_refused(tmp_path, lists, message):
    with pytest.raises(DataError, match=message):
        cx.read_chestxray14(_cxr_root(tmp_path, lists=lists), image_size=64)


def test_no_image_with_a_data_entry_row_is_a_data_error(tmp_path):
    root = _cxr_root(tmp_path)
    write(root / "Data_Entry_2017_v2020.csv", ENTRY + "00000009_000.png,Mass,9\n")
    with pytest.raises(DataError, match="none of the 2 PNGs has a row in Data_Entry_2017_v2020.csv"):
        cx.read_chestxray14(root, image_size=64)


# ------------------------------------------------------------------------------------------------- images


def test_a_png_header_claiming_enormous_sides_is_an_image_read_error(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, "PNG")
    good = buf.getvalue()
    body = struct.pack(">II", 2**31 - 1, 2**31 - 1) + good[24:29]
    bomb = good[:8] + struct.pack(">I", 13) + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body)) + good[33:]
    with pytest.raises(ImageReadError, match="bomb.png: unreadable image .*DecompressionBomb"):
        load_image(write(tmp_path / "bomb.png", bomb), 16)


def test_an_impossible_image_size_is_a_parameter_error_not_a_bad_file(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(ParameterError, match="image_size=0"):
        load_image(tmp_path / "ok.png", 0)


def test_two_files_for_one_image_are_refused(tmp_path):
    for name in ("a.png", "a.PNG"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name, "PNG")
    with pytest.raises(DataError, match=r"two files for one image: a.PNG and a.png"):
        list_pngs(tmp_path)
