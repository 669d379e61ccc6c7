"""Active learning simulated on synthetic data (``make demo-loop``): the active-learning curve.

Synthetic *pool* videos stand for the lab's recordings and separate fully labelled *test*
videos for the truth; the test videos are never used for any choice (training, early
stopping, thresholds, suggestions), only scored at the end of each round.

1. Round 0: the first ``initial_windows`` windows of ``window_s`` seconds of every pool video are annotated (from the
   synthetic ground truth); every other frame is *not annotated* (-1 in the label
   contract, masked out of the loss, the thresholds and the validation scores). A run is
   trained (k-fold by video, plus the final model).
2. Each later round, in two arms that start from round 0:

   - ``uncertainty``: :func:`mouse_pipeline.suggest.suggest` ranks the pool's
     unannotated windows with the arm's last run and the best ``minutes_per_round``
     minutes of them are "annotated" from the ground truth;
   - ``random``: as many unannotated windows of the same length, drawn at random
     (seeded);

   and each arm's run is trained again, from scratch, on its annotated frames.
3. After every round the final model of each arm predicts the test videos: PR-AUC per
   behaviour and its mean (over behaviours with a positive test frame).

The table (``curve.csv``: round, arm, annotated frames, PR-AUC) and the plot
(``curve.png``: mean PR-AUC against annotated frames) are written to the output folder,
with a reference point where the whole pool is annotated when asked.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .annotations import Labels, read_labels, write_labels_csv
from .config import Config, load_config
from .dataset import open_features
from .features.store import cache_path
from .metrics import binary_metrics
from .scoring import write_rows_csv

log = logging.getLogger(__name__)

ARMS = ("uncertainty", "random")
FULL = "all annotated"


@dataclass(frozen=True)
class LoopSettings:
    """The simulation's size; the defaults are ``make demo-loop``'s."""

    out: Path
    pool_videos: int = 6
    test_videos: int = 2
    frames: int = 1200
    size: int = 128
    fps: float = 10.0
    window_s: float = 20.0
    initial_windows: int = 1
    minutes_per_round: float = 1.0
    rounds: int = 3
    epochs: int = 15
    train_window: int = 64
    seed: int = 3
    full_reference: bool = True


def base_config(s: LoopSettings) -> Config:
    """The demo's settings (``configs/demo.yaml``: pose crop, random ResNet50V2 features, an
    LSTM), k-fold by video (k = 2) for fold models that can disagree."""
    root = s.out.resolve()
    sets = {"data.videos": root / "pool" / "videos", "data.labels": root / "pool" / "labels",
            "data.behaviors": "[grooming, mid_rearing, wall_rearing]", "data.crop.mode": "pose",
            "data.crop.pose": root / "pool" / "pose", "data.crop.bodypart": "midbody",
            "data.crop.size": 32, "extract.cache": root / "cache", "extract.backbones": "[resnet50v2]",
            "extract.weights": "random", "extract.input_size": 64, "extract.batch_size": 32,
            "extract.precision": "float32", "train.models": "[lstm]", "train.input_dropout": 0.8,
            "train.epochs": s.epochs, "train.patience": 5, "train.batch_size": 16,
            "train.window.length": s.train_window, "train.window.stride": s.train_window // 2, "train.folds.scheme": "group_kfold",
            "train.folds.k": 2, "train.folds.n_val": 1, "train.validation": "videos", "train.lstm.units": 32,
            "train.lstm.bidirectional": "true", "train.lstm.dropout": 0.5,
            "postprocess.max_gap": "[0, 3]", "postprocess.min_len": "[0, 3]", "train.seed": 0}
    return load_config(None, [f"{k}={v}" for k, v in sets.items()])


def make_data(s: LoopSettings) -> tuple[list[str], list[str]]:
    """Synthetic pool and test videos (different seeds and prefixes); their ids."""
    from .synthetic import generate_dataset

    pool = generate_dataset(s.out / "pool", n_videos=s.pool_videos, n_frames=s.frames, size=s.size,
                            fps=s.fps, seed=s.seed, prefix="pool")
    test = generate_dataset(s.out / "test", n_videos=s.test_videos, n_frames=s.frames, size=s.size,
                            fps=s.fps, seed=s.seed + 1000, prefix="test")
    return list(pool), list(test)


class Annotation:
    """Which frames of each pool video an arm has annotated, written as label files with -1
    for the frames not annotated."""

    def __init__(self, truth: dict[str, np.ndarray], behaviors: tuple[str, ...]) -> None:
        self.truth, self.behaviors = truth, behaviors
        self.mask = {v: np.zeros(len(t), bool) for v, t in truth.items()}

    def copy(self) -> Annotation:
        other = Annotation(self.truth, self.behaviors)
        other.mask = {v: m.copy() for v, m in self.mask.items()}
        return other

    def add(self, video: str, start: int, stop: int) -> None:
        self.mask[video][start:stop] = True

    @property
    def frames(self) -> int:
        return int(sum(m.sum() for m in self.mask.values()))

    def write(self, folder: Path) -> Path:
        """One label file per pool video with an annotated frame (thesis layout)."""
        folder.mkdir(parents=True, exist_ok=True)
        for vid, truth in self.truth.items():
            if self.mask[vid].any():
                matrix = np.where(self.mask[vid][:, None], truth, -1).astype(np.int8)
                write_labels_csv(folder / f"{vid}.csv", Labels(self.behaviors, matrix))
        return folder

    def windows(self, length: int) -> list[tuple[str, int, int]]:
        """The unannotated windows (every ``length`` frames, none with an annotated frame)."""
        return [(v, a, min(a + length, len(m))) for v, m in sorted(self.mask.items())
                for a in range(0, len(m), length) if not m[a:a + length].any()]


def _read_truth(cfg: Config, folder: Path, ids: list[str]) -> dict[str, np.ndarray]:
    return {v: read_labels(folder / f"{v}.csv", "thesis", cfg.data.behaviors).matrix for v in ids}


def train_round(cfg: Config, annotation: Annotation, folder: Path) -> Path:
    """Train a run (folds and the final model) on ``annotation``'s frames into ``folder``."""
    from .sequences.training import train

    labels = annotation.write(folder / "labels")
    run_cfg = cfg.replace(**{"data.labels": str(labels)})
    return train(run_cfg, folder / "run", final=True, progress=False, overwrite=True)


def evaluate(cfg: Config, run_dir: Path, test_truth: dict[str, np.ndarray]) -> dict[str, float]:
    """PR-AUC per behaviour of the run's final model on the test videos (pooled frames), and
    their mean over behaviours with a positive frame (``mean``)."""
    from .predict import load_heads, member_probabilities
    from .predictor import choose
    from .runs import RunFolder

    run = RunFolder(run_dir)
    predictor = choose(run, run.read_config(), None)
    heads = load_heads(predictor)
    final = predictor.members[0]
    probs, truth = [], []
    for vid, t in sorted(test_truth.items()):
        features = open_features(cache_path(cfg.extract.cache, final.backbone, vid), final.backbone)
        try:
            probs.append(member_probabilities(final, heads[0], features))
        finally:
            features.close()
        truth.append(t)
    p, y = np.concatenate(probs), np.concatenate(truth)
    scores = {b: binary_metrics(y[:, k], p[:, k], 0.5)["pr_auc"] for k, b in enumerate(cfg.data.behaviors)}
    defined = [v for v in scores.values() if not math.isnan(v)]
    return {**scores, "mean": float(np.mean(defined)) if defined else math.nan}


def frames_to_reach(rows: list[dict], arm: str, target: float) -> int | None:
    """The fewest annotated frames at which ``arm``'s mean PR-AUC reached ``target``."""
    hits = [r["annotated_frames"] for r in rows if r["arm"] == arm and r["mean_pr_auc"] >= target - 1e-12]
    return min(hits) if hits else None


def _picks(s: LoopSettings, arm: str, ann: Annotation, last: Path, folder: Path, length: int, per_round: int,
           rng: np.random.Generator) -> list[tuple[str, int, int]]:
    """The windows ``arm`` annotates next: ``suggest``'s on the last run, or random unannotated ones."""
    if arm != "uncertainty":
        free = ann.windows(length)
        return [free[i] for i in sorted(rng.choice(len(free), size=min(per_round, len(free)), replace=False))]
    from .suggest import suggest

    labels = ann.write(folder / "before")
    chosen = suggest(last, [s.out / "pool" / "videos"], folder / "suggestions.csv",
                     minutes=per_round * s.window_s / 60, window_s=s.window_s, labels_dir=labels, progress=False)
    return [(w.video, w.start, w.stop) for w in chosen]


def run_loop(s: LoopSettings) -> list[dict]:
    """The whole simulation; returns the curve's rows (also written to ``curve.csv``)."""
    from .features.extract import extract

    s.out.mkdir(parents=True, exist_ok=True)
    cfg = base_config(s)
    pool, test = make_data(s)
    extract(cfg, progress=False)
    extract(cfg.replace(**{"data.videos": str(s.out.resolve() / "test" / "videos"), "data.labels": None,
                           "data.crop.pose": str(s.out.resolve() / "test" / "pose")}), progress=False)
    behaviors = tuple(cfg.data.behaviors)
    truth = _read_truth(cfg, s.out / "pool" / "labels", pool)
    test_truth = _read_truth(cfg, s.out / "test" / "labels", test)
    length = int(round(s.window_s * s.fps))
    per_round = max(1, int(round(s.minutes_per_round * 60 / s.window_s)))

    start = Annotation(truth, behaviors)
    for vid in pool:
        start.add(vid, 0, s.initial_windows * length)
    rows: list[dict] = []

    def record(round_: int, arm: str, ann: Annotation, run_dir: Path) -> None:
        scores = evaluate(cfg, run_dir, test_truth)
        rows.append({"round": round_, "arm": arm, "annotated_frames": ann.frames,
                     "annotated_min": round(ann.frames / s.fps / 60, 3), "mean_pr_auc": round(scores["mean"], 4),
                     **{f"pr_auc_{b}": round(scores[b], 4) for b in behaviors}})
        log.info("round %d %-11s %6d frames annotated: test PR-AUC %.3f", round_, arm, ann.frames,
                 scores["mean"])

    run0 = train_round(cfg, start, s.out / "round_0")
    for arm in ARMS:
        record(0, arm, start, run0)
    arms = {arm: (start.copy(), run0) for arm in ARMS}
    rng = np.random.default_rng(s.seed)
    for r in range(1, s.rounds + 1):
        for arm in ARMS:
            ann, last = arms[arm]
            folder = s.out / f"round_{r}" / arm
            picks = _picks(s, arm, ann, last, folder, length, per_round, rng)
            for vid, a, b in picks:
                ann.add(vid, a, b)
            log.info("round %d %s annotates %s", r, arm, ", ".join(f"{v}[{a}:{b}]" for v, a, b in picks))
            arms[arm] = (ann, train_round(cfg, ann, folder))
            record(r, arm, ann, arms[arm][1])
    if s.full_reference:
        full = Annotation(truth, behaviors)
        for vid in pool:
            full.add(vid, 0, len(truth[vid]))
        record(-1, FULL, full, train_round(cfg, full, s.out / "all_annotated"))
    columns = list(rows[0])
    write_rows_csv(s.out / "curve.csv", rows, columns)
    write_plot(rows, s.out / "curve.png")
    return rows


def target_summary(rows: list[dict]) -> str:
    """Frames each arm needed to reach two targets: 95 % of the all-annotated reference's mean
    test PR-AUC (when it was trained) and the random arm's last-round score."""
    targets = []
    full = [r for r in rows if r["arm"] == FULL]
    if full:
        targets.append((f"95 % of the all-annotated score ({full[0]['mean_pr_auc']:.3f})",
                        0.95 * full[0]["mean_pr_auc"]))
    last = max((r for r in rows if r["arm"] == "random"), key=lambda r: r["round"])
    targets.append(("the random arm's last score", last["mean_pr_auc"]))
    lines = []
    for what, target in targets:
        need = {a: frames_to_reach(rows, a, target) for a in ARMS}
        parts = ", ".join(f"{a} {'never' if need[a] is None else f'at {need[a]} annotated frames'}"
                          for a in ARMS)
        u, r = need["uncertainty"], need["random"]
        if u is not None and (r is None or u < r):
            verdict = "uncertainty-chosen minutes reached it with fewer annotated frames"
        elif u == r:
            verdict = "both arms reached it with the same number of annotated frames" if u else "neither reached it"
        else:
            verdict = "uncertainty-chosen minutes did NOT reach it with fewer frames than random ones"
        lines.append(f"mean test PR-AUC {target:.3f} ({what}): {parts}; {verdict}")
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    """The curve as a fixed-width text table."""
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def write_plot(rows: list[dict], path: Path) -> None:
    """Mean test PR-AUC against annotated frames, one line per arm (PNG)."""
    from matplotlib.figure import Figure

    from .plots import save_png

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    for arm, marker in zip(ARMS, ("o", "s"), strict=True):
        pts = sorted((r["annotated_frames"], r["mean_pr_auc"]) for r in rows if r["arm"] == arm)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=arm)
    for r in rows:
        if r["arm"] == FULL:
            ax.axhline(r["mean_pr_auc"], color="grey", linestyle="--",
                       label=f"{FULL} ({r['annotated_frames']} frames)")
    ax.set_xlabel("annotated frames (pool videos)")
    ax.set_ylabel("mean PR-AUC on held-out test videos")
    ax.set_title("Active-learning curve (synthetic data)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save_png(fig, path)
