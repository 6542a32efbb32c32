import json

import pytest

from damoc.config import JobConfig, StrictModel, load_job, parse_config
from damoc.errors import DamocError
from damoc.io.files import atomic_output_dir, write_json_atomic
from damoc.io.tasks import FieldMap, load_task, read_rows
from damoc.registry import Registry


def test_registry_get_and_suggest():
    reg: Registry = Registry("widget")
    reg.register("alpha", family="a")(1)
    reg.register("beta", family="b")(2)
    assert reg.get("ALPHA") == 1
    assert reg.names(family="b") == ["beta"]
    with pytest.raises(DamocError, match="did you mean 'alpha'"):
        reg.get("alpah")
    with pytest.raises(ValueError):
        reg.register("alpha")(3)


def test_strict_config_rejects_unknown_key():
    class C(StrictModel):
        x: int = 1

    with pytest.raises(DamocError, match="y: unknown key"):
        parse_config(C, {"y": 2})


def test_load_job_unknown_kind_and_bad_yaml(tmp_path):
    p = tmp_path / "j.yaml"
    p.write_text("job: no-such-kind\n")
    with pytest.raises(DamocError, match="unknown job kind"):
        load_job(p)
    p.write_text("job: [unclosed\n")
    with pytest.raises(DamocError, match="not valid YAML"):
        load_job(p)
    p.write_text("- a list\n")
    with pytest.raises(DamocError, match="mapping"):
        load_job(p)
    assert issubclass(JobConfig, StrictModel)


def test_load_task_jsonl_split_and_field_map(tmp_path, qa_file):
    task = load_task(qa_file, dev_size=0.25, seed=3)
    assert len(task.dev) == 10 and len(task.train) == 30
    assert {e.id for e in task.dev}.isdisjoint({e.id for e in task.train})
    assert task.fingerprint() == load_task(qa_file, dev_size=0.25, seed=3).fingerprint()
    assert task.fingerprint() != load_task(qa_file, dev_size=0.25, seed=4).fingerprint()
    # user field names
    rows = [json.loads(line) for line in qa_file.read_text().splitlines()]
    p = tmp_path / "mine.csv"
    import csv

    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["uid", "prompt", "passage", "target"])
        w.writeheader()
        for r in rows:
            w.writerow(
                {"uid": r["id"], "prompt": r["question"], "passage": r["context"], "target": r["answer"]}
            )
    fm = FieldMap(id="uid", question="prompt", context="passage", answer="target", label=None)
    t2 = load_task(p, fields=fm, dev_size=5)
    assert len(t2.dev) == 5 and t2.dev[0].context.startswith("In a trial")
    with pytest.raises(DamocError, match="field 'question' is missing"):
        load_task(p)


@pytest.mark.parametrize(
    "content,msg",
    [
        ("", "no rows"),
        ('{"question": "a", "answer": "b"}\n{oops\n', ":2: not valid JSON"),
        (
            '{"id": 1, "question": "a", "answer": "b"}\n{"id": 1, "question": "c", "answer": "d"}\n',
            "duplicate id '1'",
        ),
    ],
)
def test_bad_task_files(tmp_path, content, msg):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(DamocError, match=msg):
        read_rows(p) if msg == "no rows" else load_task(p, dev_size=1)


def test_bad_encoding(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("question,answer\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(DamocError, match="not UTF-8"):
        read_rows(p)


def test_builtin_tasks_load():
    t = load_task("pubmedqa", dev_size=100)
    assert len(t.dev) == 100 and len(t.train) == 900
    assert set(t.labels()) == {"yes", "no", "maybe"}
    f = load_task("finance", dev_size=50)
    assert f.train[0].context.startswith("Table:")


def test_atomic_output_dir_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        write_json_atomic(tmp / "a.json", {"x": 1})
        raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_output_dir(out) as tmp:
        write_json_atomic(tmp / "a.json", {"x": 1})
    assert json.loads((out / "a.json").read_text()) == {"x": 1}
    with pytest.raises(DamocError, match="not empty"), atomic_output_dir(out):
        pass


def test_cli_validate_errors(run_cli, tmp_path):
    code, _, err = run_cli("validate", tmp_path / "missing.yaml")
    assert code == 2 and err.strip() == f"error: job file {tmp_path / 'missing.yaml'} does not exist"


def test_tiny_models_every_arch(tiny_dirs):
    from damoc.model.arch import load_model, num_layers

    for _arch, path in tiny_dirs.items():
        model, tok = load_model(path)
        assert num_layers(model) == 4
        assert tok("abc")["input_ids"]
