"""mouse_pipeline.cluster without a cluster: --ray's config, addresses, task resources."""

import pytest

from mouse_pipeline.cluster import ray_runtime, with_ray
from mouse_pipeline.config import Config, RayConfig
from mouse_pipeline.errors import ConfigError


def test_ray_flag_switches_ray_on_and_may_name_the_address():
    cfg = Config()
    assert with_ray(cfg, None) is cfg and not cfg.cluster.ray.enabled
    alone = with_ray(cfg, "")
    assert alone.cluster.ray.enabled and alone.cluster.ray.address == "local"  # the config's
    named = with_ray(cfg, "10.0.0.5:6379")
    assert named.cluster.ray.enabled and named.cluster.ray.address == "10.0.0.5:6379"


@pytest.mark.parametrize("address, expected", [("10.0.0.5:6379", ("10.0.0.5", 6379)),
                                               ("ray://head:10001", ("head", 10001)),
                                               ("[::1]:6379", ("::1", 6379)),
                                               ("head", None), ("head:port", None), (":6379", None)])
def test_host_port_of_an_address(address, expected):
    assert ray_runtime._host_port(address) == expected


def test_an_address_that_is_no_address_is_one_line():
    with pytest.raises(ConfigError, match=r"'head' is not local, auto or HOST:PORT"):
        ray_runtime._check_reachable("head")


class FakeRay:
    def __init__(self, resources):
        self.resources = resources

    def cluster_resources(self):
        return self.resources


def test_workers_reserve_gpus_only_where_the_cluster_has_them():
    settings = RayConfig(cpus_per_worker=2, gpus_per_worker=0.5, max_retries=5)
    cpu_only = ray_runtime.worker_options(FakeRay({"CPU": 16.0}), settings)
    assert cpu_only == {"num_cpus": 2, "max_retries": 5, "retry_exceptions": False}
    assert ray_runtime.workers_at_once(FakeRay({"CPU": 16.0}), settings) == 8
    gpus = FakeRay({"CPU": 16.0, "GPU": 2.0})
    assert ray_runtime.worker_options(gpus, settings)["num_gpus"] == 0.5
    assert ray_runtime.workers_at_once(gpus, settings) == 4  # two per GPU
    assert ray_runtime.workers_at_once(FakeRay({"CPU": 4.0, "GPU": 8.0}), RayConfig()) == 4  # CPUs bound it
