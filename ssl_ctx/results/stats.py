"""Statistics over seeds: mean, std and n per cell, and each method's difference from the baseline with
Welch's t-test and its 95 % confidence interval. Pure functions of numbers and frames; no formatting here.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

CONFIDENCE = 0.95  # p < 1 - CONFIDENCE is "significant"; the same level gives the interval, so both agree
NO_TEST = "n < 2, no test"

SUMMARY_COLUMNS = ["probe", "task", "kind", "protocol", "metric", "paper", "layer", "column", "method", "n", "mean",
                   "std", "values", "baseline", "delta", "ci_low", "ci_high", "p_value", "significant"]


@dataclass(frozen=True)
class Comparison:
    """A method's difference from the baseline, in the units of the values.

    ``significant`` is None when either side has fewer than two seeds (no test: ``ci_*``, ``p_value`` and
    ``df`` are NaN, ``delta`` is still the difference of the means).
    """

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float
    significant: bool | None


def sample_std(values: Sequence[float]) -> float:
    """Standard deviation over seeds with ddof=1; NaN for fewer than two values (it is undefined)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch–Satterthwaite degrees of freedom of the difference of two means with sample variances
    ``var_a``, ``var_b`` (ddof=1) over ``n_a``, ``n_b`` >= 2 values."""
    a, b = var_a / n_a, var_b / n_b
    return (a + b) ** 2 / (a ** 2 / (n_a - 1) + b ** 2 / (n_b - 1))


def welch_compare(values: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE) -> Comparison:
    """Δ = mean(values) − mean(baseline), Welch's two-sided t-test and the ``confidence`` interval of Δ.

    Significant means p < 1 − confidence, i.e. the interval excludes 0. With a zero standard error (every seed
    gave the same number on both sides) the interval is [Δ, Δ] and Δ ≠ 0 counts as significant.
    """
    values, baseline = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    delta = float(values.mean() - baseline.mean()) if len(values) and len(baseline) else math.nan
    if len(values) < 2 or len(baseline) < 2:
        return Comparison(delta, math.nan, math.nan, math.nan, math.nan, None)
    var_a, var_b = values.var(ddof=1), baseline.var(ddof=1)
    standard_error = math.sqrt(var_a / len(values) + var_b / len(baseline))
    if standard_error == 0:
        return Comparison(delta, delta, delta, 0.0 if delta != 0 else 1.0, math.inf, delta != 0)
    df = welch_df(var_a, len(values), var_b, len(baseline))
    # The p-value from the same standard error and df as the interval (what scipy's ttest_ind(equal_var=False)
    # computes again from the values), so p < 1 - confidence exactly when the interval excludes 0.
    p_value = float(2 * scipy_stats.t.sf(abs(delta) / standard_error, df))
    half_width = float(scipy_stats.t.ppf(0.5 + confidence / 2, df)) * standard_error
    return Comparison(delta, delta - half_width, delta + half_width, p_value, df, p_value < 1 - confidence)


def method_order(methods: Iterable[str], baseline: str | None,
                 baselines: Mapping[str, str] | None = None) -> list[str]:
    """The baseline first (when present), then the other methods sorted by name, each method of another baseline
    (``baselines``: method -> its baseline) right after that baseline, which comes first among them."""
    methods, baselines = set(methods), dict(baselines or {})
    own = {baseline: sorted(m for m in methods if m not in baselines and m != baseline and m not in baselines.values())}
    for other in sorted(set(baselines.values())):
        own[other] = sorted(m for m, b in baselines.items() if b == other and m in methods)
    order = []
    for first, followers in own.items():
        order += ([first] if first in methods else []) + followers
    return order + sorted(methods - set(order))


def baseline_of(method: str, baseline: str | None, baselines: Mapping[str, str] | None = None) -> str | None:
    """The method ``method`` is compared with: its own in ``baselines``, else ``baseline``; None for a baseline."""
    baselines = dict(baselines or {})
    if method == baseline or method in baselines.values():
        return None
    return baselines.get(method, baseline)


def summarise(frame: pd.DataFrame, baseline: str | None = "random_init", confidence: float = CONFIDENCE,
              comparisons: Sequence[tuple[str, str]] = (), baselines: Mapping[str, str] | None = None,
              ) -> pd.DataFrame:
    """Long probe frame (``collect.probe_frame``) -> one row per (probe, column, method) with the columns of
    ``SUMMARY_COLUMNS``, unscaled. Probes and columns keep their order of appearance, methods ``method_order``.

    ``values`` is the tuple of per-seed values. ``baseline``/``delta``/``ci_*``/``p_value``/``significant`` are
    filled for methods other than the baseline on a (probe, column) the baseline also has; otherwise empty
    (``""``, NaN, None). Each further ``(method, other)`` pair of ``comparisons`` (the context encoder against
    the autoencoder, say) adds a row right after the method's own, the same numbers with the difference from
    ``other`` (:func:`primary_rows` leaves those out). ``baselines`` gives some methods their own baseline
    (:func:`baseline_of`): a method on another architecture against random weights of that architecture.
    """
    rows = []
    for probe in pd.unique(frame["probe"]):
        part = frame[frame["probe"] == probe]
        described = {
            "task": _joined(part["task"]), "kind": _joined(part["kind"]),
            "metric": _joined(part["metric"]), "paper": _joined(part["paper"]) if "paper" in part else "",
        }
        # Each method's own protocol (encoders of two architectures differ in, say, BatchNorm handling).
        protocols = {m: _joined(rows["protocol"]) for m, rows in part.groupby("method", sort=False)}
        for column in pd.unique(part["column"]):
            cell = part[part["column"] == column]
            by_method = {m: cell.loc[cell["method"] == m, "value"].tolist() for m in pd.unique(cell["method"])}
            for method in method_order(by_method, baseline, baselines):
                values = by_method[method]
                row = {"probe": probe, **described, "protocol": protocols[method], "layer": cell["layer"].iloc[0],
                       "column": column, "method": method, "n": len(values), "mean": float(np.mean(values)),
                       "std": sample_std(values), "values": tuple(values), "baseline": "", "delta": math.nan,
                       "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "significant": None}
                own = baseline_of(method, baseline, baselines)
                others = [own] if own in by_method else []
                others += [other for first, other in comparisons
                           if first == method and other in by_method and other not in (method, *others)]
                if not others:
                    rows.append(row)
                for other in others:
                    comparison = welch_compare(values, by_method[other], confidence)
                    rows.append({**row, "baseline": other, "delta": comparison.delta, "ci_low": comparison.ci_low,
                                 "ci_high": comparison.ci_high, "p_value": comparison.p_value,
                                 "significant": comparison.significant})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def method_columns(part: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Each method of one probe's rows (in order of appearance) with the columns (layers) it has, in order: the
    same for every method unless their encoders' layers differ (AlexNet's conv1-conv5, a ViT's blocks)."""
    return {method: tuple(pd.unique(rows["column"])) for method, rows in part.groupby("method", sort=False)}


def primary_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (probe, column, method): ``summarise``'s first, without the further comparisons' copies."""
    return summary.drop_duplicates(subset=["probe", "column", "method"], keep="first")


def _joined(column: pd.Series) -> str:
    """The distinct non-empty values of a descriptive column: one normally, several if records disagree."""
    return " / ".join(str(v) for v in pd.unique(column) if v)


PRETEXT_SUMMARY_COLUMNS = ["method", "n", "steps_min", "steps_max", "metric", "pixels", "model_mean", "model_std",
                           "fill_mean", "fill_std", "ratio", "reference_label", "on_training_images", "held_out"]


def mean_fill_referenced(summary: pd.DataFrame) -> bool:
    """Whether every row of ``summarise_pretext``'s summary is an L2 beside the mean fill of the same pixels (the
    built-in reconstructions), so that the values share one scale and one reference."""
    return bool(summary["fill_mean"].notna().all() and (summary["reference_label"] == "mean fill").all())


def summarise_pretext(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Pretext frame (``collect.pretext_frame``) -> (one row per method and held-out metric its records show,
    methods sorted, metrics in their records' order; the methods left out because their records show none, e.g.
    random_init). ``pixels`` is what the metric measures (its declared label), ``model_*`` its value over seeds,
    ``fill_*`` the declared reference's (the mean fill of the same pixels; NaN without one) and ``ratio`` =
    model mean / mean-fill mean (below 1: better than filling the pixels with the dataset mean; NaN without a
    reference). ``on_training_images``: some seed of the method was evaluated on images it trained on (its value
    is no held-out score); ``held_out``: which images its records say were held out ("" where none say)."""
    rows, without = [], []
    for method in sorted(pd.unique(frame["method"])):
        part = frame[frame["method"] == method].dropna(subset=["value"])
        if part.empty:
            without.append(method)
            continue
        for metric in pd.unique(part["metric"]):
            rows.append({"method": method, **_pretext_metric_summary(part[part["metric"] == metric])})
    return pd.DataFrame(rows, columns=PRETEXT_SUMMARY_COLUMNS), without


def _pretext_metric_summary(part: pd.DataFrame) -> dict[str, object]:
    """The summary of one method's records of one held-out metric (``summarise_pretext``'s columns)."""
    model, fill = part["value"].tolist(), part["mean_fill"].dropna().tolist()
    model_mean = float(np.mean(model))
    fill_mean = float(np.mean(fill)) if fill else math.nan
    return {"n": len(part), "steps_min": part["train_steps"].min(), "steps_max": part["train_steps"].max(),
            "metric": part["metric"].iloc[0], "pixels": _joined(part["pixels"]),
            "model_mean": model_mean, "model_std": sample_std(model), "fill_mean": fill_mean,
            "fill_std": sample_std(fill), "ratio": model_mean / fill_mean if fill_mean else math.nan,
            "reference_label": _joined(part["reference_label"]),
            "on_training_images": bool(part["on_training_images"].astype(bool).any())
            if "on_training_images" in part else False,
            "held_out": _joined(part["held_out"]) if "held_out" in part else ""}
