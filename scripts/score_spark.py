#!/usr/bin/env python
"""Score notes with Apache Spark: Parquet or a JDBC table in, Parquet out.

    # local, 2 cores
    python scripts/score_spark.py --model model/ --input notes.parquet --output scores.parquet \\
        --master "local[2]"
    # a JDBC table (the driver jar on the class path: --jars / spark.jars.packages), read in
    # 8 ranges of the numeric column note_no; the password comes from an environment variable
    PGPASSWORD=... spark-submit --packages org.postgresql:postgresql:42.7.4 \\
        scripts/score_spark.py --model /shared/model --jdbc-url jdbc:postgresql://db/ehr \\
        --table notes --jdbc-user reader --password-env PGPASSWORD --id-field note_id \\
        --partition-column note_no --lower-bound 1 --upper-bound 5000000 --num-partitions 8 \\
        --output hdfs:///scores/2026-01

Output: Parquet with ``id`` (string), ``p_<label>`` per label, ``label`` / ``labels`` and
``error`` (null, or ``"<code>: <reason>"`` for a row that could not be scored; see
:mod:`ehrtext.spark`). The model directory must be readable at the same path on every executor
(shared file system, or ``--archives model.tgz#model`` and ``--model model``).

Exit codes: 0 done, 2 bad input (one-line message), 1 other errors of ours.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ehrtext.errors import EhrtextError, InputError
from ehrtext.textio import DEFAULT_MAX_CHARS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory (same path on executors)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="Parquet file or folder of notes")
    src.add_argument("--jdbc-url", help="JDBC URL of the database holding --table")
    p.add_argument("--table", help="JDBC table (or a parenthesised query with an alias)")
    p.add_argument("--jdbc-user", help="JDBC user")
    p.add_argument("--password-env", help="environment variable holding the JDBC password")
    p.add_argument("--jdbc-driver", help="JDBC driver class, when the URL does not tell")
    p.add_argument("--partition-column", help="numeric/date column to read the table in ranges")
    p.add_argument("--lower-bound", help="with --partition-column")
    p.add_argument("--upper-bound", help="with --partition-column")
    p.add_argument("--num-partitions", type=int, help="JDBC read partitions")
    p.add_argument("--output", required=True, help="Parquet output folder")
    p.add_argument("--mode", default="errorifexists",
                   choices=["errorifexists", "overwrite", "append"], help="Parquet write mode")
    p.add_argument("--text-field", "-f", action="append", default=None,
                   help="text column (repeat for section fields; default: the model's)")
    p.add_argument("--id-field", default="id", help="id column (default: id)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS)
    p.add_argument("--quantize", action="store_true", help="dynamic int8 quantization")
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads per task slot")
    p.add_argument("--repartition", type=int, help="repartition the notes before scoring")
    p.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    p.add_argument("--arrow-batch", type=int, default=2048,
                   help="spark.sql.execution.arrow.maxRecordsPerBatch (notes per Arrow batch)")
    return p


def session(args: argparse.Namespace):
    """The active Spark session, or a new one: ``--master``, else spark-submit's, else
    ``local[*]`` (without the web UI when not under spark-submit)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName("ehrtext-score")
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit: local, no web UI
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers use this Python
        builder = builder.master(args.master or "local[*]").config("spark.ui.enabled", "false")
    elif args.master:
        builder = builder.master(args.master)
    return builder.getOrCreate()


def read_notes(spark, args: argparse.Namespace):
    if args.input:
        return spark.read.parquet(args.input)
    if not args.table:
        raise InputError("--jdbc-url needs --table")
    reader = spark.read.format("jdbc").option("url", args.jdbc_url).option("dbtable", args.table)
    if args.jdbc_user:
        reader = reader.option("user", args.jdbc_user)
    if args.password_env:
        if args.password_env not in os.environ:
            raise InputError(f"--password-env {args.password_env}: the variable is not set")
        reader = reader.option("password", os.environ[args.password_env])
    if args.jdbc_driver:
        reader = reader.option("driver", args.jdbc_driver)
    if args.partition_column:
        if args.lower_bound is None or args.upper_bound is None or not args.num_partitions:
            raise InputError(
                "--partition-column needs --lower-bound, --upper-bound and --num-partitions"
            )
        reader = (
            reader.option("partitionColumn", args.partition_column)
            .option("lowerBound", args.lower_bound)
            .option("upperBound", args.upper_bound)
            .option("numPartitions", args.num_partitions)
        )
    return reader.load()


def run(args: argparse.Namespace) -> dict:
    from ehrtext.spark import score_dataframe

    if not os.path.isdir(args.model):
        raise InputError(f"{args.model}: model directory not found")
    t0 = time.perf_counter()
    spark = session(args)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.arrow_batch))
    notes = read_notes(spark, args)
    if args.repartition:
        notes = notes.repartition(args.repartition)
    scores = score_dataframe(
        notes,
        args.model,
        args.text_field,
        args.id_field,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        max_chars=args.max_chars,
        quantize=args.quantize,
        torch_threads=args.torch_threads,
    )
    scores.write.mode(args.mode).parquet(args.output)
    seconds = time.perf_counter() - t0
    written = spark.read.parquet(args.output)
    rows = written.count()
    errors = written.where(written.error.isNotNull()).count()
    return {"rows": rows, "errors": errors, "seconds": seconds, "output": args.output}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        info = run(args)
    except InputError as exc:
        print(f"score_spark: error: {exc}", file=sys.stderr)
        return 2
    except EhrtextError as exc:
        print(f"score_spark: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"score_spark: {info['rows']} rows ({info['rows'] - info['errors']} scored, "
        f"{info['errors']} errors) in {info['seconds']:.1f} s -> {info['output']}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
