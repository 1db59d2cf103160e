"""Fixtures of the scale tests: a small real BiGRU model and a local[2] Spark session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "corpora" / "samples" / "notes.jsonl"


@pytest.fixture(scope="session")
def scale_model(tmp_path_factory) -> Path:
    """A real (small) BiGRU model directory trained on the shipped sample notes."""
    import torch

    from ehrtext.train_cli import TrainOptions, train_model

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("scale-model") / "bigru"
    train_model(
        TrainOptions(
            data=str(SAMPLES), label_field="label", id_field="id", model="bigru", epochs=2,
            embedding_dim=16, hidden_size=16, max_len=128, val_fraction=0.2, n_bootstrap=0,
            progress=False, seed=0, output=str(out),
        )
    )
    return out


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A small local[2] session: no UI, 2 shuffle partitions, 1 GiB driver."""
    pytest.importorskip("pyspark", reason="needs the spark extra: pip install 'ehrtext[spark]'")
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("ehrtext-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
