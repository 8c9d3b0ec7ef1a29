"""replication.data.fetch against a local, misbehaving HTTP server on 127.0.0.1 (no real URL is contacted)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import tarfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from replication.data import fetch as F
from replication.errors import DataError

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
FAST = dict(retries=3, backoff=0.0, timeout=5.0, opener=NO_PROXY)


class Server:
    """In-memory blobs with Range support; can truncate, ignore Range, and logs every request."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.truncate: dict[str, tuple[int, int]] = {}  # path -> (bytes to send, how many requests)
        self.ignore_range: set[str] = set()
        self.stall: dict[str, int] = {}  # path -> how many requests to answer too late
        self.html: set[str] = set()  # paths served as an HTML page (a login / error page)
        self.log: list[tuple[str, str | None]] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                srv.log.append((self.path, rng))
                if srv.stall.get(self.path, 0) > 0:
                    srv.stall[self.path] -= 1
                    time.sleep(0.5)
                    return
                body = srv.blobs.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                if rng and self.path not in srv.ignore_range:
                    start, status = int(rng.removeprefix("bytes=").rstrip("-")), 206
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                chunk = body[start:]
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(chunk)))
                if self.path in srv.html:
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                cut, times = srv.truncate.get(self.path, (None, 0))
                if times > 0:
                    srv.truncate[self.path] = (cut, times - 1)
                    chunk = chunk[:cut]
                    self.close_connection = True
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, path: str, body: bytes) -> str:
        self.blobs[path] = body
        return self.base + path


@pytest.fixture
def server():
    s = Server()
    thread = threading.Thread(target=s.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def blob(n: int = 300_000) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


def make_tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- download ---------------------------------------------------------------------------------------

def test_clean_download_with_checksum(server, tmp_path):
    data = blob()
    dest = tmp_path / "d" / "a.bin"
    digest = F.download(server.add("/a", data), dest, sha256=sha(data), size=len(data), **FAST)
    assert digest == sha(data) and dest.read_bytes() == data
    assert not dest.with_name("a.bin.part").exists()
    assert server.log == [("/a", None)]


def test_checksum_mismatch_names_url_and_digests(server, tmp_path):
    data, wrong = blob(), sha(b"something else")
    url = server.add("/a", data)
    dest = tmp_path / "a.bin"
    with pytest.raises(F.FetchError) as err:
        F.download(url, dest, sha256=wrong, **FAST)
    msg = str(err.value)
    assert url in msg and wrong in msg and sha(data) in msg and str(dest) in msg
    assert isinstance(err.value, DataError)
    assert not dest.exists() and not (tmp_path / "a.bin.part").exists()


def test_truncated_transfer_resumes_with_range(server, tmp_path):
    data, cut = blob(), 100_000
    url = server.add("/a", data)
    server.truncate["/a"] = (cut, 1)
    dest = tmp_path / "a.bin"
    F.download(url, dest, sha256=sha(data), **FAST)
    assert dest.read_bytes() == data
    assert server.log == [("/a", None), ("/a", f"bytes={cut}-")]


def test_resume_from_existing_part(server, tmp_path):
    data = blob()
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(data[:12_345])
    F.download(server.add("/a", data), dest, sha256=sha(data), **FAST)
    assert dest.read_bytes() == data
    assert server.log == [("/a", "bytes=12345-")]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = blob()
    url = server.add("/a", data)
    server.ignore_range.add("/a")
    (tmp_path / "a.bin.part").write_bytes(data[:5000])
    F.download(url, tmp_path / "a.bin", sha256=sha(data), size=len(data), **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert server.log == [("/a", "bytes=5000-")]


def test_timeout_is_retried(server, tmp_path):
    data = blob(1000)
    url = server.add("/a", data)
    server.stall["/a"] = 1
    F.download(url, tmp_path / "a.bin", sha256=sha(data), **{**FAST, "timeout": 0.2})
    assert (tmp_path / "a.bin").read_bytes() == data and len(server.log) == 2


def test_416_with_complete_part_is_verified(server, tmp_path):
    data = blob(1000)
    (tmp_path / "a.bin.part").write_bytes(data)
    F.download(server.add("/a", data), tmp_path / "a.bin", sha256=sha(data), **FAST)
    assert (tmp_path / "a.bin").read_bytes() == data


def test_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(F.FetchError, match="HTTP 404"):
        F.download(server.base + "/nope", tmp_path / "x", **FAST)
    assert len(server.log) == 1


def test_html_page_instead_of_file_is_an_error(server, tmp_path):
    url = server.add("/a", b"<html>please log in</html>")
    server.html.add("/a")
    with pytest.raises(F.FetchError, match="HTML page"):
        F.download(url, tmp_path / "a.bin", **FAST)
    assert len(server.log) == 1 and not (tmp_path / "a.bin").exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_gives_manual_placement_advice(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/NLMCXR_reports.tgz"
    ds = F.DATASETS["iu-xray"]
    monkeypatch.setitem(F.DATASETS, "iu-xray", dataclasses.replace(
        ds, remotes=(dataclasses.replace(ds.remotes[0], url=url),)))
    with pytest.raises(F.FetchError) as err:
        F.fetch("iu-xray", tmp_path, **FAST)
    msg = str(err.value)
    assert url in msg and "4 attempt" in msg
    assert str(tmp_path / "iu_xray" / "NLMCXR_reports.tgz") in msg and F.IU_LANDING in msg


# -- fetch ------------------------------------------------------------------------------------------

def iu_on(server, monkeypatch, reports: bytes, png_tgz: bytes, reports_sha: str | None = None) -> None:
    ds = F.DATASETS["iu-xray"]
    rep, png = ds.remotes
    monkeypatch.setitem(F.DATASETS, "iu-xray", dataclasses.replace(ds, remotes=(
        dataclasses.replace(rep, url=server.add("/r.tgz", reports), sha256=reports_sha or sha(reports),
                            size=len(reports)),
        dataclasses.replace(png, url=server.add("/p.tgz", png_tgz)))))


def test_fetch_iu_downloads_extracts_and_records_checksums(server, tmp_path, monkeypatch):
    reports = make_tgz({"ecgen-radiology/1.xml": b"<x/>"})
    pngs = make_tgz({"a/CXR1_1_IM-0001-3001.png": b"png1", "CXR2_1_IM-0002-1001.png": b"png2",
                     "a/readme.txt": b"skip", "a/._CXR1.png": b"apple double"})
    iu_on(server, monkeypatch, reports, pngs)
    report = F.fetch("iu-xray", tmp_path, **FAST)
    root = tmp_path / "iu_xray"
    assert (root / "NLMCXR_reports.tgz").read_bytes() == reports
    assert sorted(p.name for p in (root / "images").iterdir()) == ["CXR1_1_IM-0001-3001.png",
                                                                   "CXR2_1_IM-0002-1001.png"]
    assert (root / "NLMCXR_png.tgz").exists()  # keep_archives=True by default
    sums = (root / "CHECKSUMS.sha256").read_text()
    assert f"{sha(pngs)}  NLMCXR_png.tgz" in sums and f"{sha(reports)}  NLMCXR_reports.tgz" in sums
    assert len(report.downloaded) == 2 and len(report.extracted) == 1
    assert "nlmcxr_dicom_metadata.csv.gz (optional)" in str(report) and report.complete
    assert not list(root.glob(".extract-*"))

    server.log.clear()  # second run: verified / already extracted, no request at all
    again = F.fetch("iu-xray", tmp_path, **FAST)
    assert server.log == [] and len(again.verified) == 1 and len(again.skipped) == 1


def test_existing_verified_file_is_skipped_without_request(server, tmp_path, monkeypatch):
    reports = b"reports archive bytes"
    iu_on(server, monkeypatch, reports, b"")
    (tmp_path / "iu_xray").mkdir()
    (tmp_path / "iu_xray" / "NLMCXR_reports.tgz").write_bytes(reports)
    report = F.fetch("iu-xray", tmp_path, only=["NLMCXR_reports.tgz"], **FAST)
    assert server.log == [] and report.verified and not report.downloaded


def test_existing_file_with_wrong_checksum_is_an_error(server, tmp_path, monkeypatch):
    iu_on(server, monkeypatch, b"good", b"")
    (tmp_path / "iu_xray").mkdir()
    (tmp_path / "iu_xray" / "NLMCXR_reports.tgz").write_bytes(b"bad")
    with pytest.raises(F.FetchError, match="delete it"):
        F.fetch("iu-xray", tmp_path, only=1, **FAST)
    assert server.log == []


def test_fetch_chestxray14_partial_and_missing_metadata(server, tmp_path, monkeypatch):
    archives = [make_tgz({f"images/0000{i}_000.png": b"x" * i}) for i in (1, 2, 3)]
    ds = F.DATASETS["chestxray14"]
    monkeypatch.setitem(F.DATASETS, "chestxray14", dataclasses.replace(ds, remotes=tuple(
        dataclasses.replace(r, url=server.add(f"/{i}.gz", a)) for i, (r, a) in enumerate(zip(ds.remotes, archives)))))
    root = tmp_path / "chestxray14"
    root.mkdir()
    (root / "BBox_List_2017.csv.gz").write_bytes(b"")
    report = F.fetch("chestxray14", tmp_path, only=2, keep_archives=False, **FAST)
    assert sorted(p.name for p in (root / "images").iterdir()) == ["00001_000.png", "00002_000.png"]
    assert not (root / "archives" / "images_001.tar.gz").exists()
    assert (root / "archives" / "images_001.tar.gz.extracted").exists()
    text = str(report)
    for name in ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt"):
        assert name in text
    assert "BBox_List_2017.csv" not in text and F.NIH_LANDING in text and not report.complete
    server.log.clear()
    F.fetch("chestxray14", tmp_path, only=2, **FAST)  # extracted markers: nothing downloaded again
    assert server.log == []


def test_unknown_dataset_is_a_parameter_error(tmp_path):
    with pytest.raises(ValueError, match="iu-xray"):
        F.fetch("mimic", tmp_path)


# -- extraction -------------------------------------------------------------------------------------

def test_path_traversal_member_refused(tmp_path):
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(make_tgz({"images/ok.png": b"ok", "../evil.png": b"evil"}))
    with pytest.raises(F.FetchError) as err:
        F.extract_pngs(archive, tmp_path / "out" / "images")
    assert "../evil.png" in str(err.value) and "evil.tgz" in str(err.value)
    assert list((tmp_path / "out" / "images").iterdir()) == [] and not (tmp_path / "evil.png").exists()


def test_absolute_member_refused(tmp_path):
    archive = tmp_path / "abs.tgz"
    archive.write_bytes(make_tgz({"/etc/x.png": b"x"}))
    with pytest.raises(F.FetchError, match="unsafe member"):
        F.extract_pngs(archive, tmp_path / "images")


def test_truncated_tgz_is_a_clear_error(tmp_path):
    whole = make_tgz({f"images/{i}.png": blob(20_000) for i in range(5)})
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(F.FetchError) as err:
        F.extract_pngs(archive, tmp_path / "images")
    assert "cut.tgz" in str(err.value) and "delete it and run fetch again" in str(err.value)
    assert list((tmp_path / "images").iterdir()) == []


def test_garbage_archive_is_a_clear_error(tmp_path):
    archive = tmp_path / "junk.tgz"
    archive.write_bytes(b"this is not a tarball at all" * 10)
    with pytest.raises(F.FetchError, match="junk.tgz.*corrupt"):
        F.extract_pngs(archive, tmp_path / "images")
