"""Reference models built with torch at call time, for tests, benchmarks and examples.

Every model is built from a fixed seed with random weights, put in ``.eval()`` mode and exported
with the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``, opset 17). The batch axis
is dynamic and named ``batch``; token models also have a dynamic ``sequence`` axis (and
``decoder_sequence`` for the encoder-decoder). Size knobs (width, depth, hidden, layers, ...) let a
caller make many models of one family. The families, each written in plain torch with the layer
shapes of a published architecture (``transformers`` is not needed):

- CNNs: ``resnet_like`` (ResNet basic blocks), ``mobilenet_like`` (MobileNetV2 inverted
  residuals), ``efficientnet_like`` (EfficientNet-B0 MBConv: squeeze-excite, SiLU, B0's stage
  table), ``convnext_like`` (ConvNeXt-T: 7x7 depthwise, LayerNorm, GELU MLP), ``tiny_cnn``.
- Dense prediction: ``unet_like`` (U-Net: ConvTranspose up-sampling, skip concatenation),
  ``yolo_like`` (YOLOv5n layout: C3 + SPPF backbone, PANet neck with nearest up-sampling,
  three detect heads).
- Transformers: ``bert_like`` (BERT encoder), ``gpt2_like`` (GPT-2 decoder), ``llama_like``
  (LLaMA/TinyLlama: RMSNorm, rotary positions, grouped-query attention, SwiGLU), ``bart_like``
  (BART-base encoder-decoder with cross-attention: two token inputs), ``vit_like`` (ViT),
  ``mixer_like`` (MLP-Mixer B/16 layout: token- and channel-mixing MLPs).
- Audio: ``whisper_like`` (Whisper-tiny encoder on a log-mel input), ``deepspeech_like``
  (DeepSpeech2: 2-d convs on a spectrogram, bidirectional GRU).
- Other: ``lstm`` (LSTM language model), ``dlrm_like`` (DLRM recommender: dense float and sparse
  id inputs, one embedding table per sparse feature, pairwise dot interaction), ``tiny_mlp``.

``flop_reference`` counts the same model with ``torch.utils.flop_counter.FlopCounterMode`` (which
counts convolutions and matrix products only); recurrent layers it cannot see (the fused CPU LSTM
kernel) are counted by hand (a multiply-add is 2 FLOPs). torch is imported inside functions only,
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
    """One model family: its default size knobs, whether it takes token ids, and the name of its
    output's dynamic axis 1 (``""`` when only the batch axis is dynamic)."""

    name: str
    description: str
    default_knobs: dict[str, int] = field(default_factory=dict)
    token_input: bool = False
    sequence_output: str = ""


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
            sequence_output="sequence",
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
            sequence_output="sequence",
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
        ZooModel(
            "unet_like",
            "U-Net (Ronneberger et al. 2015) segmentation net: double 3x3 conv + batch norm per "
            "level, max-pool down, 2x2 ConvTranspose up, skip concatenation, 1x1 per-pixel head",
            {"width": 16, "levels": 3, "image": 64, "classes": 2},
        ),
        ZooModel(
            "convnext_like",
            "ConvNeXt-T (Liu et al. 2022) CNN: 4x4 patchify stem, 7x7 depthwise conv, channel "
            "LayerNorm, 4x inverted MLP with GELU, layer scale, LayerNorm + 2x2 conv downsampling",
            {"width": 24, "depth": 1, "stages": 4, "image": 64, "classes": 10},
        ),
        ZooModel(
            "efficientnet_like",
            "EfficientNet-B0 (Tan & Le 2019) CNN: MBConv blocks (expand 6, 3x3/5x5 depthwise, "
            "squeeze-excite 0.25, SiLU) with B0's channel ratios, kernels and strides",
            {"width": 16, "depth": 1, "stages": 5, "image": 64, "classes": 10},
        ),
        ZooModel(
            "llama_like",
            "LLaMA / TinyLlama-style decoder (Touvron et al. 2023): RMSNorm, rotary position "
            "embedding, grouped-query causal attention, SwiGLU MLP, untied language-model head",
            {
                "hidden": 64,
                "layers": 2,
                "heads": 4,
                "kv_heads": 2,
                "ffn": 172,
                "vocab": 1000,
                "max_seq": 512,
            },
            token_input=True,
            sequence_output="sequence",
        ),  # fmt: skip
        ZooModel(
            "bart_like",
            "BART-base-style encoder-decoder (Lewis et al. 2020): two token inputs (input_ids, "
            "decoder_input_ids), learned positions, post-LN blocks, decoder cross-attention, "
            "tied language-model head",
            {"hidden": 64, "layers": 2, "heads": 4, "vocab": 1000, "max_seq": 512},
            token_input=True,
            sequence_output="decoder_sequence",
        ),
        ZooModel(
            "whisper_like",
            "Whisper encoder (Radford et al. 2022, tiny: 80 mels, 384 wide, 4 layers): log-mel "
            "input, two conv1d + GELU (the second stride 2), sinusoidal positions, pre-LN blocks",
            {"hidden": 64, "layers": 2, "heads": 4, "mels": 80, "frames": 200},
        ),
        ZooModel(
            "deepspeech_like",
            "DeepSpeech2-style speech recognizer (Amodei et al. 2016; deepspeech.pytorch): "
            "spectrogram input, two 2-d convs (41x11, 21x11) + batch norm + hardtanh, "
            "bidirectional GRU stack, per-frame character head",
            {"hidden": 64, "layers": 2, "freq": 161, "frames": 100, "classes": 29},
        ),
        ZooModel(
            "dlrm_like",
            "DLRM recommender (Naumov et al. 2019, the MLPerf Criteo layout: 13 dense features, "
            "one table per sparse feature): inputs dense (float) and sparse (ids), bottom MLP, "
            "embedding tables, pairwise dot interaction, top MLP, sigmoid",
            {"dense": 13, "tables": 8, "rows": 1000, "dim": 16, "hidden": 64},
        ),
        ZooModel(
            "yolo_like",
            "YOLOv5-style detector (Ultralytics, yolov5n layout): Conv-BN-SiLU backbone with C3 "
            "blocks and SPPF, PANet neck (nearest upsampling + concat), 1x1 detect heads at "
            "strides 8/16/32 with 3 anchors, predictions concatenated",
            {"width": 16, "depth": 1, "image": 128, "classes": 80},
        ),
        ZooModel(
            "mixer_like",
            "MLP-Mixer (Tolstikhin et al. 2021, B/16 layout): patch-embedding conv, token-mixing "
            "and channel-mixing MLPs with GELU and pre-LN, global average pooling",
            {
                "hidden": 64,
                "layers": 2,
                "patch": 8,
                "image": 64,
                "token_mlp": 32,
                "channel_mlp": 256,
                "classes": 10,
            },
        ),  # fmt: skip
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
        **_vision_families(),
        **_sequence_families(Block),
        **_other_families(),
    }


def _vision_families() -> dict[str, Callable[..., Any]]:
    """U-Net, ConvNeXt, EfficientNet: convolutional families beyond ResNet and MobileNet."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def conv_bn(cin, cout, k, stride=1, groups=1, act=None):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)]
        return nn.Sequential(*layers, nn.BatchNorm2d(cout), *([act] if act else []))

    class UNetLike(nn.Module):
        def __init__(self, width, levels, image, classes):
            super().__init__()

            def double(cin, cout):
                return nn.Sequential(conv_bn(cin, cout, 3, act=nn.ReLU()),
                                     conv_bn(cout, cout, 3, act=nn.ReLU()))  # fmt: skip

            chans = [width * 2**i for i in range(levels + 1)]
            self.down = nn.ModuleList([double(3, chans[0])])
            self.down.extend(double(chans[i], chans[i + 1]) for i in range(levels))
            self.up = nn.ModuleList(
                nn.ConvTranspose2d(chans[i + 1], chans[i], 2, 2) for i in reversed(range(levels))
            )
            self.merge = nn.ModuleList(
                double(2 * chans[i], chans[i]) for i in reversed(range(levels))
            )
            self.head = nn.Conv2d(chans[0], classes, 1)

        def forward(self, x):
            skips = []
            for i, block in enumerate(self.down):
                x = block(x if i == 0 else F.max_pool2d(x, 2))
                skips.append(x)
            for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
                x = merge(torch.cat([skip, up(x)], dim=1))
            return self.head(x)

    class ChannelNorm(nn.Module):
        """LayerNorm over the channels of an NCHW tensor (ConvNeXt's channels_first LN)."""

        def __init__(self, c):
            super().__init__()
            self.ln = nn.LayerNorm(c, eps=1e-6)

        def forward(self, x):
            return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    class ConvNeXtBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
            self.ln = nn.LayerNorm(c, eps=1e-6)
            self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
            self.gamma = nn.Parameter(torch.full((c,), 1e-6))

        def forward(self, x):
            y = self.dw(x).permute(0, 2, 3, 1)
            y = self.gamma * self.fc2(F.gelu(self.fc1(self.ln(y))))
            return x + y.permute(0, 3, 1, 2)

    class ConvNeXtLike(nn.Module):
        def __init__(self, width, depth, stages, image, classes):
            super().__init__()
            layers: list[nn.Module] = [nn.Conv2d(3, width, 4, 4), ChannelNorm(width)]
            c = width
            for s in range(stages):
                if s > 0:
                    layers += [ChannelNorm(c), nn.Conv2d(c, 2 * c, 2, 2)]
                    c *= 2
                layers += [ConvNeXtBlock(c) for _ in range(depth)]
            self.body = nn.Sequential(*layers)
            self.ln, self.head = nn.LayerNorm(c, eps=1e-6), nn.Linear(c, classes)

        def forward(self, x):
            return self.head(self.ln(self.body(x).mean(dim=(2, 3))))

    class MBConv(nn.Module):
        def __init__(self, cin, cout, k, stride, expand):
            super().__init__()
            mid, squeeze = cin * expand, max(1, cin // 4)
            self.res = stride == 1 and cin == cout
            self.expand = conv_bn(cin, mid, 1, act=nn.SiLU()) if expand != 1 else nn.Identity()
            self.dw = conv_bn(mid, mid, k, stride, groups=mid, act=nn.SiLU())
            self.se1, self.se2 = nn.Conv2d(mid, squeeze, 1), nn.Conv2d(squeeze, mid, 1)
            self.project = conv_bn(mid, cout, 1)

        def forward(self, x):
            y = self.dw(self.expand(x))
            s = F.adaptive_avg_pool2d(y, 1)
            y = y * torch.sigmoid(self.se2(F.silu(self.se1(s))))
            y = self.project(y)
            return x + y if self.res else y

    # EfficientNet-B0's stages: (channels / stem channels, kernel, stride, repeats, expand)
    b0 = ((0.5, 3, 1, 1, 1), (0.75, 3, 2, 2, 6), (1.25, 5, 2, 2, 6), (2.5, 3, 2, 3, 6),
          (3.5, 5, 1, 3, 6), (6.0, 5, 2, 4, 6), (10.0, 3, 1, 1, 6))  # fmt: skip

    class EfficientNetLike(nn.Module):
        def __init__(self, width, depth, stages, image, classes):
            super().__init__()
            layers: list[nn.Module] = [conv_bn(3, width, 3, 2, act=nn.SiLU())]
            c = width
            for ratio, k, stride, repeats, expand in b0[:stages]:
                out = max(8, int(round(width * ratio / 8)) * 8)
                for i in range(max(1, math.ceil(repeats * depth / 2))):
                    layers.append(MBConv(c, out, k, stride if i == 0 else 1, expand))
                    c = out
            layers.append(conv_bn(c, 4 * c, 1, act=nn.SiLU()))
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(4 * c, classes)

        def forward(self, x):
            return self.head(F.adaptive_avg_pool2d(self.body(x), 1).flatten(1))

    return {
        "unet_like": UNetLike,
        "convnext_like": ConvNeXtLike,
        "efficientnet_like": EfficientNetLike,
    }


def _sequence_families(block: Any) -> dict[str, Callable[..., Any]]:
    """LLaMA, BART, Whisper, DeepSpeech2: token, encoder-decoder and audio families
    (``block`` is the zoo's transformer block, reused by the Whisper encoder)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class RMSNorm(nn.Module):
        def __init__(self, d, eps=1e-6):
            super().__init__()
            self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

        def forward(self, x):
            return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    class LlamaBlock(nn.Module):
        def __init__(self, d, heads, kv_heads, ffn, max_seq):
            super().__init__()
            self.heads, self.kv_heads, self.hd = heads, kv_heads, d // heads
            self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
            self.q = nn.Linear(d, d, bias=False)
            self.kv = nn.Linear(d, 2 * kv_heads * self.hd, bias=False)
            self.o = nn.Linear(d, d, bias=False)
            self.gate, self.up = nn.Linear(d, ffn, bias=False), nn.Linear(d, ffn, bias=False)
            self.down = nn.Linear(ffn, d, bias=False)
            inv = 1.0 / 10000 ** (torch.arange(0, self.hd, 2).float() / self.hd)
            angles = torch.outer(torch.arange(max_seq).float(), inv).repeat(1, 2)
            self.register_buffer("cos", angles.cos())
            self.register_buffer("sin", angles.sin())
            self.register_buffer("mask", torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool)))

        def rotate(self, x, t):
            half = x.shape[-1] // 2
            turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
            return x * self.cos[:t] + turned * self.sin[:t]

        def forward(self, x):
            b, t, d = x.shape
            h = self.n1(x)
            q = self.q(h).reshape(b, t, self.heads, self.hd).transpose(1, 2)
            k, v = self.kv(h).reshape(b, t, 2, self.kv_heads, self.hd).permute(2, 0, 3, 1, 4)
            q, k = self.rotate(q, t), self.rotate(k, t)
            rep = self.heads // self.kv_heads  # grouped-query attention: share each K/V head
            k, v = (z[:, :, None].expand(b, self.kv_heads, rep, t, self.hd)
                    .reshape(b, self.heads, t, self.hd) for z in (k, v))  # fmt: skip
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd))
            att = att.masked_fill(~self.mask[:t, :t], float("-inf"))
            x = x + self.o((att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))
            h = self.n2(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class LlamaLike(nn.Module):
        def __init__(self, hidden, layers, heads, kv_heads, ffn, vocab, max_seq):
            super().__init__()
            self.tok = nn.Embedding(vocab, hidden)
            self.blocks = nn.ModuleList(
                LlamaBlock(hidden, heads, kv_heads, ffn, max_seq) for _ in range(layers)
            )
            self.norm, self.head = RMSNorm(hidden), nn.Linear(hidden, vocab, bias=False)

        def forward(self, input_ids):
            x = self.tok(input_ids)
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.norm(x))

    class Attention(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.heads = heads
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

        def forward(self, x, memory, mask=None):
            b, t, d = x.shape
            s, hd = memory.shape[1], d // self.heads
            q = self.q(x).reshape(b, t, self.heads, hd).transpose(1, 2)
            k = self.k(memory).reshape(b, s, self.heads, hd).transpose(1, 2)
            v = self.v(memory).reshape(b, s, self.heads, hd).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            if mask is not None:
                att = att.masked_fill(~mask, float("-inf"))
            return self.o((att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d))

    class BartLayer(nn.Module):
        def __init__(self, d, heads, decoder):
            super().__init__()
            self.attn, self.ln1 = Attention(d, heads), nn.LayerNorm(d)
            self.cross = Attention(d, heads) if decoder else None
            self.ln_cross = nn.LayerNorm(d) if decoder else None
            self.fc1, self.fc2, self.ln2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d), nn.LayerNorm(d)

        def forward(self, x, memory=None, mask=None):
            x = self.ln1(x + self.attn(x, x, mask))
            if self.cross is not None:
                x = self.ln_cross(x + self.cross(x, memory))
            return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))

    class BartLike(nn.Module):
        def __init__(self, hidden, layers, heads, vocab, max_seq):
            super().__init__()
            self.tok = nn.Embedding(vocab, hidden)
            self.enc_pos, self.dec_pos = (
                nn.Embedding(max_seq, hidden),
                nn.Embedding(max_seq, hidden),
            )
            self.enc_ln, self.dec_ln = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
            self.encoder = nn.ModuleList(BartLayer(hidden, heads, False) for _ in range(layers))
            self.decoder = nn.ModuleList(BartLayer(hidden, heads, True) for _ in range(layers))
            self.register_buffer("mask", torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool)))

        def forward(self, input_ids, decoder_input_ids):
            s, t = input_ids.shape[1], decoder_input_ids.shape[1]
            memory = self.enc_ln(self.tok(input_ids) + self.enc_pos.weight[:s])
            for layer in self.encoder:
                memory = layer(memory)
            x = self.dec_ln(self.tok(decoder_input_ids) + self.dec_pos.weight[:t])
            for layer in self.decoder:
                x = layer(x, memory, self.mask[:t, :t])
            return x @ self.tok.weight.t()  # tied head

    class WhisperLike(nn.Module):
        def __init__(self, hidden, layers, heads, mels, frames):
            super().__init__()
            self.conv1 = nn.Conv1d(mels, hidden, 3, padding=1)
            self.conv2 = nn.Conv1d(hidden, hidden, 3, stride=2, padding=1)
            n = (frames + 1) // 2
            inv = torch.exp(
                -math.log(10000) * torch.arange(hidden // 2).float() / (hidden // 2 - 1)
            )
            t = torch.arange(n).float()[:, None] * inv[None]
            self.register_buffer("pos", torch.cat([t.sin(), t.cos()], dim=1))
            self.blocks = nn.Sequential(
                *(block(hidden, heads, False, True, n) for _ in range(layers))
            )
            self.ln = nn.LayerNorm(hidden)

        def forward(self, x):
            x = F.gelu(self.conv2(F.gelu(self.conv1(x)))).transpose(1, 2)
            return self.ln(self.blocks(x + self.pos))

    class DeepSpeechLike(nn.Module):
        def __init__(self, hidden, layers, freq, frames, classes):
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(1, 32, (41, 11), (2, 2), (20, 5), bias=False), nn.BatchNorm2d(32),
                nn.Hardtanh(0, 20),
                nn.Conv2d(32, 32, (21, 11), (2, 1), (10, 5), bias=False), nn.BatchNorm2d(32),
                nn.Hardtanh(0, 20),
            )  # fmt: skip
            feats = 32 * (((freq + 1) // 2 + 1) // 2)
            self.rnn = nn.GRU(feats, hidden, layers, batch_first=True, bidirectional=True)
            self.head = nn.Linear(2 * hidden, classes)

        def forward(self, x):
            x = self.conv(x)  # (batch, 32, freq', time')
            b, c, f, t = x.shape
            y, _ = self.rnn(x.reshape(b, c * f, t).transpose(1, 2))
            return self.head(y).log_softmax(-1)

    return {
        "llama_like": LlamaLike,
        "bart_like": BartLike,
        "whisper_like": WhisperLike,
        "deepspeech_like": DeepSpeechLike,
    }


def _other_families() -> dict[str, Callable[..., Any]]:
    """DLRM, YOLOv5, MLP-Mixer: a recommender, a detector and an all-MLP vision model."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def mlp(sizes, last_act=True):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if last_act or i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    class DlrmLike(nn.Module):
        def __init__(self, dense, tables, rows, dim, hidden):
            super().__init__()
            self.bottom = mlp([dense, hidden, dim])
            self.tables = nn.ModuleList(nn.Embedding(rows, dim) for _ in range(tables))
            n = tables + 1
            pairs = [i * n + j for i in range(n) for j in range(i)]  # strictly lower triangle
            self.register_buffer("pairs", torch.tensor(pairs, dtype=torch.int64))
            self.top = mlp([dim + len(pairs), 2 * hidden, hidden, 1], last_act=False)

        def forward(self, dense, sparse):
            x = self.bottom(dense)
            feats = [x] + [t(sparse[:, i]) for i, t in enumerate(self.tables)]
            z = torch.stack(feats, dim=1)  # (batch, tables + 1, dim)
            dots = torch.bmm(z, z.transpose(1, 2)).flatten(1).index_select(1, self.pairs)
            return torch.sigmoid(self.top(torch.cat([x, dots], dim=1)))

    def cbs(cin, cout, k=1, s=1):  # YOLOv5's Conv: conv, batch norm, SiLU
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, (k - 1) // 2, bias=False),
                             nn.BatchNorm2d(cout), nn.SiLU())  # fmt: skip

    class Bottleneck(nn.Module):
        def __init__(self, c, shortcut):
            super().__init__()
            self.cv1, self.cv2, self.add = cbs(c, c, 1), cbs(c, c, 3), shortcut

        def forward(self, x):
            y = self.cv2(self.cv1(x))
            return x + y if self.add else y

    class C3(nn.Module):
        def __init__(self, cin, cout, n, shortcut=True):
            super().__init__()
            mid = cout // 2
            self.cv1, self.cv2, self.cv3 = cbs(cin, mid), cbs(cin, mid), cbs(2 * mid, cout)
            self.m = nn.Sequential(*(Bottleneck(mid, shortcut) for _ in range(n)))

        def forward(self, x):
            return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], dim=1))

    class Sppf(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.cv1, self.cv2 = cbs(c, c // 2), cbs(2 * c, c)

        def forward(self, x):
            x = self.cv1(x)
            y1 = F.max_pool2d(x, 5, 1, 2)
            y2 = F.max_pool2d(y1, 5, 1, 2)
            return self.cv2(torch.cat([x, y1, y2, F.max_pool2d(y2, 5, 1, 2)], dim=1))

    class YoloLike(nn.Module):
        def __init__(self, width, depth, image, classes):
            super().__init__()
            c = [width * 2**i for i in range(5)]  # yolov5n: 16, 32, 64, 128, 256
            self.p3 = nn.Sequential(cbs(3, c[0], 6, 2), cbs(c[0], c[1], 3, 2), C3(c[1], c[1], depth),
                                    cbs(c[1], c[2], 3, 2), C3(c[2], c[2], 2 * depth))  # fmt: skip
            self.p4 = nn.Sequential(cbs(c[2], c[3], 3, 2), C3(c[3], c[3], 3 * depth))
            self.p5 = nn.Sequential(cbs(c[3], c[4], 3, 2), C3(c[4], c[4], depth), Sppf(c[4]))
            self.lat5, self.td4 = cbs(c[4], c[3]), C3(2 * c[3], c[3], depth, False)
            self.lat4, self.td3 = cbs(c[3], c[2]), C3(2 * c[2], c[2], depth, False)
            self.dn3, self.bu4 = cbs(c[2], c[2], 3, 2), C3(2 * c[2], c[3], depth, False)
            self.dn4, self.bu5 = cbs(c[3], c[3], 3, 2), C3(2 * c[3], c[4], depth, False)
            self.no = classes + 5
            self.detect = nn.ModuleList(nn.Conv2d(ch, 3 * self.no, 1) for ch in c[2:])

        def forward(self, x):
            p3 = self.p3(x)
            p4 = self.p4(p3)
            l5 = self.lat5(self.p5(p4))
            l4 = self.lat4(self.td4(torch.cat([F.interpolate(l5, scale_factor=2.0), p4], 1)))
            o3 = self.td3(torch.cat([F.interpolate(l4, scale_factor=2.0), p3], 1))
            o4 = self.bu4(torch.cat([self.dn3(o3), l4], 1))
            o5 = self.bu5(torch.cat([self.dn4(o4), l5], 1))
            outs = []
            for head, y in zip(self.detect, (o3, o4, o5)):
                y = head(y)
                b, _, h, w = y.shape
                outs.append(
                    y.reshape(b, 3, self.no, h * w).permute(0, 1, 3, 2).reshape(b, -1, self.no)
                )
            return torch.cat(outs, dim=1).sigmoid()

    class MixerBlock(nn.Module):
        def __init__(self, d, tokens, token_mlp, channel_mlp):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.t1, self.t2 = nn.Linear(tokens, token_mlp), nn.Linear(token_mlp, tokens)
            self.c1, self.c2 = nn.Linear(d, channel_mlp), nn.Linear(channel_mlp, d)

        def forward(self, x):
            y = self.ln1(x).transpose(1, 2)
            x = x + self.t2(F.gelu(self.t1(y))).transpose(1, 2)
            return x + self.c2(F.gelu(self.c1(self.ln2(x))))

    class MixerLike(nn.Module):
        def __init__(self, hidden, layers, patch, image, token_mlp, channel_mlp, classes):
            super().__init__()
            tokens = (image // patch) ** 2
            self.embed = nn.Conv2d(3, hidden, patch, patch)
            self.blocks = nn.Sequential(
                *(MixerBlock(hidden, tokens, token_mlp, channel_mlp) for _ in range(layers))
            )
            self.ln, self.head = nn.LayerNorm(hidden), nn.Linear(hidden, classes)

        def forward(self, x):
            x = self.blocks(self.embed(x).flatten(2).transpose(1, 2))
            return self.head(self.ln(x).mean(dim=1))

    return {"dlrm_like": DlrmLike, "yolo_like": YoloLike, "mixer_like": MixerLike}


def build_module(name: str, seed: int = 0, **knobs: int) -> Any:
    """Return the torch module of zoo model ``name`` (random weights, eval mode)."""
    import torch

    k = _knobs(name, knobs)
    torch.manual_seed(seed)
    module = _modules()[name](**k)
    return module.eval()


def _inputs(name: str, batch: int, sequence: int, k: dict[str, int]) -> list[tuple[str, Any, dict]]:
    """``(input name, random tensor, dynamic axes)`` for each input of zoo model ``name``."""
    import torch

    def ids(rows: int, length: int) -> Any:
        return torch.randint(0, rows, (batch, length), dtype=torch.int64)

    seq = {0: "batch", 1: "sequence"}
    if name == "bart_like":
        dec = {0: "batch", 1: "decoder_sequence"}
        return [("input_ids", ids(k["vocab"], sequence), seq),
                ("decoder_input_ids", ids(k["vocab"], sequence), dec)]  # fmt: skip
    if MODELS[name].token_input:
        return [("input_ids", ids(k["vocab"], sequence), seq)]
    if name == "dlrm_like":
        return [("dense", torch.randn(batch, k["dense"]), {0: "batch"}),
                ("sparse", ids(k["rows"], k["tables"]), {0: "batch"})]  # fmt: skip
    shape = {
        "tiny_mlp": lambda: (k["features"],),
        "whisper_like": lambda: (k["mels"], k["frames"]),
        "deepspeech_like": lambda: (1, k["freq"], k["frames"]),
    }.get(name, lambda: (3, k["image"], k["image"]))()
    return [("input", torch.randn(batch, *shape), {0: "batch"})]


def example_input(name: str, batch: int = 1, sequence: int = 128, **knobs: int) -> tuple:
    """Random inputs of zoo model ``name`` at the given batch (and sequence) size, in the order
    its ``forward`` takes them (a tuple: two for ``bart_like`` and ``dlrm_like``)."""
    return tuple(x for _, x, _ in _inputs(name, batch, sequence, _knobs(name, knobs)))


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
    inputs = _inputs(name, 2, 16, _knobs(name, knobs))
    axes = {in_name: ax for in_name, _, ax in inputs}
    seq_out = MODELS[name].sequence_output
    axes["output"] = {0: "batch", 1: seq_out} if seq_out else {0: "batch"}
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(x for _, x, _ in inputs),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=[in_name for in_name, _, _ in inputs],
            output_names=["output"],
            dynamic_axes=axes,
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


def _rnn_flops(module: Any) -> tuple[dict[str, float], list[Any]]:
    """Hand count of the matrix products inside torch RNN/LSTM/GRU layers (2 per multiply-add),
    from forward hooks that see each layer's input: ``({FlopCounterMode's name of the layer:
    FLOPs}, hook handles)``."""
    from torch import nn

    counts: dict[str, float] = {}
    root = type(module).__name__

    def hook(name: str) -> Callable[..., None]:
        def count(m: Any, args: tuple, _out: Any) -> None:
            x = args[0]
            batch, steps = (x.shape[0], x.shape[1]) if m.batch_first else (x.shape[1], x.shape[0])
            gates = {"LSTM": 4, "GRU": 3}.get(m.mode, 1)
            dirs = 2 if m.bidirectional else 1
            total = 0.0
            for layer in range(m.num_layers):
                fan_in = m.input_size if layer == 0 else m.hidden_size * dirs
                total += (
                    2.0 * batch * steps * dirs * gates * m.hidden_size * (fan_in + m.hidden_size)
                )
            counts[f"{root}.{name}"] = counts.get(f"{root}.{name}", 0.0) + total

        return count

    handles = [
        m.register_forward_hook(hook(name))
        for name, m in module.named_modules()
        if isinstance(m, nn.RNNBase)
    ]
    return counts, handles


def flop_reference(name: str, batch: int = 1, sequence: int = 128, **knobs: int) -> float:
    """FLOPs of zoo model ``name`` per ``torch.utils.flop_counter.FlopCounterMode``.

    Counts convolutions and matrix products at input ``(batch, ...)`` (``sequence`` tokens for
    token models, for both inputs of ``bart_like``); recurrent layers are added by hand, since
    FlopCounterMode sees nothing inside the fused CPU LSTM kernel (a layer it saw less than half
    of is counted by hand).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module = build_module(name, **knobs)
    inputs = example_input(name, batch=batch, sequence=sequence, **knobs)
    rnn, handles = _rnn_flops(module)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    seen = counter.get_flop_counts()
    # the fused CPU LSTM kernel is invisible to FlopCounterMode; the GRU runs as mm/addmm it sees
    hidden = sum(f for m, f in rnn.items() if sum(seen.get(m, {}).values()) < 0.5 * f)
    return float(counter.get_total_flops()) + hidden
