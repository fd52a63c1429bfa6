"""The shipped search spaces load, have the documented sizes, and bad files name the field."""

from __future__ import annotations

import pytest

from autoconf import Config, UserError, load_space


def test_gpu_default_covers_the_required_gpus_and_size():
    space = load_space("gpu-default")
    assert {"T4", "L4", "A10G", "V100", "A100-40GB", "A100-80GB", "H100"} <= set(space.gpus)
    assert space.size() == len(space.configs()) == 5376
    for name, gpu in space.gpus.items():
        assert gpu.price_per_hour > 0 and gpu.source, name
        assert gpu.fp16_tflops >= gpu.fp32_tflops > 0
        assert gpu.int8_tops is not None and gpu.int8_tops >= 4 * gpu.fp32_tflops, name
    # the model as exported only: a variant changes the model's numerics, so it is searched where
    # the user asks for it (a space's `precision` dimension, with an accuracy check), not by default
    assert "precision" not in space.dimension_names
    assert {c.precision for c in space.configs()} == {None}


def test_falcon_space_is_the_falcon_grid():
    space = load_space("falcon")
    assert space.size() == 1440
    c = Config(
        batch_size=4, gpu_type="K80", replicas=1, cpu_cores=3, gpu_mem_gb=1.6, gpu_share_pct=75
    )
    assert space.contains(c)
    # a 75 % share of a K80 plus three cores
    assert space.cost_per_hour(c) == pytest.approx(0.75 * 0.90 + 3 * 0.0447)


def test_wrong_price_names_the_field(tmp_path):
    text = (load_space.__globals__["SPACES_DIR"] / "gpu-default.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("price_per_hour: 0.35", "price_per_hour: -1"))
    with pytest.raises(UserError, match=r"gpus\.T4\.price_per_hour"):
        load_space(bad)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("gpu_type: [cpu]", "gpu_type: [cpu, Z100]"),
            r": dimensions\.gpu_type: unknown GPU type 'Z100'",
        ),
        (("  replicas: [1, 2]\n", ""), r": dimensions: missing dimension 'replicas'"),
        (
            ("  replicas: [1, 2]\n", "  replicas: [1, 2]\n  shards: [1]\n"),
            r"unknown dimension 'shards'",
        ),
        (
            ("batch_size: [1, 2, 4, 8, 16]", "batch_size: []"),
            r"dimension 'batch_size' has no values",
        ),
        (("name: cpu-local", "name: cpu-local\ncolour: red"), r": colour: Extra inputs"),
        (("gpu_type: [cpu]", "gpu_type: [cpu"), r"not valid YAML"),
    ],
)
def test_bad_space_files_are_one_line_naming_the_field(tmp_path, edit, message):
    text = (load_space.__globals__["SPACES_DIR"] / "cpu-local.yaml").read_text()
    assert edit[0] in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(edit[0], edit[1]))
    with pytest.raises(UserError, match=message) as info:
        load_space(bad)
    assert "\n" not in str(info.value) and "Value error" not in str(info.value)


def test_a_binary_file_is_one_line(tmp_path):
    from autoconf._plan import read_plan

    blob = tmp_path / "blob.yaml"
    blob.write_bytes(bytes(range(128, 256)))
    for read in (load_space, read_plan):
        with pytest.raises(UserError, match="not a text file"):
            read(blob)
