"""A TEST DOUBLE of the Kubernetes API server: not Kubernetes, and not a substitute for one.

No API server can run on the machines these tests run on, so this is a small HTTP server that
speaks the subset of the Kubernetes REST API that ``stress._kubernetes`` uses, well enough for
the official ``kubernetes`` Python client to talk to it unchanged:

- create / get / list (with ``labelSelector``) / delete for ConfigMaps, Services, Pods
  (``/api/v1``), Deployments (``/apis/apps/v1``) and Jobs (``/apis/batch/v1``), and pod logs;
- 404 for a missing object, 409 for a name taken, Kubernetes ``Status`` bodies.

It moves objects through realistic states, driven by time since creation:

- a Deployment creates ``replicas`` Pods; a Job creates ``parallelism`` Pods;
- a Pod is ``Pending`` until "scheduled" onto one of the double's fake nodes: it fits when the
  node's labels match its ``nodeSelector`` and the node has the CPU, memory and
  ``nvidia.com/gpu`` it requests; otherwise it stays Pending with condition
  ``PodScheduled=False, reason=Unschedulable`` (as kube-scheduler reports);
- a scheduled Pod becomes ``Running`` and Ready after ``start_s``, unless its memory limit is
  below ``oom_below_mb``: then its container is OOMKilled and sits in ``CrashLoopBackOff``;
- a Job's Pods run for ``job_run_s`` then succeed; their log is what ``job_log(job, pod,
  index)`` returns (the tests decide what a load generator would have printed);
- deleting a Deployment deletes its Pods; deleting a Job deletes its Pods only with
  ``propagationPolicy`` Background/Foreground (the API's default for Jobs orphans them).

What it does not do: authentication, watches, patches, field selectors, resourceVersion
conflicts, real containers, networking. Anything the backend needs beyond this subset fails
loudly with 501.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_KINDS = {
    ("", "configmaps"): ("v1", "ConfigMap"),
    ("", "services"): ("v1", "Service"),
    ("", "pods"): ("v1", "Pod"),
    ("apps", "deployments"): ("apps/v1", "Deployment"),
    ("batch", "jobs"): ("batch/v1", "Job"),
}
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>apps|batch)/v1)/namespaces/(?P<ns>[^/]+)/(?P<res>[a-z]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>log))?$"
)


@dataclass
class FakeNode:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    cpu: float = 8.0
    memory_mb: int = 32768
    gpus: int = 0


def _qty_cpu(v: Any) -> float:
    s = str(v)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


def _qty_mb(v: Any) -> float:
    s = str(v)
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1 / 1000, "M": 1, "G": 1000}
    for u, f in units.items():
        if s.endswith(u):
            return float(s[: -len(u)]) * f
    return float(s) / 2**20


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def match_selector(labels: dict[str, str], selector: str | None) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, comma-ANDed."""
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class KubeApiDouble:
    """The double's state and clock; ``url`` is what a client's ``host`` points at."""

    def __init__(
        self,
        nodes: list[FakeNode] | None = None,
        *,
        schedule_s: float = 0.05,
        start_s: float = 0.15,
        job_run_s: float = 0.2,
        oom_below_mb: float = 0.0,
        job_log: Callable[[dict, dict, int], str] | None = None,
    ) -> None:
        self.nodes = nodes if nodes is not None else [FakeNode("cpu-node-1")]
        self.schedule_s = schedule_s
        self.start_s = start_s
        self.job_run_s = job_run_s
        self.oom_below_mb = oom_below_mb
        self.job_log = job_log or (lambda job, pod, index: "")
        self.objects: dict[tuple[str, str, str], dict] = {}  # (resource, ns, name) -> object
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ server lifecycle
    def start(self) -> KubeApiDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _body(self) -> dict:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}") if n else {}

            def _do(self, method: str) -> None:
                code, body, ctype = double.handle(method, self.path, self._body())
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._do("GET")

            def do_POST(self) -> None:
                self._do("POST")

            def do_DELETE(self) -> None:
                self._do("DELETE")

            def do_PUT(self) -> None:
                self._do("PUT")

            def do_PATCH(self) -> None:
                self._do("PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> KubeApiDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection
    def names(self, resource: str, selector: str | None = None) -> list[str]:
        with self.lock:
            self._tick()
            return sorted(
                n
                for (r, _, n), o in self.objects.items()
                if r == resource and match_selector(o["metadata"].get("labels", {}), selector)
            )

    def count(self, selector: str | None = None) -> int:
        return sum(len(self.names(r, selector)) for _, r in _KINDS)

    # ------------------------------------------------------------------ REST
    def handle(self, method: str, raw_path: str, body: dict) -> tuple[int, Any, str]:
        url = urlparse(raw_path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append((method, url.path))
        m = _PATH.match(url.path)
        if not m or (m["group"] or "", m["res"]) not in _KINDS:
            return self._status(501, "NotImplemented", f"the double does not serve {url.path}")
        group, ns, res, name, sub = m["group"] or "", m["ns"], m["res"], m["name"], m["sub"]
        api_version, kind = _KINDS[(group, res)]
        with self.lock:
            self._tick()
            if sub == "log":
                return self._log(ns, name)
            if method == "POST" and name is None:
                return self._create(res, ns, api_version, kind, body)
            if method == "GET" and name is None:
                sel = query.get("labelSelector")
                items = [
                    self._public(o)
                    for (r, n2, _), o in sorted(self.objects.items())
                    if r == res
                    and n2 == ns
                    and match_selector(o["metadata"].get("labels", {}), sel)
                ]
                return (
                    200,
                    {
                        "apiVersion": api_version,
                        "kind": f"{kind}List",
                        "metadata": {"resourceVersion": "1"},
                        "items": items,
                    },
                    "application/json",
                )
            obj = self.objects.get((res, ns, name))
            if obj is None:
                return self._status(404, "NotFound", f'{res} "{name}" not found')
            if method == "GET":
                return 200, self._public(obj), "application/json"
            if method == "DELETE":
                policy = body.get("propagationPolicy") or query.get("propagationPolicy")
                self._delete(res, ns, name, policy)
                if res in ("services", "pods"):  # the API answers these with the object
                    return 200, self._public(obj), "application/json"
                return self._status(200, "", "", status="Success", details={"name": name})
        return self._status(405, "MethodNotAllowed", f"{method} {url.path}")

    @staticmethod
    def _status(code: int, reason: str, message: str, status: str = "Failure", **extra: Any):
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": status,
            "message": message,
            "reason": reason,
            "code": code,
            **extra,
        }
        return code, body, "application/json"

    def _create(self, res: str, ns: str, api_version: str, kind: str, body: dict):
        name = body.get("metadata", {}).get("name")
        if not name:
            return self._status(422, "Invalid", "metadata.name: Required value")
        if (res, ns, name) in self.objects:
            return self._status(409, "AlreadyExists", f'{res} "{name}" already exists')
        obj = json.loads(json.dumps(body))
        obj["apiVersion"], obj["kind"] = api_version, kind
        meta = obj["metadata"]
        meta.update(
            namespace=ns,
            uid=str(uuid.uuid4()),
            resourceVersion="1",
            creationTimestamp=_now_iso(),
        )
        meta.setdefault("labels", {})
        obj["_created"] = time.monotonic()
        if res == "services":
            obj["spec"]["clusterIP"] = f"10.96.0.{len(self.objects) % 250 + 2}"
        self.objects[(res, ns, name)] = obj
        if res == "deployments":
            for _ in range(int(obj["spec"].get("replicas", 1))):
                self._make_pod(ns, obj, f"{name}-{uuid.uuid4().hex[:10]}")
        elif res == "jobs":
            obj["metadata"]["labels"].setdefault("job-name", name)
            n = int(obj["spec"].get("parallelism", 1))
            for i in range(n):
                self._make_pod(ns, obj, f"{name}-{i}-{uuid.uuid4().hex[:5]}", index=i)
        return 201, self._public(obj), "application/json"

    def _make_pod(self, ns: str, owner: dict, name: str, index: int = 0) -> None:
        template = owner["spec"]["template"]
        labels = dict(template.get("metadata", {}).get("labels", {}))
        if owner["kind"] == "Job":
            labels["job-name"] = owner["metadata"]["name"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "resourceVersion": "1",
                "creationTimestamp": _now_iso(),
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": owner["apiVersion"],
                        "kind": owner["kind"],
                        "name": owner["metadata"]["name"],
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
            "spec": json.loads(json.dumps(template["spec"])),
            "status": {"phase": "Pending", "conditions": []},
            "_created": time.monotonic(),
            "_index": index,
        }
        self.objects[("pods", ns, name)] = pod

    def _delete(self, res: str, ns: str, name: str, policy: str | None) -> None:
        obj = self.objects.pop((res, ns, name))
        cascade = res == "deployments" or (res == "jobs" and policy in ("Background", "Foreground"))
        if cascade:
            uid = obj["metadata"]["uid"]
            for key, o in list(self.objects.items()):
                refs = o["metadata"].get("ownerReferences", [])
                if key[0] == "pods" and any(r["uid"] == uid for r in refs):
                    self._release(o)
                    del self.objects[key]
        if res == "pods":
            self._release(obj)

    def _log(self, ns: str, name: str):
        pod = self.objects.get(("pods", ns, name))
        if pod is None:
            return self._status(404, "NotFound", f'pods "{name}" not found')
        if pod["status"]["phase"] == "Pending":
            return self._status(400, "BadRequest", f'container "{name}" in pod is waiting to start')
        return 200, pod.get("_log", ""), "text/plain"

    @staticmethod
    def _public(obj: dict) -> dict:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    # ------------------------------------------------------------------ the clock
    def _requests_of(self, pod: dict) -> tuple[float, float, int, float]:
        cpu = mem = lim_mem = 0.0
        gpu = 0
        for c in pod["spec"].get("containers", []):
            req = c.get("resources", {}).get("requests", {})
            lim = c.get("resources", {}).get("limits", {})
            cpu += _qty_cpu(req.get("cpu", lim.get("cpu", 0)))
            mem += _qty_mb(req.get("memory", lim.get("memory", 0)))
            gpu += int(lim.get("nvidia.com/gpu", req.get("nvidia.com/gpu", 0)))
            lim_mem = max(lim_mem, _qty_mb(lim.get("memory", 0)) if lim.get("memory") else 1e12)
        return cpu, mem, gpu, lim_mem

    def _used(self, node: str) -> tuple[float, float, int]:
        cpu = mem = 0.0
        gpu = 0
        for (r, _, _), o in self.objects.items():
            if (
                r == "pods"
                and o.get("_node") == node
                and o["status"]["phase"] in ("Pending", "Running")
            ):
                c, m, g, _ = self._requests_of(o)
                cpu, mem, gpu = cpu + c, mem + m, gpu + g
        return cpu, mem, gpu

    def _release(self, pod: dict) -> None:
        pod.pop("_node", None)

    def _schedule(self, pod: dict) -> FakeNode | None:
        cpu, mem, gpu, _ = self._requests_of(pod)
        selector = pod["spec"].get("nodeSelector", {})
        for node in self.nodes:
            if any(node.labels.get(k) != v for k, v in selector.items()):
                continue
            u_cpu, u_mem, u_gpu = self._used(node.name)
            if (
                u_cpu + cpu <= node.cpu
                and u_mem + mem <= node.memory_mb
                and u_gpu + gpu <= node.gpus
            ):
                return node
        return None

    def _tick(self) -> None:
        now = time.monotonic()
        for (res, _, _), obj in list(self.objects.items()):
            if res == "pods":
                self._tick_pod(obj, now)
        for (res, ns, _), obj in list(self.objects.items()):
            if res == "deployments":
                self._tick_deployment(ns, obj)
            elif res == "jobs":
                self._tick_job(ns, obj)

    def _tick_pod(self, pod: dict, now: float) -> None:
        st = pod["status"]
        age = now - pod["_created"]
        if st["phase"] in ("Succeeded", "Failed"):
            return
        if "_node" not in pod:
            if age < self.schedule_s:
                return
            node = self._schedule(pod)
            if node is None:
                n = len(self.nodes)
                st["conditions"] = [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": f"0/{n} nodes are available: {n} node(s) didn't match "
                        "Pod's node affinity/selector or had insufficient resources.",
                        "lastTransitionTime": _now_iso(),
                    }
                ]
                return
            pod["_node"] = node.name
            pod["_scheduled_at"] = now
            pod["spec"]["nodeName"] = node.name
            st["conditions"] = [{"type": "PodScheduled", "status": "True"}]
        if now - pod["_scheduled_at"] < self.start_s:
            return
        containers = pod["spec"].get("containers", [])
        _, _, _, lim_mem = self._requests_of(pod)
        owner = pod["metadata"]["ownerReferences"][0]["kind"]
        base = {"imageID": "", "started": True}
        if owner != "Job" and lim_mem < self.oom_below_mb:
            restarts = int((now - pod["_scheduled_at"]) / max(self.start_s, 1e-3))
            st["phase"] = "Running"
            st["conditions"] = [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
            ]
            st["containerStatuses"] = [
                {
                    **base,
                    "name": c["name"],
                    "image": c["image"],
                    "ready": False,
                    "restartCount": restarts,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                }
                for c in containers
            ]
            return
        done = owner == "Job" and now - pod["_scheduled_at"] >= self.start_s + self.job_run_s
        st["phase"] = "Succeeded" if done else "Running"
        st["podIP"] = "10.244.0.10"
        st["conditions"] = [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False" if done else "True"},
        ]
        st["containerStatuses"] = [
            {
                **base,
                "name": c["name"],
                "image": c["image"],
                "ready": not done,
                "restartCount": 0,
                "state": (
                    {"terminated": {"reason": "Completed", "exitCode": 0}}
                    if done
                    else {"running": {"startedAt": _now_iso()}}
                ),
            }
            for c in containers
        ]
        if done and "_log" not in pod:
            job = self.objects.get(
                (
                    "jobs",
                    pod["metadata"]["namespace"],
                    pod["metadata"]["ownerReferences"][0]["name"],
                )
            )
            pod["_log"] = self.job_log(self._public(job or {}), self._public(pod), pod["_index"])

    def _pods_of(self, ns: str, owner: dict) -> list[dict]:
        uid = owner["metadata"]["uid"]
        return [
            o
            for (r, n, _), o in self.objects.items()
            if r == "pods"
            and n == ns
            and any(ref["uid"] == uid for ref in o["metadata"].get("ownerReferences", []))
        ]

    def _tick_deployment(self, ns: str, dep: dict) -> None:
        pods = self._pods_of(ns, dep)
        ready = sum(
            1
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"]
            )
        )
        want = int(dep["spec"].get("replicas", 1))
        available = ready >= want
        dep["status"] = {
            "observedGeneration": 1,
            "replicas": len(pods),
            "updatedReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, want - ready),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available else "False",
                    "reason": "MinimumReplicasAvailable"
                    if available
                    else "MinimumReplicasUnavailable",
                },
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
            ],
        }
        dep["metadata"]["generation"] = 1

    def _tick_job(self, ns: str, job: dict) -> None:
        pods = self._pods_of(ns, job)
        succeeded = sum(1 for p in pods if p["status"]["phase"] == "Succeeded")
        failed = sum(1 for p in pods if p["status"]["phase"] == "Failed")
        want = int(job["spec"].get("completions", 1))
        status: dict[str, Any] = {
            "active": sum(1 for p in pods if p["status"]["phase"] in ("Pending", "Running")),
            "succeeded": succeeded,
            "failed": failed,
        }
        if succeeded >= want:
            status["conditions"] = [{"type": "Complete", "status": "True"}]
        elif failed > int(job["spec"].get("backoffLimit", 6)):
            status["conditions"] = [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
            ]
        job["status"] = status
