"""``bench-quality`` over several seeds: how much of one seed's verdict is the seed.

With three videos per regime, one seed's pooled PR-AUC moves by 0.1 or more on grooming
from seed to seed, and which head is best moves with it (docs/BENCHMARKS.md). So
``mouse-pipeline bench-quality --seed A --seed B ...`` runs the whole protocol once per
seed, each in its own folder (``<work>/seed_<N>``: a work folder belongs to one seed), and
summarises them (:func:`summarize`):

- per regime, validation mode, model and behaviour, the mean of the pooled out-of-fold
  PR-AUC over the seeds, with its smallest and largest value;
- the acceptance checks of :func:`.bench_quality.checks` on those means;
- per seed, whether ``auto`` passed every check of the regime;
- the paired differences ``auto - logistic regression`` and ``auto - best head`` per
  behaviour: their mean over seeds and its standard error, which says whether a gap is
  larger than the seed-to-seed spread.

Only regimes and validation modes present in every seed's results are summarised.
No TensorFlow here (the per-seed runs import it through :func:`.bench_quality.run_quality`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .bench_quality import MARGIN, checks, run_quality
from .fileio import write_json, write_text


def seed_folder(work: Path, seed: int) -> Path:
    """Where one seed's regimes live when several seeds are run."""
    return work / f"seed_{seed}"


def run_seeds(work: Path, seeds: list[int], **kwargs: Any) -> dict[str, Any]:
    """The protocol once per seed (:func:`.bench_quality.run_quality` with ``kwargs``), then
    the summary, written to ``work/bench_quality_seeds.json`` and ``.md``."""
    outs = [run_quality(seed_folder(work, s), seed=s, **kwargs) for s in seeds]
    summary = summarize(outs)
    write_json(work / "bench_quality_seeds.json", {"seeds": seeds, "summary": summary, "runs": outs})
    write_text(work / "bench_quality_seeds.md", format_seeds(summary) + "\n")
    return summary


def _spread(values: list[list[float]]) -> dict[str, list[float]]:
    a = np.asarray(values, float)  # seeds x behaviours
    return {"mean": a.mean(0).tolist(), "min": a.min(0).tolist(), "max": a.max(0).tolist()}


def _paired(diffs: list[list[float]]) -> dict[str, list[float]]:
    """Mean over seeds of a per-seed difference, and the standard error of that mean."""
    a = np.asarray(diffs, float)
    se = a.std(0, ddof=1) / np.sqrt(len(a)) if len(a) > 1 else np.full(a.shape[1], np.nan)
    return {"mean": a.mean(0).tolist(), "se": se.tolist()}


def _gaps(res: dict[str, Any], mode: str) -> tuple[list[float], list[float], bool]:
    """One seed's ``auto - logistic`` and ``auto - best head`` per behaviour, and whether
    auto passed every check (the comparisons of :func:`.bench_quality.checks`)."""
    run = res["runs"][mode]["scores"]
    heads = [s for m, s in run.items() if m != "auto"]
    auto, lr = run["auto"], res["logistic"]
    best = [max(s[j] for s in heads) for j in range(len(auto))]
    passed = all(a >= x and a >= b - MARGIN for a, x, b in zip(auto, lr, best, strict=True))
    return [a - x for a, x in zip(auto, lr, strict=True)], [a - b for a, b in zip(auto, best, strict=True)], passed


def summarize(outs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per regime and validation mode common to every seed's ``bench_quality.json``, the
    figures over seeds (see the module docstring)."""
    seeds = [o["seed"] for o in outs]
    by_seed = [{r["regime"]: r for r in o["regimes"]} for o in outs]
    names = [r["regime"] for r in outs[0]["regimes"] if all(r["regime"] in b for b in by_seed)]
    summary = []
    for name in names:
        results = [b[name] for b in by_seed]
        modes = [m for m in results[0]["runs"] if all(m in r["runs"] for r in results)]
        for mode in modes:
            models = [m for m in results[0]["runs"][mode]["scores"]
                      if all(m in r["runs"][mode]["scores"] for r in results)]
            entry: dict[str, Any] = {
                "regime": name, "mode": mode, "seeds": seeds, "behaviors": results[0]["behaviors"],
                "prevalence": _spread([r["prevalence"] for r in results]),
                "logistic": _spread([r["logistic"] for r in results]),
                "models": {m: _spread([r["runs"][mode]["scores"][m] for r in results]) for m in models}}
            if "auto" in models:
                gaps = [_gaps(r, mode) for r in results]
                entry["auto_minus_logistic"] = _paired([g[0] for g in gaps])
                entry["auto_minus_best_head"] = _paired([g[1] for g in gaps])
                entry["passed"] = {str(s): g[2] for s, g in zip(seeds, gaps, strict=True)}
                mean_res = {"behaviors": entry["behaviors"], "logistic": entry["logistic"]["mean"],
                            "runs": {mode: {"scores": {m: v["mean"] for m, v in entry["models"].items()}}}}
                entry["checks_on_means"] = checks(mean_res, mode)
            summary.append(entry)
    return summary


def format_seeds(summary: list[dict[str, Any]]) -> str:
    """Markdown: per regime and mode, mean (min-max) over seeds, the checks and the gaps."""
    lines: list[str] = []
    for e in summary:
        seeds = ", ".join(map(str, e["seeds"]))
        lines += [f"### {e['regime']}, validation {e['mode']}: seeds {seeds}", "",
                  "pooled out-of-fold PR-AUC, mean over seeds (smallest-largest):", "",
                  "| behaviour | prevalence | logistic | " + " | ".join(e["models"]) + " |",
                  "| --- | ---: | ---: | " + " | ".join("---:" for _ in e["models"]) + " |"]
        for j, b in enumerate(e["behaviors"]):
            cells = [_cell(e["logistic"], j), *(_cell(v, j) for v in e["models"].values())]
            lines.append(f"| {b} | {e['prevalence']['mean'][j]:.3f} | " + " | ".join(cells) + " |")
        if "passed" in e:
            held = [s for s, ok in e["passed"].items() if ok]
            lines += ["", f"- auto passed every check of the regime on {len(held)} of {len(e['passed'])} seeds"
                      + (f" ({', '.join(held)})" if held else "")]
            lines += [f"- on the means: {c}" for c in e["checks_on_means"]]
            for j, b in enumerate(e["behaviors"]):
                lr, best = e["auto_minus_logistic"], e["auto_minus_best_head"]
                lines.append(f"- {b}: auto - logistic {_gap(lr, j)}; auto - best head {_gap(best, j)}")
        lines.append("")
    return "\n".join(lines)


def _cell(v: dict[str, list[float]], j: int) -> str:
    return f"{v['mean'][j]:.3f} ({v['min'][j]:.3f}-{v['max'][j]:.3f})"


def _gap(v: dict[str, list[float]], j: int) -> str:
    se = v["se"][j]
    return f"{v['mean'][j]:+.3f}" + ("" if not np.isfinite(se) else f" ± {se:.3f} (standard error over seeds)")
