"""Download the official public archives of IU X-ray and NIH ChestX-ray14 into ``data/``.

Why this much care: the archives are large (ChestX-ray14 is ~42 GB in 12 files) and the hosts are
slow, so a download must survive interruptions (HTTP Range resume from ``<file>.part``), never leave a
half-written file under its final name (rename only after the size/SHA-256 checks), and, when the
machine is offline, say exactly which file to place where by hand. Only the standard library speaks
HTTP, so fetching adds no dependency. Digests we compute are written to
``data/<dataset>/CHECKSUMS.sha256`` (``sha256sum -c`` format) so a team can pin them.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Iterable

from tqdm import tqdm

from replication.errors import DataError, ParameterError
from replication.io import sha256_file, write_text

CHUNK = 1 << 20
IU_LANDING = "https://openi.nlm.nih.gov/faq#collection"
NIH_LANDING = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
_BOX = "https://nihcc.box.com/shared/static/"
_BOX_IDS = (
    "vfk49d74nhbxq3nqjg0900w5nvkorp5c", "i28rlmbvmfjbl8p2n3ril0pptcmcu9d1", "f1t00wrtdk94satdfb9olcolqx20z2jp",
    "0aowwzs5lhjrceb3qp67ahp0rd1l1etg", "v5e3goj22zr6h8tzualxfsqlqaygfbsn", "asi7ikud9jwnkrnkj99jnpfkjdes7l6l",
    "jn1b4mw4n6lnh74ovmcjb8y48h8xj07n", "tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j", "upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj",
    "l6nilvfa9cg3s28tqv1qc1olm3gnz54p", "hhq8fkdgvcari67vfhs7ppg2w6ni4jze", "ioqwiy20ihqwyr8pf4c24eazhh281pbu",
)


class FetchError(DataError):
    """A download or extraction failed; the message names the URL/archive, the target and the remedy."""


@dataclass(frozen=True)
class Remote:
    """One downloadable file. ``extract_to`` (relative dir) = flatten its PNGs there; None = keep as is."""

    url: str
    file: str  # relative to the dataset directory
    sha256: str | None = None
    size: int | None = None
    extract_to: str | None = None


@dataclass(frozen=True)
class Manual:
    """A file with no stable direct link: we only check it is there and say where to get it."""

    file: str
    where: str
    required: bool = True


@dataclass(frozen=True)
class Dataset:
    subdir: str
    landing: str
    remotes: tuple[Remote, ...]
    manual: tuple[Manual, ...] = ()


DATASETS: dict[str, Dataset] = {
    "iu-xray": Dataset(
        subdir="iu_xray",
        landing=IU_LANDING,
        remotes=(
            Remote("https://openi.nlm.nih.gov/imgs/collections/NLMCXR_reports.tgz", "NLMCXR_reports.tgz",
                   sha256="8fb6de7eec73d8c3665067ad4bb003ccd57f971ae316d2642e1627ac7268667a", size=1_112_632),
            Remote("https://openi.nlm.nih.gov/imgs/collections/NLMCXR_png.tgz", "NLMCXR_png.tgz",
                   extract_to="images"),
        ),
        manual=(Manual("nlmcxr_dicom_metadata.csv.gz", required=False,
                       where="derive it from the DICOM release https://openi.nlm.nih.gov/imgs/collections/"
                             "NLMCXR_dcm.tgz (~80 GB); without it the reader uses its frontal-view heuristic"),),
    ),
    "chestxray14": Dataset(
        subdir="chestxray14",
        landing=NIH_LANDING,
        remotes=tuple(Remote(f"{_BOX}{box_id}.gz", f"archives/images_{i:03d}.tar.gz", extract_to="images")
                      for i, box_id in enumerate(_BOX_IDS, start=1)),
        manual=tuple(Manual(name, where=f"download it from {NIH_LANDING}")
                     for name in ("Data_Entry_2017_v2020.csv", "BBox_List_2017.csv",
                                  "train_val_list.txt", "test_list.txt")),
    ),
}


@dataclass
class FetchReport:
    """What one ``fetch`` did; ``str()`` is the summary the CLI prints."""

    dataset: str
    root: Path
    downloaded: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    extracted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when nothing required is missing."""
        return not any("(required)" in m for m in self.missing)

    def __str__(self) -> str:
        lines = [f"{self.dataset} -> {self.root}"]
        for title in ("downloaded", "verified", "skipped", "extracted", "missing"):
            lines += [f"  {title}: {item}" for item in getattr(self, title)]
        return "\n".join(lines)


class _Retryable(Exception):
    """A transfer problem worth another attempt (truncation, odd resume offset, server 5xx)."""


class _NotTheFile(Exception):
    """The server answered with something that is not the file (an HTML page): retrying will not help."""


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
             retries: int = 5, backoff: float = 2.0, timeout: float = 60.0,
             opener: urllib.request.OpenerDirector | None = None, hint: str = "") -> str:
    """Fetch ``url`` into ``dest`` through ``dest.part``, resuming, retrying and verifying; return its SHA-256.

    ``hint`` (how to place the file by hand) is appended to every error message.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    opener = opener or urllib.request.build_opener()
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, size, timeout, opener, dest.name)
            break
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code not in (408, 429):
                raise FetchError(dest, f"{url} answered HTTP {e.code} {e.reason}. {hint}".rstrip()) from None
            problem = f"HTTP {e.code} {e.reason}"
        except _NotTheFile as e:
            raise FetchError(dest, f"{url} {e}. {hint}".rstrip()) from None
        except (_Retryable, OSError, HTTPException) as e:  # URLError, timeouts and resets are OSErrors
            problem = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        if attempt == retries:
            kept = f"; the partial download {part.name} is kept and will be resumed" if part.exists() else ""
            raise FetchError(dest, f"could not download {url} after {retries + 1} attempt(s) ({problem}){kept}. "
                                   f"{hint}".rstrip())
        time.sleep(min(backoff * 2 ** attempt, 60.0))
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise FetchError(dest, f"{url} gave {got} bytes, expected {size}; the partial file was deleted. {hint}".rstrip())
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink()
        raise FetchError(dest, f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest}; "
                               "the download was deleted (run fetch again; if it persists the file changed upstream)")
    os.replace(part, dest)
    return digest


def _transfer(url: str, part: Path, size: int | None, timeout: float,
              opener: urllib.request.OpenerDirector, label: str) -> None:
    """One HTTP request appending to ``part``; returns when the server's body was received whole."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # a stale or foreign .part: start again
        part.unlink()
        have = 0
    req = urllib.request.Request(url, headers={"User-Agent": "replication-fetch/1", "Accept-Encoding": "identity"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise
        total = (e.headers.get("Content-Range") or "").rpartition("/")[2]
        e.close()
        if total.isdigit() and int(total) != have:  # not "complete", just wrong: start again
            part.unlink()
            raise _Retryable(f"server cannot resume at byte {have} of {total}") from None
        return  # 416 for a complete .part: done, the caller verifies it
    with resp:
        if resp.headers.get_content_type() == "text/html":
            raise _NotTheFile("answered with an HTML page instead of the file (login, captive portal or moved?)")
        mode = "wb"
        if have and resp.status == 206:
            start = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").partition("-")[0]
            if start != str(have):
                part.unlink()
                raise _Retryable(f"server resumed at byte {start!r}, not {have}")
            mode = "ab"
        else:
            have = 0  # a 200 to a Range request: the body is the whole file, restart from zero
        length = resp.headers.get("Content-Length")
        expect = int(length) if length and length.isdigit() else None
        total = have + expect if expect is not None else size
        received = 0
        with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=label, disable=None, leave=False) as bar:
            while chunk := resp.read(CHUNK):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if expect is not None and received < expect:
        raise _Retryable(f"connection closed after {received} of {expect} bytes")
    if size is not None and part.stat().st_size < size:  # no Content-Length, but we know the size
        raise _Retryable(f"connection closed after {part.stat().st_size} of {size} bytes")


def extract_pngs(archive: str | os.PathLike, out_dir: str | os.PathLike) -> int:
    """Extract the archive's ``*.png`` files, flattened, into ``out_dir``; return how many.

    Why this way: untrusted tar members must not escape ``out_dir``, and a crash must not leave
    half an archive in place, so everything goes to a temporary sibling first and is moved at the end.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".extract-{archive.name}.", dir=out_dir.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for m in tqdm(tar, desc=f"extract {archive.name}", unit=" files", disable=None, leave=False):
                    path = PurePosixPath(m.name)
                    if path.is_absolute() or ".." in path.parts or m.name.startswith(("\\", "/")):
                        raise FetchError(archive, f"refusing unsafe member {m.name!r} (absolute path or '..'); "
                                                  "nothing was extracted from this archive")
                    if not m.isfile() or path.suffix.lower() != ".png" or path.name.startswith("."):
                        continue
                    target = tmp / path.name
                    if target.exists():
                        raise FetchError(archive, f"two members flatten to the same name {path.name!r}")
                    with tar.extractfile(m) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                if isinstance(tar.fileobj, gzip.GzipFile):  # read to the end so a cut gzip trailer is noticed
                    while tar.fileobj.read(CHUNK):
                        pass
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise FetchError(archive, f"truncated or corrupt archive ({type(e).__name__}: {e}); "
                                      "delete it and run fetch again") from None
        files = list(tmp.iterdir())
        for f in files:
            os.replace(f, out_dir / f.name)
        return len(files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(name: str, data_dir: str | os.PathLike = "data", extract: bool = True, *,
          only: int | Iterable[str] | None = None, keep_archives: bool = True, retries: int = 5,
          backoff: float = 2.0, timeout: float = 60.0,
          opener: urllib.request.OpenerDirector | None = None) -> FetchReport:
    """Download, verify and (if ``extract``) unpack dataset ``name`` under ``data_dir``; report what happened.

    ``only``: the first N remote files, or a collection of their file names (e.g. ``images_001.tar.gz``),
    for partial fetches. ``keep_archives=False`` deletes an archive after its successful extraction.
    """
    if name not in DATASETS:
        raise ParameterError("name", name, f"one of {sorted(DATASETS)}")
    ds = DATASETS[name]
    root = Path(data_dir) / ds.subdir
    report = FetchReport(name, root)
    remotes = list(ds.remotes)
    if isinstance(only, str):
        only = [only]
    if isinstance(only, int):
        remotes = remotes[:only]
    elif only is not None:
        wanted = set(only)
        remotes = [r for r in remotes if r.file in wanted or PurePosixPath(r.file).name in wanted]
    for r in remotes:
        dest = root / r.file
        marker = dest.with_name(dest.name + ".extracted")
        unpack = extract and r.extract_to is not None
        if unpack and marker.exists():
            report.skipped.append(f"{r.file}: already extracted into {root / r.extract_to} ({marker.name})")
            continue
        if dest.exists():
            if r.sha256 is None:
                report.skipped.append(f"{r.file}: present, not verified (no published checksum)")
            elif (digest := sha256_file(dest)) == r.sha256:
                report.verified.append(f"{r.file}: sha256 {digest[:12]}… ok, not downloaded again")
            else:
                raise FetchError(dest, f"present but its sha256 is {digest}, expected {r.sha256} ({r.url}); "
                                       "delete it and run fetch again")
        else:
            hint = (f"To place it by hand: download {r.url} (landing page {ds.landing}) and save it as {dest}, "
                    f"then run `replication fetch {name}` again to verify{' and extract' if unpack else ''} it.")
            digest = download(r.url, dest, sha256=r.sha256, size=r.size, retries=retries, backoff=backoff,
                              timeout=timeout, opener=opener, hint=hint)
            _record_checksum(root, r.file, digest)
            report.downloaded.append(f"{r.file}: {_human(dest.stat().st_size)}, sha256 {digest}"
                                     + ("" if r.sha256 else " (recorded in CHECKSUMS.sha256)"))
        if unpack:
            n = extract_pngs(dest, root / r.extract_to)
            write_text(marker, f"{n} png files extracted from {r.file} into {r.extract_to}/\n")
            report.extracted.append(f"{r.file}: {n} png files -> {root / r.extract_to}")
            if not keep_archives:
                dest.unlink()
    for m in ds.manual:
        if not any((root / f).exists() for f in (m.file, m.file + ".gz")):
            kind = "required" if m.required else "optional"
            report.missing.append(f"{m.file} ({kind}): {m.where}; place it at {root / m.file} (plain or .gz)")
    return report


def _record_checksum(root: Path, rel: str, digest: str) -> None:
    """Keep ``CHECKSUMS.sha256`` (``sha256sum -c`` format, one line per file) up to date."""
    path = root / "CHECKSUMS.sha256"
    entries: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            d, _, f = line.partition("  ")
            if f:
                entries[f] = d
    entries[rel] = digest
    write_text(path, "".join(f"{d}  {f}\n" for f, d in sorted(entries.items())))


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
