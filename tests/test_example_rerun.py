"""The Quickstart's main job, ``autoconf search --example``, runs twice in a row in one folder:
the second run says it replaces the first and starts fresh (the sim backend keeps it fast)."""

from __future__ import annotations

import pytest

from autoconf import cli


def test_example_runs_twice_in_the_same_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["search", "--example", "--backend", "sim", "--space", "gpu-default"]
    argv += ["--slo-p99", "20ms", "--qps", "400", "--budget", "2", "--knowledge", "none"]
    argv += ["--no-progress"]
    out = tmp_path / "autoconf-example"
    assert cli.main(argv) == 0, capsys.readouterr().err
    first = capsys.readouterr().err
    assert "previous example run" not in first
    assert (out / "tiny_mlp.onnx").is_file() and (out / "plan.yaml").is_file()
    (out / "plan.yaml").unlink()
    assert cli.main(argv) == 0, capsys.readouterr().err
    second = capsys.readouterr().err
    assert "holds a previous example run: replacing it with a fresh one" in second
    assert (out / "plan.yaml").is_file()


def test_example_model_needs_no_torch(tmp_path):
    """The example's model comes from ``onnx.helper``; torch's export of the same architecture
    profiles identically (what the search sees of a model is its kops profile)."""
    import kops

    plain = kops.profile(kops.zoo.build_tiny_mlp(tmp_path / "plain.onnx"))
    pytest.importorskip("torch")
    exported = kops.profile(kops.zoo.build("tiny_mlp", tmp_path / "torch.onnx"))
    assert plain.total_flops == exported.total_flops > 0
    assert plain.total_params == exported.total_params
    assert (plain.features() == exported.features()).all()
    assert [t.shape for t in plain.inputs] == [t.shape for t in exported.inputs]
