"""The search's model variants: ``--precisions`` applied to the space, each variant built and
checked against FP32 before the search (:mod:`autoconf._variants`), the ones over
``--max-accuracy-drop`` (or that cannot be built) left out of the space with the reason, and
each measurement tagged with its variant's accuracy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import _record as record
from .. import _variants
from .._errors import UserError
from .._types import Config, Measurement
from ._options import SearchOptions

log = logging.getLogger(__name__)


def searched_precisions(space: Any) -> list[str]:
    """The precisions ``space`` searches (``[]`` without a ``precision`` dimension)."""
    return list(space.values("precision")) if "precision" in space.dimensions else []


def prepare_variants(
    opts: SearchOptions, model_path: Path, space: Any
) -> tuple[Any, dict[str, _variants.Variant], list[str]]:
    """``space`` with ``--precisions`` applied and its infeasible precisions left out, every
    searched variant (checked), and the notes saying what was left out and why."""
    space = _variants.with_precisions(space, opts.precisions)
    precisions = searched_precisions(space)
    if not precisions:
        if opts.max_accuracy_drop is not None or opts.sample_inputs is not None:
            note = "--max-accuracy-drop/--sample-inputs unused: the space searches no precision"
            log.warning(note)
            return space, {}, [note]
        return space, {}, []
    variants_only = any(_variants.canonical(p) != "fp32" for p in precisions)
    if opts.backend == "kubernetes" and opts.backend_options.get("model_uri") and variants_only:
        raise UserError(
            "--precisions with --model-uri: the cluster would load the FP32 model from the "
            "URI; search precisions without --model-uri, or only fp32"
        )
    max_drop = (
        opts.max_accuracy_drop if opts.max_accuracy_drop is not None else _variants.DEFAULT_MAX_DROP
    )
    if opts.sample_inputs is not None:
        samples = _variants.load_samples(opts.sample_inputs, model_path)
        calibration = samples  # the user's own data: the best calibration there is
    else:
        samples = _variants.generated_samples(model_path, opts.dims)
        calibration = None  # generated at the dims, another seed (see variant_file)
    variants = _variants.check_variants(
        model_path,
        precisions,
        max_drop=max_drop,
        samples=samples,
        calibration=calibration,
        dims=opts.dims,
    )
    space, notes = _variants.trim_space(space, variants)
    return space, variants, notes


def use_variants(backends: list[Any], variants: dict[str, _variants.Variant]) -> None:
    """Backends that deploy files (the live ones) serve the variants that were checked."""
    paths = {p: v.path for p, v in variants.items() if v.feasible and v.path is not None}
    for b in backends:
        if hasattr(b, "model_variants"):
            b.model_variants = dict(paths)


def tag_accuracy(
    variants: dict[str, _variants.Variant], config: Config, m: Measurement
) -> Measurement:
    """``m`` with its variant's accuracy (where variants are searched)."""
    v = variants.get(_variants.canonical(config.precision))
    if v is not None and v.accuracy is not None:
        record.set_accuracy(m, v.accuracy.to_dict())
    return m
