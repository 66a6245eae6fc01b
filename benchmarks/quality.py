"""Model-quality benchmark: policy A vs policy B on the real MovieLens 100K, in every split mode.

    python -m benchmarks.quality --zip /path/to/ml-100k.zip      # the original GroupLens zip (or folder)
    python -m benchmarks.quality                                   # ML-100K via the pypi source (recbole wheel)
    python -m benchmarks.quality --zip ... --seeds 42,1,2,3,4,5      # and how robust the margins are to the seed

For each split mode it runs what the pipeline runs, in process and without MLflow: the data engineer's split,
``abtest.features.build.build_features``, and the trainers' own fit functions
(``abtest.policies.models.fit_policy``) with the train_a / train_b defaults from MLproject (override with ``--set
num_leaves=63``). It prints a markdown table of test AUC / logloss and the wall time of each stage, and checks the
quality bar of issue 3: with split=autoint, B's test AUC >= 0.87, and B beats A on test AUC in every split mode.
Exit code 1 when the bar is missed.

The bar is judged at the first seed (default: MLproject's, i.e. the product's defaults). The seed moves the
random/autoint split, the out-of-fold folds, the factorisation's start and both fits, so a margin of a few
thousandths can flip with it; ``--seeds`` repeats everything per seed and adds a table of B - A per split mode
(wins, mean, min) so a reader can tell a margin from a draw.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from abtest.data.movielens import MovieLensTables
from abtest.data.sources import acquire
from abtest.data.split import SPLIT_MODES, split_interactions
from abtest.features.build import build_features
from abtest.policies.models import classification_metrics, fit_policy, labels_of
from benchmarks.harness import machine_line, markdown_table
from steps.cli import configure_logging, parameter_defaults

log = logging.getLogger("benchmarks.quality")

AUTOINT_B_AUC_BAR = 0.87


@dataclass(frozen=True)
class QualityRow:
    """Test metrics and wall times of A and B on one split mode."""

    split: str
    seed: int
    train_rows: int
    test_rows: int
    a_auc: float
    b_auc: float
    a_logloss: float
    b_logloss: float
    features_s: float
    a_fit_s: float
    b_fit_s: float

    def as_row(self) -> list[object]:
        return [
            self.split,
            self.seed,
            self.train_rows,
            self.test_rows,
            # four decimals: the A/B margins are in the third
            f"{self.a_auc:.4f}",
            f"{self.b_auc:.4f}",
            f"{self.a_logloss:.4f}",
            f"{self.b_logloss:.4f}",
            self.features_s,
            self.a_fit_s,
            self.b_fit_s,
        ]


HEADER = (
    "split",
    "seed",
    "train rows",
    "test rows",
    "A AUC",
    "B AUC",
    "A logloss",
    "B logloss",
    "features s",
    "A fit s",
    "B fit s",
)


def policy_params(overrides: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """prepare, train_a and train_b parameters: MLproject's defaults, the trainers' "" seed = prepare's seed."""
    prepare = parameter_defaults("prepare")
    a, b = parameter_defaults("train_a"), parameter_defaults("train_b")
    unknown = sorted(set(overrides) - set(prepare) - set(a) - set(b))
    if unknown:
        raise ValueError(f"--set names unknown parameters {unknown}; known: {sorted({*prepare, *a, *b})}")
    for params in (prepare, a, b):
        params.update({k: v for k, v in overrides.items() if k in params})
    for params in (a, b):
        if params.get("seed", "") == "":
            params["seed"] = prepare["seed"]
    return prepare, a, b


def measure_split(
    tables: MovieLensTables, mode: str, *, prepare: Mapping[str, str], a: Mapping[str, Any], b: Mapping[str, Any]
) -> QualityRow:
    """Split, build features, fit A and B, score the test split."""
    splits = split_interactions(
        tables.interactions,
        mode=mode,
        positive_threshold=int(prepare["positive_threshold"]),
        val_frac=float(prepare["val_frac"]),
        test_frac=float(prepare["test_frac"]),
        seed=int(prepare["seed"]),
    )
    start = time.perf_counter()
    frames = build_features(splits, tables.users, tables.items, seed=int(prepare["seed"])).splits
    features_s = time.perf_counter() - start
    test_labels = labels_of(frames["test"])
    metrics, seconds = {}, {}
    for policy, params in (("A", a), ("B", b)):
        start = time.perf_counter()
        fitted = fit_policy(policy, frames["train"], frames["val"], params=params)
        seconds[policy] = time.perf_counter() - start
        metrics[policy] = classification_metrics(test_labels, fitted.predict(frames["test"]))
        log.info("%s: policy %s test AUC %.4f (fit %.1f s)", mode, policy, metrics[policy]["auc"], seconds[policy])
    return QualityRow(
        split=mode,
        seed=int(prepare["seed"]),
        train_rows=len(frames["train"]),
        test_rows=len(frames["test"]),
        a_auc=metrics["A"]["auc"],
        b_auc=metrics["B"]["auc"],
        a_logloss=metrics["A"]["logloss"],
        b_logloss=metrics["B"]["logloss"],
        features_s=features_s,
        a_fit_s=seconds["A"],
        b_fit_s=seconds["B"],
    )


def with_seed(
    prepare: Mapping[str, str], a: Mapping[str, str], b: Mapping[str, str], seed: int
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The three parameter sets with ``seed`` everywhere (split, folds, factorisation, both fits)."""
    return tuple({**params, "seed": str(seed)} for params in (prepare, a, b))  # type: ignore[return-value]


SEED_HEADER = ("split", "seeds", "B wins", "mean B − A", "min B − A", "max B − A")


def seed_summary(rows: Sequence[QualityRow]) -> list[list[object]]:
    """Per split mode: over the seeds measured, how often B beat A on test AUC and by how much."""
    summary = []
    for mode in dict.fromkeys(r.split for r in rows):
        margins = [r.b_auc - r.a_auc for r in rows if r.split == mode]
        summary.append(
            [
                mode,
                len(margins),
                f"{sum(m > 0 for m in margins)}/{len(margins)}",
                f"{sum(margins) / len(margins):+.4f}",
                f"{min(margins):+.4f}",
                f"{max(margins):+.4f}",
            ]
        )
    return summary


def bar_failures(rows: Sequence[QualityRow]) -> list[str]:
    """What of issue 3's quality bar the rows miss (empty = met); pass the rows of one seed."""
    failures = [
        f"{r.split}: B AUC {r.b_auc:.4f} does not beat A AUC {r.a_auc:.4f}" for r in rows if r.b_auc <= r.a_auc
    ]
    failures += [
        f"autoint: B AUC {r.b_auc:.4f} < {AUTOINT_B_AUC_BAR}"
        for r in rows
        if r.split == "autoint" and r.b_auc < AUTOINT_B_AUC_BAR
    ]
    return failures


def _parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes NAME=VALUE, got {pair!r}")
        overrides[key] = value
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code (0 = the quality bar is met)."""
    parser = argparse.ArgumentParser(prog="benchmarks.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", default="", help="ML-100K zip or extracted folder; default: the pypi source")
    parser.add_argument("--splits", default=",".join(SPLIT_MODES), help="comma-separated split modes")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    parser.add_argument(
        "--seeds", default="", help="comma-separated seeds; the bar is judged at the first (default: MLproject's)"
    )
    args = parser.parse_args(argv)
    configure_logging()
    modes = [m for m in args.splits.split(",") if m]
    bad = sorted(set(modes) - set(SPLIT_MODES))
    if bad:
        parser.error(f"--splits must be among {list(SPLIT_MODES)}, got {bad}")
    prepare, a, b = policy_params(_parse_overrides(args.set))
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or [int(prepare["seed"])]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    if len(set(seeds)) != len(seeds):
        parser.error(f"--seeds lists a seed twice: {args.seeds!r}")

    start = time.perf_counter()
    acquired = acquire("ml-100k", source="local" if args.zip else "pypi", data_path=args.zip)
    log.info("loaded ML-100K from %s in %.1f s", acquired.location, time.perf_counter() - start)
    rows = []
    for seed in seeds:
        seeded_prepare, seeded_a, seeded_b = with_seed(prepare, a, b, seed)
        rows += [
            measure_split(acquired.tables, mode, prepare=seeded_prepare, a=seeded_a, b=seeded_b) for mode in modes
        ]

    print(machine_line())
    print(f"ML-100K from {acquired.source}; A = train_a defaults {a}; B = train_b defaults {b}")
    print(markdown_table(HEADER, [r.as_row() for r in rows]))
    if len(seeds) > 1:
        print(f"\nB − A test AUC over seeds {seeds}:")
        print(markdown_table(SEED_HEADER, seed_summary(rows)))
    failures = bar_failures([r for r in rows if r.seed == seeds[0]])
    if failures:
        print(f"quality bar MISSED at seed {seeds[0]}: " + "; ".join(failures))
        return 1
    print(
        f"quality bar met at seed {seeds[0]}: B beats A on every split measured; autoint B AUC >= "
        f"{AUTOINT_B_AUC_BAR}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
