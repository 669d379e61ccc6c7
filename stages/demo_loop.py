"""``python -m stages.demo_loop --out DIR [--rounds N ...]`` (``make demo-loop``): the
active-learning simulation of :mod:`mouse_pipeline.active_loop`, its table printed here."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

from mouse_pipeline.active_loop import LoopSettings, format_table, run_loop, target_summary
from mouse_pipeline.errors import PipelineError
from mouse_pipeline.fileio import first_line


def main(argv: list[str] | None = None) -> None:
    """Every field of :class:`LoopSettings` is an option, with its default."""
    import argparse

    parser = argparse.ArgumentParser(description="Active learning simulated on synthetic data (make demo-loop).")
    parser.add_argument("--out", type=Path, required=True)
    for f in dataclasses.fields(LoopSettings):
        if f.name == "out":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            parser.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=f.default,
                                help=f"true or false (default: {f.default})")
        else:
            kind = int if f.type in (int, "int") else float
            parser.add_argument(flag, type=kind, default=f.default, help=f"default: {f.default}")
    a = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    s = LoopSettings(**a)
    try:
        rows = run_loop(s)
    except PipelineError as err:  # e.g. a fold's training videos without a positive frame
        print(f"error: {first_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_table(rows))
    print(target_summary(rows))
    print(f"curve: {s.out / 'curve.csv'}, {s.out / 'curve.png'}")


if __name__ == "__main__":
    main()
