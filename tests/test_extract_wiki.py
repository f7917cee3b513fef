"""extract_wiki on the embedded sample dump: what is kept, what is dropped, how it is cleaned and split."""
from __future__ import annotations

import bz2
import json
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from wiki_helpers import MARKUP, all_rows, csv_bytes, multistream, params, read_rows, sample_xml, single_stream

from koblla.errors import ParamsError
from koblla.wiki.extract import extract_wiki, split_of
from koblla.wiki.multistream import read_index
from koblla.wiki.sample import make_sample_dump

ARTICLES = 28  # ns-0 pages of the sample that are not redirects, disambiguation or the stub


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The sample as the make_sample_dump stage builds it, and one extraction of it with params.yaml's values."""
    tmp = tmp_path_factory.mktemp("kowiki")
    dump, index = tmp / "kowiki-sample-pages-articles-multistream.xml.bz2", tmp / "idx.txt.bz2"
    n = make_sample_dump(REPO_ROOT / "assets/kowiki_sample", dump, index, pages_per_stream=5)
    out, metrics = tmp / "out", tmp / "metrics.json"
    m = extract_wiki(params(dump=str(dump), index=str(index), workers=2), out, metrics, progress=False)
    return {"dump": dump, "index": index, "pages": n, "out": out, "metrics": m, "metrics_path": metrics, "tmp": tmp}


def test_sample_dump_is_multistream_and_deterministic(sample, tmp_path):
    assert sample["pages"] == 37
    streams = read_index(sample["index"], sample["dump"].stat().st_size)
    assert len(streams) == 8 and [len(s.page_ids) for s in streams] == [5] * 7 + [2]
    dump2, index2 = tmp_path / "again.xml.bz2", tmp_path / "again-index.txt.bz2"
    make_sample_dump(REPO_ROOT / "assets/kowiki_sample", dump2, index2, pages_per_stream=5)
    assert dump2.read_bytes() == sample["dump"].read_bytes()
    assert index2.read_bytes() == sample["index"].read_bytes()
    # Each stream decompresses on its own, and all together give the original export back.
    assert bz2.decompress(sample["dump"].read_bytes()) == sample_xml()
    second = bz2.BZ2Decompressor().decompress(sample["dump"].read_bytes()[streams[1].offset:])  # that stream only
    assert second.lstrip().startswith(b"<page>") and second.count(b"<page>") == 5


def test_metrics_count_every_page(sample):
    m = sample["metrics"]
    assert m["pages_read"] == 37 and m["pages_kept"] == ARTICLES
    assert m["dropped"] == {"namespace": 4, "redirect": 3, "disambiguation": 1, "too_short": 1, "too_large": 0,
                            "too_slow": 0}
    assert m["skipped_pages"] == []
    assert m["parse_errors"] == 0 and m["parse_error_pages"] == []
    assert m["pages_kept"] + sum(m["dropped"].values()) + m["parse_errors"] == m["pages_read"]
    assert sum(m["rows"].values()) == ARTICLES and all(m["rows"][s] > 0 for s in ("train", "dev", "test"))
    assert json.loads(sample["metrics_path"].read_text(encoding="utf-8"))["chars_out"] == m["chars_out"] > 5000


def test_rows_columns_urls_and_order(sample):
    rows = all_rows(sample["out"])
    assert list(rows[0]) == ["id", "revid", "url", "title", "text"]
    titles = {r["title"] for r in rows}
    assert {"한글", "서울특별시", "세종 (조선)", "물"} <= titles
    # Dropped: redirects (element and text forms), disambiguation, other namespaces, the stub.
    assert not titles & {"서울", "Hangul", "세종대왕", "서울 (동음이의)", "틀:정보상자", "분류:한국의 명절",
                         "위키백과:사랑방", "파일:Hangul.svg", "고무신"}
    by_title = {r["title"]: r for r in rows}
    assert by_title["세종 (조선)"]["url"] == "https://ko.wikipedia.org/wiki/세종_(조선)"
    assert by_title["한글"]["id"] == "1101" and by_title["한글"]["revid"] == str(36_000_000 + 1101 * 7)
    for split in ("train", "dev", "test"):  # dump order within each file
        ids = [int(r["id"]) for r in read_rows(sample["out"], split)]
        assert all(split_of(i, 0.05, 0.05) == split for i in ids)
    train_ids = [int(r["id"]) for r in read_rows(sample["out"], "train")]
    dump_order = [int(x) for x in re.findall(rb"</ns>\s*<id>(\d+)</id>", sample_xml())]
    assert train_ids == [i for i in dump_order if i in set(train_ids)]


def test_cleaning_leaves_prose_only(sample):
    rows = {r["title"]: r["text"] for r in all_rows(sample["out"])}
    for title, text in rows.items():
        assert not MARKUP.search(text), (title, MARKUP.search(text), text[:200])
        assert "\n\n" not in text and "  " not in text and text == text.strip()
    hangul = rows["한글"]
    assert hangul.startswith("한글(Hangul)은 한국어를 적기 위하여 만들어진 문자이다.")  # {{lang|en|..}} kept
    assert "국립국어원" not in hangul  # <ref> content
    assert "기본 자음" not in hangul and "어금닛소리" not in hangul  # table
    assert "해례본의 첫 장" not in hangul and "thumb" not in hangul  # [[파일:...]] caption
    assert "같이 보기" not in hangul and "한글날" not in hangul  # tail sections (and a ref mentioning 한글날)
    assert "출처 확인" not in hangul  # HTML comment
    assert "정보상자" not in hangul and "음소 문자" not in hangul  # infobox template
    assert "\n글자의 모양이 소리 내는 방법과" in hangul  # list item without its "*"
    assert "분류" not in rows["김치"] and "(Kimjang)" not in rows["김치"] and "Kimjang이라는" in rows["김치"]
    assert "Seoul" in rows["서울특별시"] and "지하철 여러 노선" in rows["서울특별시"]  # {{llang}}, piped link
    assert "서울역사편찬원" not in rows["서울특별시"]  # 참고 문헌 section
    assert "print(" not in rows["파이썬"] and "6CO_2" not in rows["광합성"]  # <syntaxhighlight>, <math>
    assert "주석은 # 기호 뒤에" in rows["파이썬"]  # <nowiki> content kept as is (this page goes through the parser)
    assert "H2O" in rows["물"]  # <sub> tag dropped, content kept
    assert "역사" not in rows["경복궁"].split("\n")  # headings dropped by default


def test_csv_loads_with_torchtune_text_completion_dataset(sample, tmp_path):
    from torchtune.datasets import text_completion_dataset

    class ByteTokenizer:  # the dataset only needs encode(); the real Llama 3 tokenizer is tested elsewhere
        max_seq_len = None

        def encode(self, text, add_bos=True, add_eos=True):
            return [1] * add_bos + list(text.encode("utf-8")) + [2] * add_eos

    ds = text_completion_dataset(ByteTokenizer(), source="csv", data_files=str(sample["out"] / "train.csv"),
                                 column="text", split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == sample["metrics"]["rows"]["train"]
    first = bytes(ds[0]["tokens"][1:-1]).decode("utf-8")
    assert first == read_rows(sample["out"])[0]["text"]


def test_same_csvs_whatever_the_worker_count_or_dump_format(sample, tmp_path):
    expected = csv_bytes(sample["out"])
    p = params(dump=str(sample["dump"]), index=str(sample["index"]), workers=1)
    extract_wiki(p, tmp_path / "w1", None, progress=False)
    assert csv_bytes(tmp_path / "w1") == expected
    # Without the index: the same multistream file read front to back, with 2 workers.
    extract_wiki(params(dump=str(sample["dump"]), index="", workers=2), tmp_path / "seq", None, progress=False)
    assert csv_bytes(tmp_path / "seq") == expected
    single = single_stream(tmp_path)
    extract_wiki(params(dump=str(single), index="", workers=2), tmp_path / "single", None, progress=False)
    assert csv_bytes(tmp_path / "single") == expected
    plain = tmp_path / "plain.xml"
    plain.write_bytes(sample_xml())
    extract_wiki(params(dump=str(plain), index="", workers=1), tmp_path / "plain", None, progress=False)
    assert csv_bytes(tmp_path / "plain") == expected


def test_more_workers_than_streams_and_one_page_per_stream(tmp_path):
    dump, index = multistream(tmp_path, per_stream=1)
    a = extract_wiki(params(dump=str(dump), index=str(index), workers=3), tmp_path / "a", None, progress=False)
    b = extract_wiki(params(dump=str(dump), index=str(index), workers=1), tmp_path / "b", None, progress=False)
    assert csv_bytes(tmp_path / "a") == csv_bytes(tmp_path / "b") and a["pages_kept"] == b["pages_kept"] == ARTICLES


def test_params_change_the_cleaning(sample, tmp_path):
    d, i = str(sample["dump"]), str(sample["index"])
    m = extract_wiki(params(dump=d, index=i, drop_disambiguation=False, min_chars=0, keep_headings=True,
                            drop_sections=[], keep_templates=[]), tmp_path / "o", None, progress=False)
    rows = {r["title"]: r["text"] for r in all_rows(tmp_path / "o")}
    assert m["dropped"]["disambiguation"] == 0 and m["dropped"]["too_short"] == 0
    assert "서울 (동음이의)" in rows and rows["고무신"] == "고무신은 고무로 만든 신이다."
    assert "\n역사\n" in rows["경복궁"]  # heading kept as a line
    assert "같이 보기" in rows["한글"] and "한글날" in rows["한글"]  # tail sections kept
    assert "Hangul" not in rows["한글"]  # {{lang}} no longer in the allowlist
    assert m["pages_kept"] == ARTICLES + 2


def test_params_are_validated(tmp_path):
    with pytest.raises(Exception, match="split.dev"):
        params(split={"dev": 0.6, "test": 0.5})
    with pytest.raises(Exception, match="extra"):
        params(dumps="x")
    with pytest.raises(ParamsError, match=r"extract_wiki\.dump.*no-such"):
        extract_wiki(params(dump=str(tmp_path / "no-such.xml.bz2")), tmp_path / "o", None, progress=False)
    dump, _ = multistream(tmp_path)
    with pytest.raises(ParamsError, match=r"extract_wiki\.index"):
        extract_wiki(params(dump=str(dump), index=str(tmp_path / "missing-index.txt.bz2")), tmp_path / "o", None)
    assert not (tmp_path / "o").exists()


def test_split_is_stable_and_near_the_fractions():
    splits = [split_of(i, 0.1, 0.2) for i in range(20000)]
    assert abs(splits.count("dev") / 20000 - 0.1) < 0.01 and abs(splits.count("test") / 20000 - 0.2) < 0.01
    assert split_of(1101, 0.05, 0.05) == split_of(1101, 0.05, 0.05)


def test_stage_entry_point(sample, tmp_path):
    p = tmp_path / "params.yaml"
    text = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")
    text = text.replace("dump: data/raw/kowiki-sample-pages-articles-multistream.xml.bz2", f"dump: {sample['dump']}")
    text = text.replace("index: data/raw/kowiki-sample-pages-articles-multistream-index.txt.bz2",
                        f"index: {sample['index']}")
    p.write_text(text, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "stages.extract_wiki", "--params", str(p), "--out-dir",
                          str(tmp_path / "o"), "--metrics", str(tmp_path / "m.json")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"{ARTICLES} kept" in out.stdout and "pages" in out.stderr  # counts printed, progress on stderr
    assert csv_bytes(tmp_path / "o") == csv_bytes(sample["out"])
    # Run-dependent figures (time, throughput, core count) go beside the metrics file, never into it.
    assert not {"seconds", "mb_per_s", "workers"} & set(json.loads((tmp_path / "m.json").read_text(encoding="utf-8")))
    timings = json.loads((tmp_path / "m.timings.json").read_text(encoding="utf-8"))
    assert {"seconds", "mb_per_s", "workers"} <= set(timings)
    p.write_text(text.replace(str(sample["dump"]), str(tmp_path / "gone.xml.bz2")), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "stages.extract_wiki", "--params", str(p), "--out-dir",
                          str(tmp_path / "o2"), "--metrics", str(tmp_path / "m2.json")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "extract_wiki.dump" in out.stderr and not (tmp_path / "o2").exists()
