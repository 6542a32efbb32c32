"""The GPU check's CPU-side logic: its plan parses as real commands, records are written, no CUDA stops it."""

import json
import sys

import pytest
import torch

sys.path.insert(0, "benchmarks")
try:
    import gpu_check
finally:
    sys.path.remove("benchmarks")


def _command(argv):
    """The click command an argv names, and the rest of the argv (its arguments and options)."""
    import typer

    from damoc.cli import _load_commands
    from damoc.cli.apps import app

    _load_commands()
    group = typer.main.get_command(app)
    ctx = group.make_context("damoc", ["--help"], resilient_parsing=True)
    cmd, rest = group, list(argv)
    while hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    return cmd, rest, ctx


def test_every_planned_step_parses_as_a_command_on_the_gpu(tmp_path):
    steps = gpu_check.plan(tmp_path)
    assert {s.name for s in steps} >= {"demo", "prune_calibrated", "quantize", "prune_layers", "eval"}
    for step in steps:
        assert step.argv[-2:] == ["--device", "cuda"], step.name
        cmd, rest, parent = _command(step.argv)
        assert not hasattr(cmd, "commands"), step.name
        cmd.make_context(step.argv[0], rest, parent=parent)  # raises on an unknown option or a bad value


def test_without_cuda_it_stops_with_exit_2(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--only", "eval"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a CUDA device" in err


def test_plan_prints_without_a_gpu(capsys):
    assert gpu_check.main(["--plan", "--only", "demo,quantize"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out] == ["demo", "quantize"]
    with pytest.raises(SystemExit):
        gpu_check.main(["--plan", "--only", "nope"])


def test_steps_are_timed_and_recorded(tmp_path):
    seen = []

    def fake_cli(argv):
        seen.append(argv)
        if argv[0] == "quantize":
            sys.stderr.write("progress...\nerror: something broke\n")
            return 2
        return 0

    steps = [s for s in gpu_check.plan(tmp_path) if s.name in ("eval", "quantize")]
    results = [gpu_check.run_step(s, fake_cli) for s in steps]
    got = {r.name: (r.exit_code, r.error) for r in results}
    assert got == {"quantize": (2, "error: something broke"), "eval": (0, None)}
    path = gpu_check.write_record(results, "Fake GPU 80GB", tmp_path)
    rec = json.loads(path.read_text())
    assert path.name.startswith("fake-gpu-80gb-")
    assert [s["name"] for s in rec["steps"]] == ["quantize", "eval"]
    assert rec["steps"][0]["wall_s"] >= 0 and "torch" in rec and seen == [s.argv for s in steps]
