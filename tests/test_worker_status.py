"""What a running `damoc select` worker tells: how far its fine-tune and scoring are (no terminal needed:
its log, progress.json, and the backend relays the latest line), and why it stopped when it was killed."""

import json
import logging
import re
import time

import pytest

from damoc import logging_utils
from damoc.logging_utils import progress, set_progress_sink
from damoc.select.backends.base import ProgressReporter
from damoc.select.worker import CandidateJob, _ProgressFile, read_progress

LINE = re.compile(r"^fine-tune: (\d+)/10 step \((\d+)%\) \[[\d:]+<[\d:?]+, ")


@pytest.fixture
def sink():
    lines: list[str] = []
    yield lines
    set_progress_sink(None)


def test_a_long_loop_reports_its_status_lines(sink):
    set_progress_sink(sink.append, 0.05)
    for _ in progress(range(10), desc="fine-tune", unit="step"):
        time.sleep(0.03)
    assert sink, "a loop longer than the interval reports"
    done = [int(LINE.match(s).group(1)) for s in sink]  # every line is one status, no bar
    assert done == sorted(done) and 1 <= done[0] and done[-1] <= 10
    assert all(int(LINE.match(s).group(2)) == 10 * int(LINE.match(s).group(1)) for s in sink)


def test_short_loops_and_no_sink_report_nothing(sink):
    set_progress_sink(sink.append, 5.0)
    for _ in progress(range(3), desc="fine-tune", unit="step"):
        pass
    assert sink == []  # shorter than the interval
    set_progress_sink(None)
    assert logging_utils._SINK is None
    for _ in progress(range(3), desc="fine-tune", unit="step"):
        time.sleep(0.01)
    assert sink == []
    set_progress_sink(sink.append, 0)  # 0 turns it off
    assert logging_utils._SINK is None


def test_a_loop_without_a_length_reports_counts(sink):
    set_progress_sink(sink.append, 0.02)
    bar = progress(desc="scoring", unit="batch")
    for _ in range(5):
        time.sleep(0.02)
        bar.update(1)
    bar.close()
    assert sink and all(re.match(r"^scoring: \d+ batch \[", s) for s in sink)


def _job(tmp_path) -> CandidateJob:
    d = tmp_path / "candidates" / "m"
    d.mkdir(parents=True)
    return CandidateJob(
        candidate="m", slug="m", job_path=str(d / "job.json"), log_path=str(d / "worker.log"), units=[]
    )


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def relayed():
    """What the backend logs (its own handler: the damoc logger may not propagate after CLI tests)."""
    keep = _Keep()
    logger = logging.getLogger("damoc.select.backends.base")
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(keep)
    yield lambda: list(keep.lines)
    logger.removeHandler(keep)
    logger.setLevel(old)


def test_progress_file_and_reporter(tmp_path, relayed):
    job = _job(tmp_path)
    assert read_progress(job) is None  # nothing reported yet
    write = _ProgressFile(job)
    write.unit = "full"
    write("fine-tune: 3/10 step (30%) [00:30<01:10, 10.00s/step]")
    saved = json.loads(job.progress_path.read_text())
    assert saved["unit"] == "full" and saved["line"].startswith("fine-tune: 3/10")
    assert read_progress(job) == "full: fine-tune: 3/10 step (30%) [00:30<01:10, 10.00s/step]"

    reporter = ProgressReporter(every_s=10.0)
    reporter.poll([job])
    assert relayed() == []  # not due yet
    reporter.t_last -= 10.0
    reporter.poll([job])
    assert relayed() == ["m / full: fine-tune: 3/10 step (30%) [00:30<01:10, 10.00s/step]"]
    reporter.t_last -= 10.0
    reporter.poll([job])
    assert len(relayed()) == 1  # an unchanged line is not repeated
    write("fine-tune: 4/10 step (40%) [00:40<01:00, 10.00s/step]")
    reporter.t_last -= 10.0
    reporter.poll([job])
    assert relayed()[-1].startswith("m / full: fine-tune: 4/10")

    job.progress_path.write_text("{not json")  # a torn or foreign file is ignored, never an error
    assert read_progress(job) is None
    off = ProgressReporter(every_s=0)
    off.t_last -= 1e6
    write("fine-tune: 5/10 step (50%) [00:50<00:50, 10.00s/step]")
    off.poll([job])
    assert len(relayed()) == 2


def test_select_worker_reports_progress_end_to_end(tmp_path, tiny_dirs, qa_file):
    from damoc.select.config import SelectConfig
    from damoc.select.pipeline import run_select

    cfg = SelectConfig.model_validate(
        {
            "job": "select",
            "task": {"path": str(qa_file), "dev_size": 6},
            "candidates": [str(tiny_dirs["llama"])],
            "data": {"filter": "random", "budget": 8, "compress_rate": None},
            "model": {"layer_fraction": 0.0},
            "proxy": {"method": "lora", "max_steps": 6, "batch_size": 2, "max_length": 64},
            "eval": {"dev_rows": 6, "max_length": 64},
            "baselines": False,
            "run": {"run_dir": str(tmp_path / "run"), "threads": 1, "progress_s": 0.001},
        }
    )
    board = run_select(cfg)
    assert board.rows[0].scores["proxy"] is not None
    cand = next((tmp_path / "run" / "candidates").iterdir())
    log = (cand / "worker.log").read_text()
    assert re.search(r"proxy: fine-tune: \d+/\d+ step \(\d+%\)", log), log[-2000:]
    assert json.loads((cand / "progress.json").read_text())["unit"] == "proxy"
    with pytest.raises(ValueError, match="progress_s"):
        SelectConfig.model_validate({**cfg.model_dump(by_alias=True), "run": {"progress_s": -1}})


def test_exit_reason_names_the_signal():
    from damoc.select.backends.base import exit_reason

    assert exit_reason(3) == "worker exited with code 3"
    assert exit_reason(-9).startswith("worker killed by SIGKILL (often the out-of-memory killer")
    assert exit_reason(-15) == "worker killed by SIGTERM"
    assert exit_reason(-200) == "worker killed by signal 200"
