"""``train.search.algorithm: tpe``: Optuna's TPE proposing each fold's trials from that fold's
earlier validation scores, seeded per (seed, fold, kind); ``train.search.early_stop: asha``.

- the keys: ``algorithm`` (``method`` read as its old name), ``startup_trials``,
  ``early_stop`` and ``asha``;
- :class:`UnitSearch`: one trial in flight per chain, the next proposed once the previous
  scored, the same proposals for the same scores, other proposals for other scores (TPE
  does use them), one chain per kind under ``auto``;
- training: a run (inline) with its folds removed or killed half-written, resumed by two
  workers, writes the same folds bit for bit; without Optuna, ``tpe`` is one line and
  exit 2, before the run's config is written.
"""

import json
import logging
import shutil
import sys

import pytest

from mouse_pipeline.config import MODEL_KINDS, Config, dump_config, load_config
from mouse_pipeline.errors import ConfigError, RunError
from mouse_pipeline.runs import HISTORY_FILE, PROBS_FILE
from mouse_pipeline.sequences.asha import FitPruner, Rungs
from mouse_pipeline.sequences.tuning import UnitSearch, sampler_seed
from tests.integration.runs import cli, error_line
from tests.unit.test_workers import assert_same, make_data, outputs

pytest.importorskip("optuna", reason="Optuna is the search extra; make setup installs it")

SPACE = {"learning_rate": [0.03, 0.01, 0.003], "tcn.filters": [4, 8]}
TPE = {"train.search.algorithm": "tpe", "train.search.n_trials": 3, "train.search.startup_trials": 2}


# --------------------------------------------------------------------------- config


def test_algorithm_key_and_its_old_name(caplog):
    assert Config().train.search.algorithm == "grid"
    assert load_config(None, ["train.search.algorithm=tpe"]).train.search.algorithm == "tpe"
    # the old key still reads (configs and run folders written before the rename)
    assert load_config(None, ["train.search.method=random"]).train.search.algorithm == "random"
    assert "<defaults>: 'train.search.method' is the old name of 'train.search.algorithm' (read as it); " \
           "use the new name" in caplog.text
    caplog.clear()
    assert load_config("configs/thesis.yaml").train.search.algorithm == "random"
    assert "method" not in Config().to_dict()["train"]["search"]
    assert "old name" not in caplog.text  # the new name, and the thesis config, read without a word
    with pytest.raises(ConfigError, match=r"^<defaults>: key 'train\.search\.method': 'train\.search\.method' is "
                                          r"the old name of 'train\.search\.algorithm', and both are given"):
        load_config(None, ["train.search.method=random", "train.search.algorithm=tpe"])
    with pytest.raises(ConfigError, match=r"key 'train\.search\.algorithm': expected one of 'grid', 'random', "
                                          r"'tpe', got str 'bayes'"):
        load_config(None, ["train.search.algorithm=bayes"])
    with pytest.raises(ConfigError, match=r"key 'train\.search\.startup_trials': value out of range"):
        load_config(None, ["train.search.startup_trials=0"])
    assert Config().train.search.early_stop == "none"
    asha = load_config(None, ["train.search.early_stop=asha", "train.search.asha={min_epochs: 3, reduction_factor: 2}"])
    assert (asha.train.search.asha.min_epochs, asha.train.search.asha.reduction_factor) == (3, 2)
    with pytest.raises(ConfigError, match=r"key 'train\.search\.early_stop': expected one of 'none', 'asha'"):
        load_config(None, ["train.search.early_stop=hyperband"])
    with pytest.raises(ConfigError, match=r"key 'train\.search\.asha\.reduction_factor': value out of range"):
        load_config(None, ["train.search.asha.reduction_factor=1"])


# --------------------------------------------------------------------------- proposals


def tpe_config(**extra) -> Config:
    return Config().replace(**{"train.search.space": SPACE, **TPE, "train.search.n_trials": 6, **extra})


def proposals(search: UnitSearch, score) -> list[dict]:
    """Every trial of a one-chain unit, each scored by ``score(params)`` as it comes."""
    (pending,) = search.start()
    seen = []
    while True:
        seen.append(pending.params)
        nxt = search.done(pending.index, score(pending.params))
        if not nxt:
            return seen
        assert len(nxt) == 1
        pending = nxt[0]


def test_one_trial_at_a_time_and_the_same_proposals_for_the_same_scores():
    cfg = tpe_config()

    def by_rate(p):
        return p["learning_rate"] * 10 + p["tcn.filters"] / 100

    first = UnitSearch(cfg, "tcn", 0, MODEL_KINDS)
    assert first.n == 6 and first.width == 1
    a = proposals(first, by_rate)
    assert len(a) == 6 and all(set(p) == set(SPACE) for p in a)
    assert [t.index for t in sorted(first.trials.values(), key=lambda t: t.index)] == list(range(6))
    assert [t.seed_index for t in first.trials.values()] == list(range(6))
    assert proposals(UnitSearch(cfg, "tcn", 0, MODEL_KINDS), by_rate) == a  # a second run
    # TPE uses the scores: the opposite scores give other proposals after the startup trials
    other = proposals(UnitSearch(cfg, "tcn", 0, MODEL_KINDS), lambda p: -by_rate(p))
    assert other[:2] == a[:2] and other != a
    # each fold (and the final fold) has its own seed
    assert len({sampler_seed(cfg, f, "tcn") for f in (-1, 0, 1, 2)}) == 4
    assert first.record() == {"algorithm": "tpe", "n_trials": 6, "sampler": "optuna TPESampler",
                              "startup_trials": 2, "seeds": {"tcn": sampler_seed(cfg, 0, "tcn")}}


def test_auto_runs_a_chain_per_kind_and_grid_is_unchanged():
    cfg = tpe_config(**{"train.models": ["auto"], "train.auto.models": ["lstm", "tcn"],
                        "train.search.space": {**SPACE, "lstm.units": [4, 8]}})
    search = UnitSearch(cfg, "auto", 1, MODEL_KINDS)
    start = search.start()
    assert search.n == 12 and [(t.index, t.kind, t.seed_index) for t in start] == [(0, "lstm", 0), (6, "tcn", 0)]
    assert "tcn.filters" not in start[0].params and "lstm.units" not in start[1].params
    nxt = search.done(6, 0.5)
    assert [(t.index, t.kind) for t in nxt] == [(7, "tcn")]
    assert set(search.record()["seeds"]) == {"lstm", "tcn"}
    grid = UnitSearch(tpe_config(**{"train.search.algorithm": "grid"}), "tcn", 0, MODEL_KINDS)
    assert grid.n == grid.width == 6 and len(grid.start()) == 6 and grid.done(0, 0.5) == []


def test_asha_stops_a_fit_below_the_earlier_trials_at_a_rung():
    rungs = Rungs(min_epochs=2, reduction_factor=2, earlier={"head 0": [{0: 0.8, 1: 0.9}], "head 1": [{0: 0.1}]})
    first = FitPruner(Rungs(2, 2), "head 0")  # nothing to compare with: never stopped
    assert not any(first(e, 0.01) for e in range(1, 9)) and first.reached() == {0: 0.01, 1: 0.01, 2: 0.01}
    worse = FitPruner(rungs, "head 0")
    assert not worse(1, 0.1)  # before the first rung (epoch 2)
    assert worse(2, 0.7) and worse.reached() == {0: 0.7}  # below the earlier trial's 0.8 there
    better = FitPruner(rungs, "head 0")
    assert [better(e, 0.85) for e in (1, 2, 3, 4)] == [False, False, False, True]  # 0.85 < 0.9 at epoch 4
    assert not FitPruner(rungs, "head 1")(2, 0.2)  # each fit is compared with the same fit only


def test_asha_runs_a_fold_s_trials_one_after_another_with_the_earlier_rungs():
    cfg = tpe_config(**{"train.search.algorithm": "grid", "train.search.early_stop": "asha"})
    search = UnitSearch(cfg, "tcn", 0, MODEL_KINDS)
    (t0,) = search.start()
    assert search.n == 6 and search.width == 1 and search.rungs(t0) == Rungs(2, 3)
    (t1,) = search.done(0, 0.5, {"head 0": {0: 0.5}})
    assert search.rungs(t1).earlier == {"head 0": [{0: 0.5}]}
    (t2,) = search.done(1, 0.3, {"head 0": {0: 0.3}}, pruned_at=2)
    assert search.rungs(t2).earlier == {"head 0": [{0: 0.5}, {0: 0.3}]}
    assert search.record()["early_stop"] == "asha" and "seeds" not in search.record()
    tpe = UnitSearch(tpe_config(**{"train.search.early_stop": "asha"}), "tcn", 0, MODEL_KINDS)
    (first,) = tpe.start()
    assert len(tpe.done(0, 0.4, {"head 0": {0: 0.4}}, pruned_at=2)) == 1  # TPE told it was pruned
    assert tpe.chains["tcn"].study.trials[0].state.name == "PRUNED"


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tpe_data(tmp_path_factory):
    cfg = make_data(tmp_path_factory.mktemp("tpe"))
    return cfg.replace(**{"train.models": ["tcn"], "train.search.space": SPACE, **TPE})


@pytest.fixture(scope="module")
def tpe_run(tpe_data, tmp_path_factory):
    from mouse_pipeline.sequences.training import train

    return train(tpe_data, run_dir=tmp_path_factory.mktemp("tpe_inline") / "run", progress=False)


@pytest.mark.slow
def test_a_killed_tpe_run_resumed_by_two_workers_gives_the_same_trials(tpe_data, tpe_run, tmp_path):
    """A copy of the inline run with one fold gone and the other killed half-written,
    finished by two workers: the same trials, scores, kept trial and probabilities."""
    from mouse_pipeline.sequences.training import train

    ref = outputs(tpe_run)
    histories = [v for k, v in ref.items() if k.endswith("/history")]
    assert len(histories) == 2  # two folds
    for h in histories:
        assert h["search"]["algorithm"] == "tpe" and len(h["trials"]) == 3
        assert all(set(t["params"]) == set(SPACE) for t in h["trials"])
        assert h["params"] in [t["params"] for t in h["trials"]]
    assert histories[0]["search"]["seeds"] != histories[1]["search"]["seeds"]

    run = tmp_path / "resumed"
    shutil.copytree(tpe_run, run)
    for fold in ("fold_0", "fold_1"):
        shutil.rmtree(run / "resnet50v2" / "tcn" / fold)
    (run / "resnet50v2" / "tcn" / "fold_1.partial").mkdir()  # killed while writing the fold
    (run / "resnet50v2" / "tcn" / "fold_1.partial" / PROBS_FILE).write_bytes(b"half")
    train(tpe_data.replace(**{"train.workers": 2}), run_dir=run, progress=False)
    assert_same(ref, outputs(run))
    assert json.loads((run / "resnet50v2/tcn/fold_1" / HISTORY_FILE).read_text())["trials"] == \
        json.loads((tpe_run / "resnet50v2/tcn/fold_1" / HISTORY_FILE).read_text())["trials"]


@pytest.mark.slow
def test_a_run_killed_in_the_middle_of_a_fold_replays_its_scored_trials(tpe_data, tpe_run, tmp_path, monkeypatch,
                                                                         caplog):
    """Killed after two of a fold's three trials: the resumed run replays those two from
    the fold's trial log (TPE is told them again), fits the third, fits the kept trial
    again for its models, and writes the uninterrupted run's fold bit for bit."""
    from mouse_pipeline.sequences import scheduler
    from mouse_pipeline.sequences.training import train

    run = tmp_path / "run"
    shutil.copytree(tpe_run, run)
    shutil.rmtree(run / "resnet50v2" / "tcn" / "fold_0")
    real = scheduler.write_unit

    def killed(cfg, run_folder, unit, *args):
        if unit.fold.index == 0:
            raise RuntimeError("killed before writing fold 1")
        real(cfg, run_folder, unit, *args)

    monkeypatch.setattr(scheduler, "write_unit", killed)
    with pytest.raises(RuntimeError, match="killed"):
        train(tpe_data, run_dir=run, progress=False)
    monkeypatch.setattr(scheduler, "write_unit", real)
    trial_log = run / "resnet50v2" / "tcn" / "fold_0.trials.json"
    logged = json.loads(trial_log.read_text())
    assert [t["trial"] for t in logged["trials"]] == [0, 1, 2]
    logged["trials"] = logged["trials"][:2]  # as if killed after the fold's second trial
    trial_log.write_text(json.dumps(logged))

    caplog.set_level(logging.INFO, logger="mouse_pipeline")
    caplog.clear()  # only the resumed run's lines (the killed run's are there when INFO was already on)
    train(tpe_data, run_dir=run, progress=False)
    assert_same(outputs(tpe_run), outputs(run))
    assert not trial_log.exists()
    lines = [r.getMessage() for r in caplog.records if "fold 1/2 trial" in r.getMessage()]
    assert [("replayed from its trial log" in m) for m in lines if "validation PR-AUC" in m] == [True, True, False]
    # this fold keeps its second trial, a replayed one: fitted again for its models
    assert "[resnet50v2/tcn] fold 1/2: trial 2/3 kept, from the trial log: fitted again for its models" in caplog.text


def test_a_trial_log_of_another_config_is_refused(tmp_path):
    from mouse_pipeline.runs import RunFolder
    from mouse_pipeline.runs.trials import TrialLog

    cfg = tpe_config()
    folder = RunFolder(tmp_path / "run")
    log = folder.trial_log(cfg, "resnet50v2", "tcn", 0)
    assert log.path == tmp_path / "run" / "resnet50v2" / "tcn" / "fold_0.trials.json" and log.read() == {}
    log.write([{"trial": 0, "kind": "tcn", "params": {}, "score": 0.5, "record": {}, "rungs": {}, "pruned": False}])
    assert list(log.read()) == [0]
    # the settings that do not change results may differ; the others may not
    assert folder.trial_log(cfg.replace(**{"train.workers": 4}), "resnet50v2", "tcn", 0).read() == log.read()
    other = folder.trial_log(cfg.replace(**{"train.epochs": 7}), "resnet50v2", "tcn", 0)
    with pytest.raises(RunError, match=r"fold_0\.trials\.json: trial log of a run with another config; delete it"):
        other.read()
    log.path.write_text("{")
    with pytest.raises(RunError, match=r"fold_0\.trials\.json: unreadable trial log"):
        TrialLog(log.path, log.fingerprint).read()


@pytest.mark.slow
def test_asha_prunes_a_clearly_worse_trial(tpe_data, tmp_path):
    """A learning rate of 1e-7 after a good one: stopped at the first rung in each fold,
    recorded with its score there, and never the fold's model."""
    from mouse_pipeline.sequences.training import train

    cfg = tpe_data.replace(**{"train.search.algorithm": "grid", "train.search.early_stop": "asha",
                              "train.epochs": 3, "train.patience": 3, "train.search.asha.min_epochs": 1,
                              "train.search.asha.reduction_factor": 2,
                              "train.search.space": {"learning_rate": [0.03, 1e-7]}})
    run = train(cfg, run_dir=tmp_path / "run", progress=False)
    for fold in ("fold_0", "fold_1"):
        h = json.loads((run / "resnet50v2/tcn" / fold / HISTORY_FILE).read_text())
        good, bad = h["trials"]
        assert "pruned" not in good["validation"] and set(good["validation"]["rungs"]["head 0"]) == {"0", "1"}
        assert bad["validation"]["pruned"] == {"fit": "head 0", "epoch": 1, "val_pr_auc": bad["val_pr_auc"]}
        assert bad["val_pr_auc"] < good["validation"]["rungs"]["head 0"]["0"]
        assert h["params"] == {"learning_rate": 0.03} and h["search"]["early_stop"] == "asha"


def test_tpe_without_optuna_is_one_line(tpe_data, tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    dump_config(tpe_data.replace(**{"train.run": str(tmp_path / "run")}), config)
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    line = error_line(cli("train", "--config", config, "--quiet"))
    assert line.startswith(f"error: {config}: key 'train.search': algorithm tpe and early_stop asha need "
                           "Optuna, which is not installed"), line
    assert line.endswith("install it with: pip install 'mouse-pipeline[search]' (or pip install 'optuna>=4,<6')")
    assert not (tmp_path / "run" / "config.yaml").exists()  # only the command log was made
