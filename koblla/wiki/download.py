"""Fetch a dated Wikipedia dump and its multistream index from the Wikimedia dumps site; verify; resume.

Layout on the site (and on its mirrors, hence `base_url`):
  {base}/{wiki}/{date}/{wiki}-{date}-pages-articles-multistream.xml.bz2
  {base}/{wiki}/{date}/{wiki}-{date}-pages-articles-multistream-index.txt.bz2
  {base}/{wiki}/{date}/{wiki}-{date}-sha1sums.txt   (or -md5sums.txt): "HASH  FILENAME" per line
A download goes to FILE.part and is renamed to FILE only after its checksum matches, so a file under its final
name is always complete. An interrupted download resumes from the .part's size with an HTTP Range request.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

import httpx
from tqdm import tqdm

from koblla.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://dumps.wikimedia.org"
CHUNK = 1 << 20  # bytes per write while streaming
ATTEMPTS = 5  # connection drops tolerated per file; each retry resumes where the last one stopped


class DownloadError(InputError):
    """A download failed or did not verify; the message names the URL or file and what to do."""


def dump_names(wiki: str, date: str) -> dict[str, str]:
    stem = f"{wiki}-{date}"
    return {
        "dump": f"{stem}-pages-articles-multistream.xml.bz2",
        "index": f"{stem}-pages-articles-multistream-index.txt.bz2",
        "sha1": f"{stem}-sha1sums.txt",
        "md5": f"{stem}-md5sums.txt",
    }


def parse_checksums(text: str) -> dict[str, str]:
    """'HASH  FILENAME' lines -> {filename: hash}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def file_hash(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fetch_checksums(client: httpx.Client, folder_url: str, names: dict[str, str]) -> tuple[str, dict[str, str]]:
    """('sha1' or 'md5', {filename: hash}) from the published lists; sha1 preferred."""
    for algo in ("sha1", "md5"):
        url = f"{folder_url}/{names[algo]}"
        r = client.get(url)
        if r.status_code == 200:
            return algo, parse_checksums(r.text)
        log.info("%s: HTTP %d", url, r.status_code)
    raise DownloadError(
        f"{folder_url}: neither {names['sha1']} nor {names['md5']} could be fetched: is the date right and the dump "
        "finished? (see the dump's folder on the site; dumps are published in stages)"
    )


def _stream_to(client: httpx.Client, url: str, part: Path, progress: bool) -> None:
    """Append url's bytes to part, from part's current size on; retries resume where they stopped."""
    for attempt in range(1, ATTEMPTS + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with client.stream("GET", url, headers=headers) as r:
                if r.status_code == 416:  # nothing left past `have`: the .part is complete (checked below)
                    return
                if r.status_code == 404:
                    raise DownloadError(f"{url}: not found (HTTP 404); check the wiki name and date")
                if r.status_code not in (200, 206):
                    raise DownloadError(f"{url}: HTTP {r.status_code}")
                if r.status_code == 200 and have:
                    log.info("%s: server ignored the Range request; starting over", url)
                    have = 0
                total = have + int(r.headers.get("content-length", 0)) or None
                mode = "ab" if r.status_code == 206 else "wb"
                with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                 desc=part.name[:40], file=sys.stderr, disable=not progress) as bar:
                    for chunk in r.iter_bytes():  # as received: a dropped connection loses no written bytes
                        f.write(chunk)
                        bar.update(len(chunk))
            return
        except (httpx.TransportError, httpx.RemoteProtocolError) as e:
            if attempt == ATTEMPTS:
                raise DownloadError(f"{url}: download failed {ATTEMPTS} times ({e}); run again to resume") from e
            log.warning("%s: %s; resuming (attempt %d of %d)", url, e, attempt + 1, ATTEMPTS)


def download_file(client: httpx.Client, url: str, dest: Path, algo: str, expected: str, progress: bool = True) -> Path:
    """url -> dest, verified against `expected` (hex digest); resumes dest.part if an earlier run left one."""
    if dest.exists():
        if file_hash(dest, algo) == expected:
            log.info("%s: already downloaded and verified", dest)
            return dest
        raise DownloadError(
            f"{dest}: exists but its {algo} does not match the published checksum {expected}; delete it and run again"
        )
    part = dest.with_name(dest.name + ".part")
    _stream_to(client, url, part, progress)
    got = file_hash(part, algo)
    if got != expected:
        part.unlink()
        raise DownloadError(
            f"{url}: {algo} checksum mismatch (expected {expected}, got {got}); the partial file was deleted, "
            "run again to download it afresh"
        )
    os.replace(part, dest)
    return dest


def download_dump(date: str, out_dir: str | os.PathLike, wiki: str = "kowiki", base_url: str = DEFAULT_BASE_URL,
                  progress: bool = True, timeout: float = 60.0) -> tuple[Path, Path]:
    """Download and verify {wiki}-{date}'s multistream dump and index into out_dir; returns (dump, index)."""
    if not (len(date) == 8 and date.isdigit()):
        raise DownloadError(f"date {date!r}: expected YYYYMMDD, one of the dated folders under {base_url}/{wiki}/")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = dump_names(wiki, date)
    folder = f"{base_url.rstrip('/')}/{wiki}/{date}"
    headers = {"User-Agent": "KoBLLa-download/0.1 (research data pipeline; python-httpx)"}
    with httpx.Client(timeout=timeout, follow_redirects=True, headers=headers) as client:
        algo, sums = fetch_checksums(client, folder, names)
        paths = []
        for key in ("dump", "index"):
            name = names[key]
            if name not in sums:
                raise DownloadError(f"{folder}/{names[algo]}: no checksum listed for {name}")
            paths.append(download_file(client, f"{folder}/{name}", out_dir / name, algo, sums[name], progress))
    return paths[0], paths[1]
