"""Ray itself: finding it, connecting (or starting a local one), worker resources, worker errors.

- :func:`require_ray` imports Ray or raises one :class:`~mouse_pipeline.errors.ConfigError`
  line saying how to install it (``--ray`` without the ``cluster`` extra).
- :func:`connect` is the session of one command: ``local`` starts a Ray on this machine
  with ``cluster.ray.cpus`` CPUs (no dashboard, a small object store when asked) and stops
  it at the end; ``auto`` joins the cluster this machine was started into (``ray start``);
  ``HOST:PORT`` joins that head, after checking that something listens there (an
  unreachable head is one line, not a minute of retries). A Ray this process initialised
  already is used as it is and left running.
- :func:`worker_options` are the ``.options()`` of every task: ``cpus_per_worker`` CPUs,
  ``gpus_per_worker`` GPUs when the cluster has any, ``max_retries`` retries of a task
  whose worker process or node died (never of an error the task raised).
- :func:`get` waits for a task's result and turns what came back into the project's
  errors: a :class:`PipelineError` raised in a worker is raised again as itself (one line),
  a worker that died more often than ``max_retries`` allows is a :class:`RunError`.
- :func:`configure_worker` is a worker process's TensorFlow set-up before its first op:
  GPU memory growth, the inter-op pool, and the intra-op pool left at TensorFlow's default
  unless ``intra_op_threads`` says otherwise (the default keeps results bit-identical to
  a local run: oneDNN splits its sums by that count).

Nothing here imports TensorFlow except :func:`configure_worker`, which runs in workers.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..config import RayConfig
from ..errors import ConfigError, PipelineError, RunError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'mouse-pipeline[cluster]' (or pip install 'ray>=2.50,<3')"
_CONNECT_TIMEOUT_S = 5.0
#: Environment every worker gets (a cluster's workers do not inherit the driver's).
_WORKER_ENV = ("TF_CPP_MIN_LOG_LEVEL",)


def require_ray() -> Any:
    """The ``ray`` module; a one-line :class:`ConfigError` when it is not installed."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--ray / cluster.ray.enabled needs Ray, which is not installed ({exc}); "
                          f"install it with: {INSTALL_HINT}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; None for other forms."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str) -> None:
    target = _host_port(address)
    if target is None:
        raise ConfigError(f"cluster.ray.address / --ray: {address!r} is not local, auto or HOST:PORT "
                          "(e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection(target, timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"cluster.ray.address / --ray: no Ray head answers at {address} "
                          f"({exc.strerror or exc}); start one there with `ray start --head --port "
                          f"{target[1]}` or give the right address (or --ray local)") from None


def _runtime_env() -> dict[str, Any]:
    env = {k: os.environ[k] for k in _WORKER_ENV if k in os.environ}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return {"env_vars": env}


@contextmanager
def connect(settings: RayConfig, log_to_driver: bool = True) -> Iterator[Any]:
    """Ray for one command (see the module notes); yields the ``ray`` module."""
    ray = require_ray()
    if ray.is_initialized():  # the caller's own session: use it, leave it running
        yield ray
        return
    address = settings.address.strip()
    common = {"include_dashboard": False, "log_to_driver": log_to_driver, "logging_level": logging.WARNING,
              "runtime_env": _runtime_env()}
    try:
        if address == "local":
            ray.init(address="local", num_cpus=settings.cpus or None,
                     object_store_memory=settings.object_store_mb * 2**20 or None, **common)
        else:
            if address != "auto":
                _check_reachable(address)
            common.pop("include_dashboard")
            ray.init(address=address, **common)
    except PipelineError:
        raise
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cluster.ray.address / --ray {address}: cannot connect to Ray "
                          f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
                          "with auto, start the cluster first (ray start); or use --ray local") from None
    try:
        res = ray.cluster_resources()
        log.info("Ray %s at %s: %g CPUs, %g GPUs", ray.__version__, address, res.get("CPU", 0),
                 res.get("GPU", 0))
        yield ray
    finally:
        ray.shutdown()


def worker_options(ray: Any, settings: RayConfig) -> dict[str, Any]:
    """The ``.options()`` of every task: CPUs, GPUs when there are any, retries."""
    opts: dict[str, Any] = {"num_cpus": settings.cpus_per_worker, "max_retries": settings.max_retries,
                            "retry_exceptions": False}
    if ray.cluster_resources().get("GPU", 0) > 0 and settings.gpus_per_worker > 0:
        opts["num_gpus"] = settings.gpus_per_worker
    return opts


def workers_at_once(ray: Any, settings: RayConfig) -> int:
    """How many tasks of :func:`worker_options` the cluster runs at the same time."""
    res = ray.cluster_resources()
    n = int(res.get("CPU", 0) // settings.cpus_per_worker)
    if res.get("GPU", 0) > 0 and settings.gpus_per_worker > 0:
        n = min(n, int(res["GPU"] // settings.gpus_per_worker))
    return max(1, n)


def get(ray: Any, ref: Any, what: str, settings: RayConfig) -> Any:
    """A task's result; its errors as the project's (see the module notes)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, PipelineError):
            raise cause from None
        if isinstance(cause, (KeyboardInterrupt, MemoryError)):
            raise cause from None
        raise RuntimeError(f"{what} failed in a Ray worker: {type(cause).__name__}: {cause}") from cause
    except ray.exceptions.TaskCancelledError:
        raise
    except ray.exceptions.RayError as exc:  # the worker or its node died, also on every retry
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{what}: its Ray worker died {settings.max_retries + 1} time(s) "
                       f"(cluster.ray.max_retries: {settings.max_retries}) - {type(exc).__name__}: {first}; "
                       "see the worker logs under /tmp/ray/session_latest/logs and run again") from None


_CONFIGURED: tuple[int, int, bool] | None = None


def configure_worker(settings: RayConfig, deterministic: bool) -> None:
    """TensorFlow set-up of a worker process, once, before its first op (see the module notes).

    ``deterministic``: TensorFlow's op determinism, as ``train`` sets it in its own process
    (extraction does not set it locally, so neither does its worker).
    """
    global _CONFIGURED
    wanted = (max(1, settings.cpus_per_worker), settings.intra_op_threads, deterministic)
    if _CONFIGURED == wanted:
        return
    import tensorflow as tf

    from ..devices import gpu_memory_growth

    gpu_memory_growth()
    try:
        tf.config.threading.set_inter_op_parallelism_threads(wanted[0])
        if wanted[1]:
            tf.config.threading.set_intra_op_parallelism_threads(wanted[1])
        if deterministic:
            tf.config.experimental.enable_op_determinism()
    except RuntimeError:  # TensorFlow already ran an op in this process: its pools are fixed
        log.debug("TensorFlow threads already fixed in worker %d", os.getpid())
    _CONFIGURED = wanted
