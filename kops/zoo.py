"""Reference models built with torch at call time, for tests, benchmarks and examples.

Every model is built from a fixed seed with random weights, put in ``.eval()`` mode and exported
with the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``, opset 17). The batch axis
is dynamic and named ``batch``; token models also have a dynamic ``sequence`` axis. Size knobs
(width, depth, hidden, layers, ...) let a caller make many models of one family.

``flop_reference`` counts the same model with ``torch.utils.flop_counter.FlopCounterMode`` (which
counts convolutions and matrix products only); recurrent layers, invisible inside the fused CPU
kernel, are counted by hand (a multiply-add is 2 FLOPs). torch is imported inside functions only,
so ``import kops`` stays light.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MODELS", "ZooModel", "build", "build_module", "build_tiny_mlp", "flop_reference"]


@dataclass(frozen=True)
class ZooModel:
    """One model family: its default size knobs and whether it takes token ids."""

    name: str
    description: str
    default_knobs: dict[str, int] = field(default_factory=dict)
    token_input: bool = False


MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            "resnet_like",
            "ResNet-style CNN: basic residual blocks, batch norm, global pooling",
            {"width": 16, "depth": 1, "stages": 3, "image": 64, "classes": 10},
        ),
        ZooModel(
            "mobilenet_like",
            "MobileNetV2-style CNN: inverted residuals with depthwise 3x3 convolutions",
            {"width": 16, "depth": 1, "stages": 3, "expand": 4, "image": 64, "classes": 10},
        ),
        ZooModel(
            "bert_like",
            "BERT-style encoder: token + position embeddings, post-LN blocks, pooler",
            {"hidden": 64, "layers": 2, "heads": 4, "vocab": 1000, "max_seq": 512},
            token_input=True,
        ),
        ZooModel(
            "gpt2_like",
            "GPT-2-style decoder: pre-LN causal blocks, tied language-model head",
            {"hidden": 64, "layers": 2, "heads": 4, "vocab": 1000, "max_seq": 512},
            token_input=True,
        ),
        ZooModel(
            "vit_like",
            "ViT-style encoder: patch-embedding convolution, class token, pre-LN blocks",
            {"hidden": 64, "layers": 2, "heads": 4, "patch": 8, "image": 32, "classes": 10},
        ),
        ZooModel(
            "lstm",
            "LSTM language model: embedding, stacked LSTM, linear head",
            {"hidden": 64, "layers": 2, "vocab": 1000},
            token_input=True,
        ),
        ZooModel(
            "tiny_mlp",
            "~100k-parameter MLP (128 -> 256 -> 256 -> 10); exports in well under a second",
            {"features": 128, "hidden": 256, "classes": 10},
        ),
        ZooModel(
            "tiny_cnn",
            "small CNN: three 3x3 convolutions, pooling, linear head",
            {"width": 8, "image": 32, "classes": 10},
        ),
    )
}


def _knobs(name: str, knobs: dict[str, Any]) -> dict[str, int]:
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(MODELS)}")
    merged = dict(MODELS[name].default_knobs)
    unknown = set(knobs) - set(merged)
    if unknown:
        raise TypeError(f"{name}: unknown size knob(s) {sorted(unknown)}; known: {sorted(merged)}")
    merged.update({k: int(v) for k, v in knobs.items()})
    return merged


# ----------------------------------------------------------------------------- modules


def _modules() -> dict[str, Callable[..., Any]]:
    """Module constructors, defined lazily so torch is imported only when a model is built."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        """A transformer block with explicit matmul attention (so FlopCounterMode sees it)."""

        def __init__(self, d: int, heads: int, causal: bool, pre_ln: bool, max_seq: int):
            super().__init__()
            self.heads, self.causal, self.pre_ln = heads, causal, pre_ln
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
            if causal:
                self.register_buffer(
                    "mask", torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool))
                )

        def attend(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            q, k, v = (
                z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v)
            )
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
            if self.causal:
                att = att.masked_fill(~self.mask[:t, :t], float("-inf"))
            y = att.softmax(dim=-1) @ v
            return self.proj(y.transpose(1, 2).reshape(b, t, d))

        def mlp(self, x):
            return self.fc2(F.gelu(self.fc1(x)))

        def forward(self, x):
            if self.pre_ln:
                x = x + self.attend(self.ln1(x))
                return x + self.mlp(self.ln2(x))
            x = self.ln1(x + self.attend(x))
            return self.ln2(x + self.mlp(x))

    class ResNetLike(nn.Module):
        def __init__(self, width, depth, stages, image, classes):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
            )
            blocks, c = [], width
            for s in range(stages):
                out = width * 2**s
                for i in range(depth):
                    blocks.append(_Basic(c, out, 2 if (i == 0 and s > 0) else 1))
                    c = out
            self.blocks = nn.Sequential(*blocks)
            self.head = nn.Linear(c, classes)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))

    class _Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
            return F.relu(y + (x if self.short is None else self.short(x)))

    class _Inverted(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            mid = cin * expand
            self.res = stride == 1 and cin == cout
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                nn.ReLU6(), nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
            )  # fmt: skip

        def forward(self, x):
            y = self.body(x)
            return x + y if self.res else y

    class MobileNetLike(nn.Module):
        def __init__(self, width, depth, stages, expand, image, classes):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6()
            )
            blocks, c = [], width
            for s in range(stages):
                out = width * (s + 1)
                for i in range(depth + 1):
                    blocks.append(_Inverted(c, out, 2 if (i == 0 and s > 0) else 1, expand))
                    c = out
            self.blocks = nn.Sequential(*blocks)
            self.head = nn.Linear(c, classes)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.head(x.mean(dim=(2, 3)))

    class BertLike(nn.Module):
        def __init__(self, hidden, layers, heads, vocab, max_seq):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, hidden), nn.Embedding(max_seq, hidden)
            self.ln = nn.LayerNorm(hidden)
            self.blocks = nn.ModuleList(
                Block(hidden, heads, False, False, max_seq) for _ in range(layers)
            )
            self.pool, self.cls = nn.Linear(hidden, hidden), nn.Linear(hidden, 2)

        def forward(self, input_ids):
            t = input_ids.shape[1]
            x = self.ln(self.tok(input_ids) + self.pos.weight[:t])
            for blk in self.blocks:
                x = blk(x)
            return self.cls(torch.tanh(self.pool(x[:, 0])))

    class Gpt2Like(nn.Module):
        def __init__(self, hidden, layers, heads, vocab, max_seq):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, hidden), nn.Embedding(max_seq, hidden)
            self.blocks = nn.ModuleList(
                Block(hidden, heads, True, True, max_seq) for _ in range(layers)
            )
            self.ln = nn.LayerNorm(hidden)

        def forward(self, input_ids):
            t = input_ids.shape[1]
            x = self.tok(input_ids) + self.pos.weight[:t]
            for blk in self.blocks:
                x = blk(x)
            return self.ln(x) @ self.tok.weight.t()  # tied head

    class VitLike(nn.Module):
        def __init__(self, hidden, layers, heads, patch, image, classes):
            super().__init__()
            n = (image // patch) ** 2
            self.embed = nn.Conv2d(3, hidden, patch, patch)
            self.cls_token = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
            self.pos = nn.Parameter(torch.randn(1, n + 1, hidden) * 0.02)
            self.blocks = nn.Sequential(
                *(Block(hidden, heads, False, True, n + 1) for _ in range(layers))
            )
            self.ln, self.head = nn.LayerNorm(hidden), nn.Linear(hidden, classes)

        def forward(self, x):
            x = self.embed(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
            return self.head(self.ln(self.blocks(x))[:, 0])

    class LstmLm(nn.Module):
        def __init__(self, hidden, layers, vocab):
            super().__init__()
            self.emb = nn.Embedding(vocab, hidden)
            self.rnn = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
            self.head = nn.Linear(hidden, vocab)

        def forward(self, input_ids):
            y, _ = self.rnn(self.emb(input_ids))
            return self.head(y)

    class TinyMlp(nn.Module):
        def __init__(self, features, hidden, classes):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                nn.Linear(hidden, classes),
            )  # fmt: skip

        def forward(self, x):
            return self.net(x)

    class TinyCnn(nn.Module):
        def __init__(self, width, image, classes):
            super().__init__()
            w = width
            self.net = nn.Sequential(
                nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, classes),
            )  # fmt: skip

        def forward(self, x):
            return self.net(x)

    return {
        "resnet_like": ResNetLike,
        "mobilenet_like": MobileNetLike,
        "bert_like": BertLike,
        "gpt2_like": Gpt2Like,
        "vit_like": VitLike,
        "lstm": LstmLm,
        "tiny_mlp": TinyMlp,
        "tiny_cnn": TinyCnn,
    }


def build_module(name: str, seed: int = 0, **knobs: int) -> Any:
    """Return the torch module of zoo model ``name`` (random weights, eval mode)."""
    import torch

    k = _knobs(name, knobs)
    torch.manual_seed(seed)
    module = _modules()[name](**k)
    return module.eval()


def example_input(name: str, batch: int = 1, sequence: int = 128, **knobs: int) -> Any:
    """A random input of zoo model ``name`` at the given batch (and sequence) size."""
    import torch

    k = _knobs(name, knobs)
    if MODELS[name].token_input:
        return torch.randint(0, k["vocab"], (batch, sequence), dtype=torch.int64)
    if name == "tiny_mlp":
        return torch.randn(batch, k["features"])
    return torch.randn(batch, 3, k["image"], k["image"])


def build(name: str, path: str | Path, seed: int = 0, **knobs: int) -> Path:
    """Export zoo model ``name`` to ONNX and return the file's path.

    ``path`` is a file (``*.onnx``) or a directory (the file is then ``<path>/<name>.onnx``).
    """
    import torch

    path = Path(path)
    if path.suffix != ".onnx":
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"{name}.onnx"
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    module = build_module(name, seed=seed, **knobs)
    token = MODELS[name].token_input
    x = example_input(name, batch=2, sequence=16, **knobs)
    in_name = "input_ids" if token else "input"
    axes = {0: "batch", 1: "sequence"} if token else {0: "batch"}
    out_axes = {0: "batch", 1: "sequence"} if name in ("gpt2_like", "lstm") else {0: "batch"}
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=[in_name],
            output_names=["output"],
            dynamic_axes={in_name: axes, "output": out_axes},
        )
    return path


def build_tiny_mlp(path: str | Path, seed: int = 0, **knobs: int) -> Path:
    """``tiny_mlp`` written with ``onnx.helper``, without torch: the graph :func:`build` exports
    (Gemm with transposed weights, Relu; input ``input``, output ``output``, dynamic ``batch``
    axis, opset 17), with numpy's random weights in torch's default Linear init range. What
    ``autoconf search --example`` searches on a core install (torch is the ``zoo`` extra)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = _knobs("tiny_mlp", knobs)
    path = Path(path)
    if path.suffix != ".onnx":
        path = path / "tiny_mlp.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = [k["features"], k["hidden"], k["hidden"], k["classes"]]
    nodes, inits, x = [], [], "input"
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1.0 / math.sqrt(fan_in)
        w = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        b = rng.uniform(-bound, bound, fan_out).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"fc{i}.weight"),
            numpy_helper.from_array(b, f"fc{i}.bias"),
        ]
        last = i == len(sizes) - 2
        y = "output" if last else f"fc{i}"
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [y], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"]))
            x = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "tiny_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", k["features"]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", k["classes"]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _rnn_flops(module: Any, batch: int, steps: int) -> float:
    """Hand count of the matrix products inside torch RNN/LSTM/GRU layers (2 per multiply-add)."""
    from torch import nn

    total = 0.0
    for m in module.modules():
        if isinstance(m, nn.RNNBase):
            gates = {"LSTM": 4, "GRU": 3}.get(m.mode, 1)
            dirs = 2 if m.bidirectional else 1
            for layer in range(m.num_layers):
                fan_in = m.input_size if layer == 0 else m.hidden_size * dirs
                total += (
                    2.0 * batch * steps * dirs * gates * m.hidden_size * (fan_in + m.hidden_size)
                )
    return total


def flop_reference(name: str, batch: int = 1, sequence: int = 128, **knobs: int) -> float:
    """FLOPs of zoo model ``name`` per ``torch.utils.flop_counter.FlopCounterMode``.

    Counts convolutions and matrix products at input ``(batch, ...)`` (``sequence`` tokens for
    token models); recurrent layers are added by hand, since FlopCounterMode sees nothing inside
    the fused CPU LSTM kernel.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module = build_module(name, **knobs)
    x = example_input(name, batch=batch, sequence=sequence, **knobs)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(x)
    steps = sequence if MODELS[name].token_input else 1
    return float(counter.get_total_flops()) + _rnn_flops(module, batch, steps)
