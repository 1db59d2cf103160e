"""The accuracy benchmarks of issue 5 §8, as task builders over ``../shared/data``.

Each builder returns a :class:`BenchTask`: the labelled rows, the :class:`ehrtext.data.TaskSpec`
that reads them, and the evaluation protocol. Nothing here trains anything; see
``scripts/bench_accuracy.py``.

* ``chip_ctc``: CHIP-CTC (CBLUE) ``train.jsonl``, 22,962 eligibility sentences, 44 classes.
  The official test labels are withheld (``unlabeled.jsonl`` is never used). Protocol
  ``holdout``: per seed, a stratified split of the training file into train 80 % / dev 10 %
  (early stopping of the deep model) / eval 10 % (the reported figure).
* ``ccl_main``: CCL2025 cardiology records (156), the main diagnosis (``主要诊断编码``, 5 classes)
  from the admission-time sections only (主诉, 现病史, 既往史, 个人史, 婚姻史, 家族史, 入院情况) —
  never 入院诊断, 诊疗经过, 出院情况, 出院医嘱. Protocol ``cv``: stratified 5-fold CV.
* ``ccl_comorbidity``: the same records and sections, multi-label over the ICD-10
  three-character categories of ``其他诊断编码`` with at least 15 positive records. 5-fold CV,
  stratified by each record's rarest category.
* ``dxy``: DXY pediatric self-reports (423), ``disease`` (5 classes). 5-fold CV.

The CCL2025 tasks can add the 750 entity-extracted records (text reduced to entity lists) as
extra training rows: those whose ``病案标识`` is one of the 156 raw records are always left out,
so no evaluation record (nor its duplicate) is ever trained on.

Example:
    >>> from tasks import build_task
    >>> task = build_task("dxy")                                          # doctest: +SKIP
    >>> task.spec.labels, len(task.rows)                                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ehrtext.data import TaskSpec  # noqa: E402

# Admission-time sections of the CCL2025 records: what a model may read at admission.
CCL_ADMISSION_SECTIONS = ["主诉", "现病史", "既往史", "个人史", "婚姻史", "家族史", "入院情况"]
# Written at or after admission by the treating team: never model input here.
CCL_FORBIDDEN_SECTIONS = ["入院诊断", "诊疗经过", "出院情况", "出院医嘱", "主要诊断编码", "其他诊断编码"]
CCL_MIN_POSITIVES = 15
ENTITY_TYPES = ["疾病", "症状", "检查项目", "治疗方法", "身体部位", "药物", "手术"]


@dataclass
class BenchTask:
    """One benchmark: rows, how to read them, how to evaluate.

    Attributes:
        name: short name (``chip_ctc``, ``ccl_main``, ``ccl_comorbidity``, ``dxy``).
        rows: the labelled rows (dicts with the spec's fields).
        spec: the task spec, labels resolved.
        protocol: ``"holdout"`` (per seed: train / dev / eval split of ``rows``) or ``"cv"``.
        folds: k for ``cv``.
        primary: the headline metric (``macro_f1``, ``accuracy``, ``macro_auroc``).
        extra_train: rows that may be added to every training part (never evaluated on).
        notes: what the reader of the figures must know.
    """

    name: str
    rows: list[dict[str, Any]]
    spec: TaskSpec
    protocol: str
    primary: str
    folds: int = 5
    extra_train: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def shared_data() -> Path:
    path = Path(os.environ.get("EHRTEXT_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        raise SystemExit(f"the shared datasets are not at {path}; set EHRTEXT_SHARED_DATA")
    return path


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def chip_ctc(root: Path) -> BenchTask:
    rows = [{"id": r["id"], "text": r["text"], "label": r["label"]}
            for r in _jsonl(root / "chip_ctc" / "train.jsonl")]
    spec = TaskSpec(["text"], "multiclass", label_field="label", id_field="id").resolve(rows)
    return BenchTask("chip_ctc", rows, spec, protocol="holdout", primary="macro_f1",
                     notes=["official test labels withheld; eval = 10 % stratified split of "
                            "train.jsonl per seed; unlabeled.jsonl never used"])


def icd3(code: str) -> str:
    """The ICD-10 three-character category of a code (``I10.x00x032`` → ``I10``)."""
    return code.strip()[:3].upper()


def _ccl_records(root: Path) -> list[dict[str, Any]]:
    return list(_jsonl(root / "emr_ccl2025_icd" / "records.jsonl"))


def _ccl_row(rec: dict[str, Any]) -> dict[str, Any]:
    row = {name: rec.get(name) for name in CCL_ADMISSION_SECTIONS}
    row["id"] = rec["病案标识"]
    return row


def _entity_text(blocks: Any) -> dict[str, Any]:
    """An entity-extracted record as pseudo-sections (one per entity type)."""
    block = blocks[0] if isinstance(blocks, list) and blocks else (blocks or {})
    return {f"实体_{t}": block.get(t) or None for t in ENTITY_TYPES}


def _entity_rows(root: Path, exclude_ids: set[str], text_key: str) -> list[dict[str, Any]]:
    out = []
    for rec in _jsonl(root / "emr_ccl2025_icd" / "entity_extracted.jsonl"):
        if rec["病案标识"] in exclude_ids:
            continue
        row = _entity_text(rec.get(text_key))
        row["id"] = "entity:" + rec["病案标识"]
        row["主要诊断编码"] = rec.get("主要诊断编码")
        row["其他诊断编码"] = rec.get("其他诊断编码")
        out.append(row)
    return out


def _section_fields() -> list[str]:
    # admission sections for the raw records; entity pseudo-sections for the extra rows
    # (a row only has one family; missing sections are skipped by TaskSpec.join_text)
    return CCL_ADMISSION_SECTIONS + [f"实体_{t}" for t in ENTITY_TYPES]


def ccl_main(root: Path, with_entities: bool = False) -> BenchTask:
    records = _ccl_records(root)
    rows = []
    for rec in records:
        row = _ccl_row(rec)
        row["label"] = rec["主要诊断编码"]
        rows.append(row)
    extra = []
    if with_entities:
        ids = {rec["病案标识"] for rec in records}
        for row in _entity_rows(root, ids, "抽取后主要诊断病例文本"):
            row["label"] = row.pop("主要诊断编码")
            extra.append(row)
    fields = _section_fields() if with_entities else list(CCL_ADMISSION_SECTIONS)
    spec = TaskSpec(fields, "multiclass", label_field="label", id_field="id").resolve(rows)
    notes = ["admission-time sections only: " + ", ".join(CCL_ADMISSION_SECTIONS)]
    if with_entities:
        notes.append(f"+{len(extra)} entity-extracted records as extra training rows "
                     "(the 156 raw records' ids excluded)")
    return BenchTask("ccl_main" + ("+entities" if with_entities else ""), rows, spec,
                     protocol="cv", primary="accuracy", extra_train=extra, notes=notes)


def ccl_comorbidity_labels(records: list[dict[str, Any]],
                           min_positives: int = CCL_MIN_POSITIVES) -> list[str]:
    """ICD-10 three-character categories of ``其他诊断编码`` present in ≥ min_positives records."""
    counts: Counter[str] = Counter()
    for rec in records:
        codes = [c for c in (rec.get("其他诊断编码") or "").split(";") if c.strip()]
        counts.update({icd3(c) for c in codes})
    return sorted(c for c, n in counts.items() if n >= min_positives)


def _categories(codes: str | None) -> list[str]:
    return sorted({icd3(c) for c in (codes or "").split(";") if c.strip()})


def ccl_comorbidity(root: Path, with_entities: bool = False) -> BenchTask:
    records = _ccl_records(root)
    labels = ccl_comorbidity_labels(records)
    rows = []
    for rec in records:
        row = _ccl_row(rec)
        row["labels"] = _categories(rec.get("其他诊断编码"))
        rows.append(row)
    extra = []
    if with_entities:
        ids = {rec["病案标识"] for rec in records}
        for row in _entity_rows(root, ids, "抽取后其他诊断病例文本"):
            row["labels"] = _categories(row.pop("其他诊断编码"))
            row.pop("主要诊断编码", None)
            extra.append(row)
    fields = _section_fields() if with_entities else list(CCL_ADMISSION_SECTIONS)
    spec = TaskSpec(fields, "multilabel", label_field="labels", labels=labels, id_field="id",
                    ignore_unknown_labels=True)
    notes = [f"{len(labels)} ICD-10 categories with >= {CCL_MIN_POSITIVES} positive records: "
             + ", ".join(labels),
             "admission-time sections only"]
    if with_entities:
        notes.append(f"+{len(extra)} entity-extracted records as extra training rows")
    return BenchTask("ccl_comorbidity" + ("+entities" if with_entities else ""), rows, spec,
                     protocol="cv", primary="macro_auroc", extra_train=extra, notes=notes)


def dxy(root: Path) -> BenchTask:
    rows = [{"id": r["consult_id"], "text": r["self_report"], "label": r["disease"]}
            for r in _jsonl(root / "dxy_selfreport" / "train.jsonl")]
    spec = TaskSpec(["text"], "multiclass", label_field="label", id_field="id").resolve(rows)
    return BenchTask("dxy", rows, spec, protocol="cv", primary="accuracy",
                     notes=["self-reports only (no dialogue, no symptom annotations)"])


BUILDERS = {
    "chip_ctc": chip_ctc,
    "ccl_main": ccl_main,
    "ccl_main+entities": lambda root: ccl_main(root, with_entities=True),
    "ccl_comorbidity": ccl_comorbidity,
    "ccl_comorbidity+entities": lambda root: ccl_comorbidity(root, with_entities=True),
    "dxy": dxy,
}


def build_task(name: str, root: Path | None = None) -> BenchTask:
    """The benchmark task called ``name`` (one of :data:`BUILDERS`)."""
    if name not in BUILDERS:
        raise SystemExit(f"unknown task {name!r}; choose from {', '.join(BUILDERS)}")
    return BUILDERS[name](root or shared_data())
