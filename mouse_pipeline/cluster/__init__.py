"""Running stage 1 and stage 2 on a Ray cluster (``--ray``, ``cluster.ray``; docs/CLUSTER.md).

Ray is an optional extra (``pip install 'mouse-pipeline[cluster]'``). This package owns
what changes when work leaves the machine: :mod:`.ray_runtime` (finding Ray, connecting
to a cluster or starting a local one, worker resources, errors from workers),
:mod:`.extract_ray` (every (backbone, video) to extract as a Ray task) and
:mod:`.train_ray` (every hyperparameter trial as a Ray task, behind the scheduler's runner
interface). Planning, freshness, locks, the cache writer and the fold writer are the same
as in a local run, so results are the same files.

Only :func:`with_ray` and the modules' own imports of Ray live here at import time; nothing
in this package imports TensorFlow in the driver.
"""

from __future__ import annotations

from ..config import Config


def with_ray(cfg: Config, address: str | None) -> Config:
    """``cfg`` with Ray switched on when ``--ray`` was given (``address``: its value, ``""`` alone).

    ``None`` (no ``--ray``) leaves ``cfg`` as it is; ``""`` keeps ``cluster.ray.address``.
    """
    if address is None:
        return cfg
    overrides: dict[str, object] = {"cluster.ray.enabled": True}
    if address:
        overrides["cluster.ray.address"] = address
    return cfg.replace(**overrides)
