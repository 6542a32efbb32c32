"""`damoc prune calibrated`, `damoc quantize`, `damoc eval`: end to end on a tiny model, and bad input."""

import json

import pytest
import torch

from damoc.evaluate.report_eval import label_nlls

SMALL = ["--samples", "3", "--length", "32", "--batch-size", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def llama(tiny_dirs):
    return tiny_dirs["llama"]


def test_prune_calibrated_end_to_end(run_cli, llama, qa_file, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "pruned"
    code, stdout, err = run_cli(
        "prune", "calibrated", llama, "--method", "sparsegpt", "--pattern", "2:4",
        "--domain", qa_file, "--alpha", "0.5", *SMALL, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert "sparsity 0.500" in stdout and "general 0.5, domain 0.5" in stdout
    rec = json.loads((out / "damoc_calibrated.json").read_text())
    assert rec["method"] == "sparsegpt" and rec["sparsity"] == pytest.approx(0.5)
    assert rec["tokens"] == {"general": 96, "domain": 96}
    assert rec["job"]["calibration"]["domain"] == str(qa_file)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert float((model.model.layers[0].mlp.down_proj.weight == 0).float().mean()) == pytest.approx(0.5)


def test_quantize_dense_format_writes_plain_weights_and_no_side_file(run_cli, llama, tmp_path):
    out = tmp_path / "q"
    code, stdout, err = run_cli(
        "quantize", llama, "--bits", "3", "--group-size", "16", "--act-order", "--format", "dense",
        *SMALL, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    rec = json.loads((out / "damoc_calibrated.json").read_text())
    assert rec["family"] == "quantize" and rec["job"]["quant"]["act_order"] is True
    assert rec["job"]["format"] == "dense" and rec["storage"].startswith(
        "dequantized weights in dense float32"
    )


def test_eval_reports_perplexities_and_task_scores(run_cli, llama, qa_file, tmp_path):
    out = tmp_path / "report.json"
    code, stdout, err = run_cli(
        "eval",
        llama,
        "--domain",
        qa_file,
        "--samples",
        "2",
        "--length",
        "32",
        "--task-samples",
        "5",
        "--out",
        out,
    )
    assert code == 0, err
    rep = json.loads(out.read_text())
    assert rep["general_ppl"] > 1 and rep["domain_ppl"] > 1
    assert rep["task_bpb"] > 0 and 0 <= rep["label_accuracy"] <= 1 and rep["n_task"] == 5
    assert "| general ppl |" in stdout


def test_list_methods(run_cli):
    code, out, _ = run_cli("prune", "calibrated", "--list")
    assert code == 0 and {"magnitude", "wanda", "sparsegpt"} <= {ln.split()[0] for ln in out.splitlines()}
    code, out, _ = run_cli("quantize", "--list")
    assert code == 0 and "gptq" in out and "sparsegpt" not in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["prune", "calibrated", "{m}", "--sparsity", "1.0"], "sparsity"),
        (["prune", "calibrated", "{m}", "--sparsity", "-0.1"], "sparsity"),
        (["prune", "calibrated", "{m}", "--pattern", "3:2"], "0 < N < M"),
        (["prune", "calibrated", "{m}", "--pattern", "2:4", "--sparsity", "0.3"], "means sparsity 0.5"),
        (["prune", "calibrated", "{m}", "--alpha", "1.5"], "alpha"),
        (["prune", "calibrated", "{m}", "--alpha", "1"], "no domain text"),
        (["prune", "calibrated", "{m}", "--method", "sparsgpt"], "did you mean 'sparsegpt'"),
        (["prune", "calibrated", "{m}", "--method", "gptq"], "not a prune method"),
        (["quantize", "{m}", "--bits", "5"], "unsupported bits 5"),
        (["quantize", "{m}", "--method", "wanda"], "not a quantize method"),
        (["quantize", "{m}", "--format", "gguf"], "format"),
        (["quantize", "{m}", "--act-order"], "add --static-groups, or use --format dense"),
        (
            ["quantize", "{m}", "--group-size", "24"],
            "not a multiple of the group size 24: the compressed-tensors format needs whole groups (try --group-size 16",
        ),
        (["prune", "calibrated", "{m}", "--domain", "{empty}"], "no text"),
        (["prune", "calibrated", "{m}", "--domain", "{short}", "--alpha", "1"], "too short"),
        (["prune", "calibrated", "{m}", "--domain", "nosuchtask"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_leaves_nothing(run_cli, llama, tmp_path, args, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n  \n")
    short = tmp_path / "short.txt"
    short.write_text("a\n\nb\n\nc\n\nd\n")
    out = tmp_path / "out"
    argv = [a.format(m=llama, empty=empty, short=short) for a in args] + [*SMALL, "--out", str(out)]
    code, _, err = run_cli(*argv)
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert message in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no partial directory


def test_refuses_non_empty_output(run_cli, llama, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("keep me")
    code, _, err = run_cli("prune", "calibrated", llama, "--method", "magnitude", "--out", out)
    assert code == 2 and "not empty" in err
    assert (out / "x").read_text() == "keep me"


def test_job_files_validate(run_cli, tmp_path):
    good = tmp_path / "job.yaml"
    good.write_text(
        "job: prune-calibrated\nmodel: smollm2-135m\nout: o\nmethod: wanda\nprune: {pattern: '2:4'}\n"
        "calibration: {domain: pubmedqa, alpha: 0.25}\n"
    )
    assert run_cli("validate", good)[0] == 0
    missing = tmp_path / "missing.yaml"  # validate also checks that the model it names exists
    missing.write_text(good.read_text().replace("smollm2-135m", "m"))
    code, _, err = run_cli("validate", missing)
    assert code == 2 and "'m' is not a model directory" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("job: quantize\nmodel: m\nout: o\nquant: {bits: 5}\n")
    code, _, err = run_cli("validate", bad)
    assert code == 2 and "bits" in err


def _word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = (
        "<pad> <s> </s> <unk> yes no maybe Context: Question: Answer: is it a drug effective trial".split()
    )
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def test_single_token_label_fast_path_equals_answer_scoring():
    from damoc.evaluate.likelihood import answer_scores
    from damoc.testing import tiny_model

    model = tiny_model("llama", n_layers=2, seed=0)
    tok = _word_tokenizer()
    prompts = ["Question: is it effective Answer:", "Context: a trial Question: is it a drug Answer:"]
    labels = ["yes", "no", "maybe"]
    fast = label_nlls(model, tok, prompts, labels, batch_size=2)
    slow = torch.tensor([[answer_scores(model, tok, [p], [lab])[0].nll for lab in labels] for p in prompts])
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
