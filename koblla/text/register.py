"""Korean speech level (register) from sentence-final endings, with kiwipiepy's morpheme analysis.

Each sentence is labelled by its final ending:
- hapsyo (합쇼체): -ㅂ니다/-습니다, -ㅂ니까/-습니까, -ㅂ시오/-십시오, -ㅂ시다
- haeyo (해요체): an ending or particle ending in 요 (-어요, -세요, -네요, -죠, -나요?, 6마리나요?)
- banmal (반말, also 해라체 -다/-냐/-라): any other final ending (-어, -야, -지, -니, -자, -잖아 ...)
- None: no ending (headings, list items, "진짜?"): no evidence either way.
Unambiguous polite endings are read from the spelling; the rest go through kiwipiepy (EF/EC/JX tags of the
sentence's last words). Quoted text ("...", '...', markdown > blockquotes), code, URLs and LaTeX are removed first
(a 반말 example quoted in a formal answer is not a slip). The honorific pre-final ending 시 (-세요, -으십시오) marks
deference to the listener; it is counted and breaks ties when a whole utterance must be labelled
(`classify_formality`).
"""
from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field

from koblla.text.verbatim import strip_verbatim

HAPSYO_ENDINGS = ("ᆸ니다", "습니다", "ᆸ니까", "습니까", "ᆸ시오", "십시오", "ᆸ시다", "읍시다", "나이다", "옵니다")
_QUOTES_RE = re.compile(r"\"[^\"\n]*\"|“[^”\n]*”|‘[^’\n]*’|「[^」\n]*」|『[^』\n]*』|(?<!\w)'[^'\n]*'(?!\w)")
_MARKDOWN_PREFIX_RE = re.compile(r"^\s*(?:#{1,6}\s+|[-*+]\s+|\d+[.)]\s+)+")
_BLOCKQUOTE_RE = re.compile(r"^\s*>")
_PUNCT_TAGS = {"SF", "SP", "SS", "SSO", "SSC", "SE", "SO", "SW", "SH", "SL", "SN", "SB", "W_URL", "W_EMAIL",
               "W_HASHTAG", "W_MENTION", "W_SERIAL", "W_EMOJI", "Z_CODA", "Z_SIOT", "USER0", "USER1"}


@functools.lru_cache(maxsize=1)
def kiwi():
    from kiwipiepy import Kiwi

    k = Kiwi()
    k.tokenize("모델을 미리 불러옵니다.")  # the first analysis loads the model (seconds): do it up front
    return k


@dataclass
class RegisterCounts:
    sentences: Counter = field(default_factory=Counter)  # hapsyo / haeyo / banmal / none
    honorific_si: int = 0  # sentences whose final predicate carries 시
    first_person_humble: int = 0  # 저/제/저희
    first_person_plain: int = 0  # 나/내/너/니

    @property
    def evidenced(self) -> int:
        return self.sentences["hapsyo"] + self.sentences["haeyo"] + self.sentences["banmal"]

    def share(self, *labels: str) -> float:
        return sum(self.sentences[x] for x in labels) / self.evidenced if self.evidenced else 1.0


def label_tokens(tokens) -> tuple[str | None, bool]:
    """(register label, honorific 시 in the final predicate) for one sentence's tokens."""
    words = [t for t in tokens if t.tag not in _PUNCT_TAGS]
    if not words:
        return None, False
    last = words[-1]
    tail = words[-4:]
    si = any(t.tag == "EP" and t.form in ("시", "으시") for t in tail)
    if last.form.endswith("요") and last.tag in ("EF", "EC", "JX", "ETN") or last.form == "죠":
        return "haeyo", si
    if last.tag == "EF" and last.form.endswith("세요"):
        return "haeyo", True
    if last.tag in ("EF", "EC") and last.form.endswith(HAPSYO_ENDINGS):
        return "hapsyo", si
    if last.tag == "EF" or (last.tag == "EC" and last is tokens[-1] or last.tag == "EC" and tokens[-1].tag == "SF"):
        return "banmal", si
    return None, si


def _clean(text: str) -> list[str]:
    text = _QUOTES_RE.sub(" ", strip_verbatim(text))
    lines = []
    for line in text.splitlines():
        if _BLOCKQUOTE_RE.match(line):  # a markdown blockquote is quoted material, like "..."
            continue
        line = _MARKDOWN_PREFIX_RE.sub("", line).replace("**", "").replace("__", "").strip()
        if re.search("[가-힣]", line):
            lines.append(line)
    return lines


_SENT_END_RE = re.compile(r"(?<=[.!?…~])[\s\"'”’)\]]*\s+")
_HUMBLE_RE = re.compile(r"(?<![가-힣])(?:저는|저도|제가|저를|저한테|저희|제)(?![가-힣])")
_PLAIN_RE = re.compile(r"(?<![가-힣])(?:나는|나도|내가|나를|나한테|너는|네가|너도|너를|내)(?![가-힣])")
TAIL_WORDS = 2  # the final ending (and a 시 before it) lives in the last word or two of a sentence


def sentences(text: str) -> list[str]:
    """Korean sentences of `text` with quotes, code, URLs, LaTeX and markdown markers removed."""
    return [s for line in _clean(text) for s in _SENT_END_RE.split(line) if re.search("[가-힣]", s)]


_NOUNS_IN_YO = {"필요", "불필요", "중요", "개요", "수요", "주요", "강요", "소요", "동요", "요요"}
_TRAIL_RE = re.compile(r"[\s.!?…~\"'”’)\]*_:;,]+$")


def _has_final_b(ch: str) -> bool:
    """Hangul syllable with final consonant ㅂ (합, 입, 갑): the -ㅂ니다 of 합쇼체."""
    return "가" <= ch <= "힣" and (ord(ch) - 0xAC00) % 28 == 17


def fast_label(sentence: str) -> str | None:
    """Unambiguous polite endings by spelling alone (most sentences of a polite text); None: ask kiwipiepy."""
    core = _TRAIL_RE.sub("", sentence)
    last_word = core.split()[-1] if core.split() else ""
    if len(core) >= 3 and core[-2:] in ("니다", "니까") and (core[-3] == "습" or _has_final_b(core[-3])):
        return "hapsyo"
    if core.endswith("십시오") or (len(core) >= 3 and core.endswith("시오") and _has_final_b(core[-3])):
        return "hapsyo"
    if (core.endswith("요") or core.endswith("죠")) and last_word not in _NOUNS_IN_YO and len(last_word) >= 2:
        return "haeyo"
    return None


def count_registers(text: str) -> RegisterCounts:
    """Label every sentence by its final ending.

    Unambiguous polite endings are read from the spelling; the rest (반말 vs an ending-less fragment) go through
    kiwipiepy, tails only (the last words hold the ending) in one batched call. Validation runs on every model
    output, so this keeps it to a few ms per chunk."""
    counts = RegisterCounts()
    sents = sentences(text)
    ask = []
    for s in sents:
        label = fast_label(s)
        if label:
            counts.sentences[label] += 1
            counts.honorific_si += "세요" in s[-4:] or "십시" in s[-6:] or "셨" in s[-6:]
        else:
            ask.append(" ".join(s.split()[-TAIL_WORDS:]))
    for tokens in (kiwi().tokenize(ask) if ask else []):
        label, si = label_tokens(tokens)
        counts.sentences[label or "none"] += 1
        counts.honorific_si += si
    body = " ".join(sents)
    counts.first_person_humble = len(_HUMBLE_RE.findall(body))
    counts.first_person_plain = len(_PLAIN_RE.findall(body))
    return counts


def classify_formality(text: str) -> str:
    """'formal' (존댓말: 합쇼체/해요체) or 'informal' (반말) for a whole utterance, e.g. one chat line.

    Majority of sentences with an ending; ties and ending-less utterances fall back to honorific 시, then humble
    first person (저/제), then informal (an ending-less Korean utterance without 요 is casual: "진짜?").
    """
    c = count_registers(text)
    formal, informal = c.sentences["hapsyo"] + c.sentences["haeyo"], c.sentences["banmal"]
    if formal != informal:
        return "formal" if formal > informal else "informal"
    if c.honorific_si or c.first_person_humble > c.first_person_plain:
        return "formal"
    return "informal"


def register_ok(text: str, target: str, min_share: float) -> tuple[bool, float]:
    """Does `text` speak in `target` (banmal | hapsyo | haeyo)? Returns (ok, share of sentences in target).

    For hapsyo, 해요체 sentences count half (formal texts mix in some 해요체 naturally); 반말 never counts.
    """
    c = count_registers(text)
    if not c.evidenced:
        return True, 1.0  # nothing to judge: a heading, a name, a one-word answer
    if target == "banmal":
        share = c.share("banmal")
    elif target == "hapsyo":
        share = (c.sentences["hapsyo"] + 0.5 * c.sentences["haeyo"]) / c.evidenced
    else:
        share = (c.sentences["haeyo"] + 0.5 * c.sentences["hapsyo"]) / c.evidenced
    return share >= min_share, share
