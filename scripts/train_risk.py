"""Train a disease-risk model: the same engine and options as ``ehrtext train``.

    .venv/bin/python scripts/train_risk.py --data notes.jsonl --label-field label \\
        --model bigru --epochs 8 --output model/
    .venv/bin/python scripts/train_risk.py --config train.toml --set hidden_size=256

See the README, "Disease-risk models", for every option (``ehrtext train --help``).
"""

from __future__ import annotations

import sys

from ehrtext.cli import app


def main(argv: list[str] | None = None) -> None:
    app(["train", *(sys.argv[1:] if argv is None else argv)], prog_name="train_risk.py")


if __name__ == "__main__":
    main()
