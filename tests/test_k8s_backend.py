"""The Kubernetes deployer, end to end against a TEST DOUBLE of the Kubernetes API.

No Kubernetes API server can run here. ``tests/k8s_double.py`` is an HTTP server speaking the
API subset the deployer uses, which the real ``kubernetes`` client talks to unchanged, and
which moves objects through realistic states (pending -> scheduled -> ready; Unschedulable;
OOMKilled/CrashLoopBackOff; Jobs running to completion). No container runs: the load
generator pods' logs are written by ``_generator_log`` below from the load configuration the
deployer put in the Job (synthetic latencies, so the tests check the plumbing and the figures
derived from those records, not a server's speed).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from k8s_double import FakeNode, KubeApiDouble  # noqa: E402

from autoconf._deployment import LABELS  # noqa: E402
from autoconf.cli import main  # noqa: E402
from stress import DeployError, DeploymentSpec, get_deployer  # noqa: E402
from stress._kubernetes import KubernetesDeployer, cleanup  # noqa: E402

MANAGED = "app.kubernetes.io/managed-by=autoconf"
_LOGGED: list[dict] = []  # every record the generator pods "printed"


def _generator_log(job: dict, pod: dict, index: int) -> str:
    """What stress/_locustfile.py prints in a worker pod: one STRESS_RESULT line."""
    if not job["metadata"]["name"].endswith("-worker"):
        return "[master] run complete\n"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    cfg = json.loads(env["STRESS_LOAD_CONFIG"])
    rng = random.Random(index)
    total = cfg["warmup_s"] + cfg["duration_s"]
    sched, t = [], 0.0
    while (t := t + rng.expovariate(cfg["rate_rps"])) < total:
        sched.append(t)
    lat = [2.0 + rng.expovariate(1 / 5.0) for _ in sched]
    record = {
        "rate_rps": cfg["rate_rps"],
        "duration_s": cfg["duration_s"],
        "warmup_s": cfg["warmup_s"],
        "sent": len(sched),
        "scheduled": len(sched),
        "cap_hits": 0,
        "censored": 0,
        "aborted": False,
        "schedule_end_s": total,
        "wall_s": total,
        "cpu_s": 0.05 * total,
        "send_lag_p50_ms": 0.1,
        "send_lag_p99_ms": 0.4,
        "sched_s": sched,
        "latency_ms": lat,
        "service_ms": lat,
        "ok": [1] * len(sched),
        "done_s": [s + x / 1000 for s, x in zip(sched, lat)],
        "endpoint": cfg["endpoints"][0],
    }
    _LOGGED.append(record)
    return "Starting Locust 2.47.0\nSTRESS_RESULT " + json.dumps(record) + "\nShutting down\n"


@pytest.fixture(scope="module")
def model(relu_model: Path) -> Path:
    return relu_model


@pytest.fixture
def double():
    nodes = [
        FakeNode("cpu-1", {"kubernetes.io/os": "linux"}, cpu=8),
        FakeNode("t4-1", {"nvidia.com/gpu.product": "Tesla-T4"}, cpu=8, gpus=1),
    ]
    with KubeApiDouble(nodes, job_log=_generator_log) as d:
        yield d


def _deployer(double: KubeApiDouble, **kw) -> KubernetesDeployer:
    api = client.ApiClient(client.Configuration(host=double.url))
    opts = dict(api_client=api, namespace="trials", poll_s=0.02, unschedulable_grace_s=0.0)
    return KubernetesDeployer(**{**opts, "labels": LABELS, **kw})  # as autoconf deploys


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u, namespace: trials}}]\n"
        "current-context: x\n"
    )
    return path


def test_deploy_measure_teardown_leaves_nothing(double: KubeApiDouble, model: Path) -> None:
    deployer = _deployer(double, study="st", load_workers=2)
    spec = DeploymentSpec(model, batch_size=4, replicas=2, labels={"trial": "12"})
    with deployer.deploy(spec) as live:
        sel = f"{MANAGED},autoconf.io/study=st,autoconf.io/trial=12"
        assert double.names("deployments", sel) == [live.name]
        assert len(double.names("pods", sel)) == 2  # replicas, both Ready before deploy returned
        result = live.open_loop(rate_rps=40, duration_s=2.0, warmup_s=0.5)
        # The load Jobs and their ConfigMap/Service are gone after each step.
        assert double.names("jobs") == []
        assert double.count(sel) == 1 + 1 + 1 + 2  # ConfigMap, Deployment, Service, 2 pods
    assert double.count() == 0
    assert result.generator_processes == 2
    assert 40 * 2 * 0.6 < result.sent < 40 * 2 * 1.4  # two Poisson workers at 20 rps each
    # The figures are the exact percentiles of both workers' records after the warm-up.
    sched = np.concatenate([r["sched_s"] for r in _LOGGED[-2:]])
    lat = np.concatenate([r["latency_ms"] for r in _LOGGED[-2:]])
    measured = lat[(sched >= 0.5) & (sched < 2.5)]
    assert result.sent == measured.size
    assert result.p50_ms == pytest.approx(np.percentile(measured, 50))
    assert result.p99_ms == pytest.approx(np.percentile(measured, 99))
    assert result.error_rate == 0.0
    assert result.extra["kubernetes_run"].startswith(live.name)
    # The endpoint handed to the in-cluster generators is the trial's Service.
    cfg_endpoint = f"http://{live.name}.trials.svc:8000/v2/models/model/infer"
    assert live.url + "/v2/models/model/infer" == cfg_endpoint


def test_registry_builds_the_kubernetes_deployer(double: KubeApiDouble) -> None:
    api = client.ApiClient(client.Configuration(host=double.url))
    d = get_deployer("kubernetes", api_client=api, namespace="trials", parallelism=2)
    assert isinstance(d, KubernetesDeployer) and d.parallelism == 2


def test_stress_alone_labels_with_its_own_scheme(double: KubeApiDouble, model: Path) -> None:
    """Without a caller's scheme, nothing says autoconf; cleanup(study) finds it all."""
    api = client.ApiClient(client.Configuration(host=double.url))
    d = KubernetesDeployer(api_client=api, namespace="trials", poll_s=0.02)
    d.deploy(DeploymentSpec(model, labels={"study": "solo", "trial": "1"}))
    d._slots.release()
    assert double.count("app.kubernetes.io/managed-by=stress,stress.io/study=solo") > 0
    assert double.count("app.kubernetes.io/managed-by=autoconf") == 0
    assert d.cleanup("other") == [] and d.cleanup("solo") and double.count() == 0


def test_unschedulable_deployment_fails_and_is_deleted(double: KubeApiDouble, model: Path) -> None:
    spec = DeploymentSpec(model, gpu_type="A100-80GB", labels={"study": "st", "trial": "1"})
    with pytest.raises(DeployError, match="cannot be scheduled.*node"):
        _deployer(double).deploy(spec)
    assert double.count() == 0


def test_gpu_type_selects_the_matching_node(double: KubeApiDouble, model: Path) -> None:
    spec = DeploymentSpec(model, gpu_type="T4", labels={"study": "st", "trial": "2"})
    with _deployer(double).deploy(spec):
        pod = double.objects[next(k for k in double.objects if k[0] == "pods")]
        assert pod["spec"]["nodeName"] == "t4-1"
    assert double.count() == 0


def test_oom_during_rollout_fails_and_is_deleted(double: KubeApiDouble, model: Path) -> None:
    double.oom_below_mb = 4096
    spec = DeploymentSpec(model, memory_mb=512, labels={"study": "st", "trial": "3"})
    with pytest.raises(DeployError, match="OOMKilled"):
        _deployer(double).deploy(spec)
    assert double.count() == 0


def test_crash_mid_test_raises_and_teardown_still_runs(double: KubeApiDouble, model: Path) -> None:
    spec = DeploymentSpec(model, memory_mb=512, labels={"study": "st", "trial": "4"})
    double.job_run_s = 1.0
    with pytest.raises(DeployError, match="OOMKilled"), _deployer(double).deploy(spec) as live:
        double.oom_below_mb = 4096  # the server now dies under load
        live.open_loop(rate_rps=10, duration_s=1.0, warmup_s=0.0)
    assert double.count() == 0


def test_generator_without_result_is_a_deploy_error(double: KubeApiDouble, model: Path) -> None:
    double.job_log = lambda job, pod, i: "Traceback: ModuleNotFoundError: numpy\n"
    spec = DeploymentSpec(model, labels={"study": "st", "trial": "5"})
    with (
        pytest.raises(DeployError, match="0 of 1 load generator pods"),
        _deployer(double).deploy(spec) as live,
    ):
        live.open_loop(rate_rps=10, duration_s=1.0, warmup_s=0.0)
    assert double.count() == 0


def test_rollout_timeout(double: KubeApiDouble, model: Path) -> None:
    double.start_s = 60.0  # pods never become ready in time
    spec = DeploymentSpec(model, labels={"study": "st", "trial": "6"})
    t0 = time.monotonic()
    with pytest.raises(DeployError, match="not ready after 0.3s"):
        _deployer(double, rollout_timeout_s=0.3).deploy(spec)
    assert time.monotonic() - t0 < 5
    assert double.count() == 0


def test_parallelism_bounds_live_deployments(double: KubeApiDouble, model: Path) -> None:
    deployer = _deployer(double, parallelism=2, study="par")
    live_max = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def trial(i: int) -> None:
        nonlocal live_max
        try:
            with deployer.deploy(DeploymentSpec(model, labels={"trial": str(i)})):
                with lock:
                    live_max = max(live_max, len(double.names("deployments")))
                time.sleep(0.2)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=trial, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert live_max == 2
    assert double.count() == 0


def test_cleanup_removes_leftovers_by_label(
    double: KubeApiDouble, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    deployer = _deployer(double)
    # Two "crashed" runs: deployments never torn down (as after kill -9 of autoconf).
    deployer.deploy(DeploymentSpec(model, labels={"study": "old", "trial": "1"}))
    deployer._slots.release()
    deployer.deploy(DeploymentSpec(model, labels={"study": "keep", "trial": "1"}))
    deployer._slots.release()
    # Something not ours, in the same namespace, must survive.
    api = client.CoreV1Api(client.ApiClient(client.Configuration(host=double.url)))
    api.create_namespaced_config_map("trials", {"metadata": {"name": "theirs", "labels": {}}})
    kubeconfig = _kubeconfig(tmp_path, double.url)
    rc = main(["cleanup", "--study", "old", "--kubeconfig", str(kubeconfig), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert {d.split("/")[0] for d in out["deleted"]} >= {"Deployment", "Service", "ConfigMap"}
    assert double.count("autoconf.io/study=old") == 0
    assert double.count("autoconf.io/study=keep") > 0
    deleted = cleanup(namespace="trials", api_client=api.api_client, labels=LABELS)
    assert double.count(MANAGED) == 0 and deleted
    assert double.names("configmaps") == ["theirs"]


def test_unreachable_cluster_is_one_line(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with KubeApiDouble() as gone:
        url = gone.url
    kubeconfig = _kubeconfig(tmp_path, url)  # nothing listens there any more
    deployer = KubernetesDeployer(kubeconfig=str(kubeconfig), request_timeout_s=2)
    with pytest.raises(
        DeployError, match=r"cannot reach the Kubernetes API at http://127\.0\.0\.1"
    ):
        deployer.deploy(DeploymentSpec(model, labels={"trial": "1"}))
    assert main(["cleanup", "--kubeconfig", str(kubeconfig)]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("autoconf: error: cannot reach the Kubernetes API") and err.count("\n") == 1
    )
    assert main(["cleanup", "--kubeconfig", str(tmp_path / "missing")]) == 1
    assert "cannot load Kubernetes configuration" in capsys.readouterr().err
    argv = ["stress", str(model), "--config", "batch_size=2", "--backend", "kubernetes"]
    argv += ["--backend-option", f"kubeconfig={kubeconfig}", "--rate", "10", "--duration", "1s"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("autoconf: error: cannot reach the Kubernetes API") and err.count("\n") == 1
    )
    assert main([*argv, "--option", "replicaz=2"]) == 2  # the deprecated alias still works
    err = capsys.readouterr().err
    assert "unknown option 'replicaz' for backend 'kubernetes'" in err
    assert "--option is deprecated; use --backend-option" in err


def test_seed_differs_per_worker_via_wrapper() -> None:
    """The wrapper locustfile gives each Indexed-Job worker its own arrival seed."""
    from stress._kubernetes import _WRAPPER

    env = {"STRESS_LOAD_CONFIG": json.dumps({"seed": 3}), "JOB_COMPLETION_INDEX": "2"}
    code = _WRAPPER.split("from stress_locustfile")[0]
    import os

    saved = dict(os.environ)
    try:
        os.environ.update(env)
        exec(compile(code, "locustfile.py", "exec"), {})
        assert json.loads(os.environ["STRESS_LOAD_CONFIG"])["seed"] == 3002
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _Profile:
    """The two fields of a kops.ModelProfile that the live backends read."""

    def __init__(self, path: Path) -> None:
        self.path, self.name = str(path), "tiny"


def test_kubernetes_backend_measures_and_fails_cleanly(double: KubeApiDouble, model: Path) -> None:
    from autoconf import Config, Load, load_space
    from autoconf.backends import get_backend

    space = load_space("gpu-default")
    api = client.ApiClient(client.Configuration(host=double.url))
    opts = dict(api_client=api, namespace="trials", poll_s="0.02", unschedulable_grace_s="0")
    with get_backend("kubernetes", space, study="bk", warmup_s=0.2, **opts) as backend:
        ok = backend.evaluate(
            _Profile(model),
            Config(batch_size=4, gpu_type="T4", replicas=1, cpu_cores=2),
            Load(slo_p99_ms=50, target_rps=20, duration_s=1.0),
        )
        assert ok.ok and ok.p99_ms is not None and ok.cost_per_hour > 0
        assert double.count() == 0
        failed = backend.evaluate(
            _Profile(model),
            Config(batch_size=4, gpu_type="H100", replicas=1, cpu_cores=2),  # no H100 node
            Load(slo_p99_ms=50, target_rps=20, duration_s=1.0),
        )
        assert not failed.ok and "cannot be scheduled" in failed.error
        assert double.count() == 0
        # A leftover (a deployment never torn down) is found by the study's cleanup.
        backend.deployer.deploy(backend.spec_for(_Profile(model), Config(1, "T4"), 99))
        backend.deployer._slots.release()
        assert double.count("autoconf.io/study=bk") > 0
        assert backend.cleanup() and double.count() == 0
