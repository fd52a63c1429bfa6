"""Build a held-out set of models for the search benchmark: real architectures from Hugging Face
``transformers`` configs (random weights, nothing downloaded), none of them a family of the
simulated zoo the shipped knowledge is built from.

    pip install transformers==4.57.6   # not a dependency of autoconf
    python benchmarks/unseen_models.py --out DIR [--set original|fresh|all]
    autoconf bench --train shipped --eval sim:DIR --samplers meta,transfer,tpe,random --repeats 3

Each model is exported with the TorchScript exporter (``dynamo=False``, opset 17, a dynamic batch
axis) to ``DIR/<name>.onnx``; a file already there is kept. The set covers the kinds of model a
user serves: image classification (CNN, hierarchical and mobile transformers), semantic
segmentation, object detection, text encoders, a seq2seq encoder-decoder, decoder-only
language models (prefill),
speech (log-mel and raw waveform), and time-series forecasting. Sizes are the published base
configs (a few shrunk in depth where the full model would take minutes to export on 2 cores).

``--set fresh`` builds 12 more (MobileNetV2, LeViT-128S, PoolFormer-S12, CvT-13, DINOv2-small,
CLIP's ViT-B/32 vision tower, DETR-ResNet-50, DeBERTa-v3-base, MobileBERT, SqueezeBERT, Funnel,
BioGPT at half depth). They were added at stop 25 and benchmarked before any change was measured
on them: the 16 original models have steered design choices since stop 20, these have not.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SEQ = 128


def _image(cfg_name: str, model_name: str, size: int = 224, **cfg: Any) -> Callable[[], tuple]:
    def make() -> tuple:
        import torch
        import transformers

        model = getattr(transformers, model_name)(getattr(transformers, cfg_name)(**cfg))
        return model, (torch.randn(1, 3, size, size),), ["pixel_values"]

    return make


def _text(cfg_name: str, model_name: str, vocab: int = 30522, **cfg: Any) -> Callable[[], tuple]:
    def make() -> tuple:
        import torch
        import transformers

        model = getattr(transformers, model_name)(getattr(transformers, cfg_name)(**cfg))
        ids = torch.randint(0, vocab, (1, SEQ))
        return model, (ids,), ["input_ids"]

    return make


def _seq2seq() -> tuple:
    import torch
    import transformers

    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(use_cache=False))  # small

    class Seq2Seq(torch.nn.Module):
        """Source ids and 16 target ids to logits (no cache objects in the graph)."""

        def __init__(self) -> None:
            super().__init__()
            self.t5 = t5

        def forward(self, input_ids: Any, decoder_input_ids: Any) -> Any:
            return self.t5(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits

    ids = torch.randint(0, 32000, (1, SEQ))
    dec = torch.randint(0, 32000, (1, 16))
    return Seq2Seq(), (ids, dec), ["input_ids", "decoder_input_ids"]


def _causal_lm(cfg_name: str, model_name: str, **cfg: Any) -> Callable[[], tuple]:
    """A decoder-only language model's prefill: token ids to next-token logits, no cache."""

    def make() -> tuple:
        import torch
        import transformers

        config = getattr(transformers, cfg_name)(use_cache=False, **cfg)
        lm = getattr(transformers, model_name)(config)

        class Prefill(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lm = lm

            def forward(self, input_ids: Any) -> Any:
                return self.lm(input_ids=input_ids, use_cache=False).logits

        ids = torch.randint(0, config.vocab_size, (1, SEQ))
        return Prefill(), (ids,), ["input_ids"]

    return make


def _whisper() -> tuple:
    import torch
    import transformers

    cfg = transformers.WhisperConfig(  # whisper-base sizes
        d_model=512,
        encoder_layers=6,
        encoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_layers=6,
        decoder_attention_heads=8,
        decoder_ffn_dim=2048,
    )
    encoder = transformers.WhisperModel(cfg).get_encoder()
    return encoder, (torch.randn(1, 80, 3000),), ["input_features"]


def _wav2vec2() -> tuple:
    import torch
    import transformers

    model = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config())  # wav2vec2-base
    return model, (torch.randn(1, 16000),), ["input_values"]


def _patchtst() -> tuple:
    import torch
    import transformers

    cfg = transformers.PatchTSTConfig(
        num_input_channels=7,
        context_length=512,
        prediction_length=96,
        patch_length=16,
        patch_stride=8,
        d_model=128,
        num_attention_heads=16,
        num_hidden_layers=3,
        ffn_dim=256,
    )
    model = transformers.PatchTSTForPrediction(cfg)
    return model, (torch.randn(1, 512, 7),), ["past_values"]


def _detr() -> tuple:
    import torch
    import transformers

    cfg = transformers.DetrConfig(  # detr-resnet-50, its backbone from transformers' ResNet
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone=None,
        backbone_config=transformers.ResNetConfig(out_features=["stage4"]),
    )
    model = transformers.DetrForObjectDetection(cfg)
    return model, (torch.randn(1, 3, 512, 512),), ["pixel_values"]


#: name -> builder returning (module, example inputs, input names)
MODELS: dict[str, Callable[[], tuple]] = {
    "convnext-tiny": _image("ConvNextConfig", "ConvNextForImageClassification"),
    "efficientnet-b0": _image(
        "EfficientNetConfig",
        "EfficientNetForImageClassification",
        width_coefficient=1.0,
        depth_coefficient=1.0,
        image_size=224,
        hidden_dim=1280,
    ),
    "regnet-y-040": _image("RegNetConfig", "RegNetForImageClassification"),
    "swin-tiny": _image("SwinConfig", "SwinForImageClassification"),
    "mobilevit-small": _image("MobileViTConfig", "MobileViTForImageClassification", size=256),
    "segformer-b0": _image("SegformerConfig", "SegformerForSemanticSegmentation", size=512),
    "yolos-tiny": _image(
        "YolosConfig",
        "YolosForObjectDetection",
        size=512,
        hidden_size=192,
        num_attention_heads=3,
        intermediate_size=768,
        image_size=[512, 512],
    ),
    "distilbert-base": _text("DistilBertConfig", "DistilBertForSequenceClassification"),
    "albert-base": _text(
        "AlbertConfig",
        "AlbertForSequenceClassification",
        vocab=30000,
        hidden_size=768,
        num_attention_heads=12,
        intermediate_size=3072,
    ),
    "electra-small": _text("ElectraConfig", "ElectraForSequenceClassification"),
    "t5-small": _seq2seq,
    "whisper-base-encoder": _whisper,
    "wav2vec2-base": _wav2vec2,
    "patchtst": _patchtst,
    # decoder-only language models (prefill), the published 125M configs (a rotary-embedding
    # one, Llama or GPT-NeoX, fails the TorchScript exporter of torch 2.13: unordered_map::at)
    "opt-125m": _causal_lm(
        "OPTConfig",
        "OPTForCausalLM",
        hidden_size=768,
        num_hidden_layers=12,
        ffn_dim=3072,
        num_attention_heads=12,
        word_embed_proj_dim=768,
    ),
    "gpt-neo-125m": _causal_lm(
        "GPTNeoConfig",
        "GPTNeoForCausalLM",
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        attention_types=[[["global", "local"], 6]],
        window_size=256,
    ),
}
#: Added at stop 25 and benchmarked for the first time then: no design decision has seen them,
#: so their figures are an unbiased check of the older set's (``--models``, or ``FRESH``).
FRESH: dict[str, Callable[[], tuple]] = {
    "mobilenet-v2": _image("MobileNetV2Config", "MobileNetV2ForImageClassification"),
    "levit-128s": _image("LevitConfig", "LevitForImageClassification"),
    "poolformer-s12": _image("PoolFormerConfig", "PoolFormerForImageClassification"),
    "cvt-13": _image("CvtConfig", "CvtForImageClassification"),
    "dinov2-small": _image("Dinov2Config", "Dinov2Model", hidden_size=384, num_attention_heads=6),
    "clip-vit-b32": _image("CLIPVisionConfig", "CLIPVisionModel"),
    "detr-resnet50": _detr,
    "deberta-v3-base": _text(
        "DebertaV2Config",
        "DebertaV2ForSequenceClassification",
        vocab=128100,
        vocab_size=128100,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        max_relative_positions=-1,
        position_buckets=256,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
    ),
    "mobilebert": _text("MobileBertConfig", "MobileBertForSequenceClassification"),
    "squeezebert": _text("SqueezeBertConfig", "SqueezeBertForSequenceClassification"),
    "funnel-small": _text("FunnelConfig", "FunnelForSequenceClassification"),
    # BioGPT's published config at half its depth (GPT-BigCode, multi-query attention, fails
    # the TorchScript exporter like the rotary LMs: unordered_map::at)
    "biogpt-12l": _causal_lm("BioGptConfig", "BioGptForCausalLM", num_hidden_layers=12),
}
SETS = {"original": dict(MODELS), "fresh": FRESH, "all": {**MODELS, **FRESH}}
MODELS.update(FRESH)


def export(name: str, out: Path) -> Path:
    """Export model ``name`` to ``out/<name>.onnx`` (kept when already there)."""
    import torch

    path = out / f"{name}.onnx"
    if path.is_file():
        return path
    torch.manual_seed(0)
    model, args, names = MODELS[name]()
    model.eval()
    used = [n for n, a in zip(names, args) if a is not None]
    axes = {n: {0: "batch"} for n in used}
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model,
            args,
            str(tmp),
            input_names=used,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    tmp.rename(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for the ONNX files")
    parser.add_argument(
        "--set",
        choices=list(SETS),
        default="original",
        help="original: the 16 models of stops 20-24; fresh: the 12 added at stop 25",
    )
    parser.add_argument("--models", help="comma-separated subset of: " + ", ".join(MODELS))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.models.split(",") if args.models else list(SETS[args.set])
    failed = 0
    for name in names:
        start = time.perf_counter()
        try:
            path = export(name, args.out)
        except Exception as exc:  # one architecture that does not export must not stop the rest
            failed += 1
            print(f"{name}: not exported: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
            continue
        size_mb = path.stat().st_size / 1e6
        print(f"{name}: {path} ({size_mb:.0f} MB, {time.perf_counter() - start:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
