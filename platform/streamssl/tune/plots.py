"""Search figures: the metric against each searched parameter, and the top trials' kNN curves."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from streamssl import fsio  # noqa: E402
from streamssl.fsio import atomic_path  # noqa: E402
from streamssl.tune.spec import SORT_COLUMN, SearchSpec  # noqa: E402

TOP = 5
DPI = 110


def write_figures(frame: pd.DataFrame, keys: list[str], spec: SearchSpec, out: str | Path) -> list[str]:
    """params_vs_metric.png and top_trials_knn.png (each only when there is something to draw)."""
    if frame.empty:
        return []
    paths = [plot_params(frame, keys, spec, fsio.join(out, "params_vs_metric.png")),
             plot_top_curves(frame, fsio.join(out, "trials"), fsio.join(out, "top_trials_knn.png"))]
    return [p for p in paths if p is not None]


def plot_params(frame: pd.DataFrame, keys: list[str], spec: SearchSpec, path: str) -> str | None:
    """One panel per searched key: the search metric (%) per trial; hollow = did not complete."""
    column = SORT_COLUMN[spec.metric]
    kinds = {p.key: p.kind for p in spec.space}
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    done = frame["status"] == "completed"
    for ax, key in zip(axes[0], keys):
        xs = _positions(ax, frame[key], kinds[key])
        for mask, face in ((done, "C0"), (~done, "none")):
            ax.scatter(xs[mask], 100 * frame.loc[mask, column], facecolors=face, edgecolors="C0", s=36)
        if kinds[key] == "loguniform":
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel=f"{column} (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{spec.name}: {column} per trial (hollow: stopped or failed)")
    return _save(fig, path)


def _positions(ax, values: pd.Series, kind: str) -> pd.Series:
    """Numeric values as they are; categorical ones (strings, lists, mixed) as evenly spaced ticks."""
    numeric = kind in ("uniform", "loguniform", "randint") or all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        return values.astype(float)
    labels = list(dict.fromkeys(str(v) for v in values))
    ax.set_xticks(range(len(labels)), labels)
    return values.map(lambda v: labels.index(str(v))).astype(float)


def plot_top_curves(frame: pd.DataFrame, trials_dir: str | Path, path: str) -> str | None:
    """Test kNN top-1 (%) over stream progress for the best TOP trials (dashed: did not complete);
    the legend gives each trial's final validation and test kNN."""
    from streamssl.errors import StreamSSLError
    from streamssl.evaluation import metrics
    from streamssl.evaluation.metrics_log import load_metrics

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    drawn = 0
    for row in frame.head(TOP).itertuples(index=False):
        try:
            run = load_metrics(fsio.join(trials_dir, row.trial))
        except StreamSSLError:  # a trial that failed before its first evaluation
            continue
        curve = metrics.curve(run, metrics.TOP1, metrics.primary_protocol(run))
        style = "-" if row.status == "completed" else "--"
        ax.plot(curve["progress"], 100 * curve["value"], style, marker="o", ms=3,
                label=f"#{row.rank} {row.trial} (val {_score(row.val_knn)}, test {_score(row.final_knn)})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="stream progress", ylabel="test kNN top-1 (%)", title=f"top {drawn} trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _score(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"


def _save(fig, path: str) -> str:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return path
