#!/usr/bin/env python
"""Rebuild the concept lexicons ``corpora/dict/concepts_body_part.txt`` and
``corpora/dict/concepts_procedure.txt`` used by :mod:`ehrtext.text.concepts`.

One command, run from the repository root (no network, no shared data, well under a second)::

    python scripts/build_concept_lexicons.py            # rewrite both files
    python scripts/build_concept_lexicons.py --check    # exit 1 if the files are out of date

Sources (both files are MIT, as the rest of the project):

* ``BODY_PART_TERMS`` and ``LATERAL_*`` below: anatomical terms as they are written in Chinese
  EMRs (双肺, 左下肺, 心前区, 剑突下, 双下肢, 颈静脉, 前降支 ...), written for ehrtext. Laterality
  forms are generated from a short list of paired organs and regions (左 / 右 / 双 + 肺, 肾,
  下肢 ...), only for organs whose laterality forms do not swallow the start of a disease name
  (no 左肾 / 右乳腺: "左肾结石" must still yield 肾结石, see ``NO_LATERAL``).
* ``PROCEDURE_TERMS`` below: procedures, operations and named treatments written for ehrtext
  (PCI, 冠状动脉造影, 支架植入术, 射频消融术, 透析, 化疗 ...);
* plus procedures derived from ``corpora/dict/medical_words.txt`` (built by
  ``scripts/build_medical_dict.py`` from THUOCL and the CMeKG name lists, MIT): every entry whose
  last characters are a procedure suffix (``PROCEDURE_SUFFIXES``: 术, 移植, 透析, 穿刺 ...),
  except techniques and herbs (``NOT_PROCEDURE_SUFFIXES``: 技术, 白术, 苍术 ...) and the listed
  non-procedures (``NOT_PROCEDURES``: findings such as 上肢固定, 瞳孔固定).

A term listed in one of these files takes this file's category in the matcher even when
``medical_words.txt`` tags it otherwise (淋巴结 and 下肢 are CMeKG "symptoms", 化疗 too).

Format: one term per line, UTF-8, sorted (code point order) within each section; lines starting
with ``#`` are comments (a header, then one comment line per section).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DICT_DIR = REPO_ROOT / "corpora" / "dict"
MEDICAL_WORDS = DICT_DIR / "medical_words.txt"
BODY_PART_OUT = DICT_DIR / "concepts_body_part.txt"
PROCEDURE_OUT = DICT_DIR / "concepts_procedure.txt"


def _words(block: str) -> list[str]:
    return block.split()


# --------------------------------------------------------------------------------------------
# body parts (authored)

BODY_PART_TERMS = _words(
    """
    头部 头颅 头面部 颅内 颅脑 颅骨 大脑 小脑 脑干 脑室 侧脑室 第三脑室 第四脑室 脑实质 脑组织
    额叶 颞叶 顶叶 枕叶 岛叶 基底节 基底节区 丘脑 放射冠 半卵圆中心 脑桥 延髓 中脑 胼胝体 脑膜
    蛛网膜下腔 硬膜下 硬膜外 垂体 海马

    面部 颜面 颜面部 额部 颞部 眼部 眼睑 上睑 下睑 眼球 结膜 睑结膜 球结膜 巩膜 角膜 瞳孔 虹膜
    晶状体 玻璃体 视网膜 眼底 视神经 眼眶 泪囊 耳部 耳廓 耳郭 外耳道 鼓膜 中耳 内耳 乳突 鼻部
    鼻腔 鼻窦 上颌窦 额窦 筛窦 蝶窦 鼻中隔 鼻翼 鼻唇沟 口腔 口唇 口角 舌体 舌根 舌下 牙龈 牙齿
    咽部 咽后壁 咽喉 口咽 鼻咽 喉部 喉咽 扁桃体 悬雍垂 会厌 声带 声门 下颌 上颌 颌下 颌面部
    腮腺 颌下腺

    颈部 颈项 颈前 颈后 颈静脉 颈动脉 颈总动脉 颈内动脉 颈外动脉 颈动脉窦 椎动脉 基底动脉
    椎基底动脉 大脑中动脉 大脑前动脉 大脑后动脉 甲状腺 甲状腺左叶 甲状腺右叶 甲状腺峡部
    甲状旁腺 气管 锁骨上 锁骨上窝 锁骨 锁骨下 胸锁乳突肌

    胸部 胸廓 胸壁 前胸 前胸壁 胸骨 胸骨后 胸骨旁 胸骨左缘 胸骨右缘 胸骨上窝 胸腔 胸膜 胸膜腔
    纵隔 上纵隔 前纵隔 后纵隔 肺部 肺野 肺门 肺尖 肺底 肺叶 肺段 肺组织 肺实质 肺间质 双肺野
    左肺上叶 左肺下叶 右肺上叶 右肺中叶 右肺下叶 舌段 支气管 主支气管 细支气管 肺动脉 肺静脉
    乳房 乳腺 乳头 乳晕 腋窝 腋下 肋骨 肋间 肋间隙 肋弓 肋下 肋缘 肋缘下 肋膈角 剑突 剑突下
    膈肌 膈下 肩胛 肩胛下 肩胛下角 肩胛间区 锁骨中线 腋前线 腋中线 腋后线 背部 后背

    心脏 心前区 心尖 心尖部 心尖区 心底部 心包 心包腔 心房 心室 左心房 右心房 左心室 右心室
    左房 右房 左室 右室 心耳 左心耳 房间隔 室间隔 二尖瓣 三尖瓣 主动脉瓣 肺动脉瓣 瓣膜 心瓣膜
    心肌 心内膜 心外膜 冠状动脉 冠脉 左主干 前降支 左前降支 回旋支 左回旋支 右冠状动脉 右冠
    对角支 第一对角支 钝缘支 后降支 左室后支 中间支 锐缘支 后侧支 冠状窦 主动脉 升主动脉
    降主动脉 主动脉弓 主动脉根部 主动脉窦 胸主动脉 腹主动脉 上腔静脉 下腔静脉 锁骨下动脉
    锁骨下静脉 无名动脉 头臂干 肺动脉干 二尖瓣听诊区 三尖瓣听诊区 主动脉瓣听诊区
    肺动脉瓣听诊区

    腹部 全腹 上腹 上腹部 中上腹 中腹 中腹部 下腹 下腹部 左上腹 右上腹 左下腹 右下腹 左中腹
    右中腹 脐周 脐部 脐下 腹壁 腹腔 腹膜 腹膜后 腹膜腔 盆腔 会阴 会阴部 腹股沟 腹股沟区 肝脏
    肝区 肝门 肝内 肝左叶 肝右叶 肝尾状叶 肝实质 胆囊 胆囊窝 胆管 胆总管 肝内胆管 肝外胆管
    胰腺 胰头 胰体 胰尾 胰管 脾脏 脾门 胃部 胃体 胃窦 胃底 胃角 胃壁 胃腔 贲门 幽门 胃小弯
    胃大弯 十二指肠 十二指肠球部 十二指肠降部 空肠 回肠 回盲部 回盲瓣 盲肠 阑尾 结肠 升结肠
    横结肠 降结肠 乙状结肠 结肠肝曲 结肠脾曲 直肠 直肠上段 直肠中段 直肠下段 肛门 肛周 肛管
    齿状线 大肠 小肠 肠道 肠管 肠壁 肠腔 肠系膜 大网膜 网膜 消化道 上消化道 下消化道 胃肠道
    食管 食道 食管下段 食管中段 食管上段 门静脉 脾静脉 肠系膜上动脉 肠系膜上静脉 肠系膜下动脉
    腹腔干 肝动脉 肝静脉 脾动脉

    肾脏 双肾 肾区 双肾区 肾盂 肾盏 肾实质 肾门 肾动脉 肾静脉 肾上腺 输尿管 输尿管上段
    输尿管下段 膀胱 膀胱颈 膀胱三角区 尿道 尿道口 前列腺 精囊 睾丸 附睾 阴囊 阴茎 精索 子宫
    宫体 宫颈 子宫颈 宫腔 子宫内膜 子宫肌层 卵巢 输卵管 附件 双附件 阴道 阴道壁 后穹隆 外阴

    脊柱 颈椎 胸椎 腰椎 骶椎 骶骨 尾骨 骶尾部 骶髂关节 椎体 椎间盘 椎间隙 椎间孔 椎管 椎板
    棘突 横突 腰部 腰背部 腰骶部 骶部 臀部 四肢 肢体 上肢 下肢 双上肢 双下肢 肩部 双肩
    肩关节 上臂 肘部 肘关节 前臂 腕部 腕关节 手部 手掌 手背 手指 指端 指尖 指间关节 髋部
    髋关节 大腿 膝部 膝关节 双膝 小腿 腘窝 踝部 踝关节 双踝 足部 足背 足底 足趾 足跟 胫前
    双胫前 股骨 股骨头 股骨颈 胫骨 腓骨 桡骨 尺骨 肱骨 骨盆 耻骨 耻骨联合 髂骨 髂窝 髌骨
    半月板 跟腱 关节 关节腔 肌腱 韧带

    动脉 静脉 血管 股动脉 股静脉 桡动脉 肱动脉 足背动脉 胫后动脉 腘动脉 髂动脉 髂总动脉
    髂内动脉 髂外动脉 髂静脉 深静脉 浅静脉 大隐静脉 小隐静脉 颈外静脉 头静脉 贵要静脉 淋巴结
    浅表淋巴结 全身浅表淋巴结 颈部淋巴结 腋窝淋巴结 腹股沟淋巴结 锁骨上淋巴结 纵隔淋巴结
    肺门淋巴结 腹膜后淋巴结 肠系膜淋巴结 皮肤 黏膜 粘膜 皮肤黏膜 皮肤粘膜 口腔黏膜 口腔粘膜
    皮下 皮下组织 软组织 肌肉 骨骼 骨髓 神经 神经系统 周围神经 脊髓 神经根 甲床 指甲 毛发
    巴氏腺 胸导管 胸腺
    """
)

# Paired organs and regions that get 左 / 右 / 双 forms (e.g. 左下肺, 右肺门, 双下肢). Only
# organs whose laterality forms do not swallow the start of common disease names: 左肾结石 must
# yield 肾结石, so 肾 / 乳腺 / 乳房 / 眼 / 卵巢 get no 左/右 forms (see NO_LATERAL).
LATERAL_LEFT_RIGHT = _words(
    """
    肺 上肺 下肺 肺门 肺尖 肺底 肺野 胸 侧胸 胸壁 侧胸壁 肺上叶 肺下叶 肾区 腰部 侧腰部
    上肢 下肢 前臂 上臂 小腿 大腿 手 足 膝 膝关节 髋关节 肩关节 踝关节 肘关节 腕关节 腋窝 腋下
    腹股沟 颈部 锁骨上 锁骨上窝 锁骨下 肋下 肋缘下 肩部 肩胛 足背 足背动脉 颈动脉 颈总动脉
    颈内动脉 颈外动脉 椎动脉 股动脉 股静脉 桡动脉 肱动脉 腘动脉 髂动脉 髂总动脉 锁骨下动脉
    大脑中动脉 大脑前动脉 大脑后动脉 半球 额叶 颞叶 顶叶 枕叶 基底节 基底节区 丘脑 侧脑室
    放射冠 半卵圆中心 小脑 附件 耳 鼻腔 上颌窦 扁桃体
    """
)
LATERAL_RIGHT_ONLY = _words("中肺 肺中叶")
LATERAL_BOTH = _words(
    """
    肺 上肺 下肺 中下肺 肺门 肺尖 肺底 肺野 侧胸廓 肾区 上肢 下肢 手 足 小腿 大腿 膝
    膝关节 髋关节 肩关节 踝关节 腋窝 腋下 腹股沟 颈部 锁骨上 锁骨上窝 足背 足背动脉 颈动脉
    颈总动脉 颈内动脉 椎动脉 股动脉 半球 侧脑室 基底节 基底节区 丘脑 放射冠 半卵圆中心 附件
    扁桃体 眼睑 胫前
    """
)
# The reason LATERAL_* leave these out (documentation; checked in build()).
NO_LATERAL = frozenset(_words("肾 乳腺 乳房 眼 卵巢 肝 心 胸腔 输尿管 睾丸 甲状腺"))


def body_part_terms() -> list[str]:
    terms = set(BODY_PART_TERMS)
    terms.update(side + t for t in LATERAL_LEFT_RIGHT for side in ("左", "右"))
    terms.update("右" + t for t in LATERAL_RIGHT_ONLY)
    terms.update("双" + t for t in LATERAL_BOTH)
    bad = {t for t in terms if len(t) < 2}
    if bad:
        raise SystemExit(f"body part terms shorter than 2 characters: {sorted(bad)}")
    lateral = LATERAL_LEFT_RIGHT + LATERAL_RIGHT_ONLY + LATERAL_BOTH
    clash = NO_LATERAL.intersection(lateral)
    if clash:
        raise SystemExit(f"organs in NO_LATERAL also get laterality forms: {sorted(clash)}")
    return sorted(terms)


# --------------------------------------------------------------------------------------------
# procedures (authored)

PROCEDURE_TERMS = _words(
    """
    PCI PTCA CABG ERCP TACE ESD PICC IABP ECMO TAVI TAVR PTCD EST CRRT
    手术 外科手术 微创手术 介入治疗 介入手术 经皮冠状动脉介入治疗 经皮冠脉介入治疗 冠状动脉介入治疗
    冠脉介入治疗 冠状动脉造影 冠脉造影 冠状动脉造影术 冠脉造影术 选择性冠状动脉造影
    冠状动脉CT血管成像 支架植入术 支架置入术 支架植入 支架置入 冠状动脉支架植入术 冠脉支架植入术
    冠状动脉支架置入术 冠脉支架置入术 药物洗脱支架植入术 经皮冠状动脉腔内成形术
    经皮腔内冠状动脉成形术 球囊扩张术 球囊扩张 药物球囊扩张术 冠状动脉旁路移植术 冠状动脉搭桥术
    冠脉搭桥术 搭桥术 搭桥手术 血栓抽吸术 血栓抽吸 射频消融术 导管射频消融术 经导管射频消融术
    射频消融 冷冻消融术 冷冻球囊消融术 微波消融术 微波消融 消融术 起搏器植入术 起搏器置入术
    永久起搏器植入术 永久起搏器置入术 临时起搏器植入术 临时起搏器置入术 心脏起搏器植入术
    心脏再同步化治疗 除颤器植入术 左心耳封堵术 封堵术 房间隔缺损封堵术 室间隔缺损封堵术
    动脉导管未闭封堵术 心包穿刺术 心包穿刺引流术 电复律 同步电复律 电除颤 除颤 心肺复苏
    心肺复苏术 主动脉内球囊反搏 体外膜肺氧合 体外循环 溶栓 溶栓治疗 静脉溶栓 动脉溶栓
    瓣膜置换术 二尖瓣置换术 主动脉瓣置换术 经导管主动脉瓣置换术 经导管主动脉瓣植入术
    二尖瓣成形术 瓣膜成形术 主动脉夹层腔内修复术 腔内隔绝术 血管腔内修复术 颈动脉支架植入术
    颈动脉内膜剥脱术 下腔静脉滤器植入术 动静脉内瘘成形术 血管成形术 取栓术 动脉取栓术
    机械取栓术 机械取栓 栓塞术 动脉栓塞术 介入栓塞术 肝动脉化疗栓塞术 经导管动脉化疗栓塞术
    血液透析 腹膜透析 透析 血液滤过 连续性肾脏替代治疗 血浆置换 血液灌流
    化疗 放疗 放化疗 同步放化疗 新辅助化疗 辅助化疗 术后化疗 姑息化疗 靶向治疗 免疫治疗
    内分泌治疗 介入化疗 腹腔热灌注化疗
    内镜下黏膜剥离术 内镜黏膜下剥离术 内镜下黏膜切除术 内镜下息肉切除术 息肉切除术
    内镜下止血术 内镜下逆行胰胆管造影 经内镜逆行胰胆管造影术 内镜下十二指肠乳头括约肌切开术
    胃镜下止血 套扎术 内镜下套扎术 食管静脉曲张套扎术 硬化剂注射 经皮肝穿刺胆道引流术
    胆总管切开取石术 取石术 胆囊切除术 腹腔镜胆囊切除术 腹腔镜下胆囊切除术 阑尾切除术
    腹腔镜阑尾切除术 胃大部切除术 全胃切除术 远端胃大部切除术 近端胃大部切除术 胃癌根治术
    直肠癌根治术 结肠癌根治术 乳腺癌根治术 乳腺癌改良根治术 肺癌根治术 食管癌根治术 根治术
    直肠前切除术 经腹会阴联合直肠癌根治术 经腹直肠癌切除术 右半结肠切除术 左半结肠切除术
    乙状结肠切除术 肠切除术 小肠部分切除术 肠吻合术 肠粘连松解术 造口术 结肠造口术 回肠造口术
    造瘘术 造口还纳术 肝切除术 肝部分切除术 胰十二指肠切除术 脾切除术 肺叶切除术 肺段切除术
    肺楔形切除术 全肺切除术 胸腔镜手术 胸腔镜下肺叶切除术 腹腔镜手术 剖腹探查术 开腹手术
    甲状腺切除术 甲状腺全切术 甲状腺次全切除术 甲状腺腺叶切除术 子宫切除术 全子宫切除术
    次全子宫切除术 子宫肌瘤剔除术 卵巢囊肿剔除术 附件切除术 剖宫产术 剖宫产 剖腹产 人工流产
    人工流产术 刮宫术 清宫术 宫腔镜手术 经尿道前列腺电切术 前列腺电切术 前列腺切除术
    经尿道膀胱肿瘤电切术 碎石术 体外冲击波碎石 体外冲击波碎石术 输尿管镜碎石术
    经皮肾镜取石术 肾切除术 肾部分切除术 膀胱切除术 疝修补术 腹股沟疝修补术 痔切除术
    混合痔切除术 肛瘘切除术 包皮环切术 髋关节置换术 全髋关节置换术 人工髋关节置换术
    人工股骨头置换术 膝关节置换术 全膝关节置换术 人工膝关节置换术 关节置换术 内固定术
    切开复位内固定术 骨折内固定术 内固定取出术 闭合复位 手法复位 椎间盘切除术
    腰椎间盘切除术 椎间孔镜手术 椎体成形术 经皮椎体成形术 椎弓根螺钉内固定术 脊柱融合术
    截肢术 清创术 清创缝合术 植皮术 开颅手术 开颅血肿清除术 去骨瓣减压术 脑室引流术
    钻孔引流术 血肿清除术 气管切开术 气管插管 气管插管术 机械通气 无创通气 无创呼吸机辅助通气
    胸腔闭式引流术 胸腔闭式引流 胸腔穿刺术 胸腔穿刺 腹腔穿刺术 腹腔穿刺 腰椎穿刺术 腰椎穿刺
    腰穿 骨髓穿刺术 骨髓穿刺 穿刺活检 穿刺活检术 肝穿刺活检 肾穿刺活检 肺穿刺活检 淋巴结活检
    引流术 置管引流 穿刺引流 导尿术 留置导尿 导尿 胃肠减压 鼻饲 深静脉置管 中心静脉置管
    静脉置管 输液港植入术 输血 成分输血 骨髓移植 造血干细胞移植 肝移植 肾移植 心脏移植
    肺移植 器官移植 移植术
    """
)

# medical_words.txt entries with these endings are procedures ...
PROCEDURE_SUFFIXES = ("术", "移植", "透析", "穿刺", "引流", "吻合术", "置换")
# ... except these endings (techniques, herbs) ...
NOT_PROCEDURE_SUFFIXES = ("技术", "白术", "苍术", "莪术", "艺术", "学术", "战术", "魔术", "美术")
# ... and these entries (findings, everyday words).
NOT_PROCEDURES = frozenset(_words("双胎静脉吻合 冷冻置换 催眠术 变性术"))


def derived_procedures(path: Path = MEDICAL_WORDS) -> list[str]:
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts:
            continue
        word = parts[0]
        if len(word) < 2 or word in NOT_PROCEDURES:
            continue
        if word.endswith(PROCEDURE_SUFFIXES) and not word.endswith(NOT_PROCEDURE_SUFFIXES):
            out.add(word)
    return sorted(out)


# --------------------------------------------------------------------------------------------
# output


def _render(title: str, sections: list[tuple[str, list[str]]]) -> str:
    total = len({t for _, terms in sections for t in terms})
    lines = [
        f"# {title}",
        "# One term per line, UTF-8; lines starting with '#' are comments. Read by",
        "# ehrtext.text.concepts.ConceptMatcher. Generated by scripts/build_concept_lexicons.py:",
        "# edit that script, not this file. License: MIT (see corpora/dict/README_concepts.md).",
        f"# {total} terms.",
    ]
    seen: set[str] = set()
    for header, terms in sections:
        fresh = [t for t in terms if t not in seen]
        seen.update(fresh)
        lines.append(f"# --- {header} ({len(fresh)} terms)")
        lines.extend(fresh)
    return "\n".join(lines) + "\n"


def build() -> dict[Path, str]:
    authored = sorted(set(PROCEDURE_TERMS))
    derived = [t for t in derived_procedures() if t not in set(authored)]
    return {
        BODY_PART_OUT: _render(
            "Body parts (category body_part): anatomical terms used in Chinese EMRs.",
            [("authored for ehrtext (MIT)", body_part_terms())],
        ),
        PROCEDURE_OUT: _render(
            "Procedures (category procedure): operations, interventions, named treatments.",
            [
                ("authored for ehrtext (MIT)", authored),
                (
                    "derived from corpora/dict/medical_words.txt (THUOCL / CMeKG, MIT) by suffix",
                    derived,
                ),
            ],
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    args = ap.parse_args(argv)
    outputs = build()
    stale = []
    for path, text in outputs.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.write_text(text, encoding="utf-8", newline="\n")
        n = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        print(f"{path.relative_to(REPO_ROOT)}: {n} terms{' (changed)' if path in stale else ''}")
    if args.check and stale:
        print("out of date: run python scripts/build_concept_lexicons.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
