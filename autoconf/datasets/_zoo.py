"""The simulated zoo (``sim:zoo``): kops profiles of generated models and perturbed copies,
their train/eval split, and their cached profiles (assumption 10 of :mod:`autoconf._simulator`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._cache import cache_dir as _cache_root
from .._errors import UserError
from .._simulator import SimModel, seed_of
from .._space import SearchSpace
from .._types import ModelTable
from ._sim import sim_tables

#: The zoo's generated models: (name ``family@variant``, kops.zoo family, size knobs). Small
#: enough to export in seconds on a CPU; the sim scales the SLO and the load to each model.
ZOO_MODELS: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("resnet_like@s", "resnet_like", {"width": 16, "depth": 1, "image": 64}),
    ("resnet_like@l", "resnet_like", {"width": 32, "depth": 2, "image": 128}),
    ("mobilenet_like@s", "mobilenet_like", {"width": 16, "image": 64}),
    ("mobilenet_like@l", "mobilenet_like", {"width": 32, "depth": 2, "image": 128}),
    ("bert_like@s", "bert_like", {"hidden": 128, "layers": 2}),
    ("bert_like@l", "bert_like", {"hidden": 256, "layers": 4}),
    ("gpt2_like@s", "gpt2_like", {"hidden": 128, "layers": 2}),
    ("gpt2_like@l", "gpt2_like", {"hidden": 256, "layers": 4}),
    ("vit_like@s", "vit_like", {"hidden": 64, "layers": 2, "image": 32}),
    ("vit_like@l", "vit_like", {"hidden": 192, "layers": 4, "image": 64}),
    ("lstm@s", "lstm", {"hidden": 128, "layers": 1}),
    ("lstm@l", "lstm", {"hidden": 256, "layers": 2}),
    ("tiny_mlp@s", "tiny_mlp", {}),
    ("tiny_mlp@l", "tiny_mlp", {"hidden": 1024}),
    ("tiny_cnn@s", "tiny_cnn", {}),
    ("tiny_cnn@l", "tiny_cnn", {"width": 32, "image": 64}),
    ("unet_like@s", "unet_like", {}),
    ("unet_like@l", "unet_like", {"width": 32, "levels": 4, "image": 128}),
    ("convnext_like@s", "convnext_like", {}),
    ("convnext_like@l", "convnext_like", {"width": 48, "depth": 2, "image": 128}),
    ("efficientnet_like@s", "efficientnet_like", {}),
    ("efficientnet_like@l", "efficientnet_like",
     {"width": 32, "depth": 2, "stages": 7, "image": 128}),
    ("llama_like@s", "llama_like", {"hidden": 128, "ffn": 344}),
    ("llama_like@l", "llama_like", {"hidden": 256, "layers": 4, "heads": 8, "ffn": 688}),
    ("bart_like@s", "bart_like", {"hidden": 128}),
    ("bart_like@l", "bart_like", {"hidden": 256, "layers": 3}),
    ("whisper_like@s", "whisper_like", {}),
    ("whisper_like@l", "whisper_like", {"hidden": 192, "layers": 4, "heads": 6, "frames": 600}),
    ("deepspeech_like@s", "deepspeech_like", {"hidden": 128}),
    ("deepspeech_like@l", "deepspeech_like", {"hidden": 256, "layers": 3, "frames": 200}),
    ("dlrm_like@s", "dlrm_like", {}),
    ("dlrm_like@l", "dlrm_like", {"tables": 26, "rows": 5000, "dim": 64, "hidden": 256}),
    ("yolo_like@s", "yolo_like", {}),
    ("yolo_like@l", "yolo_like", {"width": 32, "image": 256}),
    ("mixer_like@s", "mixer_like", {}),
    ("mixer_like@l", "mixer_like",
     {"hidden": 192, "layers": 4, "image": 128, "token_mlp": 96, "channel_mlp": 768}),
)  # fmt: skip
#: Families trained on vs evaluated on for ``sim:zoo/train`` and ``sim:zoo/eval``.
ZOO_EVAL_FAMILIES = ("mobilenet_like", "gpt2_like", "tiny_cnn")
#: Perturbed copies: (name, base, FLOPs scale, bytes scale, CPU-time scale).
ZOO_PERTURBED = (
    ("resnet_like@l~p", "resnet_like@l", 1.6, 0.7, 1.3),
    ("bert_like@l~p", "bert_like@l", 0.6, 1.5, 2.0),
    ("vit_like@l~p", "vit_like@l", 2.0, 1.2, 0.7),
    ("lstm@l~p", "lstm@l", 3.0, 2.0, 1.5),
    ("mobilenet_like@l~p", "mobilenet_like@l", 0.7, 1.4, 1.5),
    ("gpt2_like@l~p", "gpt2_like@l", 1.4, 0.8, 1.0),
    # production-sized copies (generated models stay small enough to export on a CPU)
    ("resnet_like@l~x10", "resnet_like@l", 10.0, 8.0, 1.0),
    ("bert_like@l~x30", "bert_like@l", 30.0, 20.0, 1.0),
    ("vit_like@l~x20", "vit_like@l", 20.0, 15.0, 1.0),
    ("gpt2_like@l~x40", "gpt2_like@l", 40.0, 30.0, 1.0),
    ("llama_like@l~x40", "llama_like@l", 40.0, 30.0, 1.0),
    ("unet_like@l~x10", "unet_like@l", 10.0, 8.0, 1.0),
    ("whisper_like@l~x20", "whisper_like@l", 20.0, 15.0, 1.0),
    ("yolo_like@l~x10", "yolo_like@l", 10.0, 6.0, 1.0),
    # a production recommender grows its tables far more than its MLPs
    ("dlrm_like@l~x30", "dlrm_like@l", 5.0, 30.0, 1.0),
)


def zoo_profile(
    name: str, family: str, knobs: dict[str, int], cache_dir: Path | None = None
) -> Any:
    """The kops profile of a generated zoo model, cached (under ``cache_dir``, default the
    user's cache) by model, knobs and kops version."""
    import dataclasses

    import kops

    cache_dir = cache_dir or _cache_root() / "zoo"
    key = seed_of(family, sorted(knobs.items()), kops.FEATURE_VERSION)
    path = cache_dir / f"{name}-{key:016x}.json"
    if path.is_file():
        return kops.ModelProfile.from_dict(json.loads(path.read_text()))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = kops.zoo.build(family, Path(tmp) / f"{family}.onnx", **knobs)
        profile = kops.profile(onnx_path)
    profile = dataclasses.replace(profile, name=name, path="")
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile.to_dict()))
    return profile


def zoo_models(names: Iterable[str] | None = None) -> list[SimModel]:
    """The simulated zoo: kops profiles of generated models, and perturbed copies of some
    (only the models ``names`` when given: a generated model is exported only when it or a copy
    of it is asked for)."""
    import dataclasses

    wanted = None if names is None else set(names)
    if wanted is not None:
        known = {n for n, *_ in ZOO_MODELS} | {n for n, *_ in ZOO_PERTURBED}
        if wanted - known:
            raise UserError(f"unknown zoo model(s): {', '.join(sorted(wanted - known))}")
    perturbed = [p for p in ZOO_PERTURBED if wanted is None or p[0] in wanted]
    needed = None if wanted is None else wanted | {base for _, base, *_ in perturbed}
    profiles = {
        name: zoo_profile(name, family, knobs)
        for name, family, knobs in ZOO_MODELS
        if needed is None or name in needed
    }
    models = {
        name: SimModel.from_profile(p, name=name)
        for name, p in profiles.items()
        if wanted is None or name in wanted
    }
    for name, base, f_scale, b_scale, c_scale in perturbed:
        p = profiles[base]
        scaled = dataclasses.replace(
            p,
            name=name,
            total_flops=p.total_flops * f_scale,
            param_bytes=int(p.param_bytes * b_scale),
            total_params=int(p.total_params * b_scale),
            activation_bytes=int(p.activation_bytes * b_scale),
        )
        m = SimModel.from_profile(scaled, name=name)
        models[name] = dataclasses.replace(m, cpu_ms_per_sample=m.cpu_ms_per_sample * c_scale)
    return list(models.values())


def zoo_tables(
    split: str | None = None, *, seed: int = 0, space: SearchSpace | None = None
) -> list[ModelTable]:
    """Ground-truth tables of the zoo on ``gpu-default``; ``split`` = ``train``/``eval``/None."""
    models = zoo_models()
    if split is not None:
        if split not in ("train", "eval"):
            raise UserError(f"unknown zoo split {split!r} (train, eval)")
        held = {m for m in models if m.name.split("@")[0] in ZOO_EVAL_FAMILIES}
        models = [m for m in models if (m in held) == (split == "eval")]
    return sim_tables(models, space, seed=seed)
