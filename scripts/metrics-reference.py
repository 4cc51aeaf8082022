#!/usr/bin/env python3
"""Reference values for `lightning::metrics`, computed by scikit-learn (and numpy for the
mean and sum) on fixed inputs; writes tests/fixtures/metrics-reference.json, which
tests/metrics.rs reads.

    pip install scikit-learn numpy
    python3 scripts/metrics-reference.py
"""
import json
import pathlib

import numpy as np
import sklearn
from sklearn import metrics

N, C = 48, 3  # 48 samples split evenly over 1, 2, 3 or 4 ranks and batches of 4
rng = np.random.default_rng(21)

logits = rng.normal(size=(N, C)) * 1.5
probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
labels = rng.integers(0, C, size=N)
labels[:C] = np.arange(C)  # every class present
# binary scores rounded to one decimal, so that some tie (AUROC must average their ranks)
binary_scores = np.round(rng.uniform(size=N), 1)
binary_labels = (rng.uniform(size=N) < 0.3 + 0.5 * binary_scores).astype(int)
reg_target = rng.normal(size=N) * 2.0 + 1.0
reg_pred = reg_target + rng.normal(size=N) * 0.8
weights = rng.uniform(0.5, 2.0, size=N)

pred_labels = probs.argmax(axis=1)
classes = list(range(C))
values = {
    "accuracy": metrics.accuracy_score(labels, pred_labels),
    "accuracy_top2": metrics.top_k_accuracy_score(labels, probs, k=2, labels=classes),
    "precision_macro": metrics.precision_score(labels, pred_labels, average="macro", labels=classes, zero_division=0),
    "precision_micro": metrics.precision_score(labels, pred_labels, average="micro", labels=classes, zero_division=0),
    "recall_macro": metrics.recall_score(labels, pred_labels, average="macro", labels=classes, zero_division=0),
    "recall_micro": metrics.recall_score(labels, pred_labels, average="micro", labels=classes, zero_division=0),
    "f1_macro": metrics.f1_score(labels, pred_labels, average="macro", labels=classes, zero_division=0),
    "f1_micro": metrics.f1_score(labels, pred_labels, average="micro", labels=classes, zero_division=0),
    "auroc_binary": metrics.roc_auc_score(binary_labels, binary_scores),
    "auroc_ovr": metrics.roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=classes),
    "mse": metrics.mean_squared_error(reg_target, reg_pred),
    "mae": metrics.mean_absolute_error(reg_target, reg_pred),
    "r2": metrics.r2_score(reg_target, reg_pred),
    "mean": float(np.average(reg_pred, weights=weights)),
    "sum": float(np.sum(reg_pred)),
}
out = {
    "sklearn_version": sklearn.__version__,
    "num_classes": C,
    "inputs": {
        "probs": probs.tolist(),
        "labels": labels.tolist(),
        "binary_scores": binary_scores.tolist(),
        "binary_labels": binary_labels.tolist(),
        "reg_pred": reg_pred.tolist(),
        "reg_target": reg_target.tolist(),
        "weights": weights.tolist(),
    },
    "values": {k: float(v) for k, v in values.items()},
    "confusion_matrix": metrics.confusion_matrix(labels, pred_labels, labels=classes).tolist(),
}
path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "metrics-reference.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {path}: " + ", ".join(f"{k}={v:.6f}" for k, v in out["values"].items()))
