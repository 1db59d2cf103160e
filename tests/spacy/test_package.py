"""`python -m spacy package` builds an installable pipeline from a saved ehrtext pipeline
(offline: no build isolation, no index), and the installed package loads by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import ehrtext


@pytest.mark.slow
def test_spacy_package_builds_an_installable_pipeline(tmp_path):
    nlp = ehrtext.load_pipeline()
    nlp.tokenizer.add_word("左心耳封堵")
    nlp.get_pipe("ehr_context").add_rule(
        {"cue": "未提示", "category": "NEGATED_EXISTENCE", "direction": "forward"}
    )
    nlp.to_disk(tmp_path / "pipeline")
    out = tmp_path / "packages"
    out.mkdir()
    env = {**os.environ, "PIP_NO_INDEX": "1", "PYTHONIOENCODING": "utf-8"}
    run = subprocess.run(
        [sys.executable, "-m", "spacy", "package", str(tmp_path / "pipeline"), str(out),
         "--name", "ehrtext_test", "--version", "0.0.1", "--build", "none"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    package_dir = out / "zh_ehrtext_test-0.0.1"
    meta = json.loads((package_dir / "meta.json").read_text(encoding="utf-8"))
    assert any(r.startswith("ehrtext") for r in meta["requirements"])
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
         "--no-index", "--target", str(site), str(package_dir)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    script = (
        "import json, spacy\n"
        "nlp = spacy.load('zh_ehrtext_test')\n"
        "doc = nlp('行左心耳封堵术，超声未提示血栓形成。')\n"
        "print(json.dumps([[t.text for t in doc], [c['negated'] for c in doc._.ehr_concepts]],"
        " ensure_ascii=False))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**env, "PYTHONPATH": str(site)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    tokens, negated = json.loads(run.stdout)
    assert "左心耳封堵" in tokens  # the user word travelled inside the package
    assert negated[-1] is True  # and so did the user rule (未提示 … 血栓形成)
