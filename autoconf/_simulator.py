"""The simulator behind the ``sim`` backend and the ``sim:`` datasets: a GPU cluster modelled
from a model's profile and the GPUs' public specs, for benchmarking searches at scale.

Every number it returns comes from the model's profile, the GPU's public specs and the
assumptions below (also in ``results/bench/README.md``). None is a measurement of real hardware.

Assumptions
-----------
1. **Service time of a batch of n** on one model instance = GPU time + CPU time, not pipelined:
   ``gpu = overhead_g + k * max(n * flops / tflops_g, (weights_p + 2 n act) / bandwidth_g)``, where
   ``flops`` is the profile's FLOPs per inference at batch 1, ``act`` its activation bytes per
   sample, ``k`` the model instances sharing the GPU (they overlap their overheads, not their
   compute) and ``tflops_g = MFU * peak_g(p) * cal_g``. ``MFU = 0.25``; memory traffic runs at
   70 % of the peak bandwidth. **Precision** ``p`` is the config's (``Config.precision``; ``None``
   is the model as exported, FP32), so the simulator, the plan and the Triton configuration agree:
   ``peak_g(p)`` is the catalog's ``fp32_tflops`` for FP32, ``fp16_tflops`` (dense tensor-core
   FP16, the FP32 figure on GPUs without fast FP16) for FP16 and ``int8_tops`` (dense INT8 tensor
   cores, DP4A where there are none) for INT8, falling back to ``fp16_tflops`` where a catalog
   entry has no INT8 figure. ``weights_p`` is the profile's FP32 weight bytes x
   :data:`WEIGHT_BYTES` (1, 1/2, 1/4); activations keep the profiled (FP32) bytes, a conservative
   choice for FP16/INT8. INT8 at tensor-core speed assumes an execution provider with INT8
   kernels (TensorRT, a QDQ model); ONNX Runtime's CUDA provider runs few INT8 operators, so the
   simulated INT8 GPU figures are an upper bound. The CPU (the ``cpu`` pseudo-type, no FP32
   figure in the catalog) computes at a 1 GFLOP/s floor for FP32 and FP16 (no FP16 speed-up on
   CPUs) and :data:`CPU_INT8_SPEEDUP` x that for INT8 (an assumption; the local backend measures
   the real figure). Before ``SIM_VERSION`` 4 every GPU config was simulated at FP16 throughput.
2. **Calibration** (``cal_g``, ``overhead_g``) against the real operator timings in
   ``../shared/data/falcon/operator_microbench_wide.csv`` (TVM, FP32, M60/K80/T4/V100): a line
   ``time = a + slope * batch`` is fitted to each conv2d/dense row; the medians per GPU give the
   per-sample speed (1/slope) and per-batch overhead (a) relative to T4. ``cal_g`` = measured
   speed ratio / FP32-spec ratio (M60 0.76, K80 0.49, T4 1, V100 0.97) and ``overhead_g`` =
   1 ms x the intercept ratio (M60 1.91, K80 4.26, T4 1, V100 1.44). GPUs outside the
   micro-benchmark take the factors of the measured GPU of their class: L4 and A10G (inference
   parts) those of T4, A100 and H100 (SXM training parts) those of V100.
   :func:`calibrate` recomputes them from the CSV (a test checks they match).
3. **CPU pre/post-processing**: ``n * cpu_ms_per_sample / cores_per_instance ** 0.9`` (a little
   less than linear in cores; below one core per instance, linear slow-down).
4. **Dynamic batching** (Triton-like): a batch leaves when ``batch_size`` requests wait or the
   oldest has waited ``max_queue_delay_ms`` (:data:`ASSUMED_QUEUE_DELAY_MS` = 1 ms when the space
   has no such knob; a deployment would use autoconf's default of 2 ms, but the simulated
   tables were built with 1 ms and stay comparable), on the first
   free instance.
5. **Arrivals**: Poisson at the target rate, split evenly over ``replicas`` by a random load
   balancer (each replica sees Poisson at rate/replicas), conditioned on the count: 2,000
   requests per replica at sorted uniform times over 2,000 / rate seconds, so the offered rate
   (``offered_rps``) is exactly the target; the first 10 % are discarded as warm-up. The served
   rate (``throughput_rps``) is the long-run one: the offered rate up to the replica's
   saturation rate (instances x batch / service time of a full batch; a queue is stable below
   it). Counting completions in a 2,000-request window instead would add +-2 % of edge noise at
   high rates, which decided whether a config "served" a target load. The arrival stream is
   common to every config of a model and seed (common random numbers), so comparisons between
   configs are not noise.
6. **Out of memory** when ``k * (weights_p + batch_size * act + 0.5 GB runtime)`` exceeds the
   GPU memory (``gpu_mem_gb`` where the space sets it): a failed measurement. A device with no
   GPU memory in its catalog entry (the ``cpu`` pseudo-type, ``memory_gb: 0``) has none to run
   out of: host memory is not modelled.
7. **Measurement noise**: latencies x lognormal(sigma 3 %) drawn from a hash of (model, config,
   seed), so a (model, config, seed) always gives the same answer. Throughput is the served rate
   of assumption 5, without added noise.
8. **Capacity** (``capacity_rps``) = replicas x the highest per-replica rate whose p99 meets the
   SLO (bisection, 8 steps): load balancing makes capacity linear in replicas by construction.
9. **Cost** = the space's price of the config (GPU hours, by share where set, plus cores).
10. **The zoo** (``sim:zoo``): kops profiles of 36 models generated by ``kops.zoo`` (18
    families x 2 sizes, small enough to export on a CPU: CNNs, U-Net, YOLO, BERT/GPT-2/LLaMA/BART
    transformers, ViT, MLP-Mixer, Whisper and DeepSpeech2 speech models, LSTM, DLRM, MLPs; the
    families are listed in :mod:`kops.zoo`) and 15 perturbed copies (FLOPs, bytes and CPU time
    scaled, nine of them 5-40x to production sizes; features recomputed from the scaled
    profile). CPU time per sample is
    ``0.2 + 0.1 log10(1 + FLOPs / 1e8)`` ms (an assumption: no profile measures it). Each model's
    SLO and target load come from :func:`choose_objective`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._deployment import queue_delay_ms
from ._errors import UserError
from ._objective import Objective
from ._space import GpuSpec, SearchSpace
from ._types import Config, Load, Measurement

_PEAK_NAMES = {
    "fp32": "fp32_tflops",
    "fp16": "fp16_tflops, tensor cores",
    "int8": "int8_tops, INT8 kernels: an upper bound under ONNX Runtime's CUDA provider",
}


def precision_basis(precision: str) -> str:
    """What a plan from the simulator says about the precision its figures assume."""
    return (
        f"the simulator computed at {precision.upper()} (the catalog's {_PEAK_NAMES[precision]}; "
        "autoconf._simulator, assumption 1), the precision this plan serves"
    )


SIM_VERSION = "4"  # 3: arrivals conditioned on their count, offered_rps; 4: per-config precision
#: Weight bytes at each precision relative to the profile's FP32 weights (assumption 1).
WEIGHT_BYTES: dict[str, float] = {"fp32": 1.0, "fp16": 0.5, "int8": 0.25}
#: INT8 over FP32 on a CPU (assumption 1): 1.5-3x is what ONNX Runtime's dynamic INT8
#: quantization is commonly reported to give on x86 CPUs with VNNI; 2x is an assumption, not a
#: measurement. FP16 gets none (CPUs without native FP16 arithmetic convert it back to FP32).
CPU_INT8_SPEEDUP = 2.0
#: The compute and memory rate floor (1 GFLOP/s, 1 GB/s) of a device without catalog figures.
_FLOOR = 1e9
MFU = 0.25
BANDWIDTH_EFFICIENCY = 0.7
BASE_OVERHEAD_S = 1e-3
RUNTIME_BYTES = 0.5e9
NOISE_SIGMA = 0.03
REQUESTS = 2000
WARMUP = 0.1
#: The batcher's queue delay where the space has no such knob (assumption 4).
ASSUMED_QUEUE_DELAY_MS = 1.0
#: Up to this many configs are simulated one by one in plain Python (faster than numpy there).
SCALAR_MAX_CONFIGS = 64

#: (cal, overhead ratio) per GPU measured in the Falcon micro-benchmark; see :func:`calibrate`.
CALIBRATION: dict[str, tuple[float, float]] = {
    "M60": (0.76, 1.91),
    "K80": (0.49, 4.26),
    "T4": (1.0, 1.0),
    "V100": (0.97, 1.44),
}
#: GPUs outside the micro-benchmark take the factors of a measured GPU of their class.
CLASS_OF: dict[str, str] = {
    "L4": "T4",
    "A10G": "T4",
    "A100-40GB": "V100",
    "A100-80GB": "V100",
    "H100": "V100",
}


def calibrate(csv_path: str | Path) -> dict[str, tuple[float, float]]:
    """Recompute :data:`CALIBRATION` from the operator micro-benchmark CSV (assumption 2)."""
    fp32_tflops = {"M60": 4.8, "K80": 4.4, "T4": 8.1, "V100": 15.7}
    batches = np.array([4, 8, 16, 32, 64, 128], dtype=float)
    fits: dict[str, list[tuple[float, float]]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if row["op"] not in ("nn.conv2d", "nn.dense"):
                continue
            times = np.array([float(row[f"time_bs{int(b)}"]) for b in batches])
            slope, intercept = np.polyfit(batches, times, 1)
            fits.setdefault(row["gpu"], []).append((intercept, slope))
    med = {g: np.median(np.array(v), axis=0) for g, v in fits.items()}
    ref_a, ref_slope = med["T4"]
    out = {}
    for g, (a, slope) in med.items():
        speed = ref_slope / slope
        out[g] = (
            round(float(speed / (fp32_tflops[g] / fp32_tflops["T4"])), 2),
            round(float(a / ref_a), 2),
        )
    return out


@dataclass(frozen=True)
class SimModel:
    """What the sim needs of a model (a kops ``ModelProfile`` reduced to numbers).

    ``flops``: FLOPs per inference at batch 1; ``param_bytes``: weights in FP32 bytes (the model as
    exported: the simulator scales them by the config's precision, so a variant's own profile
    must not be given); ``activation_bytes``: activations per sample; ``cpu_ms_per_sample``:
    pre/post work.
    """

    name: str
    flops: float
    param_bytes: float
    activation_bytes: float
    cpu_ms_per_sample: float = 0.3
    features: tuple[float, ...] = field(default=())

    @classmethod
    def from_profile(cls, profile: Any, name: str | None = None) -> SimModel:
        """From a kops ``ModelProfile`` (or anything with the same attributes)."""
        if isinstance(profile, SimModel):
            return profile
        flops = float(profile.total_flops)
        feats = tuple(float(x) for x in profile.features()) if hasattr(profile, "features") else ()
        return cls(
            name=name or str(getattr(profile, "name", "model")),
            flops=flops,
            param_bytes=float(profile.param_bytes),
            activation_bytes=float(profile.activation_bytes),
            cpu_ms_per_sample=_default_cpu_ms(flops),
            features=feats,
        )

    def key(self) -> str:
        """A stable hash of every field (cache key and noise seed)."""
        return _key_of(self)


@functools.lru_cache(maxsize=1024)
def _key_of(model: SimModel) -> str:
    # once per model: the per-config noise seeds ask for it thousands of times
    return hashlib.sha256(json.dumps(asdict(model), sort_keys=True).encode()).hexdigest()[:16]


def _default_cpu_ms(flops: float) -> float:
    """Pre/post-processing per sample: 0.2 ms plus a little more for bigger inputs (assumption)."""
    return 0.2 + 0.1 * math.log10(1.0 + flops / 1e8)


def seed_of(*parts: object) -> int:
    """A stable 64-bit seed (and cache key) from ``parts``."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass
class _Arrays:
    """Per-config parameters of one model on a list of configs, as numpy arrays."""

    batch: np.ndarray
    instances: np.ndarray
    delay_s: np.ndarray
    replicas: np.ndarray
    tflops: np.ndarray
    overhead_s: np.ndarray
    bandwidth: np.ndarray
    cpu_per_instance: np.ndarray
    oom: np.ndarray
    cost: np.ndarray
    weight_bytes: np.ndarray
    need_bytes: np.ndarray


def precision_of(config: Config) -> str:
    """The precision a config runs in: its own, or FP32 (the model as exported)."""
    return config.precision or "fp32"


def peak_tflops(spec: GpuSpec, precision: str) -> float:
    """A catalog entry's peak at ``precision`` (TFLOP/s; TOP/s for INT8), assumption 1."""
    if precision == "fp16":
        return spec.fp16_tflops
    if precision == "int8":
        return spec.int8_tops if spec.int8_tops is not None else spec.fp16_tflops
    return spec.fp32_tflops


def _rates(gpu: str, spec: GpuSpec, precision: str) -> tuple[float, float, float, float]:
    """(compute FLOP/s, bandwidth B/s, overhead s, weight-bytes factor) of one device at one
    precision, before any GPU share (assumption 1)."""
    if spec.fp32_tflops <= 0:  # the CPU: no catalog figures, a floor sped up for INT8 only
        speed = CPU_INT8_SPEEDUP if precision == "int8" else 1.0
        return _FLOOR * speed, _FLOOR * speed, BASE_OVERHEAD_S, 1.0
    cal, over = CALIBRATION.get(gpu) or CALIBRATION.get(CLASS_OF.get(gpu, "T4"), (1.0, 1.0))
    bandwidth = spec.bandwidth_gbps * 1e9 * BANDWIDTH_EFFICIENCY
    tflops = MFU * peak_tflops(spec, precision) * 1e12 * cal
    return tflops, bandwidth, BASE_OVERHEAD_S * over, WEIGHT_BYTES[precision]


def _arrays(model: SimModel, space: SearchSpace, configs: Sequence[Config]) -> _Arrays:
    rates = {}
    for g, p in {(c.gpu_type, precision_of(c)) for c in configs}:
        rates[g, p] = _rates(g, space.gpu(g), p)
    n = len(configs)
    a = _Arrays(*(np.zeros(n) for _ in range(12)))
    for i, c in enumerate(configs):
        tflops, bandwidth, over, weight_factor = rates[c.gpu_type, precision_of(c)]
        spec = space.gpu(c.gpu_type)
        k = c.instances_per_gpu or 1
        share = (c.gpu_share_pct or 100) / 100.0
        a.batch[i] = c.batch_size
        a.instances[i] = k
        a.delay_s[i] = queue_delay_ms(c, default=ASSUMED_QUEUE_DELAY_MS) / 1e3
        a.replicas[i] = c.replicas
        a.tflops[i] = max(tflops * share, _FLOOR)
        a.overhead_s[i] = over
        a.bandwidth[i] = max(bandwidth * share, _FLOOR)
        a.cpu_per_instance[i] = float(c.cpu_cores) / k
        a.weight_bytes[i] = model.param_bytes * weight_factor
        memory = (c.gpu_mem_gb if c.gpu_mem_gb is not None else spec.memory_gb) * 1e9
        a.need_bytes[i] = k * (
            a.weight_bytes[i] + c.batch_size * model.activation_bytes + RUNTIME_BYTES
        )
        a.oom[i] = memory > 0 and a.need_bytes[i] > memory  # no GPU memory: nothing to exhaust
        a.cost[i] = space.cost_per_hour(c)
    return a


def _service_s(model: SimModel, a: _Arrays, n: np.ndarray) -> np.ndarray:
    """Service time of batches of ``n`` (assumptions 1 and 3)."""
    compute = np.maximum(
        n * model.flops / a.tflops,
        (a.weight_bytes + 2 * n * model.activation_bytes) / a.bandwidth,
    )
    cores = a.cpu_per_instance
    cpu_speed = np.where(cores >= 1, cores**0.9, cores)
    cpu = n * model.cpu_ms_per_sample / 1e3 / cpu_speed
    return a.overhead_s + a.instances * compute + cpu


def _simulate(
    model: SimModel, a: _Arrays, rate_per_replica: np.ndarray, unit_arrivals: np.ndarray
) -> np.ndarray:
    """Dynamic batching of Poisson arrivals, vectorised over configs (assumptions 4 and 5).

    Returns the latencies [configs, requests] in seconds.
    """
    c_count, n_req = len(a.batch), len(unit_arrivals)
    rate = np.maximum(rate_per_replica, 1e-9)
    if c_count <= SCALAR_MAX_CONFIGS:
        start_done = (
            np.stack(
                [_simulate_one(model, a, j, float(rate[j]), unit_arrivals) for j in range(c_count)]
            )
            if c_count
            else np.zeros((0, n_req))
        )
        return _finish(start_done, unit_arrivals, rate)
    k_max = int(a.instances.max()) if c_count else 1
    free_all = np.zeros((c_count, k_max))
    free_all[a.instances[:, None] <= np.arange(k_max)[None, :]] = np.inf  # unused slots
    start_done = np.full((c_count, n_req), -np.inf)
    rows = np.arange(c_count)
    # service time of a batch of n = over + k * max(n * fn, m0 + n * mn) + n * cn (assumption 1)
    cores = a.cpu_per_instance
    coef = {
        "over": a.overhead_s,
        "k": a.instances,
        "fn": model.flops / a.tflops,
        "m0": a.weight_bytes / a.bandwidth,
        "mn": 2 * model.activation_bytes / a.bandwidth,
        "cn": model.cpu_ms_per_sample / 1e3 / np.where(cores >= 1, cores**0.9, cores),
        "delay": a.delay_s,
        "batch": a.batch.astype(np.int64),
        "rate": rate,
        "free": free_all,
        "nxt": np.zeros(c_count, dtype=np.int64),
        "ids": rows.copy(),
    }
    while True:
        live = coef["nxt"] < n_req
        if not live.all():  # noqa: SIM102
            # drop finished configs once they are a fifth of the working set
            if live.sum() < 0.8 * len(live) or not live.any():
                free_all[coef["ids"]] = coef["free"]
                coef = {key: v[live] for key, v in coef.items()}
                if not len(coef["ids"]):
                    break
                live = np.ones(len(coef["ids"]), dtype=bool)
        i = np.minimum(coef["nxt"], n_req - 1)
        r, batch, free = coef["rate"], coef["batch"], coef["free"]
        oldest = unit_arrivals[i] / r
        slot = np.argmin(free, axis=1)
        sel = np.arange(len(slot))
        t_free = free[sel, slot]
        full_i = i + batch - 1
        t_full = np.where(full_i < n_req, unit_arrivals[np.minimum(full_i, n_req - 1)] / r, np.inf)
        dispatch = np.maximum(t_free, np.minimum(oldest + coef["delay"], t_full))
        waiting = np.searchsorted(unit_arrivals, dispatch * r, side="right") - i
        n = np.clip(np.minimum(waiting, batch), 1, None)
        nf = n.astype(float)
        service = (
            coef["over"]
            + coef["k"] * np.maximum(nf * coef["fn"], coef["m0"] + nf * coef["mn"])
            + nf * coef["cn"]
        )
        done = dispatch + service
        free[sel[live], slot[live]] = done[live]
        start_done[coef["ids"][live], i[live]] = done[live]
        coef["nxt"] = np.where(live, i + n, coef["nxt"])
    return _finish(start_done, unit_arrivals, rate)


def _simulate_one(
    model: SimModel, a: _Arrays, j: int, rate: float, unit_arrivals: np.ndarray
) -> np.ndarray:
    """The same dynamic-batching loop as :func:`_simulate` for one config, in plain Python
    (numpy's per-call overhead dominates with one config). Returns batch completion times."""
    import bisect

    n_req = len(unit_arrivals)
    arrivals = (unit_arrivals / rate).tolist()
    start_done = np.full(n_req, -np.inf)
    k = int(a.instances[j])
    over, fn = float(a.overhead_s[j]), model.flops / float(a.tflops[j])
    m0 = float(a.weight_bytes[j]) / float(a.bandwidth[j])
    mn = 2 * model.activation_bytes / float(a.bandwidth[j])
    cores = float(a.cpu_per_instance[j])
    cn = model.cpu_ms_per_sample / 1e3 / (cores**0.9 if cores >= 1 else cores)
    delay, batch = float(a.delay_s[j]), int(a.batch[j])
    free = [0.0] * k
    i = 0
    while i < n_req:
        slot = min(range(k), key=free.__getitem__)
        full_i = i + batch - 1
        t_full = arrivals[full_i] if full_i < n_req else math.inf
        dispatch = max(free[slot], min(arrivals[i] + delay, t_full))
        n = max(1, min(bisect.bisect_right(arrivals, dispatch) - i, batch))
        done = dispatch + over + k * max(n * fn, m0 + n * mn) + n * cn
        free[slot] = done
        start_done[i] = done
        i += n
    return start_done


def _finish(start_done: np.ndarray, unit_arrivals: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Latencies from the batch completion times at each batch's first request."""
    c_count, n_req = start_done.shape
    rows = np.arange(c_count)
    # each request completes with the batch that started at the last batch start before it
    has = np.isfinite(start_done)
    idx = np.where(has, np.arange(n_req)[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    done_req = start_done[rows[:, None], idx]
    arrivals = unit_arrivals[None, :] / rate[:, None]
    return done_req - arrivals


def _unit_arrivals(model: SimModel, seed: int, n: int = REQUESTS) -> np.ndarray:
    """``n`` Poisson arrivals at rate 1 conditioned on their count: sorted uniform times over
    ``[0, n)``, so a stream scaled to rate ``r`` offers exactly ``r`` over its window ``n / r``
    (a free-running exponential clock offers ``r`` +- 2 % by chance, which decided whether a
    config "served" a target load)."""
    rng = np.random.default_rng(seed_of("arrivals", model.key(), seed))
    return np.sort(rng.uniform(0.0, float(n), n))


def _percentiles(latency: np.ndarray) -> np.ndarray:
    """p50/p95/p99 in ms per config, warm-up discarded."""
    start = int(latency.shape[1] * WARMUP)
    return np.percentile(latency[:, start:], [50, 95, 99], axis=1).T * 1e3


def _capacity_per_replica(
    model: SimModel, a: _Arrays, slo_ms: float | None, seed: int, steps: int = 8
) -> np.ndarray:
    """Highest per-replica rate meeting the SLO (bisection), or the saturation rate without one."""
    saturation = a.instances * a.batch / _service_s(model, a, a.batch)
    if slo_ms is None:
        return saturation
    arrivals = _unit_arrivals(model, seed)
    lo = np.zeros(len(a.batch))
    hi = saturation.copy()
    for _ in range(steps):
        mid = (lo + hi) / 2
        latency = _simulate(model, a, mid, arrivals)
        ok = _percentiles(latency)[:, 2] <= slo_ms
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return lo


def _noise(model: SimModel, config: Config, seed: int) -> float:
    rng = np.random.default_rng(seed_of("noise", model.key(), config.key(), seed))
    return float(np.exp(rng.normal(0.0, NOISE_SIGMA)))


def simulate_configs(
    model: SimModel,
    space: SearchSpace,
    configs: Sequence[Config],
    load: Load,
    seed: int = 0,
) -> list[Measurement]:
    """Measure every config of ``configs`` under ``load`` (vectorised); see the module docstring."""
    configs = list(configs)
    a = _arrays(model, space, configs)
    ok = ~a.oom.astype(bool)
    out: list[Measurement | None] = [None] * len(configs)
    for i in np.flatnonzero(~ok):
        need = float(a.need_bytes[i])
        out[i] = Measurement.failed(
            f"out of GPU memory (needs {need / 1e9:.1f} GB)", float(a.cost[i])
        )
    live = np.flatnonzero(ok)
    if live.size:
        sub = _Arrays(*(getattr(a, f)[live] for f in a.__dataclass_fields__))
        # capacity per replica depends on the replica's own knobs only: bisect once per unit
        units: dict[tuple, int] = {}
        unit_of = np.array([units.setdefault(_unit_key(configs[i]), len(units)) for i in live])
        first = np.unique(unit_of, return_index=True)[1]
        unit_arrays = _Arrays(*(getattr(sub, f)[first] for f in sub.__dataclass_fields__))
        cap = (
            _capacity_per_replica(model, unit_arrays, load.slo_p99_ms, seed)[unit_of] * sub.replicas
        )
        if load.target_rps is not None:
            rate = load.target_rps / sub.replicas
        else:
            rate = np.maximum(cap / sub.replicas, 1e-3)
        latency = _simulate(model, sub, rate, _unit_arrivals(model, seed))
        # served: the offered rate up to the replica's saturation rate (assumption 5)
        served = np.minimum(rate, sub.instances * sub.batch / _service_s(model, sub, sub.batch))
        pct = _percentiles(latency)
        for j, i in enumerate(live):
            noise = _noise(model, configs[i], seed)
            p50, p95, p99 = (float(x) * noise for x in pct[j])
            out[i] = Measurement(
                ok=True,
                cost_per_hour=float(a.cost[i]),
                throughput_rps=float(served[j] * sub.replicas[j]),
                offered_rps=float(rate[j] * sub.replicas[j]),
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
                capacity_rps=float(cap[j]),
                wall_s=load.duration_s,
            )
    return out  # type: ignore[return-value]


def choose_objective(model: SimModel, space: SearchSpace, seed: int = 0) -> Objective:
    """An SLO and a target load that make the search non-trivial for this model.

    Tries SLOs of 3/6/12 x the fastest batch-1 latency (at least 5 ms) and target loads of
    2/4/8/16 x the median per-replica capacity; keeps the first pair (in an order fixed by the
    model) whose predicted optimum uses neither one nor the most replicas and whose infeasible
    share lies in 30-85 %, else the pair closest to that. Prediction: capacity x replicas
    >= target (assumption 8).
    """
    configs = space.configs()
    units: dict[tuple, int] = {}
    for c in configs:
        units.setdefault(_unit_key(c), len(units))
    unit_configs = [Config.from_dict({**dict(zip(_UNIT_FIELDS, k)), "replicas": 1}) for k in units]
    unit_configs = [_drop_none(c) for c in unit_configs]
    a = _arrays(model, space, unit_configs)
    live = ~a.oom.astype(bool)
    if not live.any():
        raise UserError(f"model {model.name!r} fits no GPU of space {space.name!r}")
    fastest = float(_service_s(model, a, np.ones(len(unit_configs)))[live].min()) * 1e3
    replicas = np.array([c.replicas for c in configs])
    unit_index = np.array([units[_unit_key(c)] for c in configs])
    cost = np.array([space.cost_per_hour(c) for c in configs])
    rng = np.random.default_rng(seed_of("objective", model.key(), seed))
    best: tuple[float, Objective] | None = None
    r_min, r_max = replicas.min(), replicas.max()
    for slo in rng.permutation([3.0, 6.0, 12.0]):
        slo_ms = round(float(max(slo * fastest, 5.0)), 1)
        cap = np.where(live, _capacity_per_replica(model, a, slo_ms, seed), 0.0)
        median_cap = float(np.median(cap[cap > 0])) if (cap > 0).any() else 0.0
        if median_cap <= 0:
            continue
        for mult in rng.permutation([2.0, 4.0, 8.0, 16.0]):
            target = float(f"{mult * median_cap:.3g}")
            feasible = cap[unit_index] * replicas >= target
            if not feasible.any():
                continue
            share_bad = 1 - feasible.mean()
            opt = int(np.argmin(np.where(feasible, cost, np.inf)))
            interior = r_min < replicas[opt] < r_max
            miss = abs(share_bad - np.clip(share_bad, 0.3, 0.85)) + (0 if interior else 1)
            objective = Objective(slo_p99_ms=slo_ms, target_rps=target)
            if miss == 0:
                return objective
            if best is None or miss < best[0]:
                best = (miss, objective)
    if best is None:
        raise UserError(f"model {model.name!r}: no SLO/load makes any config feasible")
    return best[1]


_UNIT_FIELDS = (
    "batch_size",
    "gpu_type",
    "cpu_cores",
    "instances_per_gpu",
    "max_queue_delay_ms",
    "gpu_mem_gb",
    "gpu_share_pct",
    "precision",
)


def _unit_key(c: Config) -> tuple:
    return tuple(getattr(c, f) for f in _UNIT_FIELDS)


def _drop_none(c: Config) -> Config:
    return Config.from_dict(c.to_dict())
