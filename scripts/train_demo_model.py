"""Train the small model that ``ehrtext demo`` ships and scores the sample notes with.

Data: the MIT-licensed internal-medicine questions of Toyhom/Chinese-medical-dialogue-data
(``../shared/data/toyhom_internal_medicine/sample_IM_5000-6000.utf8.csv``: department, title,
ask, answer). Text = ``title`` + ``ask`` (the patient's question; the doctor's answer is left
out). Labels = the six sub-departments with at least 100 questions (肝病科, 消化科, 神经科,
心血管科, 内分泌科, 呼吸科); the five smaller ones (< 100 rows each) are dropped, and each
class is capped at ``--per-class`` rows (a seeded sample) so that 肝病科 does not swamp the
others. A seeded 15 % of the rows is held out as a test set that training never sees (its
scores go into the model card); ``ehrtext train`` carves its own 10 % validation split from
the rest (epoch choice, temperature).

Model: a small BiGRU (embedding 48, hidden 48, attention pooling; words seen at least twice)
trained with one torch thread, so the result is reproducible bit for bit on one machine.

    python scripts/train_demo_model.py            # writes corpora/models/toyhom_im_departments

The model card (``README.md`` in the folder) gets the data source, license and test figures;
the license text is ``corpora/licenses/Toyhom-Chinese-medical-dialogue-data-MIT.txt``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "corpora" / "models" / "toyhom_im_departments"
LICENSE_OUT = REPO / "corpora" / "licenses" / "Toyhom-Chinese-medical-dialogue-data-MIT.txt"
SOURCE = "Toyhom/Chinese-medical-dialogue-data @26724a4 (Data_数据/IM_内科, sample_IM_5000-6000)"
MIN_ROWS = 100


def load_rows(data_dir: Path) -> list[dict]:
    path = data_dir / "sample_IM_5000-6000.utf8.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        rows = []
        for i, r in enumerate(csv.DictReader(fh)):
            text = f"{(r.get('title') or '').strip()}\n{(r.get('ask') or '').strip()}".strip()
            if text and r.get("department"):
                rows.append({"id": f"toyhom-{i}", "text": text, "label": r["department"].strip()})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        default=str(REPO.parent / "shared" / "data" / "toyhom_internal_medicine"),
        help="folder of the Toyhom internal-medicine files",
    )
    ap.add_argument("--output", default=str(DEFAULT_OUT))
    ap.add_argument("--per-class", type=int, default=700)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from ehrtext.predict import RiskModel
    from ehrtext.train_cli import TrainOptions, train_model

    data_dir = Path(args.data)
    rows = load_rows(data_dir)
    counts = Counter(r["label"] for r in rows)
    keep = sorted(lab for lab, n in counts.items() if n >= MIN_ROWS)
    rng = random.Random(args.seed)
    by_label: dict[str, list[dict]] = {lab: [] for lab in keep}
    for r in rows:
        if r["label"] in by_label:
            by_label[r["label"]].append(r)
    train, test = [], []
    for lab in keep:
        group = by_label[lab][:]
        rng.shuffle(group)
        group = group[: args.per_class]
        n_test = max(1, round(0.15 * len(group)))
        test += group[:n_test]
        train += group[n_test:]
    rng.shuffle(train)
    print(f"{len(rows)} questions; labels {keep}; train {len(train)}, test {len(test)}")

    out = Path(args.output)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        with open(data, "w", encoding="utf-8") as fh:
            for r in train:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        if out.exists():
            shutil.rmtree(out)
        t0 = time.perf_counter()
        train_model(
            TrainOptions(
                data=str(data),
                label_field="label",
                id_field="id",
                model="bigru",
                labels=keep,
                epochs=args.epochs,
                embedding_dim=48,
                hidden_size=48,
                max_len=256,
                min_freq=2,
                val_fraction=0.1,
                n_bootstrap=0,
                progress=False,
                seed=args.seed,
                num_threads=1,
                output=str(out),
            )
        )
        secs = time.perf_counter() - t0

    model = RiskModel.load(out)
    probs = model.predict_proba([r["text"] for r in test])
    pred = [model.labels[i] for i in probs.argmax(1)]
    gold = [r["label"] for r in test]
    from sklearn.metrics import f1_score

    acc = float(np.mean(np.array(pred) == np.array(gold)))
    f1 = float(f1_score(gold, pred, average="macro"))
    print(f"trained in {secs:.0f} s; held-out test ({len(test)} questions): "
          f"accuracy {acc:.3f}, macro-F1 {f1:.3f}")

    shutil.copyfile(data_dir / "LICENSE", LICENSE_OUT)
    card = out / "README.md"
    card.write_text(
        card.read_text(encoding="utf-8")
        + f"""
## Demo model: data, license, test figures

This is the model that `ehrtext demo` scores the invented sample notes with. It was made by
`python scripts/train_demo_model.py` (seed {args.seed}, one torch thread).

- data: {SOURCE}; MIT License, Copyright (c) 2019 Toyhom (text in
  `corpora/licenses/{LICENSE_OUT.name}`). Patient questions (title + question; answers not
  used) from an online consultation site, not clinical notes.
- labels: the internal-medicine sub-department a question was filed under (six with at
  least {MIN_ROWS} questions; at most {args.per_class} per department):
  {", ".join(keep)}.
- training rows: {len(train)}; held-out test rows (never seen in training): {len(test)}.
- held-out test: accuracy {acc:.3f}, macro-F1 {f1:.3f}.

It is a demonstration of the scoring API on ship-OK data, not a triage tool: inpatient notes
are longer and worded differently from patients' questions.
""",
        encoding="utf-8",
    )
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")
    RiskModel.load(out)  # the card edit keeps the folder loadable


if __name__ == "__main__":
    sys.exit(main())
