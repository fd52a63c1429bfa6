"""The open-loop load on Locust: Poisson arrivals, latency from the scheduled send time.

Locust's users are closed loops (a user waits for its answer before it sends again), which
hides queueing (coordinated omission). Here one Locust ``FastHttpUser`` acts as an arrival
process instead: it schedules exactly ``round(rate x duration)`` arrivals in the measured
window at sorted uniform times (a Poisson process conditioned on its count) and, at each
scheduled instant, spawns a greenlet that sends one request through the user's connection pool.
Latency is timed from the *scheduled* instant, so a late send counts against the server.
At most ``inflight_cap`` requests are in flight; an arrival that finds the cap full is dropped,
counted as an error and reported as a cap hit. Exact latencies come from Locust's ``request``
event (Locust's own percentiles are rounded to about two significant digits).

This module imports locust (which gevent-patches the process): it must only ever run in a
process of its own. It needs nothing but locust and the standard library, so it can also be
shipped alone into a cluster. Two ways to run it:

- ``python -m stress._locustfile CONFIG.json``: what :mod:`stress._load` does, one process per
  share of the rate; results go to ``config["out"]`` as JSON;
- ``locust -f stress/_locustfile.py --headless -u 1 -r 1`` (also as master/workers) with the
  config JSON in the ``STRESS_LOAD_CONFIG`` environment variable (a path or the JSON itself);
  each process prints one line ``STRESS_RESULT {json}`` (and writes ``out`` if set) when done.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from locust import FastHttpUser, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402

_V2 = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
}
#: How many different request bodies to pre-build and cycle through (fewer for big inputs).
N_BODIES = 16


def make_bodies(signature: list, dims: dict, seed: int, n: int = N_BODIES) -> list:
    """v2 infer request bodies of one row each from an input signature.

    Integer inputs with a ``value_range`` (token ids) stay within it; floats are standard
    normal. Symbolic dimensions take ``dims[name]`` (else ``dims["*"]``, else 16); the batch
    dimension is always 1. Standard library only: this file also runs alone in a cluster.
    """
    rng = random.Random(seed)
    shapes = []
    for spec in signature:
        shape = [
            d if isinstance(d, int) and d > 0 else int(dims.get(str(d), dims.get("*", 16)))
            for d in spec["shape"]
        ]
        if shape:
            shape[0] = 1  # one row per request: batching is the server's job
        shapes.append(shape)
    values = sum(math.prod(s) for s in shapes) or 1
    n = max(1, min(n, 2_000_000 // values))
    bodies = []
    for _ in range(n):
        tensors = []
        for spec, shape in zip(signature, shapes):
            count = math.prod(shape)
            dtype = spec["dtype"]
            data: list[float]  # ints and bools are floats to the type checker, as to JSON
            if dtype.startswith(("int", "uint")):
                lo, hi = spec.get("value_range") or (0, 1)
                data = [rng.randint(int(lo), int(hi)) for _ in range(count)]
            elif dtype == "bool":
                data = [rng.random() < 0.5 for _ in range(count)]
            else:
                data = [round(rng.gauss(0.0, 1.0), 6) for _ in range(count)]
            tensors.append(
                {
                    "name": spec["name"],
                    "shape": shape,
                    "datatype": _V2.get(dtype, "FP32"),
                    "data": data,
                }
            )
        bodies.append(json.dumps({"inputs": tensors}, separators=(",", ":")).encode())
    return bodies


def _load_config() -> dict:
    raw = os.environ.get("STRESS_LOAD_CONFIG", "")
    if raw.lstrip().startswith("{"):
        return json.loads(raw)
    if raw:
        with open(raw) as fh:
            return json.load(fh)
    return {}


class OpenLoopUser(FastHttpUser):
    """One Poisson arrival process; its single task runs the whole open-loop step."""

    host = "http://127.0.0.1"
    config: dict = {}
    network_timeout = 30.0
    connection_timeout = 10.0
    concurrency = 256

    def __init__(self, environment) -> None:
        cfg = self.config or _load_config()
        type(self).concurrency = int(cfg.get("inflight_cap", 256))
        self.network_timeout = float(cfg.get("timeout_s", 30.0))
        self.host = cfg["endpoints"][0].split("/v2/")[0]
        super().__init__(environment)
        self.cfg = cfg
        self.result: dict | None = None

    @task
    def open_loop(self) -> None:
        """Under ``locust -f``: one step, then the whole runner quits (and emits the result)."""
        try:
            _records["result"] = run_open_loop(self, self.cfg)
        finally:
            gevent.spawn(self.environment.runner.quit)
            gevent.sleep(3600)


_records: dict = {}


@events.request.add_listener
def _on_request(
    request_type, name, response_time, response_length, exception=None, context=None, **kwargs
) -> None:
    """Record one exact latency, from the scheduled send time (``context['t_sched']``)."""
    if not context or "t_sched" not in context:
        return
    now = time.perf_counter()
    rec = _records.get("state")
    if rec is None:
        return
    rec.on_done(context["rid"], context["t_sched"], now, response_time, exception is None)


class _State:
    def __init__(self, base: float, warmup_s: float, abort_ms: float | None, expected: float):
        self.base = base
        self.warmup_s = warmup_s
        self.abort_s = abort_ms / 1000.0 if abort_ms else None
        # The step's p99 is certainly above the limit once more than 1% of all the requests
        # the step will measure took longer: that is when it is "clearly violated".
        self.abort_budget = max(3, math.ceil(0.01 * expected)) if abort_ms else None
        self.sched: list[float] = []
        self.lat_ms: list[float] = []
        self.service_ms: list[float] = []
        self.ok: list[int] = []
        self.done_at: list[float] = []
        self.send_lag_ms: list[float] = []  # scheduled -> actual send, aligned with the above
        self.lag_by_rid: dict[int, float] = {}
        self.pending: dict[int, float] = {}
        self.over = 0

    def on_done(self, rid, t_sched, now, service_ms, ok) -> None:
        if self.pending.pop(rid, None) is None:
            return  # already censored at the end of the step
        rel = t_sched - self.base
        lat = now - t_sched
        self.sched.append(rel)
        self.lat_ms.append(lat * 1000.0)
        self.service_ms.append(float(service_ms))
        self.ok.append(1 if ok else 0)
        self.done_at.append(now - self.base)
        self.send_lag_ms.append(self.lag_by_rid.pop(rid, float("nan")))
        if self.abort_s is not None and rel >= self.warmup_s and (lat > self.abort_s or not ok):
            self.over += 1

    def clearly_violated(self) -> bool:
        return self.abort_budget is not None and self.over > self.abort_budget


def arrival_times(
    rate: float, warmup_s: float, duration_s: float, rng: random.Random, windows: int = 1
) -> list[float]:
    """Poisson arrivals conditioned on their count: exactly ``round(rate * duration_s / windows)``
    in each of ``windows`` equal windows of the measured time ``[warmup_s, warmup_s +
    duration_s)`` (and ``round(rate * warmup_s)`` in the warm-up before it), at sorted uniform
    times.

    Given its count, a Poisson process's arrival times are independent uniforms over the window,
    so this is the same process with the count's noise removed: a free-running exponential
    clock offers +-1/sqrt(rate x duration) of the target by chance (40 rps x 3 s sent 0.933 of
    it), which a step's pass/fail must not depend on; per window, so that every window of the
    stability rule (:mod:`stress._stability`) offers the same number of requests.
    """
    warm = sorted(rng.uniform(0.0, warmup_s) for _ in range(round(rate * warmup_s)))
    windows = max(1, int(windows))
    length = duration_s / windows
    n = round(rate * length)
    out = warm
    for k in range(windows):
        start = warmup_s + k * length
        out += sorted(start + rng.uniform(0.0, length) for _ in range(n))
    return out


def run_open_loop(user: FastHttpUser, cfg: dict) -> dict:
    """Drive Poisson arrivals at ``cfg['rate_rps']`` (:func:`arrival_times`) and return every
    measurement as JSON data."""
    rate = float(cfg["rate_rps"])
    duration = float(cfg["duration_s"])
    warmup = float(cfg.get("warmup_s", 0.0))
    endpoints = list(cfg["endpoints"])
    cap = int(cfg.get("inflight_cap", 256))
    timeout = float(cfg.get("timeout_s", 30.0))
    rng = random.Random(cfg.get("seed", 0))
    bodies = make_bodies(cfg.get("signature", []), cfg.get("dims", {}), cfg.get("seed", 0))
    headers = {"Content-Type": "application/json"}
    start_at = float(cfg.get("start_at") or time.time())
    base = time.perf_counter() + (start_at - time.time())
    st = _State(base, warmup, cfg.get("abort_p99_ms"), rate * duration)
    _records["state"] = st
    cap_hits = 0
    lag_ms: list[float] = []
    greenlets = []
    cpu0 = time.process_time()

    def one(rid: int, t_sched: float, url: str, body: bytes) -> None:
        lag = (time.perf_counter() - t_sched) * 1000.0
        lag_ms.append(lag)
        st.lag_by_rid[rid] = lag
        # locust annotates data as str|dict; its docs and geventhttpclient take bytes
        user.client.post(
            url,
            data=body,  # type: ignore[arg-type]
            headers=headers,
            name="infer",
            context={"t_sched": t_sched, "rid": rid},
        )

    gevent.sleep(max(0.0, base - time.perf_counter()))
    rid = 0
    aborted = False
    for t in arrival_times(rate, warmup, duration, rng, int(cfg.get("windows", 1))):
        delay = base + t - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        if st.clearly_violated():
            aborted = True
            break
        rid += 1
        if len(st.pending) >= cap:
            cap_hits += 1
            st.sched.append(t)
            st.lat_ms.append(float("nan"))
            st.service_ms.append(float("nan"))
            st.ok.append(0)
            st.done_at.append(t)
            st.send_lag_ms.append(float("nan"))
            if t >= warmup:
                st.over += 1
            continue
        st.pending[rid] = base + t
        greenlets.append(
            gevent.spawn(
                one, rid, base + t, endpoints[rid % len(endpoints)], bodies[rid % len(bodies)]
            )
        )
        if len(greenlets) > 4096:
            greenlets = [g for g in greenlets if not g.dead]
    end_sched = time.perf_counter()
    # Wait for what is in flight (briefly when aborting), then censor the rest.
    grace = 0.5 if aborted else timeout
    gevent.joinall([g for g in greenlets if not g.dead], timeout=grace)
    censored = 0
    now = time.perf_counter()
    for r, t_sched in list(st.pending.items()):
        st.pending.pop(r)
        censored += 1
        st.sched.append(t_sched - base)
        st.lat_ms.append((now - t_sched) * 1000.0)
        st.service_ms.append(float("nan"))
        st.ok.append(0)
        st.done_at.append(now - base)
        st.send_lag_ms.append(st.lag_by_rid.pop(r, float("nan")))
    wall = time.perf_counter() - base
    lag = sorted(lag_ms)
    return {
        "rate_rps": rate,
        "duration_s": duration,
        "warmup_s": warmup,
        "sent": rid - cap_hits,
        "scheduled": rid,
        "cap_hits": cap_hits,
        "censored": censored,
        "aborted": aborted,
        "schedule_end_s": end_sched - base,
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu0,
        "send_lag_p50_ms": lag[len(lag) // 2] if lag else 0.0,
        "send_lag_p99_ms": lag[min(len(lag) - 1, int(0.99 * len(lag)))] if lag else 0.0,
        "sched_s": st.sched,
        "latency_ms": [x if x == x else None for x in st.lat_ms],
        "service_ms": [x if x == x else None for x in st.service_ms],
        "ok": st.ok,
        "done_s": st.done_at,
        "send_lag_ms": [x if x == x else None for x in st.send_lag_ms],
    }


def _emit(result: dict, cfg: dict) -> None:
    out = cfg.get("out")
    if out:
        tmp = out + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(result, fh)
        os.replace(tmp, out)
    else:
        print("STRESS_RESULT " + json.dumps(result), flush=True)


@events.quitting.add_listener
def _on_quitting(environment, **kwargs) -> None:
    """Under ``locust -f``: write this process's result as it exits."""
    if _records.get("emitted"):
        return
    result = _records.get("result")
    if result is not None:
        _emit(result, _load_config())
        _records["emitted"] = True


def main(argv: list[str]) -> int:
    """Run one open-loop step as this process's share of the load (see the module docstring)."""
    with open(argv[0]) as fh:
        cfg = json.load(fh)
    if cfg.get("parent_pid"):
        from stress._lifetime import bind_to_parent

        bind_to_parent(int(cfg["parent_pid"]))  # never outlive the deployer
    OpenLoopUser.config = cfg
    env = Environment(user_classes=[OpenLoopUser], events=events)
    runner = env.create_local_runner()
    user = OpenLoopUser(env)

    def stop(*_):
        # SIGTERM from the parent: finish early; what was measured so far is still written.
        _records["state"].abort_budget = -1 if "state" in _records else None

    gevent.signal_handler(15, stop)
    try:
        if not cfg.get("handshake"):
            _run_segment(user, env, cfg)
            return 0
        # Tell the parent the (slow) imports are done; it answers with segments to run, each
        # "GO START_AT [DURATION_S WARMUP_S WINDOWS OUT]", on a common clock, until it closes
        # stdin: more windows of one measurement without re-importing anything.
        print("READY", flush=True)
        while True:
            line = sys.stdin.readline().split()
            if not line or line[0] != "GO":
                return 0
            seg = dict(cfg, start_at=float(line[1]))
            if len(line) >= 6:
                seg.update(duration_s=float(line[2]), warmup_s=float(line[3]), windows=int(line[4]))
                seg["out"] = line[5]
            _run_segment(user, env, seg)
    finally:
        runner.quit()


def _run_segment(user: OpenLoopUser, env: Environment, cfg: dict) -> None:
    result = run_open_loop(user, cfg)
    result["locust_requests"] = env.stats.total.num_requests
    _emit(result, cfg)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
