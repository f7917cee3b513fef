"""The download helper against a real HTTP server on 127.0.0.1 laid out like dumps.wikimedia.org."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from wiki_helpers import multistream
from wiki_http import serve

from koblla.wiki.download import DownloadError, download_dump, dump_names

DATE = "20240501"


@pytest.fixture
def site(tmp_path):
    """A dumps site with kowiki/20240501/{dump, index, sha1sums, md5sums}; yields (server, folder, names)."""
    folder = tmp_path / "site" / "kowiki" / DATE
    folder.mkdir(parents=True)
    names = dump_names("kowiki", DATE)
    dump, index = multistream(folder, name=f"kowiki-{DATE}", per_stream=3)
    assert (dump.name, index.name) == (names["dump"], names["index"])
    for algo in ("sha1", "md5"):
        lines = [f"{hashlib.new(algo, p.read_bytes()).hexdigest()}  {p.name}\n" for p in (dump, index)]
        lines.insert(0, f"{'0' * 40}  kowiki-{DATE}-pages-articles.xml.bz2\n")  # other files are listed too
        (folder / names[algo]).write_text("".join(lines))
    with serve(tmp_path / "site") as server:
        yield server, folder, names


def test_fresh_download_verifies_and_names_files_like_wikimedia(site, tmp_path):
    server, folder, names = site
    dump, index = download_dump(DATE, tmp_path / "raw", base_url=server.url, progress=False)
    assert dump.read_bytes() == (folder / names["dump"]).read_bytes()
    assert index.read_bytes() == (folder / names["index"]).read_bytes()
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted([names["dump"], names["index"]])
    assert (f"/kowiki/{DATE}/{names['sha1']}", None) in server.requests
    # A second run finds both files complete and verified: only the checksum list is fetched again.
    n = len(server.requests)
    download_dump(DATE, tmp_path / "raw", base_url=server.url, progress=False)
    assert [r[0] for r in server.requests[n:]] == [f"/kowiki/{DATE}/{names['sha1']}"]


def test_resume_after_a_truncated_partial_file(site, tmp_path):
    server, folder, names = site
    raw = tmp_path / "raw"
    raw.mkdir()
    full = (folder / names["dump"]).read_bytes()
    (raw / (names["dump"] + ".part")).write_bytes(full[:5000])  # an earlier run was interrupted here
    dump, _ = download_dump(DATE, raw, base_url=server.url, progress=False)
    assert dump.read_bytes() == full and not (raw / (names["dump"] + ".part")).exists()
    assert (f"/kowiki/{DATE}/{names['dump']}", "bytes=5000-") in server.requests


def test_resume_after_a_dropped_connection(site, tmp_path):
    server, folder, names = site
    server.drop_after[names["dump"]] = 7000  # the first response stops after 7000 bytes
    dump, _ = download_dump(DATE, tmp_path / "raw", base_url=server.url, progress=False)
    assert dump.read_bytes() == (folder / names["dump"]).read_bytes()
    ranges = [r for p, r in server.requests if p.endswith(names["dump"])]
    assert ranges == [None, "bytes=7000-"]


def test_checksum_mismatch_is_an_error_and_leaves_no_complete_file(site, tmp_path):
    server, folder, names = site
    data = bytearray((folder / names["dump"]).read_bytes())
    data[100] ^= 0xFF  # the served file is damaged; the published checksum is of the good one
    (folder / names["dump"]).write_bytes(bytes(data))
    raw = tmp_path / "raw"
    with pytest.raises(DownloadError, match=rf"{names['dump']}: sha1 checksum mismatch \(expected [0-9a-f]{{40}}"):
        download_dump(DATE, raw, base_url=server.url, progress=False)
    assert not (raw / names["dump"]).exists() and not (raw / (names["dump"] + ".part")).exists()


def test_md5_list_is_used_when_sha1_is_missing(site, tmp_path):
    server, folder, names = site
    (folder / names["sha1"]).unlink()
    dump, index = download_dump(DATE, tmp_path / "raw", base_url=server.url, progress=False)
    assert dump.is_file() and index.is_file()
    assert (f"/kowiki/{DATE}/{names['md5']}", None) in server.requests


def test_missing_date_and_bad_date(site, tmp_path):
    server, _, _ = site
    with pytest.raises(DownloadError, match=r"kowiki/20990101: neither .*sha1sums.txt nor .*md5sums.txt"):
        download_dump("20990101", tmp_path / "raw", base_url=server.url, progress=False)
    with pytest.raises(DownloadError, match="YYYYMMDD"):
        download_dump("latest!", tmp_path / "raw", base_url=server.url, progress=False)


def test_entry_point(site, tmp_path):
    server, folder, names = site
    out = subprocess.run(
        [sys.executable, "-m", "stages.download_wiki", "--date", DATE, "--out-dir", str(tmp_path / "raw"),
         "--base-url", server.url, "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"extract_wiki.dump={tmp_path / 'raw' / names['dump']}" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "stages.download_wiki", "--date", "20990101", "--out-dir", str(tmp_path / "raw"),
         "--base-url", server.url], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2 and "20990101" in out.stderr
