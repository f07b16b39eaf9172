"""Multi-label classification probe (PASCAL VOC 2007's classification benchmark): mean AP over classes.

Each image has a class set (``label_set``: 1 present, 0 present only as difficult objects, -1 absent; see
:mod:`ssl_ctx.data.voc`); each class is scored on its own and the AP of every class is averaged.

- ``probe.mode=linear`` with ``probe.solver=svm`` (the default for a frozen encoder): the VOC07 linear-SVM
  benchmark of Goyal et al. (2019) as VISSL ships it. Every chosen layer is average-pooled to about
  ``probe.pooled_features`` values (the classification probe's features, cached and shared with it), then one
  linear SVM per class, its cost chosen among ``probe.svm_costs`` by ``probe.svm_folds``-fold cross-validation on
  the training split (:mod:`~ssl_ctx.probes.svm`). Metrics ``map@<layer>``.
- ``probe.solver=sgd``: one layer with the classification probe's pooled linear head, trained with a binary
  cross-entropy per class (a class only present as difficult objects is left out of the image's loss, as the
  VOC rule leaves it out of the score); ``probe.mode=finetune`` trains every layer with it (the paper's
  protocol, after Krähenbühl et al.; one centre view at test time where they average 10 crops). Metric ``map``.

VOC 2007: ``trainval`` -> ``test`` (``data.dataset=voc:<VOCdevkit/VOC2007>``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ssl_ctx.engine.optim import optimize
from ssl_ctx.errors import UserError, warn
from ssl_ctx.probes.classification import (
    ClassificationProbe,
    per_layer_outcome,
    pooled_frozen_features,
    train_pooled_head,
)
from ssl_ctx.probes.common import ProbeContext
from ssl_ctx.probes.metrics import multilabel_mean_ap
from ssl_ctx.probes.svm import fit_voc_svms, training_sides
from ssl_ctx.registry import PROBES

MULTILABEL_DATASETS = "voc:<VOCdevkit/VOC2007>"  # named when a dataset without class sets is given


def chance_map(targets: torch.Tensor | np.ndarray) -> float:
    """Chance level of the mean AP: the mean share of (non-difficult) positives over classes, the AP that scores
    carrying no information reach on average."""
    targets = np.asarray(targets)
    scored = targets != 0
    positives = ((targets == 1) & scored).sum(0) / np.maximum(scored.sum(0), 1)
    has_positives = (targets == 1).any(0)
    return float(positives[has_positives].mean()) if has_positives.any() else 0.0


class MultiLabelProbe(ClassificationProbe):
    """Encoder -> ``layer`` -> pooled linear head -> one logit per class, trained with binary cross-entropy."""

    name = "multilabel_classification"

    def train_step(self, batch: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer],
                   step: int) -> dict[str, torch.Tensor]:
        logits = self.trained_call("model", self, batch["image"]).float()
        targets = batch["label_set"]
        scored = (targets != 0).float()  # difficult-only classes count for neither side
        loss = (F.binary_cross_entropy_with_logits(logits, (targets == 1).float(), reduction="none") * scored).sum()
        loss = loss / scored.sum().clamp(min=1)
        optimize(loss, optimizers["model"])
        return {"loss": loss.detach()}

    def evaluation_step(self, batch: dict[str, torch.Tensor], number: int) -> dict[str, list]:
        return {"scores": [self(batch["image"]).float().cpu()], "targets": [batch["label_set"].cpu()]}

    def evaluation_summary(self, totals: dict[str, Any], batches: int) -> dict[str, Any]:
        """Mean AP over classes of every image evaluated (:func:`~ssl_ctx.probes.metrics.multilabel_mean_ap`)."""
        scores, targets = torch.cat(totals["scores"]).numpy(), torch.cat(totals["targets"]).numpy()
        result = multilabel_mean_ap(scores, targets)
        return {"map": result["map"], "class_ap": result["class_ap"], "eval_images": float(len(targets))}


@PROBES.register("multilabel_classification", frozen_solver="svm")
def run_multilabel_classification(context: ProbeContext) -> dict[str, Any]:
    """Fit on ``data.train_split`` (VOC07 trainval), mean AP on ``data.eval_split`` (VOC07 test)."""
    if context.solver == "svm":
        return _svm_probe(context)
    metrics, details, eval_split = train_pooled_head(context, MultiLabelProbe, "label_sets", MULTILABEL_DATASETS)
    details.update(chance={"map": chance_map(eval_split.label_sets)}, headline=["map"])
    return {"metrics": metrics, "details": details}


def cross_validated_classes(targets: np.ndarray, class_names: list[str], folds: int) -> np.ndarray:
    """Bool ``(K,)``: the classes with at least ``folds`` positive and ``folds`` negative training images (a
    difficult-only image is a negative in training), which a ``folds``-fold cross-validation can choose a cost for.
    The others (present in every image of a small own set, say) are left out of the mean AP, named in a warning."""
    positives, negatives = training_sides(targets)
    usable = (positives >= folds) & (negatives >= folds)
    if not usable.any():
        raise UserError(f"no class has {folds} positive and {folds} negative training images, which "
                        f"{folds}-fold cross-validation needs; use a larger training split or fewer probe.svm_folds")
    if not usable.all():
        left_out = ", ".join(f"{class_names[k]} ({positives[k]} positive, {negatives[k]} negative)"
                             for k in np.flatnonzero(~usable))
        warn(f"left out of the multi-label mean AP, too few training images of one side for {folds}-fold "
             f"cross-validation: {left_out}")
    return usable


def _svm_probe(context: ProbeContext) -> dict[str, Any]:
    probe = context.probe
    pooled = pooled_frozen_features(context, MULTILABEL_DATASETS, annotation="label_sets")
    class_names = list(pooled.train_split.class_names)
    usable = cross_validated_classes(np.asarray(pooled.train_split.label_sets), class_names, probe.svm_folds)
    train_targets = np.asarray(pooled.train_split.label_sets)[:, usable]
    eval_targets = np.asarray(pooled.eval_split.label_sets)[:, usable]
    scores: dict[str, float] = {}
    fits: dict[str, Any] = {}
    for name in pooled.layers:
        fit = fit_voc_svms(pooled.train[name], train_targets, probe.svm_costs, folds=probe.svm_folds,
                           seed=probe.holdout_seed, description=f"SVMs {name}")
        result = multilabel_mean_ap(fit.decision_function(pooled.eval[name]), eval_targets)
        scores[name] = result["map"]
        fits[name] = {"features": pooled.descriptions[name], "class_ap": result["class_ap"], **fit.summary()}
    protocol = (f"frozen encoder, one linear SVM per class per layer on avg-pooled features (~{probe.pooled_features}"
                f" per layer), cost chosen by {probe.svm_folds}-fold cross-validation on the training split (VISSL's "
                f"VOC07 benchmark)")
    outcome = per_layer_outcome(pooled, "map", scores, fits, chance_map(eval_targets), protocol)
    outcome["details"]["classes"] = {"scored": [c for c, kept in zip(class_names, usable) if kept],
                                     "left_out": [c for c, kept in zip(class_names, usable) if not kept]}
    return outcome
