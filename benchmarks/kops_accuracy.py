"""kops FLOPs against torch's FlopCounterMode, per zoo model and size.

For each model of the accuracy zoo and a few sizes, exports with ``kops.zoo.build``, profiles at
batch 1 (sequence 128 for token models, both sequences of ``bart_like``) and prints
``kops.contraction_flops / reference`` where the reference is ``kops.zoo.flop_reference``
(FlopCounterMode; LSTM cells counted by hand). The target
is a ratio within 0.95..1.05. Also prints kops' total FLOPs (with element-wise work) and timing.

    python benchmarks/kops_accuracy.py [--out results/kops]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import kops

SIZES: dict[str, list[dict[str, int]]] = {
    "resnet_like": [{}, {"width": 32, "depth": 2}, {"width": 8, "stages": 4, "image": 96}],
    "mobilenet_like": [{}, {"width": 24, "depth": 2, "expand": 6}, {"width": 8, "image": 96}],
    "bert_like": [
        {},
        {"hidden": 128, "layers": 4, "heads": 8},
        {"hidden": 32, "layers": 1, "heads": 2},
    ],
    "gpt2_like": [
        {},
        {"hidden": 128, "layers": 4, "heads": 8},
        {"hidden": 96, "layers": 3, "heads": 3},
    ],
    "vit_like": [
        {},
        {"hidden": 128, "layers": 4, "patch": 4},
        {"hidden": 48, "image": 64, "heads": 3},
    ],
    "lstm": [{}, {"hidden": 128, "layers": 3}, {"hidden": 32, "layers": 1, "vocab": 5000}],
    "unet_like": [{}, {"width": 32, "levels": 4, "image": 128}, {"width": 8, "levels": 2}],
    "convnext_like": [{}, {"width": 48, "depth": 2, "image": 128}, {"width": 16, "stages": 3}],
    "efficientnet_like": [
        {},
        {"width": 32, "depth": 2, "stages": 7, "image": 128},
        {"width": 24, "stages": 3, "image": 96},
    ],
    "llama_like": [
        {},
        {"hidden": 256, "layers": 4, "heads": 8, "ffn": 688},
        {"hidden": 96, "heads": 6, "kv_heads": 6, "ffn": 256},
    ],
    "bart_like": [{}, {"hidden": 256, "layers": 3}, {"hidden": 32, "layers": 1, "heads": 2}],
    "whisper_like": [
        {},
        {"hidden": 192, "layers": 4, "heads": 6, "frames": 600},
        {"hidden": 32, "mels": 128, "frames": 300},
    ],
    "deepspeech_like": [
        {},
        {"hidden": 256, "layers": 3, "frames": 200},
        {"hidden": 32, "layers": 1, "freq": 81},
    ],
    "dlrm_like": [
        {},
        {"tables": 26, "rows": 5000, "dim": 64, "hidden": 256},
        {"tables": 4, "dim": 8, "hidden": 32},
    ],
    "yolo_like": [{}, {"width": 32, "image": 256}, {"width": 8, "depth": 2, "image": 96}],
    "mixer_like": [
        {},
        {"hidden": 192, "layers": 4, "image": 128, "token_mlp": 96, "channel_mlp": 768},
        {"hidden": 32, "patch": 16, "image": 128},
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="write accuracy.{md,json} here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, sizes in SIZES.items():
            for i, knobs in enumerate(sizes):
                path = kops.zoo.build(name, Path(tmp) / f"{name}_{i}.onnx", **knobs)
                t = time.perf_counter()
                prof = kops.profile(path)
                profile_s = time.perf_counter() - t
                ref = kops.zoo.flop_reference(name, batch=1, sequence=128, **knobs)
                row = {
                    "model": name,
                    "knobs": knobs,
                    "reference_flops": ref,
                    "kops_contraction_flops": prof.contraction_flops,
                    "ratio": prof.contraction_flops / ref,
                    "kops_total_flops": prof.total_flops,
                    "params": prof.total_params,
                    "key_operators": prof.key_operators,
                    "profile_s": profile_s,
                }
                rows.append(row)
                print(
                    f"{name:17s} {json.dumps(knobs):45s} ratio {row['ratio']:.4f}  "
                    f"ref {ref / 1e6:9.2f} MFLOPs  total {prof.total_flops / 1e6:9.2f} MFLOPs  "
                    f"key {','.join(prof.key_operators)}",
                    flush=True,
                )
    worst = max(abs(r["ratio"] - 1) for r in rows)
    print(f"worst |ratio - 1| = {worst:.4f} over {len(rows)} models (target <= 0.05)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        cmd = "python benchmarks/kops_accuracy.py " + " ".join(sys.argv[1:])
        (args.out / "accuracy.json").write_text(
            json.dumps({"command": cmd, "rows": rows}, indent=1) + "\n"
        )
        md = [
            "# kops FLOPs vs torch FlopCounterMode",
            "",
            f"Command: `{cmd}` ({time.strftime('%Y-%m-%d')}, load average "
            f"{os.getloadavg()[0]:.1f}). Batch 1, sequence 128 for token models. `ratio` = kops "
            "FLOPs of convolutions, matrix products and recurrent cells / FlopCounterMode (LSTM cells "
            "by hand). `total` adds kops' element-wise, normalization, softmax and pooling work.",
            "",
            "| model | size knobs | reference MFLOPs | ratio | kops total MFLOPs | key operators |",
            "|---|---|---:|---:|---:|---|",
        ]
        for r in rows:
            md.append(
                f"| {r['model']} | `{json.dumps(r['knobs'])}` | {r['reference_flops'] / 1e6:.2f} | "
                f"{r['ratio']:.4f} | {r['kops_total_flops'] / 1e6:.2f} | {', '.join(r['key_operators'])} |"
            )
        md += ["", f"Worst |ratio - 1|: {worst:.4f} over {len(rows)} models (target <= 0.05)."]
        (args.out / "accuracy.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
