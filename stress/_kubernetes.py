"""The Kubernetes deployer: one trial = a Triton Deployment, its Service and model ConfigMap.

Per trial it applies the manifests of :mod:`stress._manifests`, labelled by the deployer's
:class:`~stress.LabelScheme` (``app.kubernetes.io/managed-by``, ``<prefix>/study``,
``<prefix>/trial`` and ``<prefix>/deployment``, unique per deployment); waits for the rollout, failing fast on a
pod that cannot be scheduled (``PodScheduled=False/Unschedulable``) or that crashes
(``CrashLoopBackOff``, ``OOMKilled``, image pull errors); runs each load step as Locust
master/worker Jobs inside the cluster (the same open-loop locustfile as the local backend,
shipped in a ConfigMap) and merges the workers' exact latencies from their logs; and deletes
everything labelled for the deployment on every exit path. :func:`cleanup` removes leftovers
of crashed runs by label.

Only the official ``kubernetes`` client is used: create/get/list/delete on ConfigMaps,
Services, Pods (and their logs), Deployments and Jobs. See README "Kubernetes backend" for the
RBAC this needs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._api import Deployer, Deployment, DeploymentSpec, LoadResult
from ._errors import DeployError, StressError
from ._labels import COMPONENT_KEY, LabelScheme
from ._manifests import (
    FETCH_IMAGE,
    HTTP_PORT,
    LOCUST_IMAGE,
    TRITON_IMAGE,
    LoadJobSpec,
    ManifestOptions,
    check_model_uri,
    render_load_manifests,
    render_trial_manifests,
)
from ._names import dns_name, label_value

logger = logging.getLogger(__name__)
#: Waiting reasons of a container that will not come up by itself.
FATAL_WAITING = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}
#: Prefix of the result line the locustfile prints in each generator pod's log.
RESULT_PREFIX = "STRESS_RESULT "
#: Seeds each worker of an Indexed Job differently, then runs the shared locustfile.
_WRAPPER = '''"""stress: per-worker seed, then the open-loop locustfile (stress/_locustfile.py)."""
import json
import os

_cfg = json.loads(os.environ["STRESS_LOAD_CONFIG"])
_cfg["seed"] = int(_cfg.get("seed", 0)) * 1000 + int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
os.environ["STRESS_LOAD_CONFIG"] = json.dumps(_cfg)

from stress_locustfile import *  # noqa: E402,F401,F403
'''

# (kind, API group attribute of _Cluster, list method, delete method), children first
_KINDS = (
    ("Job", "batch", "list_namespaced_job", "delete_namespaced_job"),
    ("Deployment", "apps", "list_namespaced_deployment", "delete_namespaced_deployment"),
    ("Service", "core", "list_namespaced_service", "delete_namespaced_service"),
    ("ConfigMap", "core", "list_namespaced_config_map", "delete_namespaced_config_map"),
    ("Pod", "core", "list_namespaced_pod", "delete_namespaced_pod"),
)
_CREATE = {
    "ConfigMap": ("core", "create_namespaced_config_map"),
    "Service": ("core", "create_namespaced_service"),
    "Deployment": ("apps", "create_namespaced_deployment"),
    "Job": ("batch", "create_namespaced_job"),
}


def _errors(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    import urllib3
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    return (*extra, ApiException, ConfigException, urllib3.exceptions.HTTPError, OSError)


def _why(exc: BaseException) -> str:
    """One line for an API/client error."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        try:
            msg = json.loads(exc.body or "{}").get("message") or exc.reason
        except ValueError:
            msg = exc.reason
        return f"HTTP {exc.status}: {msg}"
    import urllib3

    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc).strip()
    for marker in ("Failed to establish a new connection: ", "Failed to resolve "):
        if marker in text:
            text = text.split(marker, 1)[1].rstrip(")'\"")
    return (text.splitlines() or [type(exc).__name__])[-1][:200]


class _Cluster:
    """The API groups of one client, with one-line errors."""

    def __init__(
        self,
        api_client: Any = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
        request_timeout_s: float = 10.0,
    ) -> None:
        from kubernetes import client, config

        try:
            if api_client is None:
                if kubeconfig is None and context is None and _in_cluster():
                    config.load_incluster_config()
                    api_client = client.ApiClient()
                else:
                    api_client = config.new_client_from_config(
                        config_file=kubeconfig, context=context
                    )
            if namespace is None:
                namespace = _kubeconfig_namespace(kubeconfig, context)
        except _errors() as exc:
            raise DeployError(f"cannot load Kubernetes configuration: {_why(exc)}") from None
        self.api_client = api_client
        self.host = api_client.configuration.host
        self.namespace = namespace or "default"
        self.timeout = request_timeout_s
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)

    def call(self, group: str, method: str, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            return getattr(getattr(self, group), method)(*args, **kwargs)
        except _errors() as exc:
            from kubernetes.client.exceptions import ApiException

            if isinstance(exc, ApiException):
                raise
            raise DeployError(
                f"cannot reach the Kubernetes API at {self.host}: {_why(exc)}"
            ) from None

    def create(self, doc: dict[str, Any]) -> None:
        group, method = _CREATE[doc["kind"]]
        self.call(group, method, doc["metadata"].get("namespace", self.namespace), doc)

    def pods(self, selector: str) -> list[Any]:
        return self.call(
            "core", "list_namespaced_pod", self.namespace, label_selector=selector
        ).items

    def pod_log(self, name: str) -> str:
        resp = self.call(
            "core", "read_namespaced_pod_log", name, self.namespace, _preload_content=False
        )
        return resp.data.decode("utf-8", "replace")

    def delete_labelled(self, selector: str) -> list[str]:
        """Delete every object of the kinds a deployment creates that matches ``selector``."""
        from kubernetes.client.exceptions import ApiException

        deleted = []
        for kind, group, list_m, delete_m in _KINDS:
            for item in self.call(group, list_m, self.namespace, label_selector=selector).items:
                try:
                    self.call(
                        group,
                        delete_m,
                        item.metadata.name,
                        self.namespace,
                        propagation_policy="Background",
                        grace_period_seconds=0 if kind == "Pod" else None,
                    )
                    deleted.append(f"{kind}/{item.metadata.name}")
                except ApiException as exc:
                    if exc.status != 404:  # already gone (a cascade got it first)
                        raise DeployError(
                            f"cannot delete {kind}/{item.metadata.name}: {_why(exc)}"
                        ) from None
        return deleted


def _in_cluster() -> bool:
    import os

    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not os.environ.get("KUBECONFIG")


def _kubeconfig_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception as exc:  # no readable kubeconfig: the client's own error comes later
        logger.debug("no namespace from the kubeconfig: %s", exc)
        return None
    chosen = next((c for c in contexts if c["name"] == context), active) if context else active
    return (chosen or {}).get("context", {}).get("namespace")


def cleanup(
    label_selector: str | None = None,
    *,
    labels: LabelScheme | None = None,
    namespace: str | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    api_client: Any = None,
) -> list[str]:
    """Delete every Job, Deployment, Service, ConfigMap and Pod matching ``label_selector``
    (always narrowed to what ``labels`` marks as managed) in ``namespace``; return
    ``Kind/name`` of each deleted object."""
    managed = (labels or LabelScheme()).selector()
    if not label_selector:
        label_selector = managed
    elif managed not in label_selector.split(","):
        label_selector = f"{managed},{label_selector}"
    cluster = _Cluster(api_client, kubeconfig, context, namespace)
    return _cleanup(cluster, label_selector)


def _cleanup(cluster: _Cluster, label_selector: str) -> list[str]:
    try:
        return cluster.delete_labelled(label_selector)
    except _errors() as exc:
        raise DeployError(f"cleanup failed: {_why(exc)}") from None


class KubernetesDeployment(Deployment):
    """A live trial in a cluster; :meth:`teardown` deletes everything labelled for it."""

    def __init__(
        self,
        spec: DeploymentSpec,
        deployer: KubernetesDeployer,
        name: str,
        release: Callable[[], None],
    ) -> None:
        super().__init__(spec)
        self.name = name
        self._deployer = deployer
        self._cluster = deployer.cluster
        self._release = release
        self._runs = 0
        self._torn_down = False
        self.deleted: list[str] = []

    @property
    def selector(self) -> str:
        return self._deployer.labels.selector(deployment=self.name)

    @property
    def url(self) -> str:
        return f"http://{self.name}.{self._cluster.namespace}.svc:{HTTP_PORT}"

    def check_alive(self) -> None:
        """Raise :class:`DeployError` if a server pod crashed or was OOM-killed."""
        problem = _pod_problem(
            self._cluster.pods(f"{self.selector},{COMPONENT_KEY}=server"),
            after_ready=True,
        )
        if problem:
            raise DeployError(f"{self.name}: {problem}")

    def open_loop(
        self,
        rate_rps: float,
        duration_s: float,
        warmup_s: float = 1.0,
        abort_p99_ms: float | None = None,
    ) -> LoadResult:
        from ._load import merge_results

        if rate_rps <= 0 or duration_s <= 0 or warmup_s < 0:
            raise StressError("rate and duration must be positive (warm-up non-negative)")
        d = self._deployer
        self._runs += 1
        run = f"{self.name[:50]}-l{self._runs}"
        workers = d.load_workers_for(rate_rps)
        cfg = {
            "endpoints": [f"{self.url}/v2/models/{self.spec.model_name}/infer"],
            "signature": d.signature(self.spec.model_path),
            "dims": d.dims,
            "rate_rps": rate_rps / workers,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "abort_p99_ms": abort_p99_ms,
            "inflight_cap": d.inflight_cap,
            "timeout_s": 30.0,
            "seed": self._runs,
        }
        job = LoadJobSpec(
            target_url=self.url,
            duration_s=duration_s,
            warmup_s=warmup_s,
            workers=workers,
            files={"locustfile.py": _WRAPPER, "stress_locustfile.py": d.locustfile_source()},
            env={"STRESS_LOAD_CONFIG": json.dumps(cfg)},
        )
        docs = render_load_manifests(
            self.spec,
            run,
            job,
            d.manifest_options,
            extra_labels={d.labels.key("deployment"): self.name, d.labels.key("run"): run},
        )
        run_selector = f"{self.selector},app.kubernetes.io/instance={run}-worker"
        try:
            for doc in docs:
                self._cluster.create(doc)
            deadline = time.monotonic() + warmup_s + duration_s + d.load_startup_timeout_s + 30.0
            while True:
                self.check_alive()
                worker_job = self._cluster.call(
                    "batch", "read_namespaced_job", f"{run}-worker", self._cluster.namespace
                )
                st = worker_job.status
                if any(c.type == "Failed" and c.status == "True" for c in st.conditions or []):
                    raise DeployError(f"{run}: load generator Job failed")
                if (st.succeeded or 0) >= workers:
                    break
                if time.monotonic() > deadline:
                    raise DeployError(f"{run}: load generator did not finish in time")
                time.sleep(d.poll_s)
            results = []
            for pod in self._cluster.pods(run_selector):
                results.extend(_results_in(self._cluster.pod_log(pod.metadata.name)))
            if len(results) < workers:
                raise DeployError(
                    f"{run}: {len(results)} of {workers} load generator pods printed a result"
                )
        except _errors() as exc:
            raise DeployError(f"{run}: Kubernetes API error: {_why(exc)}") from None
        finally:
            self._delete(f"{self.selector},{d.labels.key('run')}={run}")
        result = merge_results(results, rate_rps, duration_s, warmup_s)
        result.extra["kubernetes_run"] = run
        return result

    def _delete(self, selector: str) -> None:
        try:
            self.deleted.extend(self._cluster.delete_labelled(selector))
        except _errors(DeployError) as exc:
            # best effort here: teardown tries again and cleanup() finds the rest
            logger.warning("could not delete %s yet: %s", selector, _why(exc))

    def teardown(self) -> None:
        if self._torn_down:
            return
        try:
            self.deleted.extend(self._cluster.delete_labelled(self.selector))
            self._torn_down = True
        except _errors(DeployError) as exc:
            raise DeployError(
                f"teardown of {self.name} incomplete ({_why(exc)}); "
                f"delete what is labelled {self.selector} (the deployer's cleanup() does)"
            ) from None
        finally:
            release, self._release = self._release, _noop
            release()


def _noop() -> None:
    pass


def _results_in(log: str) -> list[dict]:
    out = []
    for line in log.splitlines():
        line = line.strip()
        if line.startswith(RESULT_PREFIX):
            try:
                out.append(json.loads(line[len(RESULT_PREFIX) :]))
            except ValueError:
                continue
    return out


def _pod_problem(pods: Iterable[Any], after_ready: bool = False) -> str | None:
    """Why these pods will not serve, or None. ``after_ready`` skips scheduling checks."""
    for pod in pods:
        st = pod.status
        name = pod.metadata.name
        if not after_ready:
            for c in st.conditions or []:
                if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                    return f"pod {name} cannot be scheduled: {c.message or 'Unschedulable'}"
        if st.phase == "Failed":
            return f"pod {name} failed: {st.reason or st.message or 'Failed'}"
        for cs in (st.init_container_statuses or []) + (st.container_statuses or []):
            last = cs.last_state.terminated if cs.last_state else None
            if last is not None and last.reason == "OOMKilled":
                return f"container {cs.name} of pod {name} was OOMKilled (memory limit too low)"
            now_term = cs.state.terminated if cs.state else None
            if now_term is not None and now_term.reason == "OOMKilled":
                return f"container {cs.name} of pod {name} was OOMKilled (memory limit too low)"
            waiting = cs.state.waiting if cs.state else None
            if waiting is not None and waiting.reason in FATAL_WAITING:
                return f"container {cs.name} of pod {name}: {waiting.reason}"
    return None


class KubernetesDeployer(Deployer):
    """Deploys specs as Triton Deployments in a cluster (see the module docstring).

    ``parallelism`` bounds how many deployments may be live at once (``deploy`` blocks for a
    slot), so several trials can run concurrently from several threads.
    ``unschedulable_grace_s`` is how long a pod may stay Unschedulable before the trial fails
    (raise it on clusters with a node autoscaler).
    """

    name = "kubernetes"

    def __init__(
        self,
        *,
        namespace: str | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        api_client: Any = None,
        image: str = TRITON_IMAGE,
        fetch_image: str = FETCH_IMAGE,
        locust_image: str = LOCUST_IMAGE,
        model_uri: str | None = None,
        gpu_label: str = "nvidia.com/gpu.product",
        gpu_product_labels: dict[str, str] | None = None,
        default_memory_mb: int = 2048,
        rollout_timeout_s: float = 600.0,
        unschedulable_grace_s: float = 30.0,
        load_startup_timeout_s: float = 120.0,
        poll_s: float = 2.0,
        parallelism: int = 1,
        load_workers: int | None = None,
        rate_per_worker: float = 400.0,
        inflight_cap: int = 256,
        study: str | None = None,
        request_timeout_s: float = 10.0,
        labels: LabelScheme | None = None,
        dims: dict[str, int] | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise StressError(
                f"unknown kubernetes deployer option(s): {', '.join(sorted(unknown))}"
            )
        if parallelism < 1:
            raise StressError("parallelism must be at least 1")
        self.cluster = _Cluster(api_client, kubeconfig, context, namespace, request_timeout_s)
        self.labels = labels or LabelScheme()
        self.manifest_options = ManifestOptions(
            labels=self.labels,
            namespace=self.cluster.namespace,
            image=image,
            fetch_image=fetch_image,
            locust_image=locust_image,
            model_uri=check_model_uri(model_uri) if model_uri else None,
            gpu_label=gpu_label,
            gpu_product_labels=dict(gpu_product_labels or {}),
            default_memory_mb=default_memory_mb,
        )
        self.rollout_timeout_s = rollout_timeout_s
        self.unschedulable_grace_s = unschedulable_grace_s
        self.load_startup_timeout_s = load_startup_timeout_s
        self.poll_s = poll_s
        self.parallelism = parallelism
        self.load_workers = load_workers
        self.rate_per_worker = rate_per_worker
        self.inflight_cap = inflight_cap
        self.study = study
        #: Values of the model's symbolic input dims in the load job's requests.
        self.dims = dict(dims or {})
        self._slots = threading.BoundedSemaphore(parallelism)
        self._signatures: dict[str, list[dict]] = {}

    # ---------------------------------------------------------------- load helpers
    def load_workers_for(self, rate_rps: float) -> int:
        if self.load_workers:
            return int(self.load_workers)
        return max(1, int(-(-rate_rps // self.rate_per_worker)))

    def signature(self, model_path: Path) -> list[dict]:
        from ._load import input_signature

        key = str(model_path)
        if key not in self._signatures:
            self._signatures[key] = input_signature(model_path)
        return self._signatures[key]

    @staticmethod
    def locustfile_source() -> str:
        return (Path(__file__).parent / "_locustfile.py").read_text()

    # ---------------------------------------------------------------- deploy
    def deploy(self, spec: DeploymentSpec) -> KubernetesDeployment:
        if self.study and "study" not in spec.labels:
            spec = DeploymentSpec(
                **{**spec.__dict__, "labels": {**spec.labels, "study": self.study}}
            )
        base = "-".join(
            label_value(spec.labels[k]) for k in ("study", "trial") if spec.labels.get(k)
        )
        name = dns_name(f"ac-{base}"[:44] + f"-{uuid.uuid4().hex[:6]}", 52)
        self._slots.acquire()
        dep = KubernetesDeployment(spec, self, name, self._slots.release)
        try:
            docs = render_trial_manifests(
                spec,
                name,
                self.manifest_options,
                extra_labels={self.labels.key("deployment"): name},
            )
            for doc in docs:
                self.cluster.create(doc)
            self._wait_rollout(dep)
        except BaseException as exc:
            leftover = ""
            try:
                dep.teardown()
            except DeployError as td:
                leftover = f"; {td}"
            if isinstance(exc, DeployError):
                raise DeployError(f"{exc}{leftover}") from None
            if isinstance(exc, _errors()):
                raise DeployError(f"{name}: Kubernetes API error: {_why(exc)}{leftover}") from None
            raise
        return dep

    def _wait_rollout(self, dep: KubernetesDeployment) -> None:
        start = time.monotonic()
        unschedulable_since: float | None = None
        want = int(dep.spec.replicas)
        while True:
            d = self.cluster.call(
                "apps", "read_namespaced_deployment", dep.name, self.cluster.namespace
            )
            st = d.status
            if (st.available_replicas or 0) >= want and (st.ready_replicas or 0) >= want:
                return
            pods = self.cluster.pods(f"{dep.selector},{COMPONENT_KEY}=server")
            crash = _pod_problem(pods, after_ready=True)
            if crash:
                raise DeployError(f"{dep.name}: {crash}")
            unsched = _pod_problem(pods)
            now = time.monotonic()
            if unsched:
                unschedulable_since = unschedulable_since or now
                if now - unschedulable_since >= self.unschedulable_grace_s:
                    raise DeployError(f"{dep.name}: {unsched}")
            else:
                unschedulable_since = None
            if now - start > self.rollout_timeout_s:
                raise DeployError(
                    f"{dep.name}: not ready after {self.rollout_timeout_s:g}s "
                    f"({st.ready_replicas or 0}/{want} replicas ready)"
                )
            time.sleep(self.poll_s)

    def cleanup(self, study: str | None = None) -> list[str]:
        """Delete every object labelled for ``study`` (default: this deployer's study; all
        this label scheme manages without one) in the deployer's namespace."""
        return _cleanup(self.cluster, self.labels.selector(study or self.study))
