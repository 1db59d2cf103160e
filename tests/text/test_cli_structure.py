"""``ehrtext deid`` and ``ehrtext annotate``: files in, files out; the audit file has counts per
PHI type and no PHI; kept fields, field selection and offsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehrtext.cli import app
from ehrtext.text.deid import PHI_TYPES, Deidentifier
from ehrtext.text.pipeline import TextPipeline

runner = CliRunner()

# Invented people, numbers and places (the ID number has a valid GB 11643 check digit).
PHI = {
    "name": "张伟",
    "id_number": "11010519491231002X",
    "phone": "13812345678",
    "mrn": "ZY20230017",
    "date": "2023年3月5日",
    "address": "北京市海淀区中关村大街27号",
}
ROWS = [
    {
        "id": "N1",
        "pid": "P001",
        "dept": "心内科",
        "主诉": "胸痛2天",
        "现病史": f"患者{PHI['name']}，男，68岁，身份证号{PHI['id_number']}，电话{PHI['phone']}，"
        f"于{PHI['date']}入院。住院号：{PHI['mrn']}。否认高血压、糖尿病史。",
    },
    {
        "id": "N2",
        "pid": "P001",
        "dept": "心内科",
        "主诉": "复查",
        "现病史": f"患者{PHI['name']}，住{PHI['address']}，无发热。",
    },
    {"id": "N3", "pid": "P002", "dept": "呼吸科", "主诉": "咳嗽3天", "现病史": "考虑肺炎可能。"},
]
FIELDS = ["主诉", "现病史"]


def invoke(*args: object, env: dict[str, str | None] | None = None):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def notes(tmp_path: Path) -> Path:
    src = tmp_path / "notes.jsonl"
    src.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8"
    )
    return src


def field_args() -> list[str]:
    return [a for f in FIELDS for a in ("-f", f)]


def test_deid_tag_output_audit_counts_and_no_phi(notes: Path, tmp_path: Path) -> None:
    out = tmp_path / "deid.jsonl"
    result = invoke(
        "deid", notes, "-o", out, *field_args(), "--id-field", "id", "--keep-field", "dept",
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["N1", "N2", "N3"]
    assert [list(r) for r in rows] == [["id", "dept", "主诉", "现病史"]] * 3
    assert [r["dept"] for r in rows] == ["心内科", "心内科", "呼吸科"]
    assert "pid" not in out.read_text(encoding="utf-8")  # not kept: not written
    text_out = out.read_text(encoding="utf-8")
    for value in PHI.values():
        assert value not in text_out
    assert "[姓名]" in rows[0]["现病史"] and "否认高血压、糖尿病史" in rows[0]["现病史"]
    assert rows[2]["现病史"] == "考虑肺炎可能。"  # nothing to remove: unchanged

    # the audit file: the counts the Python API gives, per type; nothing of the notes
    audit_path = tmp_path / "deid.audit.json"
    audit = json.loads(audit_path.read_text(encoding="utf-8"))
    expected: dict[str, int] = {}
    with_phi = 0
    deid = Deidentifier()
    for row in ROWS:
        counts: dict[str, int] = {}
        for f in FIELDS:
            for t, n in deid.deidentify(row[f]).counts.items():
                counts[t] = counts.get(t, 0) + n
        with_phi += bool(counts)
        for t, n in counts.items():
            expected[t] = expected.get(t, 0) + n
    assert audit["phi"] == expected
    assert set(PHI) <= set(audit["phi"])  # every inserted type was found and counted
    assert audit["phi_total"] == sum(expected.values())
    assert audit["notes_with_phi"] == with_phi == 2
    assert audit["rows"] == {"read": 3, "written": 3, "errors": 0, "blank": 0}
    assert audit["strategy"] == "tag" and audit["types"] == list(PHI_TYPES)
    assert audit["seconds"] > 0 and audit["cpu_seconds"] > 0
    raw = audit_path.read_text(encoding="utf-8")
    for value in PHI.values():
        assert value not in raw
    for row in ROWS:
        for f in FIELDS:
            assert row[f] not in raw
    assert "PHI replaced" in result.stderr and PHI["name"] not in result.output


def test_deid_surrogate_per_patient_with_spans(notes: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    secret = "a-secret-seed-0"
    result = invoke(
        "deid", notes, "-o", out, *field_args(), "--id-field", "id", "--strategy", "surrogate",
        "--patient-field", "pid", "--with-spans", "--no-progress",
        env={"EHRTEXT_DEID_SECRET": secret},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    for value in PHI.values():
        assert value not in out.read_text(encoding="utf-8")
    # offsets: each replacement maps an input span to an output span of the same field
    names = []
    for row, src in zip(rows, ROWS, strict=True):
        assert set(row["phi"]) == set(FIELDS)
        for f in FIELDS:
            for typ, s, e, os_, oe in row["phi"][f]:
                assert typ in PHI_TYPES
                original, fake = src[f][s:e], row[f][os_:oe]
                assert original != fake
                if typ == "name":
                    names.append((src["pid"], original, fake))
    # the same patient's name gets the same fake name in both notes
    fakes = {fake for pid, original, fake in names if pid == "P001" and original == PHI["name"]}
    assert len(names) == 2 and len(fakes) == 1
    audit = (tmp_path / "s.audit.json").read_text(encoding="utf-8")
    assert secret not in audit and json.loads(audit)["patient_field"] == "pid"


def test_deid_type_filter_and_bad_options(notes: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    result = invoke("deid", notes, "-o", out, *field_args(), "--type", "phone", "--no-progress")
    assert result.exit_code == 0, result.output
    first = read_jsonl(out)[0]["现病史"]
    assert PHI["phone"] not in first and PHI["name"] in first and PHI["mrn"] in first
    assert json.loads((tmp_path / "p.audit.json").read_text(encoding="utf-8"))["phi"] == {
        "phone": 1
    }

    bad = [
        (["--type", "nickname"], "is not a PHI type"),
        (["--strategy", "surrogate"], "needs --secret"),
        (["--keep-field", "现病史"], "--keep-field cannot be"),
        (["--audit", out], "the audit file must differ"),
    ]
    for extra, message in bad:
        result = invoke(
            "deid", notes, "-o", out, *field_args(), *extra, env={"EHRTEXT_DEID_SECRET": None}
        )
        assert result.exit_code == 2, extra
        assert message in result.stderr


def test_annotate_jsonl_sections_concepts_assertions(notes: Path, tmp_path: Path) -> None:
    out = tmp_path / "ann.jsonl"
    result = invoke(
        "annotate", notes, "-o", out, *field_args(), "--id-field", "id", "--keep-field", "dept",
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["N1", "N2", "N3"]
    assert [r["dept"] for r in rows] == ["心内科", "心内科", "呼吸科"]
    pipeline = TextPipeline(tokenize=False)
    for row, src in zip(rows, ROWS, strict=True):
        # the fields are joined into one note; "fields" says where each value lies in it
        assert [f[0] for f in row["fields"]] == FIELDS
        spans = {name: (s, e) for name, s, e in row["fields"]}
        note_len = max(e for _, e in spans.values())
        assert [s["name"] for s in row["sections"]] == ["chief_complaint", "present_illness"]
        for c in row["concepts"]:
            field = next(f for f, (s, e) in spans.items() if s <= c["start"] and c["end"] <= e)
            s0 = spans[field][0]
            assert src[field][c["start"] - s0 : c["end"] - s0] == c["text"]
            assert c["end"] <= note_len
        # the same as the Python API on each field's text
        for f in FIELDS:
            s0, e0 = spans[f]
            want = pipeline.annotate(src[f]).to_dict()["concepts"]
            got = [c for c in row["concepts"] if s0 <= c["start"] < e0]
            assert [(c["text"], c["negated"], c["uncertain"]) for c in got] == [
                (c["text"], c["negated"], c["uncertain"]) for c in want
            ]
    flags = {c["text"]: c for c in rows[0]["concepts"]}
    assert flags["高血压"]["negated"] and flags["糖尿病"]["negated"]
    assert not flags["胸痛"]["negated"] and flags["胸痛"]["section"] == "chief_complaint"
    assert any(c["text"] == "肺炎" and c["uncertain"] for c in rows[2]["concepts"])

    with_tokens = tmp_path / "tok.jsonl"
    assert invoke("annotate", notes, "-o", with_tokens, *field_args(), "--tokens").exit_code == 0
    tokens = read_jsonl(with_tokens)[0]["tokens"]
    assert all(len(t) == 3 for t in tokens) and tokens[0][1] <= tokens[-1][1]

    result = invoke("annotate", notes, "-o", out, *field_args(), "--keep-field", "concepts")
    assert result.exit_code == 2 and "--keep-field cannot be" in result.stderr
