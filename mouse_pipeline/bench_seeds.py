"""``bench-quality`` over several seeds: how much of one seed's verdict is the seed.

With three videos per regime, one seed's pooled PR-AUC moves by 0.1 or more on grooming
from seed to seed, and which head is best moves with it (docs/BENCHMARKS.md). So
``mouse-pipeline bench-quality --seed A --seed B ...`` runs the whole protocol once per
seed, each in its own folder (``<work>/seed_<N>``: a work folder belongs to one seed), and
summarises them (:func:`summarize`):

- per regime, validation mode, measure (the pooled out-of-fold PR-AUC, and the mean over
  folds of each fold's PR-AUC), model and behaviour, the mean over the seeds, with its
  smallest and largest value;
- for each model chosen on validation alone (:data:`.bench_checks.CHOSEN`: ``auto``, the
  ``ensemble``), the acceptance checks of :func:`.bench_checks.check` on those means and
  whether it passed every check of the regime on each seed;
- its paired differences to the logistic regression and to the best head per behaviour:
  their mean over seeds and its standard error, which says whether a gap is larger than
  the seed-to-seed spread.

Only regimes and validation modes present in every seed's results are summarised.
No TensorFlow here (the per-seed runs import it through :func:`.bench_quality.run_quality`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .bench_checks import CHOSEN, check, passes
from .bench_quality import run_quality
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


#: The figures summarised: key in a run's results, key of the logistic regression's, title.
MEASURES = (("scores", "logistic", "pooled out-of-fold PR-AUC"),
            ("fold_means", "logistic_fold_means", "mean over folds of each fold's PR-AUC"))


def summarize(outs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per regime, validation mode and measure (:data:`MEASURES`) common to every seed's
    ``bench_quality.json``, the figures over seeds (see the module docstring)."""
    seeds = [o["seed"] for o in outs]
    by_seed = [{r["regime"]: r for r in o["regimes"]} for o in outs]
    names = [r["regime"] for r in outs[0]["regimes"] if all(r["regime"] in b for b in by_seed)]
    summary = []
    for name in names:
        results = [b[name] for b in by_seed]
        modes = [m for m in results[0]["runs"] if all(m in r["runs"] for r in results)]
        for mode, (key, lr_key, title) in ((m, k) for m in modes for k in MEASURES):
            runs = [r["runs"][mode].get(key) for r in results]
            if any(run is None for run in runs) or any(lr_key not in r for r in results):
                continue
            models = [m for m in runs[0] if all(m in run for run in runs)]
            entry: dict[str, Any] = {
                "regime": name, "mode": mode, "measure": title, "seeds": seeds, "behaviors": results[0]["behaviors"],
                "prevalence": _spread([r["prevalence"] for r in results]),
                "logistic": _spread([r[lr_key] for r in results]),
                "models": {m: _spread([run[m] for run in runs]) for m in models}, "chosen": {}}
            for chosen in (c for c in CHOSEN if c in models):
                gaps = [check(run, r[lr_key], chosen) for run, r in zip(runs, results, strict=True)]
                on_means = check({m: v["mean"] for m, v in entry["models"].items()}, entry["logistic"]["mean"], chosen)
                entry["chosen"][chosen] = {
                    "minus_logistic": _paired([g[0] for g in gaps]), "minus_best_head": _paired([g[1] for g in gaps]),
                    "passed": {str(s): passes(g[0], g[1]) for s, g in zip(seeds, gaps, strict=True)},
                    "passed_on_means": passes(on_means[0], on_means[1]),
                    "checks_on_means": [f"{b}: {line}" for b, line in zip(entry["behaviors"], on_means[2], strict=True)]}
            summary.append(entry)
    return summary


def format_seeds(summary: list[dict[str, Any]]) -> str:
    """Markdown: per regime, mode and measure, mean (min-max) over seeds, the checks and the gaps."""
    lines: list[str] = []
    for e in summary:
        seeds = ", ".join(map(str, e["seeds"]))
        lines += [f"### {e['regime']}, validation {e['mode']}, {e['measure']}: seeds {seeds}", "",
                  "mean over seeds (smallest-largest):", "",
                  "| behaviour | prevalence | logistic | " + " | ".join(e["models"]) + " |",
                  "| --- | ---: | ---: | " + " | ".join("---:" for _ in e["models"]) + " |"]
        for j, b in enumerate(e["behaviors"]):
            cells = [_cell(e["logistic"], j), *(_cell(v, j) for v in e["models"].values())]
            lines.append(f"| {b} | {e['prevalence']['mean'][j]:.3f} | " + " | ".join(cells) + " |")
        for chosen, c in e["chosen"].items():
            held = [s for s, ok in c["passed"].items() if ok]
            lines += ["", f"- {chosen} passed every check of the regime on {len(held)} of {len(c['passed'])} seeds"
                      + (f" ({', '.join(held)})" if held else "")
                      + f"; on the means it {'passes' if c['passed_on_means'] else 'fails'}:"]
            lines += [f"  - on the means: {line}" for line in c["checks_on_means"]]
            for j, b in enumerate(e["behaviors"]):
                lines.append(f"  - {b}: {chosen} - logistic {_gap(c['minus_logistic'], j)}; "
                             f"{chosen} - best head {_gap(c['minus_best_head'], j)}")
        lines.append("")
    return "\n".join(lines)


def _cell(v: dict[str, list[float]], j: int) -> str:
    return f"{v['mean'][j]:.3f} ({v['min'][j]:.3f}-{v['max'][j]:.3f})"


def _gap(v: dict[str, list[float]], j: int) -> str:
    se = v["se"][j]
    return f"{v['mean'][j]:+.3f}" + ("" if not np.isfinite(se) else f" ± {se:.3f} (standard error over seeds)")
