"""Quality bar of the two policies on the real ML-100K: test AUC / logloss of A and B on every split mode.

The bar (issue 3): with ``split=autoint`` policy B's test AUC >= 0.87, and B beats A on test AUC on every split
mode. Both policies are fitted with MLproject's default parameters through ``steps.policies`` (the same functions
the training steps use), on the tables a real ``prepare`` run produces (run here in a throw-away tracking store).

    python -m benchmarks.policy_quality --data_path /path/to/ml-100k.zip     # or set ABTEST_ML100K_ZIP

Prints a markdown table and exits 1 if the bar is missed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import mlflow

from benchmarks.harness import machine_line, markdown_table
from steps import policies
from steps.cli import parameter_defaults
from steps.lineage import load_prepared

SPLITS = ("temporal", "random", "autoint")
AUTOINT_AUC_BAR = 0.87


def evaluate_split(zip_path: Path, split: str) -> list[dict[str, object]]:
    """Prepare ``split`` from the zip, fit A and B with default params, score the test split."""
    from steps import prepare

    prepare_run = prepare.main(["--source", "local", "--data_path", str(zip_path), "--split", split])
    data = load_prepared(prepare_run)
    seed = parameter_defaults("prepare")["seed"]
    rows = []
    for policy in policies.POLICIES:
        params = {**parameter_defaults(f"train_{policy.lower()}"), "seed": seed}
        start = time.perf_counter()
        fitted = policies.fit_policy(policy, data.train, data.val, params=params)
        fit_s = time.perf_counter() - start
        metrics = policies.classification_metrics(data.test["label"].to_numpy(), fitted.predict(data.test))
        rows.append({"split": split, "policy": policy, "fit_s": fit_s, "train_rows": len(data.train), **metrics})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (0 = bar met)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", default=os.environ.get("ABTEST_ML100K_ZIP", ""), help="ml-100k.zip")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    args = parser.parse_args(argv)
    if not args.data_path or not Path(args.data_path).exists():
        parser.error(
            f"--data_path must name the original ml-100k.zip (or set ABTEST_ML100K_ZIP); got {args.data_path!r}"
        )
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        os.environ["MLFLOW_TRACKING_URI"] = uri
        experiment = mlflow.MlflowClient().create_experiment(
            "policy-quality", artifact_location=Path(tmp).as_uri()
        )
        mlflow.set_experiment(experiment_id=experiment)
        rows = [row for split in args.splits for row in evaluate_split(Path(args.data_path), split)]

    by_key = {(r["split"], r["policy"]): r for r in rows}
    table = [
        [
            split,
            by_key[(split, "A")]["auc"],
            by_key[(split, "B")]["auc"],
            by_key[(split, "B")]["auc"] - by_key[(split, "A")]["auc"],
            by_key[(split, "A")]["logloss"],
            by_key[(split, "B")]["logloss"],
            by_key[(split, "A")]["fit_s"],
            by_key[(split, "B")]["fit_s"],
        ]
        for split in args.splits
    ]
    print(machine_line())
    print(
        markdown_table(["split", "A AUC", "B AUC", "B − A", "A logloss", "B logloss", "A fit s", "B fit s"], table)
    )
    failures = [f"B does not beat A on {row[0]}" for row in table if row[3] <= 0]
    if "autoint" in args.splits and by_key[("autoint", "B")]["auc"] < AUTOINT_AUC_BAR:
        failures.append(f"B's autoint test AUC {by_key[('autoint', 'B')]['auc']:.4f} < {AUTOINT_AUC_BAR}")
    print("bar met" if not failures else "bar missed: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
