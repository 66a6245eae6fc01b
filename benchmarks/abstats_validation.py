"""Validation of the experiment statistics engine at scale: error rates over many simulated experiments.

The large versions of tests/abtest/experiment/test_stats.py. Each row simulates ``--seeds`` experiments from
:class:`benchmarks.synthetic_users.UserPopulation` (users with Beta click propensities, Poisson impressions, a
pre-period covariate) and reports the observed rate with its 95% Wilson interval next to the nominal one:

- A/A: false-positive rate of the fixed-horizon test (analysed once) and of the sequential test (peeked daily),
  and, for contrast, of the fixed-horizon test peeked daily (what the sequential test protects against);
- planted lift: coverage of the 95% CI (absolute and relative) and observed power against statsmodels' power;
- CUPED: mean variance reduction, bias of the adjusted estimate, coverage;
- SRM: detection rate of a 0.5 split with 5% of B's users dropped, and false alarms on a clean split;
- sequential boundary, before / after calibration for the planned looks (``AnalysisConfig.sequential_looks`` 0 =
  the continuous-monitoring boundary of commit ec6154f, unchanged; ``days`` = calibrated): A/A rate under daily
  peeking and power to stop by the last day on a planted lift, both configurations on the same simulated data.

    python -m benchmarks.abstats_validation --seeds 2000
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import numpy as np
from statsmodels.stats.proportion import proportion_confint

from abtest.experiment.stats import AnalysisConfig, monitor, power_for_effect, ratio_lift, srm_test
from benchmarks.harness import machine_line, markdown_table
from benchmarks.synthetic_users import UserPopulation

POPULATION = UserPopulation(ctr=0.1, concentration=20.0, impressions_mean=10.0)


def _rate(successes: int, trials: int) -> tuple[float, str]:
    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    return successes / trials, f"[{low:.3f}, {high:.3f}]"


def aa_rows(rng: np.random.Generator, seeds: int, *, users_per_day: int, days: int, alpha: float) -> list[list]:
    """A/A false-positive rates: fixed horizon once, sequential peeked daily, fixed horizon peeked daily."""
    config = AnalysisConfig(alpha=alpha, sequential_tuning=2 * users_per_day * days)
    fixed = sequential = naive = 0
    for _ in range(seeds):
        control = treatment = None
        looks = []
        for _day in range(days):
            a, b = POPULATION.statistic(rng, users_per_day), POPULATION.statistic(rng, users_per_day)
            control = a if control is None else control + a
            treatment = b if treatment is None else treatment + b
            looks.append((control, treatment))
        fixed += ratio_lift(control, treatment, config).significant
        sequential += monitor(looks, config)[1] is not None
        naive += any(ratio_lift(c, t, config).significant for c, t in looks)
    label = f"{users_per_day}/arm/day x {days} days"
    return [
        ["A/A fixed horizon FPR", label, alpha, *_rate(fixed, seeds)],
        ["A/A sequential FPR (daily peeks)", label, f"<= {alpha}", *_rate(sequential, seeds)],
        ["A/A fixed horizon peeked daily FPR", label, "(inflated)", *_rate(naive, seeds)],
    ]


def _daily_looks(rng: np.random.Generator, *, users_per_day: int, days: int, lift: float) -> list[tuple]:
    control = treatment = None
    looks = []
    for _day in range(days):
        a = POPULATION.statistic(rng, users_per_day)
        b = POPULATION.statistic(rng, users_per_day, relative_lift=lift)
        control = a if control is None else control + a
        treatment = b if treatment is None else treatment + b
        looks.append((control, treatment))
    return looks


def sequential_rows(
    rng: np.random.Generator, seeds: int, *, users_per_day: int, days: int, lift: float, alpha: float
) -> list[list]:
    """Calibrated vs continuous boundary on the same experiments: A/A rate and power under daily peeking."""
    configs = {
        "before (continuous boundary)": AnalysisConfig(alpha=alpha, sequential_tuning=2 * users_per_day * days),
        "after (calibrated, looks = days)": AnalysisConfig(
            alpha=alpha, sequential_tuning=2 * users_per_day * days, sequential_looks=days
        ),
    }
    false_alarms = dict.fromkeys(configs, 0)
    detections = dict.fromkeys(configs, 0)
    for _ in range(seeds):
        null_looks = _daily_looks(rng, users_per_day=users_per_day, days=days, lift=0.0)
        lift_looks = _daily_looks(rng, users_per_day=users_per_day, days=days, lift=lift)
        for name, config in configs.items():
            false_alarms[name] += monitor(null_looks, config)[1] is not None
            detections[name] += monitor(lift_looks, config)[1] is not None
    label = f"{users_per_day}/arm/day x {days} days"
    rows = []
    for name in configs:
        rows.append(
            [f"sequential A/A rate, {name}", label, f"in [0.02, {alpha}]", *_rate(false_alarms[name], seeds)]
        )
    for name in configs:
        rows.append(
            [f"sequential power, {name}", f"{label}, lift {lift:+.0%}", "higher", *_rate(detections[name], seeds)]
        )
    before, after = (detections[name] / seeds for name in configs)
    rows.append(
        ["sequential power gained (after - before)", f"{label}, lift {lift:+.0%}", "> 0", after - before, ""]
    )
    return rows


def planted_rows(rng: np.random.Generator, seeds: int, *, users: int, lift: float, alpha: float) -> list[list]:
    """Coverage and power with a planted relative lift; CUPED's variance reduction and bias."""
    config = AnalysisConfig(alpha=alpha)
    true_effect = POPULATION.ctr * lift
    pilot = POPULATION.statistic(np.random.default_rng(12345), 200_000)
    sigma = math.sqrt(pilot.linearized_variance)
    expected_power = power_for_effect(
        true_effect, sigma=sigma, users_control=users, users_treatment=users, alpha=alpha
    )
    covered = relative_covered = detected = cuped_covered = cuped_detected = 0
    cuped_effects, reductions = [], []
    for _ in range(seeds):
        control, treatment = POPULATION.statistic(rng, users), POPULATION.statistic(rng, users, relative_lift=lift)
        plain = ratio_lift(control, treatment, config)
        adjusted = ratio_lift(control, treatment, config, cuped=True)
        covered += plain.absolute.ci_low <= true_effect <= plain.absolute.ci_high
        relative_covered += plain.relative.ci_low <= lift <= plain.relative.ci_high
        detected += plain.significant
        cuped_covered += adjusted.absolute.ci_low <= true_effect <= adjusted.absolute.ci_high
        cuped_detected += adjusted.significant
        cuped_effects.append(adjusted.absolute.effect)
        reductions.append(adjusted.variance_reduction)
    label = f"{users}/arm, lift {lift:+.0%}"
    effects = np.asarray(cuped_effects)
    bias = effects.mean() - true_effect
    bias_se = effects.std(ddof=1) / math.sqrt(seeds)
    return [
        ["CI coverage (absolute)", label, 1 - alpha, *_rate(covered, seeds)],
        ["CI coverage (relative)", label, 1 - alpha, *_rate(relative_covered, seeds)],
        ["power (observed vs statsmodels)", label, round(expected_power, 3), *_rate(detected, seeds)],
        ["CUPED CI coverage", label, 1 - alpha, *_rate(cuped_covered, seeds)],
        ["CUPED power", label, "> power", *_rate(cuped_detected, seeds)],
        ["CUPED variance reduction (mean)", label, "> 0", float(np.mean(reductions)), ""],
        ["CUPED bias / true lift", label, "0", bias / true_effect, f"± {1.96 * bias_se / true_effect:.3f}"],
    ]


def srm_rows(rng: np.random.Generator, seeds: int, *, users: int) -> list[list]:
    """SRM detection of a 5% loss of B's users, and false alarms on a clean 0.5 split."""
    config = AnalysisConfig(alpha=0.05)
    flagged_broken = flagged_clean = 0
    for _ in range(seeds):
        in_b = rng.random(users) < 0.5
        a, b = int((~in_b).sum()), int(in_b.sum())
        flagged_clean += srm_test([a, b], config).flagged
        kept = int((rng.random(b) >= 0.05).sum())
        flagged_broken += srm_test([a, kept], config).flagged
    label = f"{users} users"
    return [
        ["SRM false alarms (clean 0.5 split)", label, config.srm_threshold, *_rate(flagged_clean, seeds)],
        ["SRM detection (5% of B dropped)", label, "high", *_rate(flagged_broken, seeds)],
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Print the validation table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="simulated experiments per row")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    rows = [
        *aa_rows(rng, args.seeds, users_per_day=100, days=14, alpha=args.alpha),
        *planted_rows(rng, args.seeds, users=1000, lift=0.1, alpha=args.alpha),
        *planted_rows(rng, args.seeds, users=3000, lift=0.05, alpha=args.alpha),
        *srm_rows(rng, args.seeds, users=10_000),
        *srm_rows(rng, args.seeds, users=40_000),
        *sequential_rows(rng, args.seeds, users_per_day=100, days=14, lift=0.1, alpha=args.alpha),
    ]
    print(machine_line())
    print(f"{args.seeds} simulated experiments per row, alpha {args.alpha}, {time.perf_counter() - start:.0f} s\n")
    print(markdown_table(["check", "design", "nominal", "observed", "95% CI"], rows))


if __name__ == "__main__":
    main()
