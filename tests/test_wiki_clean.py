"""Wikitext cleaning: the regex pre-pass must give the same text as parsing everything with mwparserfromhell."""
from __future__ import annotations

import re

import mwparserfromhell
import pytest
from mwparserfromhell.nodes import Heading
from wiki_helpers import sample_xml

from koblla.wiki.clean import _LANG_CODE, CleanConfig, _strip, clean_wikitext, normalize_whitespace
from koblla.wiki.dump import split_pages
from koblla.wiki.pages import PageConfig, parse_page

CFG = CleanConfig.build(["lang", "llang", "nowrap", "음역"], ["각주", "참고 문헌", "같이 보기", "외부 링크"], False)


def parser_only(text: str, cfg: CleanConfig) -> str:
    """The slow reference: the whole article through mwparserfromhell, no regex pre-cleaning."""
    code = mwparserfromhell.parse(text)
    for tpl in reversed(code.filter_templates(recursive=True)):  # innermost first, like the regex pass
        name = str(tpl.name).strip().replace("_", " ").lower()
        try:
            if name in cfg.keep_templates:
                args = [p.value.strip_code().strip() for p in tpl.params if not p.showkey]
                if len(args) > 1 and _LANG_CODE.match(args[0]):
                    args = args[1:]
                code.replace(tpl, " ".join(a for a in args if a))
            else:
                code.remove(tpl)
        except ValueError:  # already gone with an enclosing template
            pass
    out, drop_level = [], 0
    for node in code.nodes:
        if isinstance(node, Heading):
            if drop_level and node.level > drop_level:
                continue
            drop_level = 0
            title = re.sub(r"[\s'\[\]]+", "", node.title.strip_code()).lower()
            if title in cfg.drop_sections:
                drop_level = node.level
            continue
        if drop_level:
            continue
        tmp: list[str] = []
        _strip(mwparserfromhell.wikicode.Wikicode([node]), cfg, tmp)
        out.extend(tmp)
    text = re.sub(r"__[A-Z가-힣]+__", "", "".join(out))
    return normalize_whitespace(text)


def sample_articles():
    pages, _ = split_pages(sample_xml())
    return [p for p in map(parse_page, pages) if p.ns == 0 and not p.redirect]


@pytest.mark.parametrize("page", sample_articles(), ids=lambda p: str(p.id))
def test_regex_prepass_gives_the_parsers_text(page):
    assert clean_wikitext(page.text, CFG) == parser_only(page.text, CFG)


@pytest.mark.parametrize("wikitext, expected", [
    ("a {{outer|x={{inner|{{deep}}}}}} b", "a b"),
    ("서울({{lang|en|Seoul}}, {{llang|en|the capital}})", "서울(Seoul, the capital)"),
    ("x {{Lang|fr|''bonjour''}} y", "x bonjour y"),
    ("x {{nowrap|5 km}} y {{cite web|url=http://a|title=T}}.", "x 5 km y."),
    ("text\n{| class=x\n| a || b\n|-\n| {{t|c}} \n{|\n| nested\n|}\n|}\nafter", "text\nafter"),
    ("a<ref>{{cite|x}} note</ref> b<ref name=\"n\" /> c<references/>", "a b c"),
    ("[[서울특별시|서울]]과 [[부산]] [[파일:A.jpg|thumb|설명 [[링크]]]] [[Category:X]] [[en:Seoul]]", "서울과 부산"),
    ("[[2001: 스페이스 오디세이]] [[w:en:Foo|영어]]", "2001: 스페이스 오디세이 영어"),
    ("[https://a.org 누리집] [https://b.org] https://c.org", "누리집 https://c.org"),
    ("&lt;b&gt; &amp; &nbsp;x", "<b> & x"),
    ("A&lt;ref&gt;B [[x]]", "A<ref>B x"),  # decoded once: an escaped tag in the text stays text
    ("<nowiki>[[not a link]]</nowiki> y", "[[not a link]] y"),
    ("* one\n# two\n: three\n; four", "one\ntwo\nthree\nfour"),
    ("'''bold''' and ''it''<br/>next", "bold and it\nnext"),
    ("a <!-- hidden --> b <!-- unterminated", "a b"),
    ("== 개요 ==\n본문\n== 같이 보기 ==\n* [[x]]\n=== 하위 ===\n무시\n== 역사 ==\n남김", "본문\n남김"),
    ("unbalanced {{template and [[link", "unbalanced {{template and [[link"),
    ("__TOC__ 본문 __NOTOC__", "본문"),
    ("H<sub>2</sub>O <small>작게</small> <span style=\"x\">스팬</span>", "H2O 작게 스팬"),
    ("( {{cite|x}} ) 빈 괄호, (; {{llang|en|kept}})", "빈 괄호, (; kept)"),
])
def test_clean_snippets(wikitext, expected):
    assert clean_wikitext(wikitext, CFG) == expected


def test_keep_headings():
    cfg = CleanConfig.build([], ["각주"], True)
    assert clean_wikitext("서론\n== [[역사]] ==\n본문\n== 각주 ==\n<references/>", cfg) == "서론\n역사\n본문"


def test_site_namespace_names_are_file_and_category_prefixes():
    cfg = CleanConfig.build([], [], False, file_prefixes=["Datei"], category_prefixes=["Kategorie"])
    assert clean_wikitext("a [[Datei:x.png|mini|cap]] [[Kategorie:Y]] b", cfg) == "a b"


def test_template_names_match_with_space_or_underscore():
    cfg = CleanConfig.build(["lang", "외국어 표기"], [], False)
    assert clean_wikitext("a {{외국어_표기|en|Seoul}} {{ Lang |fr|Paris}} b", cfg) == "a Seoul Paris b"


@pytest.mark.parametrize("wikitext, is_disambiguation", [
    ("{{동음이의}}", True), ("{{ 동음이의 |서울}}", True), ("{{Disambig}}", True), ("{{set_index}}", True),
    ("{{set index|x}}", True), ("{{동음이의 문서 아님}}", False), ("{{다른 뜻|서울 (동음이의)}}", False),
])
def test_disambiguation_pattern(wikitext, is_disambiguation):
    pat = PageConfig.disambiguation_pattern(["동음이의", "disambig", "set index"])
    assert bool(pat.search(wikitext)) is is_disambiguation
