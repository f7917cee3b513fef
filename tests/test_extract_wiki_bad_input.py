"""Bad dumps and indexes: a clear error naming the file, offset or page id, or a counted skip; never a silent
partial CSV (the output dir is only ever replaced by a complete one)."""
from __future__ import annotations

import bz2

import mwparserfromhell
import pytest
from wiki_helpers import all_rows, multistream, params, replace_page_text, sample_xml, single_stream

from koblla.errors import InputError
from koblla.wiki.extract import extract_wiki
from koblla.wiki.multistream import read_index


@pytest.fixture
def out_dir(tmp_path):
    """An existing, complete output from an earlier run: a failed run must leave it exactly as it was."""
    d = tmp_path / "kowiki"
    d.mkdir()
    (d / "train.csv").write_text("id,revid,url,title,text\n1,1,u,t,earlier run\n", encoding="utf-8")
    return d


def assert_untouched(out_dir):
    assert sorted(p.name for p in out_dir.iterdir()) == ["train.csv"]
    assert "earlier run" in (out_dir / "train.csv").read_text(encoding="utf-8")
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".kowiki")], "temp dir left behind"


def run(dump, index, out_dir, workers=2):
    return extract_wiki(params(dump=str(dump), index=str(index) if index else "", workers=workers), out_dir, None,
                        progress=False)


def test_truncated_single_stream_bz2(tmp_path, out_dir):
    dump = single_stream(tmp_path)
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"{dump.name}.*(ends early|truncated)"):
        run(dump, None, out_dir)
    assert_untouched(out_dir)


def test_truncated_plain_xml(tmp_path, out_dir):
    xml = sample_xml()
    dump = tmp_path / "cut.xml"
    dump.write_bytes(xml[: xml.index(b"<id>1110</id>") + 40])
    with pytest.raises(InputError, match=r"cut\.xml: the XML ends inside a page \(page id 1110\)"):
        run(dump, None, out_dir, workers=1)
    assert_untouched(out_dir)


def test_truncated_multistream(tmp_path, out_dir):
    dump, index = multistream(tmp_path)
    streams = read_index(index)
    data = dump.read_bytes()
    last = streams[-1]
    dump.write_bytes(data[: last.offset + 100])  # cut inside the last stream of pages
    ids = rf"page ids {last.page_ids[0]}\.\.{last.page_ids[-1]}"
    with pytest.raises(InputError, match=rf"{dump.name}: bz2 stream at offset {last.offset} \({ids}\) is cut off"):
        run(dump, index, out_dir)
    assert_untouched(out_dir)
    dump.write_bytes(data[: streams[3].offset + 100])  # cut earlier: later index offsets lie past the end
    with pytest.raises(InputError, match=rf"offset {streams[4].offset} .*past the end of the dump.*truncated"):
        run(dump, index, out_dir)
    assert_untouched(out_dir)
    dump.write_bytes(data[: streams[-1].end or len(data) - 30])  # footer stream missing
    with pytest.raises(InputError):
        run(dump, index, out_dir)
    assert_untouched(out_dir)


def test_corrupt_stream(tmp_path, out_dir):
    dump, index = multistream(tmp_path)
    s = read_index(index)[2]
    data = bytearray(dump.read_bytes())
    for i in range(s.offset + 200, s.offset + 260):  # garble compressed bytes inside the third stream
        data[i] ^= 0x5A
    dump.write_bytes(bytes(data))
    ids = f"page ids {s.page_ids[0]}..{s.page_ids[-1]}"
    with pytest.raises(InputError, match=rf"corrupt bz2 data in the stream at offset {s.offset} \({ids}\)"):
        run(dump, index, out_dir)
    assert_untouched(out_dir)


def test_malformed_page_is_a_counted_skip(tmp_path):
    # Page 1104's XML is broken (an unescaped "<" in its text); the other pages come through.
    xml = replace_page_text(sample_xml(), 1104, "'''한강'''은 <강 [[서울]]을 지난다." * 20)
    dump, index = multistream(tmp_path, xml)
    m = run(dump, index, tmp_path / "out")
    assert m["parse_errors"] == 1 and m["pages_kept"] == 27 and m["pages_read"] == 37
    assert len(m["parse_error_pages"]) == 1 and m["parse_error_pages"][0].startswith("page id 1104: ")
    assert "malformed page XML" in m["parse_error_pages"][0]
    assert "한강" not in {r["title"] for r in all_rows(tmp_path / "out")}


def test_page_without_numeric_id_is_a_counted_skip(tmp_path):
    xml = sample_xml().replace(b"<id>1105</id>", b"<id>x1105</id>", 1)
    m = run(single_stream(tmp_path, xml), None, tmp_path / "out")
    assert m["parse_errors"] == 1 and "numeric" in m["parse_error_pages"][0] and m["pages_kept"] == 27


def test_parser_exception_is_a_counted_skip_naming_the_page(tmp_path, monkeypatch, caplog):
    # mwparserfromhell does not raise on any wikitext we could find, so make it raise on one page's text:
    # the stage must count and name that page and carry on (workers=1 keeps the patch in this process).
    real_parse = mwparserfromhell.parse

    def parse(text, *a, **kw):
        if "몬티" in str(text):  # only in 파이썬 (id 1122), whose <nowiki> is left to the parser
            raise mwparserfromhell.parser.ParserError("tokenizer exited with non-empty token stack")
        return real_parse(text, *a, **kw)

    monkeypatch.setattr(mwparserfromhell, "parse", parse)
    dump, index = multistream(tmp_path)
    m = run(dump, index, tmp_path / "out", workers=1)
    assert m["parse_errors"] == 1 and m["pages_kept"] == 27
    assert len(m["parse_error_pages"]) == 1
    first = m["parse_error_pages"][0]
    assert first.startswith("page id 1122: ParserError: ") and "token stack" in first
    assert "page id 1122" in caplog.text


def test_empty_dumps(tmp_path, out_dir):
    empty = tmp_path / "empty.xml.bz2"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.xml.bz2.*empty"):
        run(empty, None, out_dir)
    no_pages = tmp_path / "nopages.xml.bz2"
    xml = sample_xml()
    no_pages.write_bytes(bz2.compress(xml[: xml.index(b"<page>")] + b"</mediawiki>\n"))
    with pytest.raises(InputError, match="no <page> elements"):
        run(no_pages, None, out_dir)
    empty_index = tmp_path / "empty-index.txt.bz2"
    empty_index.write_bytes(bz2.compress(b""))
    dump, _ = multistream(tmp_path)
    with pytest.raises(InputError, match="lists no pages"):
        run(dump, empty_index, out_dir)
    not_xml = tmp_path / "notes.txt"
    not_xml.write_text("hello", encoding="utf-8")
    with pytest.raises(InputError, match="notes.txt"):
        run(not_xml, None, out_dir)
    assert_untouched(out_dir)


def test_index_of_another_dump(tmp_path, out_dir):
    dump, index = multistream(tmp_path, per_stream=5)
    other = tmp_path / "other"
    other.mkdir()
    _, other_index = multistream(other, per_stream=7)  # same pages, different stream boundaries
    with pytest.raises(InputError, match=r"the index does not match this dump"):
        run(dump, other_index, out_dir)
    _, other_index = multistream(other, per_stream=3)  # more streams: offsets beyond this dump's end
    with pytest.raises(InputError, match=r"past the end of the dump .*index belongs to another dump"):
        run(dump, other_index, out_dir)
    assert_untouched(out_dir)


def test_index_with_wrong_page_ids(tmp_path, out_dir):
    dump, index = multistream(tmp_path)
    text = bz2.decompress(index.read_bytes()).decode("utf-8").replace(":1106:", ":9999:")
    index.write_bytes(bz2.compress(text.encode("utf-8")))
    with pytest.raises(InputError, match=r"first differing page id 1106.*index does not match"):
        run(dump, index, out_dir)
    assert_untouched(out_dir)


def test_index_missing_the_last_streams(tmp_path, out_dir):
    dump, index = multistream(tmp_path)
    lines = bz2.decompress(index.read_bytes()).decode("utf-8").splitlines(keepends=True)
    index.write_bytes(bz2.compress("".join(lines[:20]).encode("utf-8")))  # 4 of 8 streams
    with pytest.raises(InputError, match=r"pages follow the last stream listed in the index .*page id"):
        run(dump, index, out_dir)
    assert_untouched(out_dir)


def test_index_offset_past_the_end_and_garbage_lines(tmp_path, out_dir):
    dump, index = multistream(tmp_path)
    size = dump.stat().st_size
    index.write_bytes(bz2.compress(f"639:1101:한글\n{size + 10}:1102:서울특별시\n".encode()))
    with pytest.raises(InputError, match=rf"offset {size + 10} \(page id 1102\) is past the end of the dump"):
        run(dump, index, out_dir)
    index.write_bytes(bz2.compress(b"639:1101:x\nnot an index line\n"))
    with pytest.raises(InputError, match=r"index-txt\.bz2:2|index\.txt\.bz2:2"):
        run(dump, index, out_dir)
    index.write_bytes(b"plain text, not bz2")
    with pytest.raises(InputError, match="cannot read the multistream index"):
        run(dump, index, out_dir)
    assert_untouched(out_dir)
