"""Hostile model file names never run as shell and never break a Triton config or a
Kubernetes name (issue 15, item 1): the plan's and the trials' manifests are rendered for such
names and their init scripts are run under a real ``sh``, with every external command replaced
by a recorder, in a temporary directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import stress
from autoconf import Config
from autoconf._deployment import LABELS, deployment_spec
from autoconf._manifests import render_plan_manifests
from autoconf.cli import main

HOSTILE_STEMS = [
    "x; echo INJECTED >&2; #",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a'b\"c; touch PWNED",
    "line\ntouch PWNED",
    "-rf ..",
    ".hidden",
    "mødel-ünïcode-名前",
    "a && touch PWNED || touch PWNED",
    "${IFS}touch${IFS}PWNED",
]
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")
# mkdir, cp and curl as recorders: one NUL-separated record per call, then a newline
RECORDER = '#!/bin/sh\nprintf "%s\\0" "${0##*/}" "$@" >> "$CALLS"\nprintf "\\n" >> "$CALLS"\n'
CONFIG = Config(batch_size=4, gpu_type="T4", replicas=2, cpu_cores=2, instances_per_gpu=1)


def _init_script(docs: list[dict]) -> str:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["sh", "-c"]
    return init["command"][2]


def _run_script(script: str, tmp_path: Path) -> tuple[list[list[str]], subprocess.CompletedProcess]:
    """Run ``script`` under sh with only the recorders on PATH; return the calls it made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("mkdir", "cp", "curl"):
        (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    calls.write_bytes(b"")
    env = {"PATH": str(bin_dir), "CALLS": str(calls), "MODEL_URI": "https://m.example/x.onnx"}
    sh = shutil.which("sh")
    done = subprocess.run(
        [sh, "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=10
    )
    records = [r for r in calls.read_bytes().split(b"\n") if r]
    return [r.decode().split("\0")[:-1] for r in records], done


def _check_docs(docs: list[dict], name: str) -> None:
    stress.validate_manifests(docs)
    assert stress.check_model_name(name) == name
    for doc in docs:
        meta = doc["metadata"]
        assert DNS_LABEL.fullmatch(meta["name"]), meta["name"]
        for value in meta.get("labels", {}).values():
            assert LABEL_VALUE.fullmatch(value), value
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    pbtxt = config_map["data"]["config.pbtxt"]
    assert pbtxt.splitlines()[0] == f'name: "{name}"'
    assert pbtxt.count('"') == 8  # the name's, the platform's, the parameter's key and value
    # what was written is what is read back (a YAML value, not YAML syntax)
    assert yaml.safe_load(yaml.safe_dump(docs)) == docs


def _expected_calls(name: str, fetched: bool) -> list[list[str]]:
    model = f"/models/{name}"
    last = (
        ["curl", "-fsSL", "--retry", "3", "-o", f"{model}/1/model.onnx", "https://m.example/x.onnx"]
        if fetched
        else ["cp", "/config/model.onnx", f"{model}/1/model.onnx"]
    )
    return [
        ["mkdir", "-p", f"{model}/1"],
        ["cp", "/config/config.pbtxt", f"{model}/config.pbtxt"],
        last,
    ]


@pytest.mark.parametrize("stem", HOSTILE_STEMS)
@pytest.mark.parametrize("fetched", [False, True], ids=["embedded", "model_uri"])
def test_plan_manifests_never_run_a_model_name(
    stem: str, fetched: bool, relu_model: Path, tmp_path: Path
) -> None:
    path = tmp_path / f"{stem}.onnx"
    shutil.copy(relu_model, path)
    spec = deployment_spec(CONFIG, path)
    options = stress.ManifestOptions(
        labels=LABELS, model_uri="https://m.example/x.onnx" if fetched else None
    )
    docs = render_plan_manifests(spec, options=options)
    _check_docs(docs, spec.model_name)
    if fetched:  # KServe's InferenceService (from storage) names the model in its command too
        _check_docs(render_plan_manifests(spec, kserve=True, options=options), spec.model_name)
    calls, done = _run_script(_init_script(docs), tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert calls == _expected_calls(spec.model_name, fetched)
    assert not list((tmp_path / "cwd").iterdir())  # nothing created, nothing touched


@pytest.mark.parametrize("stem", HOSTILE_STEMS[:5])
def test_trial_manifests_never_run_a_model_name(
    stem: str, relu_model: Path, tmp_path: Path
) -> None:
    spec = stress.DeploymentSpec(relu_model, model_name=stress.model_name(stem))
    docs = stress.render_trial_manifests(spec, stress.dns_name(f"ac-{stem}"))
    _check_docs(docs, spec.model_name)
    calls, done = _run_script(_init_script(docs), tmp_path)
    assert (done.returncode, done.stderr) == (0, "") and calls == _expected_calls(
        spec.model_name, False
    )


@pytest.mark.parametrize("stem", HOSTILE_STEMS)
def test_a_raw_hostile_name_is_refused_where_it_would_reach_a_shell(
    stem: str, relu_model: Path
) -> None:
    with pytest.raises(stress.StressError, match="invalid model name"):
        stress.DeploymentSpec(relu_model, model_name=stem)


def test_model_name_keeps_safe_names_and_is_idempotent() -> None:
    for safe in ("resnet50", "bert_like@s".replace("@", "_"), "model-v1.2", "_x"):
        assert stress.model_name(safe) == safe
    for stem in HOSTILE_STEMS:
        once = stress.model_name(stem)
        assert stress.model_name(once) == once == stress.check_model_name(once)


def test_search_with_the_issue_s_file_name_writes_a_harmless_plan(
    relu_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reproduction of issue 15 item 1, end to end through ``autoconf search``."""
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "x; echo INJECTED >&2; #.onnx"
    shutil.copy(relu_model, model)
    out = tmp_path / "inj"
    args = [
        "search", str(model), "--slo-p99", "50ms", "--backend", "sim", "--space", "gpu-default",
        "--budget", "3", "--out", str(out), "--knowledge", "none",
    ]  # fmt: skip
    assert main(args) in (0, 1)
    docs = [yaml.safe_load(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))]
    _check_docs(docs, "x__echo_INJECTED___2___")
    calls, done = _run_script(_init_script(docs), tmp_path)
    assert "INJECTED" not in done.stdout + done.stderr
    assert (done.returncode, done.stderr) == (0, "")
    assert calls == _expected_calls("x__echo_INJECTED___2___", False)
    assert os.listdir(tmp_path / "cwd") == []
