"""Peak memory per work unit: the worker's measurement (reset per unit on Linux) and the report's rows."""

import sys
from pathlib import Path

import pytest

from damoc.select import peak_memory
from damoc.select.records import DataRecord, UnitRecord
from damoc.select.report import _peak_rows, compute_cost

linux_reset = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs"
)


@linux_reset
def test_peak_is_reset_per_unit_and_sees_an_allocation():
    assert peak_memory.reset_peak()
    base = peak_memory.peak_rss_mb()
    block = bytearray(256 * 2**20)  # 256 MiB, zero-filled: every page touched
    block[::4096] = b"\x01" * len(block[::4096])
    high = peak_memory.peak_rss_mb()
    del block
    assert high - base > 200  # the allocation is seen
    assert peak_memory.reset_peak()
    assert peak_memory.peak_rss_mb() < high - 200  # and forgotten by the next unit's reset


def test_no_gpu_peak_without_cuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # torch not imported: never imported just to ask
    assert peak_memory._cuda() is None and peak_memory.peak_gpu_mb() is None


def _rec(cand, method, peak, gpu=None):
    return UnitRecord(
        candidate=cand,
        slug=cand,
        method=method,
        status="ok",
        metric="answer_bpb",
        higher_is_better=False,
        score=0.5,
        wall_s=10.0,
        stage_s={"load": 1.0, "finetune": 8.0, "eval": 1.0},
        train_tokens=100,
        peak_rss_mb=peak,
        peak_gpu_mb=gpu,
    )


def _data():
    return DataRecord(
        task="t", fingerprint="f", n_train=10, n_dev=4, n_proxy_train=2, stage_s={"filter": 1.0}
    )


def test_cost_keeps_each_sweeps_largest_unit_peak_and_the_report_shows_it():
    records = [
        _rec("a", "full", 13 * 1024.0),
        _rec("b", "full", 5 * 1024.0),
        _rec("a", "proxy", 3 * 1024.0),
        _rec("b", "proxy", 2 * 1024.0),
    ]
    c = compute_cost(records, _data())
    assert (c.full_peak_rss_mb, c.proxy_peak_rss_mb) == (13 * 1024.0, 3 * 1024.0)
    assert c.full_peak_gpu_mb is None
    assert _peak_rows(c) == [["peak memory of one unit, GB (resident)", "13.00", "3.00", "4.3x"]]

    records[1] = _rec("b", "full", None)  # a unit without a peak (an older record): no claim about the sweep
    c = compute_cost(records, _data())
    assert c.full_peak_rss_mb is None and _peak_rows(c) == []

    gpu = [_rec("a", "full", 1024.0, gpu=8192.0), _rec("a", "proxy", 1024.0, gpu=2048.0)]
    assert _peak_rows(compute_cost(gpu, _data()))[1] == [
        "peak memory of one unit, GB (GPU)",
        "8.00",
        "2.00",
        "4.0x",
    ]
