"""Falcon tables (``reg-<model>.csv`` from dos-lab/Falcon, see ``../shared/data/falcon``):
columns ``batchsize,cpus,gpumem,gpupower,gputype,norm.(rps/budget)``, one model per file, in the
``falcon`` search space. They have no latency, so their objective is ``Objective()`` (maximise
rps per dollar) and each measurement carries the table's score as ``normalized_rps_per_cost``
and the space's price as ``cost_per_hour``."""

from __future__ import annotations

import csv
from pathlib import Path

from .._errors import UserError
from .._objective import Objective
from .._space import SearchSpace
from .._types import Config, Measurement, ModelTable

FALCON_COLUMNS = ("batchsize", "cpus", "gpumem", "gpupower", "gputype", "norm.(rps/budget)")


def is_falcon_csv(path: Path) -> bool:
    """Whether ``path``'s header is a Falcon table's."""
    with path.open(newline="") as f:
        header = next(csv.reader(f), [])
    return tuple(h.strip() for h in header) == FALCON_COLUMNS


def falcon_table(path: Path, space: SearchSpace) -> ModelTable:
    """One Falcon CSV as the table of its model (named after the file, ``reg-`` dropped)."""
    results: dict[Config, Measurement] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        for line, row in enumerate(reader, start=2):
            try:
                config = Config(
                    batch_size=int(row["batchsize"]),
                    gpu_type=row["gputype"].strip(),
                    replicas=1,
                    cpu_cores=int(float(row["cpus"])),
                    gpu_mem_gb=float(row["gpumem"]),
                    gpu_share_pct=int(float(row["gpupower"])),
                )
                score = float(row["norm.(rps/budget)"])
            except (KeyError, TypeError, ValueError) as exc:
                raise UserError(f"{path}:{line}: bad Falcon row ({exc})") from None
            if not space.contains(config):
                raise UserError(f"{path}:{line}: config {config.key()} is outside the falcon space")
            results[config] = Measurement(
                ok=True,
                cost_per_hour=space.cost_per_hour(config),
                normalized_rps_per_cost=score,
            )
    name = path.stem.removeprefix("reg-")
    return ModelTable(name=name, space=space, objective=Objective(), results=results)
