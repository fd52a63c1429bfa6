"""autoconf validate: exit 0 when a plan holds, 1 when it does not, 2 on bad input; JUnit XML."""

from __future__ import annotations

import shutil
from xml.etree import ElementTree as ET

import pytest
import yaml
from search_doubles import FakeProfile, QueueDouble

import autoconf._search as search
from autoconf import cli


def _patch(mp: pytest.MonkeyPatch) -> None:
    import autoconf.backends as backends

    real = backends.get_backend
    mp.setattr(
        backends,
        "get_backend",
        lambda name, space, **o: (
            QueueDouble(space, **o) if name == "double" else real(name, space, **o)
        ),
    )
    mp.setattr(search, "profile_model", lambda path, dims=None: FakeProfile())
    mp.setattr(cli, "COMMANDS", ["search", "validate"])


@pytest.fixture(scope="module")
def made_plan(tmp_path_factory):
    """One plan made by a short search on the queueing double (copied per test)."""
    out = tmp_path_factory.mktemp("made") / "out"
    out.mkdir()
    model = out / "model.onnx"
    model.write_bytes(b"weights")
    with pytest.MonkeyPatch.context() as mp:
        _patch(mp)
        r = search.run_search(
            search.SearchOptions(
                model_path=model,
                slo_p99_ms=50,
                target_rps=60,
                backend="double",
                budget=6,
                out_dir=out,
                knowledge="none",
                progress=False,
                duration_s=1.0,
                sampler="random",
            )
        )
    assert r.plan_path is not None
    return out


@pytest.fixture
def plan(made_plan, tmp_path, monkeypatch):
    QueueDouble.reset()
    _patch(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("plan.yaml", "model.onnx"):
        shutil.copy(made_plan / name, out / name)
    return out / "plan.yaml"


def test_plan_that_holds_exits_0_and_writes_passing_junit(plan, tmp_path, capsys):
    junit = tmp_path / "ci" / "validate.xml"
    assert cli.main(["validate", str(plan), "--junit", str(junit)]) == 0
    assert capsys.readouterr().out.startswith("holds: ")
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "1" and suite.get("failures") == "0"
    assert suite.find("testcase/failure") is None
    config, load = QueueDouble.calls[-1]
    assert load.target_rps == 60 and load.slo_p99_ms == 50


def test_regressed_deployment_exits_1_with_junit_failure(plan, tmp_path, capsys):
    junit = tmp_path / "validate.xml"
    argv = ["validate", str(plan), "--backend-option", "slowdown=20", "--junit", str(junit)]
    assert cli.main(argv) == 1
    assert "does not hold" in capsys.readouterr().err
    failure = ET.parse(junit).getroot().find("testcase/failure")
    assert failure is not None and "> SLO 50 ms" in failure.get("message")


def test_plan_moved_with_its_model_still_validates(plan, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere"
    (tmp_path / "out").rename(moved)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["validate", str(moved / "plan.yaml"), "--duration", "0.5s"]) == 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["slo"].pop("p99_ms"), "slo.p99_ms: Field required"),
        (lambda d: d["load"].update(target_rps=-1), "load.target_rps: Input should be greater"),
        (lambda d: d["config"].update(colour="red"), "config: unknown config field(s): colour"),
        (lambda d: d["model"].update(sha256="0" * 64), "model.sha256: "),
        (lambda d: d.update(backend="nowhere"), "unknown backend 'nowhere'"),
    ],
)
def test_bad_plan_exits_2_naming_the_field(plan, capsys, edit, message):
    data = yaml.safe_load(plan.read_text())
    edit(data)
    plan.write_text(yaml.safe_dump(data))
    assert cli.main(["validate", str(plan)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_missing_plan_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ["search", "validate"])
    assert cli.main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "raised, code",
    [
        ("user", 2),
        ("kops", 2),
        ("stress", 2),
        ("deploy", 1),
        ("bug", 3),
        ("interrupt", 130),
    ],
)
def test_cli_maps_each_error_root_to_its_exit_code(raised, code, capsys, monkeypatch):
    """Every package's error root ends as one line and its exit code; anything else is an
    internal error (exit 3, one line, the traceback only in the debug log)."""
    import kops
    import stress
    from autoconf import UserError

    errors = {
        "user": UserError("bad"),
        "kops": kops.KopsError("bad model"),
        "stress": stress.StressError("bad spec"),
        "deploy": stress.DeployError("crashed"),
        "bug": ZeroDivisionError("oops"),
        "interrupt": KeyboardInterrupt(),
    }

    def run(args):
        raise errors[raised]

    monkeypatch.setattr(cli, "COMMANDS", ["validate"])
    parser = cli.build_parser()
    args = parser.parse_args(["validate", "plan.yaml"])
    args.func = run
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args))
    assert cli.main(["validate", "plan.yaml"]) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    if raised == "bug":
        assert "internal error: ZeroDivisionError: oops" in err and "-v" in err


class _Fixed:
    """A parser double that returns prepared arguments."""

    def __init__(self, parser, args):
        self.parser, self.args = parser, args

    def parse_args(self, argv):
        self.parser.parse_args(argv)
        return self.args


def test_shipped_examples_run_validate_with_junit():
    """The example plan reads back; both CI examples run ``autoconf validate`` with --junit and
    keep the JUnit file as a result."""
    from pathlib import Path

    from autoconf._plan import read_plan
    from autoconf._validate import plan_space

    root = Path(__file__).resolve().parent.parent / "examples"
    plan = read_plan(root / "plan.yaml")
    assert plan_space(plan, root / "plan.yaml").contains(plan.to_config())
    gh = yaml.safe_load((root / "github-actions" / "autoconf-validate.yml").read_text())
    steps = [s.get("run", "") for s in gh["jobs"]["validate"]["steps"]]
    assert any(r.startswith("autoconf validate ") and "--junit" in r for r in steps)
    gl = yaml.safe_load((root / "gitlab-ci" / ".gitlab-ci.yml").read_text())
    job = gl["autoconf-validate"]
    assert any(c.startswith("autoconf validate ") and "--junit" in c for c in job["script"])
    assert job["artifacts"]["reports"]["junit"] == "reports/autoconf.xml"
