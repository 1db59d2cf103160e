#!/usr/bin/env python
"""Rebuild ``corpora/dict/medical_words.txt`` from the MIT-licensed ("ship OK") lexicons.

One command, run from the repository root::

    python scripts/build_medical_dict.py                       # sources in ../shared/data/lexicons
    python scripts/build_medical_dict.py --lexicons /path/to/lexicons --report

Sources (and only these; the other lexicons under ``shared/data/lexicons`` carry no license or a
non-commercial one and must not be shipped):

* ``thuocl/THUOCL_medical.txt`` -- THUOCL medical words with document frequency (THUNLP, MIT);
* ``icd10_cn_chaseliu/disease.csv`` -- ICD-10 3-character category names (Chase Liu, MIT);
* ``cmekg_pycmekg/{disease,symptom,drug,exam,department}_names.txt`` -- name lists derived from
  the CMeKG graph shipped in PyPI's PyCMeKG 0.2.5 (cmekg authors, MIT); ``herb_organism_names``
  only with ``--with-herb`` (off by default: plant and animal names such as 海螺, 淡菜, 一口红
  are ordinary words outside TCM prescriptions);
* about 170 common EMR terms missing from all of the above (2型糖尿病, D-二聚体, 呼吸音,
  前降支, 闻及 ...), written for ehrtext (``AUTHORED_TERMS`` below, MIT as the rest of the
  project; they skip the cleaning rules; ``--no-authored`` drops them).

Cleaning, in order (every rule counts its drops; ``--report`` prints them, README.md lists them):

1. strip, full-width -> half-width (U+FF01..U+FF5E, U+3000), em dash "—" used as a hyphen -> "-";
2. a trailing parenthetical is removed ("万苏林(中效胰岛素)" -> "万苏林");
3. drop entries with whitespace or any character outside Han [\\u4e00-\\u9fd5], ASCII letters and
   digits, Greek letters, Roman numerals Ⅰ-Ⅻ and an inner "-" (this removes punctuation such as
   、，：；（）, enumerations like "1.排尿异常：尿频", ranges, percentages, "℃" readings);
4. drop entries without any Han character (pure digits, "GP", "ICU": the tokenizer's regexes
   handle Latin words and numbers) and single characters;
5. drop entries that start with a digit unless it is a type number ("2型糖尿病"): "4肋间",
   "18种氨基酸注射液", "12小时尿沉渣计数" would be glued to the numbers of a note;
6. drop entries that start with 无 / 有 from the symptom list, and up to 3 characters long from
   the other lists ("无尿", "无意识", "有压痛"): in notes 无/有 negate or affirm the next word
   ("无尿频", "无意识障碍"), and such entries glue the negation to the finding;
7. length caps, measured with ``scripts/measure_integrity.py``: ``--max-len`` 12 for THUOCL,
   ICD, symptom, exam and department entries and ``--max-len-names`` 16 for the CMeKG disease and
   drug NAME lists. No entry longer than 12 characters occurs in the 2,577 tuning notes, the
   longer symptom/exam entries are descriptions ("孕妇感到有较多液体自阴道流出"), while 13-16
   character disease and drug names are real names ("急性非ST段抬高型心肌梗死");
8. sentence-like descriptions (disease, symptom, exam, department and ICD lists; drug names are
   proper names): drop an entry when jieba's HMM-free cut of it, against jieba's default
   dictionary, contains a connector token -- a stopword of ``corpora/dict/stopwords.txt`` (less
   ``NOT_CONNECTORS``) or one of ``SENTENCE_MARKERS`` ("咳嗽伴呼吸困难", "腹胀和便秘",
   "缓慢疼痛等", "若经久不愈" ...), or when it starts with a generic ICD category word (其他 /
   某些 / 未特指 ...);
9. CMeKG drug names of 2 characters that THUOCL does not list: brand names (可耐, 维快, 天康,
   平坦, 东北 ...) that match ordinary text far more often than the drug;
10. CMeKG symptom / exam / department entries that are everyday words (工作, 时间, 汽车, 比较,
    男性): in jieba's default dictionary with frequency >= ``GENERAL_WORD_FREQ`` and not in
    THUOCL's medical list.

Tag: the category of the list the word comes from. A word found in several lists gets the first
tag of ``TAG_PRIORITY``: disease > drug > exam > symptom > department > herb > medical. Disease
first because CMeKG lists many diseases also as symptoms of other diseases (高血压, 脑梗死);
department is late because that list is small and noisy (皮肤, 男性, 门诊); THUOCL's generic
``medical`` only when no specific list has the word.

Frequency: jieba's ``suggest_freq`` value against jieba's DEFAULT dictionary,
``max(int(prod(FREQ(seg) / total for seg in cut(word, HMM=False)) * total) + 1, FREQ(word))``,
then ``max(that, --min-freq)``. The floor makes a dictionary word win over cuts that combine
it with its neighbours ("无畏|寒" for 无畏寒); its default, 5000, was chosen with
``scripts/measure_integrity.py --sweep`` (tuned on CCKS2017 + CCKS2019, reported on CCL2025):
integrity rises from 97.7 % (floor 300) to a plateau of 98.0 % at 4000-6000 and falls again
above (97.9 % at 10000: a huge floor inflates jieba's total, which favours long tokens that
swallow dictionary words). Words already frequent in jieba's dictionary keep their (higher)
jieba frequency.

Output: ``corpora/dict/medical_words.txt``, jieba user-dictionary format (``word freq tag`` per
line, no header), UTF-8, sorted by word (code point order); plus ``corpora/dict/README.md`` and the
three MIT license texts in ``corpora/licenses/``.
"""

from __future__ import annotations

import argparse
import collections
import csv
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LEXICONS = REPO_ROOT.parent / "shared" / "data" / "lexicons"
DEFAULT_OUT = REPO_ROOT / "corpora" / "dict" / "medical_words.txt"
STOPWORDS = REPO_ROOT / "corpora" / "dict" / "stopwords.txt"

DEFAULT_MIN_FREQ = 5000
DEFAULT_MAX_LEN = 12
DEFAULT_MAX_LEN_NAMES = 16
# Lists of proper names (disease, drug): long entries there are real names
# ("急性非ST段抬高型心肌梗死", "单硝酸异山梨酯葡萄糖注射液"), not descriptions.
NAME_SOURCES = ("cmekg_disease", "cmekg_drug")

TAG_PRIORITY = ("disease", "drug", "exam", "symptom", "department", "herb", "medical")

# (file under cmekg_pycmekg/, tag, sentence-like filter applies)
CMEKG_LISTS = (
    ("disease_names.txt", "disease", True),
    ("symptom_names.txt", "symptom", True),
    ("exam_names.txt", "exam", True),
    ("drug_names.txt", "drug", False),
    ("department_names.txt", "department", True),
)
CMEKG_HERB = ("herb_organism_names.txt", "herb", False)

LICENSES = (
    ("thuocl/LICENSE", "THUOCL-MIT.txt"),
    ("icd10_cn_chaseliu/LICENSE", "ICD-10-CN-chaseliu-MIT.txt"),
    ("cmekg_pycmekg/LICENSE", "PyCMeKG-MIT.txt"),
)

# Tokens that mark a description rather than a term (in addition to the stopwords).
SENTENCE_MARKERS = frozenset(
    "伴 伴有 不伴 或 可 可有 可见 可达 呈 若 时 者 出现 引起 导致 所致 表现 表现为 见于 多见 常见 "
    "常 甚至 以上 以下 约 一般 通常 特别 尤其 部分 少数 患者 病人 有时 即可 同时".split()
)
# Stopwords that jieba's cut also leaves inside unknown terms (卡他症状, 肺地丝菌病, 尤因肉瘤).
NOT_CONNECTORS = frozenset("他 她 它 我 你 地 因".split())
# CMeKG's symptom, exam and department lists also hold everyday words (工作, 时间, 汽车, 比较,
# 男性): dropped when jieba's default dictionary has them at least this often and THUOCL's
# medical list does not.
GENERAL_WORD_FREQ = 1000
GENERAL_WORD_SOURCES = ("cmekg_symptom", "cmekg_exam", "cmekg_department")
# "无尿", "无意识", "有压痛": in notes 无/有 are almost always negation / affirmation of the next
# word ("无尿频", "无意识障碍"); such entries would glue the negation to the finding.
NEGATION_PREFIXES = ("无", "有")
# Generic ICD-10 category wording ("其他沙门菌感染", "某些传染病", "未特指的...").
GENERIC_PREFIXES = ("其他", "其它", "某些", "未特指", "特指", "未分类", "不明原因的")

# Common EMR terms missing from every ship-OK source, written for ehrtext (MIT).
AUTHORED_TERMS: dict[str, str] = {
    # diseases / diagnoses
    "1型糖尿病": "disease",
    "2型糖尿病": "disease",
    "高血压病": "disease",
    "冠状动脉粥样硬化": "disease",
    "陈旧性心肌梗死": "disease",
    "急性心肌梗死": "disease",
    "急性冠脉综合征": "disease",
    "不稳定性心绞痛": "disease",
    "稳定性心绞痛": "disease",
    "阵发性心房颤动": "disease",
    "持续性心房颤动": "disease",
    "心功能不全": "disease",
    "慢性心力衰竭": "disease",
    "高脂血症": "disease",
    "高尿酸血症": "disease",
    "腔隙性脑梗死": "disease",
    "肺部感染": "disease",
    "慢性阻塞性肺疾病": "disease",
    # findings / signs
    "呼吸音": "symptom",
    "干湿性啰音": "symptom",
    "干湿啰音": "symptom",
    "湿性啰音": "symptom",
    "干性啰音": "symptom",
    "病理性杂音": "symptom",
    "病理征": "symptom",
    "反跳痛": "symptom",
    "肌紧张": "symptom",
    "颈静脉怒张": "symptom",
    "肝颈静脉回流征": "symptom",
    "胸闷": "symptom",
    "憋气": "symptom",
    "心悸": "symptom",
    "心前区": "medical",
    "肠鸣音": "symptom",
    "移动性浊音": "symptom",
    "叩击痛": "symptom",
    "双肺": "medical",
    # labs / exams
    "D-二聚体": "exam",
    "肌钙蛋白": "exam",
    "肌钙蛋白I": "exam",
    "肌钙蛋白T": "exam",
    "肌酸激酶同工酶": "exam",
    "脑钠肽": "exam",
    "糖化血红蛋白": "exam",
    "低密度脂蛋白胆固醇": "exam",
    "高密度脂蛋白胆固醇": "exam",
    "甘油三酯": "exam",
    "总胆固醇": "exam",
    "谷丙转氨酶": "exam",
    "谷草转氨酶": "exam",
    "尿素氮": "exam",
    "血肌酐": "exam",
    "血红蛋白": "exam",
    "白细胞计数": "exam",
    "中性粒细胞": "exam",
    "血小板计数": "exam",
    "B超": "exam",
    "彩超": "exam",
    "心脏彩超": "exam",
    "心电图": "exam",
    "动态心电图": "exam",
    "冠脉造影": "exam",
    "冠状动脉造影": "exam",
    # drugs
    "维生素B12": "drug",
    "维生素B1": "drug",
    "维生素B6": "drug",
    "阿司匹林肠溶片": "drug",
    "硫酸氢氯吡格雷": "drug",
    "阿托伐他汀钙片": "drug",
    "瑞舒伐他汀": "drug",
    "低分子肝素": "drug",
    "单硝酸异山梨酯": "drug",
    "硝酸甘油": "drug",
    "美托洛尔": "drug",
    "替格瑞洛": "drug",
    # lexicalised history words and record sections (otherwise "现|病史", "吸烟"+"史")
    "现病史": "medical",
    "个人史": "medical",
    "婚育史": "medical",
    "婚姻史": "medical",
    "吸烟史": "medical",
    "饮酒史": "medical",
    "手术史": "medical",
    "输血史": "medical",
    "接触史": "medical",
    "冶游史": "medical",
    "传染病史": "medical",
    "预防接种史": "medical",
    # procedures
    "经皮冠状动脉介入治疗": "medical",
    "支架植入术": "medical",
    "植入术": "medical",
    "固定术": "medical",
    "根治术": "medical",
    "根治性": "medical",
    "抗感染": "medical",
    "抗肿瘤": "medical",
    "抗结核": "medical",
    "抗过敏": "medical",
    "抗休克": "medical",
    "抗凝": "medical",
    "抗血小板": "medical",
    "放化疗": "medical",
    "胸腔镜": "exam",
    "宫腔镜": "exam",
    "阴道镜": "exam",
    "结肠镜": "exam",
    # pathology, anatomy, findings that jieba's own dictionary otherwise swallows
    "低分化腺癌": "disease",
    "中分化腺癌": "disease",
    "高分化腺癌": "disease",
    "贲门癌": "disease",
    "胃窦炎": "disease",
    "室性早搏": "disease",
    "房性早搏": "disease",
    "光反射": "symptom",
    "对光反射": "symptom",
    "弱阳性": "exam",
    "呕吐物": "symptom",
    "双下肢": "medical",
    "双上肢": "medical",
    "下腹部": "medical",
    "上腹部": "medical",
    "中腹部": "medical",
    "皮肤黏膜": "medical",
    "皮肤粘膜": "medical",
    "胃黏膜": "medical",
    "胃粘膜": "medical",
    "消化道": "medical",
    "上消化道": "medical",
    "下消化道": "medical",
    "肠系膜": "medical",
    "肘关节": "medical",
    "肩关节": "medical",
    "头颈部": "medical",
    "腰骶部": "medical",
    "浸润性": "medical",
    "放射性": "medical",
    "阻塞性": "medical",
    "萎缩性": "medical",
    "活动性": "medical",
    "溃疡性": "medical",
    "出血性": "medical",
    "孕早期": "medical",
    "孕晚期": "medical",
    "导尿管": "medical",
    "降压药": "drug",
    "化疗药": "drug",
    "窦性心律": "symptom",
    "窦性心动过速": "symptom",
    "窦性心动过缓": "symptom",
    "占位性病变": "disease",
    "转移性右下腹痛": "symptom",
    "二联律": "symptom",
    "闻及": "medical",
    "听诊区": "medical",
    "巴氏征": "symptom",
    "克氏征": "symptom",
    "布氏征": "symptom",
    "肋下": "medical",
    "剑突下": "medical",
    "胸骨后": "medical",
    "双肾区": "medical",
    "前降支": "medical",
    "左前降支": "medical",
    "回旋支": "medical",
    "左回旋支": "medical",
    "右冠状动脉": "medical",
    "左主干": "medical",
    "左心室": "medical",
    "右心室": "medical",
    "左心房": "medical",
    "右心房": "medical",
    "极高危": "medical",
    "很高危": "medical",
    "空腹血糖": "exam",
    "冠脉造影术": "medical",
    "对症治疗": "medical",
    "营养支持": "medical",
    "切开复位内固定术": "medical",
    "表柔比星": "drug",
    "吲哚布芬": "drug",
}

_HAN = "\u4e00-\u9fd5"
_HAN_RE = re.compile(f"[{_HAN}]")
_ALLOWED_RE = re.compile(
    f"^[{_HAN}A-Za-z0-9\u03b1-\u03c9\u0391-\u03a9\u2160-\u216b]+"
    f"(?:-[{_HAN}A-Za-z0-9\u03b1-\u03c9\u0391-\u03a9\u2160-\u216b]+)*$"
)
_TRAILING_PAREN_RE = re.compile(r"^(.+?)\([^()]*\)$")
_TYPE_NUMBER_RE = re.compile(r"^\d+型")


def fold_width(text: str) -> str:
    """Full-width ASCII -> half-width, ideographic space -> space (1:1, offsets kept)."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:
            out.append(chr(code - 0xFEE0))
        elif code == 0x3000:
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


@dataclass
class BuildStats:
    raw: collections.Counter = field(default_factory=collections.Counter)
    dropped: dict = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    kept: collections.Counter = field(default_factory=collections.Counter)


class _Segmenter:
    """jieba's default dictionary: HMM-free cuts and suggest_freq-style values."""

    def __init__(self) -> None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        self.tk = jieba.Tokenizer()
        self.tk.initialize()
        self.freq = self.tk.FREQ
        self.total = self.tk.total

    def cut(self, word: str) -> list[str]:
        return list(self.tk.cut(word, HMM=False))

    def suggest_freq(self, word: str) -> int:
        """jieba.Tokenizer.suggest_freq(word, tune=False), against the untouched default dict."""
        p = 1.0
        for seg in self.cut(word):
            p *= self.freq.get(seg, 1) / self.total
        return max(int(p * self.total) + 1, self.freq.get(word, 1))


def load_stopwords(path: Path = STOPWORDS) -> frozenset[str]:
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line)
    return frozenset(words)


def clean_term(
    raw: str,
    *,
    max_len: int,
    sentence_filter: bool,
    seg: _Segmenter,
    connectors: frozenset[str],
    symptom: bool = False,
    from_thuocl: bool = False,
) -> tuple[str | None, str]:
    """Return (clean term, "") or (None, reason for dropping)."""
    word = fold_width(raw.strip()).replace("\u2014", "-")
    if not word:
        return None, "empty"
    m = _TRAILING_PAREN_RE.match(word)
    if m:
        word = m.group(1).strip()
    if any(ch.isspace() for ch in word):
        return None, "whitespace"
    if not _ALLOWED_RE.match(word):
        return None, "punctuation/symbol"
    if not _HAN_RE.search(word):
        return None, "no Han character"
    if len(word) < 2:
        return None, "single character"
    if word[0].isdigit() and not _TYPE_NUMBER_RE.match(word):
        return None, "starts with a number"
    if len(word) > max_len:
        return None, f"longer than {max_len}"
    if sentence_filter or from_thuocl:
        if word[0] in NEGATION_PREFIXES and (len(word) <= 3 or symptom):
            return None, "starts with 无/有"
    if sentence_filter:
        if word.startswith(GENERIC_PREFIXES):
            return None, "generic ICD category"
        if any(tok in connectors for tok in seg.cut(word)):
            return None, "sentence-like"
    return word, ""


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8-sig").splitlines()


def iter_sources(lexicons: Path, *, with_herb: bool, authored: bool) -> Iterable[tuple]:
    """Yield (source name, raw word, tag, sentence filter?)."""
    for line in _read_lines(lexicons / "thuocl" / "THUOCL_medical.txt"):
        word = line.split("\t")[0]
        if word.strip():
            yield "thuocl", word, "medical", False
    with open(lexicons / "icd10_cn_chaseliu" / "disease.csv", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            yield "icd10_chaseliu", row["disease"], "disease", True
    lists = list(CMEKG_LISTS) + ([CMEKG_HERB] if with_herb else [])
    for fname, tag, sentence in lists:
        for word in _read_lines(lexicons / "cmekg_pycmekg" / fname):
            if word.strip():
                yield f"cmekg_{tag}", word, tag, sentence
    if authored:
        for word, tag in AUTHORED_TERMS.items():
            yield "ehrtext_authored", word, tag, False


def build(
    lexicons: Path = DEFAULT_LEXICONS,
    *,
    min_freq: int = DEFAULT_MIN_FREQ,
    max_len: int = DEFAULT_MAX_LEN,
    max_len_names: int = DEFAULT_MAX_LEN_NAMES,
    with_herb: bool = False,
    authored: bool = True,
    stats: BuildStats | None = None,
    seg: _Segmenter | None = None,
) -> list[tuple[str, int, str]]:
    """The dictionary as sorted (word, freq, tag) triples."""
    seg = seg or _Segmenter()
    stats = stats if stats is not None else BuildStats()
    connectors = (load_stopwords() - NOT_CONNECTORS) | SENTENCE_MARKERS
    rank = {tag: i for i, tag in enumerate(TAG_PRIORITY)}
    thuocl = {
        fold_width(line.split("\t")[0].strip())
        for line in _read_lines(lexicons / "thuocl" / "THUOCL_medical.txt")
    }
    tags: dict[str, str] = {}
    for source, raw, tag, sentence in iter_sources(
        lexicons, with_herb=with_herb, authored=authored
    ):
        stats.raw[source] += 1
        word, reason = clean_term(
            raw,
            max_len=max_len_names if source in NAME_SOURCES else max_len,
            sentence_filter=sentence,
            seg=seg,
            connectors=connectors,
            symptom=tag == "symptom",
            from_thuocl=source == "thuocl",
        )
        if word is not None and source == "cmekg_drug" and len(word) == 2 and word not in thuocl:
            word, reason = None, "2-character brand name"
        if (
            word is not None
            and source in GENERAL_WORD_SOURCES
            and seg.freq.get(word, 0) >= GENERAL_WORD_FREQ
            and word not in thuocl
        ):
            word, reason = None, "general-language word"
        if word is None:
            stats.dropped[source][reason] += 1
            continue
        stats.kept[source] += 1
        old = tags.get(word)
        if old is None or rank[tag] < rank[old]:
            tags[word] = tag
    out = []
    for word in sorted(tags):
        out.append((word, max(seg.suggest_freq(word), min_freq), tags[word]))
    return out


def write_dict(entries: list[tuple[str, int, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for word, freq, tag in entries:
            fh.write(f"{word} {freq} {tag}\n")


def _command_line(args: argparse.Namespace) -> str:
    parts = ["python scripts/build_medical_dict.py"]
    if args.min_freq != DEFAULT_MIN_FREQ:
        parts.append(f"--min-freq {args.min_freq}")
    if args.max_len != DEFAULT_MAX_LEN:
        parts.append(f"--max-len {args.max_len}")
    if args.max_len_names != DEFAULT_MAX_LEN_NAMES:
        parts.append(f"--max-len-names {args.max_len_names}")
    if args.with_herb:
        parts.append("--with-herb")
    if not args.authored:
        parts.append("--no-authored")
    return " ".join(parts)


SOURCE_TABLE = (
    (
        "[THUOCL](https://github.com/thunlp/THUOCL) @a30ce79, `THUOCL_medical.txt`",
        "18,749 medical words with document frequency",
        "MIT, Copyright (c) 2018 THUNLP",
        "`corpora/licenses/THUOCL-MIT.txt`",
    ),
    (
        "[chaseliu/ICD-10-CN](https://github.com/chaseliu/ICD-10-CN) @a12ed01, `disease.csv`",
        "ICD-10 3-character category names in Chinese",
        "MIT, Copyright (c) 2017 Chase Liu",
        "`corpora/licenses/ICD-10-CN-chaseliu-MIT.txt`",
    ),
    (
        "[PyCMeKG](https://pypi.org/project/PyCMeKG/) 0.2.5, `cmekg.pkl` (the CMeKG medical "
        "knowledge graph)",
        "disease, symptom, drug, exam, department name lists derived from the graph",
        "MIT as declared by that package, Copyright (c) 2018-2019 cmekg authors",
        "`corpora/licenses/PyCMeKG-MIT.txt`",
    ),
    (
        "ehrtext (this project)",
        f"{len(AUTHORED_TERMS)} common EMR terms missing from the sources "
        "(`AUTHORED_TERMS` in `scripts/build_medical_dict.py`)",
        "MIT (project license)",
        "-",
    ),
)


def _source_rows() -> str:
    return "\n".join("| " + " | ".join(row) + " |" for row in SOURCE_TABLE)


def write_readme(
    entries: list[tuple[str, int, str]],
    stats: BuildStats,
    path: Path,
    args: argparse.Namespace,
    dict_path: Path,
) -> None:
    per_tag = collections.Counter(tag for _, _, tag in entries)
    mixed = sum(1 for w, _, _ in entries if not all(_HAN_RE.match(c) for c in w))
    floored = sum(1 for _, f, _ in entries if f == args.min_freq)
    size = dict_path.stat().st_size
    tag_rows = "\n".join(
        f"| `{tag}` | {per_tag.get(tag, 0):,} |" for tag in TAG_PRIORITY if per_tag.get(tag)
    )
    src_rows = []
    for source in stats.raw:
        drops = ", ".join(f"{r} {n:,}" for r, n in stats.dropped[source].most_common())
        src_rows.append(
            f"| {source} | {stats.raw[source]:,} | {stats.kept[source]:,} | {drops or '-'} |"
        )
    text = f"""# Medical dictionary (`medical_words.txt`) and stopwords (`stopwords.txt`)

## `medical_words.txt`

{len(entries):,} words ({size / 1e6:.2f} MB), jieba user-dictionary format: one `word freq tag`
per line, UTF-8, no header, sorted by word (code point order). The tokenizer adds each word with
`add_word(word, freq, tag)` using the explicit frequency, so the jieba and rjieba backends agree.
{len(entries) - mixed:,} words are pure Han characters and go to the segmenter; {mixed:,} contain
Latin letters, digits, Greek letters or a hyphen (`2型糖尿病`, `B超`, `维生素B12`, `D-二聚体`)
and are matched literally as protected tokens.

| tag | words |
|---|---|
{tag_rows}

A word that is in several source lists gets the first tag in the order
{" > ".join(TAG_PRIORITY)} (disease first: CMeKG lists many diseases also as symptoms of other
diseases; department late: that list is small and noisy; THUOCL's generic `medical` last).

Frequency = jieba's `suggest_freq` value against jieba's default dictionary
(`max(int(prod(FREQ(seg)/total for seg in cut(word, HMM=False)) * total) + 1, FREQ(word))`),
raised to the floor `--min-freq {args.min_freq}` ({floored:,} words sit at the floor). The floor
was chosen with `scripts/measure_integrity.py`: tuned on the CCKS2017 + CCKS2019 EMR texts,
reported on the CCL2025 cardiology records (real notes, not shipped). With this dictionary
(floor 5000, `Tokenizer(backend="rjieba")`, HMM on) the share of dictionary-term occurrences kept
as one token was 98.0 % on the tuning notes (99.2 % not split) and 98.4 % on the CCL2025 records
(99.2 % not split); rerun `python scripts/measure_integrity.py --corpus tune|report` after any
change.

### How it is built

```
{_command_line(args)}
```

reads `../shared/data/lexicons` (`--lexicons` to point elsewhere) and rewrites this file, this
README and `corpora/licenses/` (about 5 s). The cleaning rules are documented in the script's
docstring: full-width -> half-width; a trailing parenthetical removed; entries dropped when they
hold whitespace, punctuation, no Han character or a single character, start with a number
(except `N型`) or with 无/有 (negation glued to a finding), exceed {args.max_len} characters
({args.max_len_names} for CMeKG disease and drug names), read like a sentence (a connector such as
伴/或/和/及/等 in their jieba cut; disease, symptom, exam, department and ICD lists), are
2-character CMeKG brand names (可耐, 维快), or are everyday words in CMeKG's symptom / exam /
department lists (工作, 时间, 汽车).

| source | entries | kept | dropped (reason count) |
|---|---|---|---|
{chr(10).join(src_rows)}

(Kept counts are before merging duplicates across lists.)

### Sources, licenses, attribution

| source | what | license | copy of the license |
|---|---|---|---|
{_source_rows()}

Not used (no license, or non-commercial only; local measurements only): QASystemOnMedicalKG
dictionaries, WENGSYX med_word, the CCL2025 / Beijing clinical ICD tables, goto456 stopwords.

## `stopwords.txt`

Written for ehrtext (MIT): Chinese function words only (particles, conjunctions, prepositions,
pronouns, demonstratives). Negation, uncertainty, time, frequency and degree words that carry
clinical meaning (无 否认 未 不 没有 非 可能 疑似 考虑 偶 曾 既往 又 再 仍 已 较 有 可 ...) are
deliberately absent. One word per line; lines starting with `#` are comments.
"""
    path.write_text(text, encoding="utf-8")


def copy_licenses(lexicons: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for src, name in LICENSES:
        shutil.copyfile(lexicons / src, dest / name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lexicons", type=Path, default=DEFAULT_LEXICONS)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--min-freq", type=int, default=DEFAULT_MIN_FREQ)
    ap.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN)
    ap.add_argument(
        "--max-len-names",
        type=int,
        default=DEFAULT_MAX_LEN_NAMES,
        help="length cap for the CMeKG disease and drug name lists",
    )
    ap.add_argument("--with-herb", action="store_true", help="add CMeKG herb/organism names")
    ap.add_argument("--no-authored", dest="authored", action="store_false")
    ap.add_argument("--no-readme", dest="readme", action="store_false")
    ap.add_argument("--report", action="store_true", help="print drop counts and examples")
    args = ap.parse_args(argv)

    if not (args.lexicons / "thuocl" / "THUOCL_medical.txt").exists():
        print(f"lexicons not found under {args.lexicons} (use --lexicons)", file=sys.stderr)
        return 2
    stats = BuildStats()
    entries = build(
        args.lexicons,
        min_freq=args.min_freq,
        max_len=args.max_len,
        max_len_names=args.max_len_names,
        with_herb=args.with_herb,
        authored=args.authored,
        stats=stats,
    )
    write_dict(entries, args.out)
    if args.readme:
        write_readme(entries, stats, args.out.parent / "README.md", args, args.out)
        copy_licenses(args.lexicons, args.out.parent.parent / "licenses")
    per_tag = collections.Counter(tag for _, _, tag in entries)
    print(f"wrote {args.out} ({len(entries):,} words, {args.out.stat().st_size:,} bytes)")
    for tag in TAG_PRIORITY:
        print(f"  {tag:<11}{per_tag.get(tag, 0):>7,}")
    if args.report:
        for source in stats.raw:
            print(
                source, stats.raw[source], "kept", stats.kept[source], dict(stats.dropped[source])
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
