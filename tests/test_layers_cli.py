"""`damoc layers score` and `damoc prune layers`: outputs, and bad input as one line with exit code 2."""

import json
import re

import pytest
import torch

TXT = "\n\n".join(f"Paragraph {i}: the patient received dose {i} and recovered." for i in range(12))


@pytest.fixture
def txt_file(tmp_path):
    p = tmp_path / "calib.txt"
    p.write_text(TXT)
    return p


def test_score_prints_table_and_writes_json(run_cli, tiny_dirs, txt_file, tmp_path):
    out = tmp_path / "scores.json"
    code, stdout, err = run_cli(
        "layers", "score", tiny_dirs["llama"], "--data", txt_file, "--length", 32, "--out", out
    )
    assert code == 0, err
    lines = stdout.splitlines()
    rows = [x.split() for x in lines if re.match(r"^\s+\d+\s+[\d.]+", x)]
    assert lines[0].split() == ["layer", "BI"] and [r[0] for r in rows] == ["0", "1", "2", "3"]
    assert sum(r[-1] == "*" for r in rows) == 1 and "tokens from 12 texts" in stdout
    rec = json.loads(out.read_text())
    assert len(rec["bi"]) == 4 and rec["metric"] == "bi"


def test_score_angular(run_cli, tiny_dirs, qa_file):
    code, stdout, err = run_cli(
        "layers",
        "score",
        tiny_dirs["qwen3"],
        "--data",
        qa_file,
        "--length",
        32,
        "--metric",
        "angular",
        "--block",
        2,
    )
    assert code == 0, err
    assert "d(l,l+2)" in stdout


def test_prune_layers_writes_loadable_checkpoint(run_cli, tiny_dirs, qa_file, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "pruned"
    code, stdout, err = run_cli(
        "prune", "layers", tiny_dirs["gemma3_text"], "--data", qa_file, "--remove", 1, "--merge", "linear",
        "--samples", 8, "--length", 32, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert "4 -> 3 layers" in stdout
    rec = json.loads((out / "damoc_prune.json").read_text())
    assert rec["n_before"] == 4 and rec["n_after"] == 3 and len(rec["removed"]) == 1
    assert rec["removed"][0] not in (0, 3)
    model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values())
    assert model.config.num_hidden_layers == 3 and len(model.config.layer_types) == 3
    ids = torch.randint(3, 250, (1, 6))
    gen = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(
        model.generate(ids, use_cache=True, **gen), model.generate(ids, use_cache=False, **gen)
    )


def test_prune_layers_from_yaml_job(run_cli, tiny_dirs, txt_file, tmp_path):
    job = tmp_path / "job.yaml"
    out = tmp_path / "out"
    job.write_text(
        f"job: prune-layers\nmodel: {tiny_dirs['phi3']}\ndata: {txt_file}\nout: {out}\n"
        "layers: [1, 2]\nmerge: magnitude\ndensity: 0.5\ncalib_length: 32\n"
    )
    code, _, err = run_cli("validate", job)
    assert code == 0, err
    code, stdout, err = run_cli("prune", "layers", "--config", job)
    assert code == 0, err
    rec = json.loads((out / "damoc_prune.json").read_text())
    assert (
        rec["removed"] == [1, 2] and rec["merge"] == "magnitude" and rec["merge_targets"] == {"1": 0, "2": 0}
    )


def test_example_job_validates(run_cli):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "prune_layers.yaml"
    code, stdout, err = run_cli("validate", example)
    assert code == 0, err


def _bad(run_cli, tmp_path, *args):
    out = tmp_path / "never"
    code, stdout, err = run_cli("prune", "layers", *args, "--out", out)
    assert code == 2, (stdout, err)
    assert not out.exists()
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_bad_model_path(run_cli, tmp_path, qa_file):
    (tmp_path / "empty").mkdir()
    msg = _bad(run_cli, tmp_path, tmp_path / "empty", "--data", qa_file, "--remove", 1)
    assert "not a model directory" in msg


def test_remove_too_many(run_cli, tmp_path, tiny_dirs, qa_file):
    msg = _bad(run_cli, tmp_path, tiny_dirs["llama"], "--data", qa_file, "--remove", 4, "--merge", "none")
    assert "cannot remove 4 layers: the model has only 4" in msg


def test_layers_out_of_range(run_cli, tmp_path, tiny_dirs, qa_file):
    msg = _bad(run_cli, tmp_path, tiny_dirs["llama"], "--data", qa_file, "--layers", "1,9", "--merge", "none")
    assert "layer 9 is out of range" in msg
    msg = _bad(run_cli, tmp_path, tiny_dirs["llama"], "--data", qa_file, "--layers", "1,x")
    assert "comma-separated integers" in msg


def test_bad_data_files(run_cli, tmp_path, tiny_dirs):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "no rows" in _bad(run_cli, tmp_path, tiny_dirs["llama"], "--data", empty, "--remove", 1)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "a", "answer": "b"}\n{not json\n')
    assert "not valid JSON" in _bad(run_cli, tmp_path, tiny_dirs["llama"], "--data", broken, "--remove", 1)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n   \n")
    assert "no text" in _bad(run_cli, tmp_path, tiny_dirs["llama"], "--data", blank, "--remove", 1)


def test_unknown_merge(run_cli, tmp_path, tiny_dirs, qa_file):
    msg = _bad(run_cli, tmp_path, tiny_dirs["llama"], "--data", qa_file, "--remove", 1, "--merge", "ties")
    assert "unknown merge method 'ties'" in msg


def test_missing_amount(run_cli, tmp_path, tiny_dirs, qa_file):
    assert "how many layers" in _bad(run_cli, tmp_path, tiny_dirs["llama"], "--data", qa_file)


def test_yaml_unknown_key(run_cli, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("job: prune-layers\nmodel: m\ndata: d\nout: o\nremove: 2\nmerge_strength: 3\n")
    code, _, err = run_cli("validate", job)
    assert code == 2 and "merge_strength: unknown key" in err
    job.write_text("job: prune-layers\nmodel: m\ndata: d\nout: o\nremove: 2\nfraction: 0.5\n")
    code, _, err = run_cli("validate", job)
    assert code == 2 and "either remove or fraction" in err


def test_help_explains(run_cli):
    code, stdout, _ = run_cli("prune", "layers", "--help")
    assert code == 0 and "--merge" in stdout and "loadable" in stdout
