"""``autoconf stress MODEL.onnx --config ... (--rate R --duration D | --capacity --slo-p99 L)``.

Deploys one config, runs one measurement (open-loop load at a fixed rate, or a capacity search
under a p99 SLO), tears everything down and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .._errors import UserError
from .._input import (
    MAX_BATCH_SIZE,
    MAX_CPU_CORES,
    MAX_INSTANCES,
    MAX_MEMORY_MB,
    MAX_QUEUE_DELAY_MS,
    MAX_REPLICAS,
    MAX_STEPS,
    check_requests,
    count,
    deployer_options,
    number,
    rate_rps,
    reachable_model,
    request_bytes,
)
from ._args import add_backend_options, parse_duration_s, parse_latency_ms, parse_options
from ._plan_args import add_dim_flag, dims

#: field -> (maximum, whole number, zero allowed): every number of a config has a bound.
_NUMBER_FIELDS: dict[str, tuple[float, bool, bool]] = {
    "batch_size": (MAX_BATCH_SIZE, True, False),
    "replicas": (MAX_REPLICAS, True, False),
    "instances_per_gpu": (MAX_INSTANCES, True, False),
    "memory_mb": (MAX_MEMORY_MB, True, False),
    "cpu_cores": (MAX_CPU_CORES, False, False),
    "max_queue_delay_ms": (MAX_QUEUE_DELAY_MS, False, True),
}
_STR_FIELDS = {"gpu_type"}


def parse_config(text: str) -> dict[str, Any]:
    """``batch_size=8,replicas=1,cpu_cores=1[,gpu_type=cpu,max_queue_delay_ms=2]`` -> fields."""
    known = set(_NUMBER_FIELDS) | _STR_FIELDS
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise UserError(f"--config: expected KEY=VALUE, got {part!r}")
        if key not in known:
            raise UserError(f"--config: unknown field {key!r} (known: {', '.join(sorted(known))})")
        if key in _STR_FIELDS:
            out[key] = value
            continue
        maximum, integer, zero = _NUMBER_FIELDS[key]
        out[key] = number(
            value, f"--config {key}", maximum=maximum, integer=integer, allow_min=zero
        )
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stress",
        help="deploy one config, drive open-loop load at it (or find its capacity), tear it down",
        description="Deploy one config, run one measurement (open-loop Poisson load at a fixed "
        "rate, or a capacity search under a p99 SLO), tear everything down, print the figures.",
    )
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX model to serve")
    p.add_argument(
        "--config",
        required=True,
        help="the config, e.g. batch_size=8,replicas=1,cpu_cores=1 "
        "(also gpu_type, max_queue_delay_ms, instances_per_gpu, memory_mb)",
    )
    p.add_argument("--backend", choices=("local", "kubernetes"), default="local")
    p.add_argument(
        "--runtime",
        choices=("server", "triton"),
        help="what serves each local replica: the project's own server (default) or Triton "
        "Inference Server (needs pip install 'autoconf[triton]'); local backend only",
    )
    p.add_argument("--rate", type=float, help="open-loop arrival rate, requests/s")
    p.add_argument("--duration", default="10s", help="measured time per step (default 10s)")
    p.add_argument("--warmup", default="1s", help="unmeasured warm-up per step (default 1s)")
    p.add_argument("--capacity", action="store_true", help="find the highest rate within the SLO")
    p.add_argument("--slo-p99", metavar="LATENCY", help="p99 SLO for --capacity, e.g. 50ms")
    p.add_argument("--start-rps", type=float, help="first rate of the capacity search")
    p.add_argument("--max-steps", type=int, default=5, help="capacity search steps (default 5)")
    p.add_argument("--ready-timeout", default="60s", help="start-up limit (default 60s)")
    add_backend_options(p, "deployer option (e.g. generator_processes=2, namespace=ml); repeatable")
    add_dim_flag(p, "defaults: batch 1, sequence 128")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


def _load_dict(r: Any) -> dict[str, Any]:
    """One load step as JSON data: every figure of ``LoadResult.to_dict`` (stability included),
    with ``passed`` lifted out of ``extra``."""
    d = r.to_dict()
    d["passed"] = r.extra.get("passed")
    return d


def _clean(obj: Any) -> Any:
    """NaN (no successful request) -> null, so the output stays valid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def run(args: argparse.Namespace) -> int:
    import stress

    from .._deployment import LABELS

    duration_s = parse_duration_s(args.duration, "--duration")
    warmup_s = parse_duration_s(args.warmup, "--warmup", allow_zero=True)
    ready_s = parse_duration_s(args.ready_timeout, "--ready-timeout")
    if args.capacity:
        if args.rate is not None:
            raise UserError("--capacity and --rate exclude each other")
        if not args.slo_p99:
            raise UserError("--capacity needs --slo-p99, e.g. --slo-p99 50ms")
        slo_ms = parse_latency_ms(args.slo_p99)
        max_steps = count(args.max_steps, "--max-steps", MAX_STEPS)
        start_rps = None if args.start_rps is None else rate_rps(args.start_rps, "--start-rps")
    elif args.rate is None:
        raise UserError("give --rate R (open-loop load) or --capacity --slo-p99 L")
    else:
        rate = rate_rps(args.rate)
        check_requests(rate, duration_s + warmup_s)
    fields = parse_config(args.config)
    options = deployer_options(
        args.backend, parse_options(args.backend_option, "--backend-option"), "--backend-option"
    )
    model = Path(args.model)
    if not model.is_file():
        raise UserError(f"no such model file: {model}")
    given = {**options.get("dims", {}), **dims(args)}
    options["dims"] = _model_dims(model, given, int(fields.get("batch_size", 1)))
    spec = stress.DeploymentSpec(
        model_path=model,
        model_name=stress.model_name(model.stem),
        **fields,
    )
    if args.runtime and args.backend != "local":
        raise UserError("--runtime applies to the local backend only")
    if args.backend == "local":
        options.setdefault("ready_timeout_s", ready_s)
        if args.runtime:
            options["runtime"] = args.runtime
    else:  # what it leaves behind is found by ``autoconf cleanup``
        options["labels"] = LABELS
        reachable_model(model, options.get("model_uri"), "--backend-option model_uri=URI")
    deployer = stress.get_deployer(args.backend, **options)
    with deployer.deploy(spec) as dep:
        if args.capacity:
            cap = stress.capacity_search(
                dep,
                slo_ms,
                start_rps=start_rps,
                max_steps=max_steps,
                duration_s=duration_s,
                warmup_s=warmup_s,
            )
            top = cap.at_capacity
            verdict = cap.to_dict()
            out = {
                "config": fields,
                "backend": args.backend,
                "slo_p99_ms": slo_ms,
                "capacity_rps": cap.capacity_rps,
                "capacity_upper_rps": stress.upper_bound(cap),
                **({k: v for k, v in _load_dict(top).items() if k != "target_rps"} if top else {}),
                # the search's verdict, over the step at capacity's own
                "stable": verdict["stable"],
                "unstable_reasons": verdict["unstable_reasons"],
                "remeasured": verdict["remeasured"],
                "steps": [_load_dict(s) for s in cap.steps],
            }
        else:
            res = dep.open_loop(rate, duration_s, warmup_s)
            out = {"config": fields, "backend": args.backend, **_load_dict(res)}
    out = _clean(out)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_human(out, args.capacity)
    return 0


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f} ms"


def _model_dims(model: Path, dims: dict[str, int] | None, batch_size: int) -> dict[str, int]:
    """Every symbolic input dim of the model, valued as ``search`` and ``kops`` value it: the
    given ``dims``, else kops' defaults (batch 1, sequence 128); an unnamed one is refused."""
    import kops

    from .._dims import check_dims

    prof = kops.profile(model, check_dims(model, dims))
    request_bytes(prof.inputs, prof.dims, batch_size)
    return dict(prof.dims)


def _print_human(out: dict[str, Any], capacity: bool) -> None:
    cfg = ",".join(f"{k}={v}" for k, v in out["config"].items())
    print(f"config {cfg} on {out['backend']}")
    if capacity:
        for i, s in enumerate(out["steps"], 1):
            verdict = (
                "pass"
                if s["passed"]
                else ("fail (aborted early)" if s["aborted_early"] else "fail")
            )
            if s.get("extra", {}).get("superseded"):
                verdict += " (unstable: measured again)"
            elif s.get("stable") is False:
                verdict += " (unstable)"
            print(
                f"  step {i}: {s['target_rps']:,.1f} req/s -> {s['throughput_rps']:,.1f} served, "
                f"p99 {_fmt_ms(s['p99_ms'])}, errors {s['error_rate']:.1%}: {verdict}"
            )
        print(
            f"capacity {out['capacity_rps']:,.1f} requests/s within p99 <= {out['slo_p99_ms']:g} ms"
        )
        upper = out.get("capacity_upper_rps")
        if upper is not None:
            print(f"  (the SLO failed at {upper:,.1f} requests/s: the capacity lies in between)")
        elif out["capacity_rps"] > 0:
            print("  (no step failed above it: the capacity is at least this; more --max-steps)")
        if "p99_ms" not in out:
            _print_trust(out)
            return
    print(
        f"throughput {out['throughput_rps']:,.1f} requests/s, p50 {_fmt_ms(out['p50_ms'])}, "
        f"p95 {_fmt_ms(out['p95_ms'])}, p99 {_fmt_ms(out['p99_ms'])}, errors {out['error_rate']:.2%}"
    )
    if out.get("inflight_cap_hits"):
        print(f"warning: the in-flight cap was hit {out['inflight_cap_hits']} times")
    if out.get("generator_saturated"):
        print("warning: the load generator was the bottleneck; figures understate the server")
    _print_trust(out)


def _print_trust(out: dict[str, Any]) -> None:
    """Whether the figures can be trusted, and why not."""
    if out.get("stable") is None:
        return
    spreads = [
        f"{name} spread {out[k]:.1%}"
        for name, k in (("throughput", "throughput_spread"), ("latency", "latency_spread"))
        if out.get(k) is not None
    ]
    detail = f" ({', '.join(spreads)})" if spreads else ""
    print(f"stable: {'yes' if out['stable'] else 'NO'}{detail}")
    for reason in out.get("unstable_reasons") or []:
        print(f"  unstable: {reason}")
