"""Synthetic PHI inserted into real de-identified notes, with gold spans, to measure
``ehrtext.text.deid``.

The real notes stay in ``../shared/data`` (research data that may not be copied): they are read at
run time from the CCL2025 records (sections joined), the CCKS2017 ``*.txtoriginal.txt`` files and
the CCKS2019 (Yidu) ``originalText`` lines. Between their sentences the generator inserts
note-like sentences (``患者张伟，男，45岁，住院号：123456``, ``于2015年3月2日入院``,
``现住河北省保定市清苑区建设路12号`` ...) that carry fake PHI: names, resident IDs with a valid
check digit, phones, MRNs with their cue, dates in many formats, ages of 90 and over,
addresses, hospitals and other organisations, e-mails, URLs and IPs. Everything is drawn from a
``random.Random(seed)``: the same seed gives the same examples.

Gold spans cover the PHI value only (``住院号：`` stays, ``123456`` is gold). The inserted regions
are recorded too, so that a detector's hits on the real text around them can be told apart from
its hits on inserted text.

Example:
    >>> from tests.text.deid_generator import PHIGenerator
    >>> g = PHIGenerator(seed=1)
    >>> text, gold = g.sentence()
    >>> all(0 <= s < e <= len(text) for s, e, _ in gold)
    True
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ehrtext.resources import corpus_path
from ehrtext.text.deid import id_check_digit

# The CCL2025 sections used as note text, in note order.
CCL2025_SECTIONS = (
    "主诉",
    "现病史",
    "既往史",
    "个人史",
    "婚姻史",
    "家族史",
    "入院情况",
    "入院诊断",
    "诊疗经过",
    "出院情况",
    "出院医嘱",
)

# Surnames that are real but NOT in corpora/dict/surnames.txt: they measure the fallback of
# strong cues (姓名：/签名：) and the misses elsewhere.
RARE_SURNAMES = ("仉", "逄", "闾", "隗", "蹇", "笪", "郦", "訾", "鲜于", "乐正")

SEX = ("男", "女")
COMPLAINTS = (
    "胸闷、气短3天",
    "反复咳嗽咳痰10年，加重1周",
    "头晕伴恶心2小时",
    "发热3天",
    "腰痛伴右下肢麻木1月",
    "上腹痛2天",
    "双下肢水肿半月",
    "心悸1周",
)
PROCEDURES = (
    "冠脉造影术",
    "胃镜检查",
    "腰椎CT检查",
    "胸部X线检查",
    "阑尾切除术",
    "腹部彩超检查",
    "头颅MRI检查",
    "PCI术",
)
DIAGNOSES = ("冠心病", "2型糖尿病", "社区获得性肺炎", "脑梗死", "高血压病3级")
RELATIONS = ("之子", "之女", "之妻", "之夫")
JOBS = ("农民", "退休工人", "教师", "司机", "无业")
MRN_CUES = (
    "住院号：",
    "住院号",
    "门诊号：",
    "病案号：",
    "病历号：",
    "ID号：",
    "ID：",
    "登记号：",
    "病理号：",
    "CT号：",
    "影像号",
)


@dataclass
class Example:
    """One note with synthetic PHI: ``text``, ``gold`` spans (start, end, type) and the
    ``inserted`` regions (start, end); ``source`` names the real note by file and index."""

    text: str
    gold: list[tuple[int, int, str]] = field(default_factory=list)
    inserted: list[tuple[int, int]] = field(default_factory=list)
    source: str = ""


def _word_list(name: str) -> list[str]:
    out = []
    for line in corpus_path("dict", name).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


# --------------------------------------------------------------------------------------------
# Real notes


def _jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield json.loads(line)


def real_notes(root: Path) -> Iterator[tuple[str, str]]:
    """(source, text) of the real notes, in a fixed order. ``root`` is ``../shared/data``."""
    for name in ("records.jsonl", "unlabeled_records.jsonl"):
        path = root / "emr_ccl2025_icd" / name
        for i, rec in enumerate(_jsonl(path)):
            parts = [
                f"{s}：{rec[s].strip()}"
                for s in CCL2025_SECTIONS
                if isinstance(rec.get(s), str) and rec[s].strip()
            ]
            yield f"emr_ccl2025_icd/{name}#{i}", "\n".join(parts)
    folder = root / "corpus" / "ccks2017_emr"
    for path in sorted(folder.rglob("*.txtoriginal.txt")):
        yield str(path.relative_to(root)), path.read_text(encoding="utf-8")
    folder = root / "corpus" / "ccks2019_yidu_emr"
    for name in ("subtask1_training_afterrevise.txt", "task1_test.json"):
        for i, rec in enumerate(_jsonl(folder / name)):
            yield f"corpus/ccks2019_yidu_emr/{name}#{i}", rec["originalText"]


# --------------------------------------------------------------------------------------------
# Fake values


class PHIGenerator:
    """Draws fake PHI values and note-like sentences carrying them (deterministic per seed).

    Example:
        >>> g = PHIGenerator(seed=0)
        >>> len(g.resident_id())
        18
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.surnames = _word_list("surnames.txt")
        self.single = [s for s in self.surnames if len(s) == 1]
        self.compound = [s for s in self.surnames if len(s) == 2]
        self.given = _word_list("deid_given_chars.txt")
        self.words = _word_list("deid_address_words.txt")
        places = [line.split("\t") for line in _word_list("deid_places.txt")]
        self.provinces = [p[0] for p in places if p[1] == "province"]
        self.cities = [(p[0], p[2]) for p in places if p[1] == "city"]
        known = set(self.surnames)
        self.rare = [s for s in RARE_SURNAMES if s not in known]
        self.templates = self._templates()

    # -- values ----------------------------------------------------------------------------
    def surname(self) -> str:
        r = self.rng
        if self.rare and r.random() < 0.04:
            return r.choice(self.rare)
        if r.random() < 0.6:
            return r.choice(self.single[:100])
        if r.random() < 0.93:
            return r.choice(self.single)
        return r.choice(self.compound)

    def name(self) -> str:
        n = 1 if self.rng.random() < 0.3 else 2
        return self.surname() + "".join(self.rng.choice(self.given) for _ in range(n))

    def resident_id(self) -> str:
        r = self.rng
        area = r.choice(["11", "13", "21", "32", "37", "41", "44", "51", "61"]) + (
            f"{r.randint(1, 99):02d}{r.randint(1, 99):02d}"
        )
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=r.randint(0, 27000))
        first17 = f"{area}{birth:%Y%m%d}{r.randint(0, 999):03d}"
        return first17 + id_check_digit(first17)

    def old_id(self) -> str:
        r = self.rng
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=r.randint(0, 25000))
        area = f"{r.choice(['13', '37', '41'])}{r.randint(1000, 9999)}"
        return f"{area}{birth:%y%m%d}{r.randint(0, 999):03d}"

    def mobile(self) -> str:
        r = self.rng
        d = "1" + r.choice("3456789") + "".join(str(r.randint(0, 9)) for _ in range(9))
        style = r.random()
        if style < 0.6:
            return d
        if style < 0.75:
            return f"{d[:3]}-{d[3:7]}-{d[7:]}"
        if style < 0.85:
            return f"{d[:3]} {d[3:7]} {d[7:]}"
        return f"+86 {d}" if style < 0.93 else f"+86-{d}"

    def landline(self) -> str:
        r = self.rng
        area = (
            "0" + r.choice(["10", "20", "21", "22", "24", "27", "28", "29"])
            if r.random() < 0.4
            else ("0" + str(r.randint(310, 999)))
        )
        local = str(r.randint(2, 8)) + "".join(
            str(r.randint(0, 9)) for _ in range(r.choice([6, 7]))
        )
        style = r.random()
        if style < 0.75:
            return f"{area}-{local}"
        if style < 0.9:
            return f"({area}){local}"
        return f"{area}{local}"

    def mrn(self) -> str:
        r = self.rng
        n = r.randint(6, 10)
        digits = "".join(str(r.randint(0, 9)) for _ in range(n))
        return (r.choice(["ZY", "MZ", "Z", "P"]) + digits) if r.random() < 0.2 else digits

    def date(self, with_time: bool = False) -> str:
        r = self.rng
        d = dt.date(2005, 1, 1) + dt.timedelta(days=r.randint(0, 7000))
        y, m, dd = d.year, d.month, d.day
        fmt = r.randrange(13)
        if fmt == 0:
            s = f"{y}-{m:02d}-{dd:02d}"
        elif fmt == 1:
            s = f"{y}-{m}-{dd}"
        elif fmt == 2:
            s = f"{y}/{m:02d}/{dd:02d}"
        elif fmt == 3:
            s = f"{y}.{m}.{dd}"
        elif fmt == 4:
            s = f"{y}年{m}月{dd}日"
        elif fmt == 5:
            s = f"{y}年{m:02d}月{dd:02d}日"
        elif fmt == 6:
            s = f"{y}年{m}月"
        elif fmt == 7:
            s = f"{y % 100:02d}年{m}月"
        elif fmt == 8:
            s = f"{m}月{dd}日"
        elif fmt == 9:
            s = f"{y}{m:02d}{dd:02d}"
        elif fmt == 10:
            s = f"{y}-{m:02d}"
        elif fmt == 11:
            cn = "〇一二三四五六七八九"
            ym = "".join(cn[int(c)] for c in str(y))
            mm = ("十" + (cn[m - 10] if m > 10 else "")) if m >= 10 else cn[m]
            s = f"{ym}年{mm}月"
        else:
            s = f"{m:02d}/{dd:02d}/{y}"
        if with_time and fmt in (0, 1, 2, 4, 5):
            hh, mi = r.randint(0, 23), r.randint(0, 59)
            s += (
                r.choice([f" {hh:02d}:{mi:02d}", f" {hh}:{mi:02d}", f"{hh}时{mi}分"])
                if fmt
                in (
                    4,
                    5,
                )
                else f" {hh:02d}:{mi:02d}"
            )
        return s

    def age90(self) -> str:
        r = self.rng
        a = r.randint(90, 104)
        style = r.random()
        if style < 0.7:
            return f"{a}岁"
        if style < 0.85:
            return f"{a}周岁"
        cn = "〇一二三四五六七八九"
        if a < 100:
            return "九十" + (cn[a - 90] if a > 90 else "") + "岁"
        return "一百" + ("零" + cn[a - 100] if a > 100 else "") + "岁"

    def _road(self) -> str:
        r = self.rng
        return r.choice(self.words) + r.choice(["路", "街", "大街", "大道", "巷"])

    def address(self) -> str:
        r = self.rng
        city, prov = r.choice(self.cities)
        prov_part = prov + ("省" if prov not in ("内蒙古", "广西", "西藏", "宁夏", "新疆") else "")
        district = r.choice(self.words) + r.choice(["区", "县"])
        style = r.randrange(6)
        if style == 0:
            return f"{prov_part}{city}市{district}{self._road()}{r.randint(1, 300)}号"
        if style == 1:
            return (
                f"{city}市{district}{r.choice(self.words)}镇{r.choice(self.words)}村"
                f"{r.randint(1, 12)}组"
            )
        if style == 2:
            return (
                f"{city}市{district}{r.choice(self.words)}小区{r.randint(1, 30)}栋"
                f"{r.randint(1, 6)}单元{r.randint(1, 30)}{r.randint(1, 4):02d}室"
            )
        if style == 3:
            return f"{prov_part}{city}市{district}{r.choice(self.words)}乡{r.choice(self.words)}村"
        if style == 4:
            return (
                f"{self._road()}{r.randint(1, 500)}号{r.randint(1, 20)}号楼{r.randint(101, 2408)}室"
            )
        return f"{prov_part}{city}市"

    def hospital(self) -> str:
        r = self.rng
        city, prov = r.choice(self.cities)
        style = r.randrange(9)
        if style == 0:
            return f"{city}市第{r.choice('一二三四五')}人民医院"
        if style == 1:
            return f"{city}市中心医院"
        if style == 2:
            return f"{prov}省人民医院"
        if style == 3:
            return f"{city}{r.choice(self.words)}医院"
        if style == 4:
            return f"{r.choice(self.words)}镇卫生院"
        if style == 5:
            return f"{city}市{r.choice(self.words)}社区卫生服务中心"
        if style == 6:
            return f"{city}医科大学附属第{r.choice('一二三')}医院"
        if style == 7:
            return f"{city}市中医院"
        return (
            f"{self.surname()}氏诊所" if r.random() < 0.5 else f"{city}{r.choice(self.words)}诊所"
        )

    def company(self) -> str:
        r = self.rng
        city, _ = r.choice(self.cities)
        style = r.randrange(3)
        if style == 0:
            return f"{city}{r.choice(self.words)}科技有限公司"
        if style == 1:
            return f"{city}市第{r.choice('一二三四五六七八')}中学"
        return f"{city}{r.choice(self.words)}建筑工程公司"

    def email(self) -> str:
        r = self.rng
        user = "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(3, 9)))
        if r.random() < 0.4:
            user += str(r.randint(1, 9999))
        if r.random() < 0.2:
            user = user[:3] + "." + user[3:]
        return (
            f"{user}@{r.choice(['163.com', 'qq.com', 'hospital.org.cn', 'sina.com', 'gmail.com'])}"
        )

    def url(self) -> str:
        r = self.rng
        host = "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(4, 10)))
        style = r.randrange(3)
        if style == 0:
            return f"https://www.{host}.com/report/{r.randint(1000, 99999)}"
        if style == 1:
            return f"http://{host}.org.cn/p?id={r.randint(1, 99999)}"
        return f"www.{host}.cn"

    def ip(self) -> str:
        r = self.rng
        first = r.choice([10, 172, 192])
        return f"{first}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    # -- sentences -----------------------------------------------------------------------
    def _templates(self):
        """Each template returns a list of pieces: str (plain) or (value, type) (gold)."""
        r = self.rng
        n, sx = self.name, lambda: r.choice(SEX)

        def age_any() -> str:
            return f"{r.randint(18, 85)}岁"

        return [
            lambda: [
                "患者",
                (n(), "name"),
                f"，{sx()}，{age_any()}，因“{r.choice(COMPLAINTS)}”入院。",
            ],
            lambda: [
                "患者",
                (n(), "name"),
                f"，{sx()}，",
                (self.age90(), "age"),
                "，",
                ("住院号", None),
                "：",
                (self.mrn(), "mrn"),
                "。",
            ],
            lambda: [
                (n(), "name"),
                f"，{sx()}，{age_any()}，{r.choice(JOBS)}，",
                ("现住", None),
                (self.address(), "address"),
                "。",
            ],
            lambda: [
                "姓名：",
                (n(), "name"),
                f" 性别：{sx()} 年龄：",
                (str(r.randint(90, 103)), "age"),
                "岁。",
            ],
            lambda: [
                "姓名：",
                (
                    r.choice(self.rare or ["仉"]) + r.choice(self.given) + r.choice(self.given),
                    "name",
                ),
                f"，性别：{sx()}。",
            ],
            lambda: [
                "请示",
                (n(), "name"),
                r.choice(["主任医师", "副主任医师", "主治医师"]),
                "后同意出院。",
            ],
            lambda: [
                (n(), "name"),
                r.choice(["主任医师", "副主任医师", "主任"]),
                "查房后指示：继续目前治疗。",
            ],
            lambda: ["由其子", (n(), "name"), "陪同入院，联系电话", (self.mobile(), "phone"), "。"],
            lambda: [
                "患者之女",
                (n(), "name"),
                "代诉病史，家属电话",
                (self.mobile(), "phone"),
                "。",
            ],
            lambda: ["医师签名：", (n(), "name"), "\n"],
            lambda: ["记录者：", (n(), "name"), "  ", (self.date(True), "date"), "。"],
            lambda: ["经", (n(), "name"), "医生会诊，建议", r.choice(PROCEDURES), "。"],
            lambda: [
                (self.surname(), "name"),
                "主任查看患者后指示：完善",
                r.choice(PROCEDURES),
                "。",
            ],
            lambda: ["联系人：", (n(), "name"), "，电话：", (self.mobile(), "phone"), "。"],
            lambda: ["护士", (n(), "name"), "执行医嘱。"],
            lambda: ["系", (n(), "name"), r.choice(RELATIONS), "，代诉病史。"],
            lambda: ["家属", (n(), "name"), "签字同意手术。"],
            lambda: ["身份证号：", (self.resident_id(), "id_number"), "。"],
            lambda: ["（身份证号码", (self.resident_id(), "id_number"), "）"],
            lambda: ["证件号码：", (self.old_id(), "id_number"), "。"],
            lambda: [
                "患者",
                (n(), "name"),
                "（",
                (self.resident_id(), "id_number"),
                "）于",
                (self.date(), "date"),
                "入院。",
            ],
            lambda: [
                "电话：",
                (self.landline(), "phone"),
                "，手机：",
                (self.mobile(), "phone"),
                "。",
            ],
            lambda: ["家属电话", (self.mobile(), "phone"), "。"],
            lambda: ["科室电话", (self.landline(), "phone"), "。"],
            lambda: [
                r.choice(MRN_CUES),
                (self.mrn(), "mrn"),
                "，床号：",
                (str(r.randint(1, 60)), "mrn"),
                "。",
            ],
            lambda: [(f"{r.randint(1, 60)}床", "mrn"), "患者今日出院。"],
            lambda: ["（", r.choice(MRN_CUES), (self.mrn(), "mrn"), "）示：未见明显异常。"],
            lambda: ["于", (self.date(), "date"), "入院，", (self.date(), "date"), "出院。"],
            lambda: [(self.date(), "date"), "行", r.choice(PROCEDURES), "。"],
            lambda: ["入院日期：", (self.date(True), "date"), "。"],
            lambda: [
                "出院时间：",
                (self.date(True), "date"),
                "，",
                (self.date(), "date"),
                "复查。",
            ],
            lambda: ["患者", (self.age90(), "age"), "高龄，", r.choice(DIAGNOSES), "病史多年。"],
            lambda: ["老年女性，", (self.age90(), "age"), "，于", (self.date(), "date"), "入院。"],
            lambda: ["年龄：", (str(r.randint(90, 104)), "age"), "。"],
            lambda: ["现住", (self.address(), "address"), "。"],
            lambda: ["家住", (self.address(), "address"), "，否认疫区居住史。"],
            lambda: ["住址：", (self.address(), "address"), "。"],
            lambda: ["户籍地：", (self.address(), "address"), "。"],
            lambda: [f"{sx()}，{age_any()}，", (self.address(), "address"), "人。"],
            lambda: ["曾于", (self.hospital(), "org"), "就诊，诊断为", r.choice(DIAGNOSES), "。"],
            lambda: [
                (self.date(), "date"),
                "在",
                (self.hospital(), "org"),
                "行",
                r.choice(PROCEDURES),
                "。",
            ],
            lambda: ["腹部彩超（", (self.hospital(), "org"), "）示：肝胆胰脾未见异常。"],
            lambda: ["建议转入", (self.hospital(), "org"), "进一步治疗。"],
            lambda: [(self.hospital(), "org"), "诊断为", r.choice(DIAGNOSES), "。"],
            lambda: ["工作单位：", (self.company(), "org"), "。"],
            lambda: ["邮箱：", (self.email(), "email"), "。"],
            lambda: ["随访报告查询：", (self.url(), "url"), "。"],
            lambda: ["E-mail: ", (self.email(), "email"), "；网址 ", (self.url(), "url"), "。"],
            lambda: ["检查设备IP：", (self.ip(), "ip"), "。"],
        ]

    def sentence(self) -> tuple[str, list[tuple[int, int, str]]]:
        """One note-like sentence with its gold spans."""
        pieces = self.rng.choice(self.templates)()
        text, gold = [], []
        pos = 0
        for p in pieces:
            if isinstance(p, tuple):
                value, typ = p
                if typ is not None:
                    gold.append((pos, pos + len(value), typ))
            else:
                value = p
            text.append(value)
            pos += len(value)
        return "".join(text), gold


_SENT_END = re.compile(r"(?<=[。；\n])")


def generate(root: Path, n_notes: int = 800, per_note: int = 3, seed: int = 0) -> list[Example]:
    """Examples from the first notes of a seeded shuffle of the real notes: each gets
    ``per_note`` inserted sentences at sentence boundaries."""
    rng = random.Random(seed)
    notes = [(src, t) for src, t in real_notes(root) if t.strip()]
    rng.shuffle(notes)
    gen = PHIGenerator(seed)
    out = []
    for src, note in notes[:n_notes]:
        cuts = [m.start() for m in _SENT_END.finditer(note)] or [len(note)]
        where = sorted(rng.choice(cuts) for _ in range(per_note))
        ex = Example("", source=src)
        parts: list[str] = []
        pos = last = 0
        for w in where:
            chunk = note[last:w]
            parts.append(chunk)
            pos += len(chunk)
            last = w
            sent, gold = gen.sentence()
            ex.inserted.append((pos, pos + len(sent)))
            ex.gold.extend((pos + s, pos + e, t) for s, e, t in gold)
            parts.append(sent)
            pos += len(sent)
        parts.append(note[last:])
        ex.text = "".join(parts)
        out.append(ex)
    return out
