"""k-nearest-neighbour classification of frozen features, an ssl_ctx probe living outside the core package.

The protocol of Wu et al. (CVPR 2018, "instance discrimination") as DINO and VISSL run it: every image's
features (each chosen map average-pooled to about ``probe.pooled_features`` values, as the ridge probe reads
them, then L2-normalised) vote for their ``k`` most cosine-similar training images, each vote weighted by
``exp(similarity / 0.07)``; the class with the most weight wins. ``k`` is chosen among :data:`K_CHOICES` on a
held-out ``probe.holdout_fraction`` of train, so the probe has nothing to tune (20 when no class has two
training images to hold one out). One result per layer of
``probe.layer`` (``top1@<layer>``), like the ridge probe's.

Install this folder (``pip install -e plugins/knn_probe``) and ``ssl-ctx list`` shows ``knn``; run it with
``probe.task=knn`` (``probe.mode=linear``: the encoder stays frozen) or as a bench probe.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ssl_ctx.probes import ProbeContext
from ssl_ctx.probes.classification import per_layer_classifier_probe
from ssl_ctx.registry import PROBES

K_CHOICES = (1, 5, 10, 20, 50)
DEFAULT_K = 20  # when no training row can be held out (one image per class): the protocol's usual k
TEMPERATURE = 0.07
_QUERY_CHUNK = 512  # images whose similarities to every training image are computed at once


def knn_predict(train: torch.Tensor, labels: torch.Tensor, queries: torch.Tensor, num_classes: int,
                ks: tuple[int, ...] = K_CHOICES, temperature: float = TEMPERATURE) -> dict[int, torch.Tensor]:
    """Predicted classes ``(M,)`` of ``queries (M, D)`` for each ``k`` in ``ks``, from ``train (N, D)`` with
    ``labels (N,)``: temperature-weighted votes of the ``k`` nearest by cosine similarity."""
    train = F.normalize(train.float(), dim=1)
    largest = min(max(ks), len(train))
    predictions: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    if len(queries) == 0:
        return {k: torch.zeros(0, dtype=torch.long) for k in ks}
    for start in range(0, len(queries), _QUERY_CHUNK):
        chunk = F.normalize(queries[start:start + _QUERY_CHUNK].float(), dim=1)
        similarity, nearest = (chunk @ train.T).topk(largest, dim=1)
        weights = (similarity / temperature).exp()
        votes = F.one_hot(labels[nearest], num_classes).float() * weights[..., None]  # (m, largest, classes)
        for k in ks:
            predictions[k].append(votes[:, :min(k, largest)].sum(1).argmax(1))
    return {k: torch.cat(parts) for k, parts in predictions.items()}


def knn_classifier(layer: str, train: np.ndarray, labels: np.ndarray, evaluation: np.ndarray, num_classes: int,
                   holdout: np.ndarray) -> tuple[np.ndarray, dict]:
    """The per-layer classifier of :func:`~ssl_ctx.probes.classification.per_layer_classifier_probe`: ``k``
    chosen on the held-out training rows, then every training row votes for the evaluation images."""
    train_t = torch.from_numpy(np.array(train, dtype=np.float32))  # a copy: cached features are read-only
    labels_t = torch.from_numpy(np.array(labels)).long()
    kept, held = torch.from_numpy(~holdout), torch.from_numpy(holdout)
    holdout_top1: dict[int, float] = {}
    if held.any():
        on_holdout = knn_predict(train_t[kept], labels_t[kept], train_t[held], num_classes)
        holdout_top1 = {k: float((predicted == labels_t[held]).float().mean()) for k, predicted in on_holdout.items()}
    best = max(holdout_top1, key=lambda k: (holdout_top1[k], -k)) if holdout_top1 else DEFAULT_K  # ties: smaller k
    queries = torch.from_numpy(np.array(evaluation, dtype=np.float32))
    predicted = knn_predict(train_t, labels_t, queries, num_classes, ks=(best,))
    return predicted[best].numpy(), {"k": best, "temperature": TEMPERATURE,
                                     "holdout_top1": {str(k): v for k, v in holdout_top1.items()}}


@PROBES.register("knn", frozen_solver="knn", trains=False)
def run_knn(context: ProbeContext) -> dict:
    """k-NN top-1 per layer on ``data.eval_split``, neighbours from ``data.train_split``."""
    probe = context.probe
    protocol = (f"frozen encoder, weighted k-NN per layer on L2-normalised avg-pooled features "
                f"(~{probe.pooled_features} per layer, temperature {TEMPERATURE}), k chosen on "
                f"{probe.holdout_fraction:.0%} of train")
    return per_layer_classifier_probe(context, knn_classifier, protocol)
