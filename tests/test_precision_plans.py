"""One precision everywhere (issue 18): the config's precision is what the simulator computes
at, what the plan names, what the notation shows and what the manifests serve (the variant file
beside plan.yaml for FP16/INT8; the model as exported for FP32)."""

from __future__ import annotations

import base64
import types
from pathlib import Path

import yaml
from _tiny import matmul_onnx

from autoconf import Config
from autoconf._notation import LEGEND, short
from autoconf.cli import main

SPACE = """
name: gpu-fp16
dimensions:
  batch_size: [1, 8]
  gpu_type: [T4, L4]
  replicas: [1, 2]
  cpu_cores: [1, 2]
  precision: [fp16]
gpus:
  T4: {fp16_tflops: 65, fp32_tflops: 8.1, int8_tops: 130, memory_gb: 16, bandwidth_gbps: 320,
       price_per_hour: 0.35}
  L4: {fp16_tflops: 121, fp32_tflops: 30.3, int8_tops: 242, memory_gb: 24, bandwidth_gbps: 300,
       price_per_hour: 0.56}
pricing: {cpu_core_per_hour: 0.0447}
"""


def _mlp(path: Path, seed: int) -> Path:
    """A tiny MLP (small enough to embed in a ConfigMap)."""
    return matmul_onnx(path, 16, 4, seed)


def test_the_notation_names_a_variant_and_the_legend_says_so() -> None:
    base = dict(batch_size=8, gpu_type="T4", replicas=2, cpu_cores=4, max_queue_delay_ms=5)
    assert short(Config(**base)) == "bs8 T4 x2 4c q5ms"
    assert short(Config(**base, precision="fp32")) == "bs8 T4 x2 4c q5ms"
    assert short(Config(**base, precision="int8")) == "bs8 T4 x2 4c q5ms int8"
    assert any("fp16" in k and "variant" in v for k, v in LEGEND)


def test_a_variant_plan_names_its_precision_and_its_manifests_serve_the_variant(
    tmp_path: Path, capsys
) -> None:
    model = _mlp(tmp_path / "tiny.onnx", 0)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "out"
    argv = ["search", str(model), "--slo-p99", "50ms", "--backend", "sim", "--space", str(space)]
    argv += ["--budget", "3", "--knowledge", "none", "--no-progress", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    plan = yaml.safe_load((out / "plan.yaml").read_text())
    assert plan["config"]["precision"] == "fp16" and plan["model"]["precision"] == "fp16"
    assert "computed at FP16" in plan["provenance"]["basis"]
    assert "precision" in (out / "trials.csv").read_text().splitlines()[0].split(",")
    assert " fp16</td>" in (out / "report.html").read_text()
    if "variant_file" in plan["model"]:  # built by the search (with autoconf._variants)
        assert (out / plan["model"]["variant_file"]).is_file()
        assert list((out / "manifests").glob("*.yaml"))
    else:  # none built: no manifest serving the FP32 file instead, and one line saying so
        assert not (out / "manifests").exists() or not list((out / "manifests").glob("*.yaml"))
        assert "fp16 variant" in err
    # a variant file beside the plan: the manifests serve it, under the model's name
    variant = _mlp(out / "other.fp16.onnx", 1)
    plan["model"]["variant_file"] = variant.name
    (out / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    assert main(["manifests", str(out / "plan.yaml")]) == 0
    docs = [yaml.safe_load(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))]
    embedded = base64.b64decode(docs[0]["binaryData"]["model.onnx"])
    assert embedded == variant.read_bytes() != model.read_bytes()
    assert 'name: "tiny"' in docs[0]["data"]["config.pbtxt"]  # the model's name, not the file's
    # the FP32 model's storage (the search's --model-uri) does not hold the variant: refused
    plan["model"]["uri"] = "s3://b/tiny.onnx"
    (out / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    capsys.readouterr()
    assert main(["manifests", str(out / "plan.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other.fp16.onnx" in err and "--model-uri" in err
    uri = "s3://b/other.fp16.onnx"
    assert main(["manifests", str(out / "plan.yaml"), "--model-uri", uri]) == 0
    docs = [yaml.safe_load(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))]
    pod = docs[1]["spec"]["template"]["spec"]
    assert {"name": "MODEL_URI", "value": uri} in pod["initContainers"][0]["env"]
    # without it: no manifests, one line naming the variant
    del plan["model"]["variant_file"]
    (out / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    capsys.readouterr()
    assert main(["manifests", str(out / "plan.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fp16 variant" in err


def test_the_search_places_a_built_variant_beside_the_plan(tmp_path: Path) -> None:
    from autoconf._search._outputs import _plan_model

    model = _mlp(tmp_path / "m.onnx", 0)
    built = _mlp(tmp_path / "cache-int8.onnx", 2)
    out = tmp_path / "out"
    out.mkdir()
    opts = types.SimpleNamespace(dims={}, manifest=types.SimpleNamespace(model_uri=None))
    so = types.SimpleNamespace(
        opts=opts,
        model_path=model,
        out=out,
        sha="x",
        variants={"int8": types.SimpleNamespace(precision="int8", path=built)},
    )
    pm = _plan_model(so, "int8")  # type: ignore[arg-type]
    assert pm.precision == "int8" and pm.variant_file == "m.int8.onnx"
    assert (out / "m.int8.onnx").read_bytes() == built.read_bytes()
    from autoconf._plan import sha256_of

    assert pm.variant_sha256 == sha256_of(built)
    fp32 = _plan_model(so, "fp32")  # type: ignore[arg-type]
    assert fp32.precision == "fp32" and fp32.variant_file is None


def test_kserve_lays_out_the_served_file_when_the_storage_holds_both(tmp_path: Path) -> None:
    """KServe's storage may hold the FP32 model and its variant: the InferenceService's start
    script links the served file (by name) into Triton's repository. The script runs here under
    sh with its paths moved into tmp_path and Triton replaced by ``exit 0``."""
    import subprocess

    from autoconf._manifests import _kserve_command

    models, repo = tmp_path / "mnt", tmp_path / "repo"
    (models / "sub").mkdir(parents=True)
    for name in ("tiny.onnx", "sub/tiny.int8.onnx"):
        (models / name).write_bytes(b"onnx")
    (tmp_path / "config.pbtxt").write_text('name: "tiny"\n')
    for served, expected in [("tiny.int8.onnx", "sub/tiny.int8.onnx"), ("tiny.onnx", "tiny.onnx")]:
        script = _kserve_command("tiny", served)[2]
        script = script.replace("/mnt/models", str(models)).replace("/tmp/repository", str(repo))
        script = script.replace("/config/config.pbtxt", str(tmp_path / "config.pbtxt"))
        script = script.replace("exec tritonserver", "exit 0; tritonserver")
        subprocess.run(["sh", "-c", script], check=True)
        link = repo / "tiny" / "1" / "model.onnx"
        assert Path(link.readlink()) == models / expected
        link.unlink()
