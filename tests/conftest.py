import os

import pytest

os.environ.setdefault("DAMOC_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """Tiny random models of every tested architecture, saved once per session: {arch: path}."""
    from damoc.testing import TINY_ARCHS, save_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {arch: save_tiny_model(root / arch, arch, n_layers=4, seed=1) for arch in TINY_ARCHS}


@pytest.fixture
def run_cli(capsys):
    """Run the damoc CLI in-process: returns (exit code, stdout, stderr)."""
    from damoc.cli import main

    def _run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


@pytest.fixture
def qa_file(tmp_path):
    """A small JSONL QA task with labels."""
    import json

    rows = []
    for i in range(40):
        lab = ["yes", "no", "maybe"][i % 3]
        rows.append(
            {
                "id": f"q{i}",
                "question": f"Is compound {i} effective against condition {i % 5}?",
                "context": f"In a trial of {20 + i} patients, compound {i} reduced symptoms of condition {i % 5}.",
                "answer": f"The answer is {lab} for compound {i}.",
                "label": lab,
            }
        )
    p = tmp_path / "task.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread is faster, and much faster on a shared, loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
