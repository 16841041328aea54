"""vLLM engines: refused before they start, and no process left behind.

The orphan tests start engines in other processes and kill or end them the
ways a run ends: SIGKILL (nothing in the process runs; the watchdog ends the
engine) and a multiprocessing child returning (how a Dask nanny's worker
leaves: os._exit, no atexit; skdeita's multiprocessing exit hook closes it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("vllm")
psutil = pytest.importorskip("psutil")
pytest.importorskip("transformers")

from skdeita._testing import make_tiny_llama_scorer  # noqa: E402
from skdeita.embedding._vllm import VLLMEncoder  # noqa: E402
from skdeita.scoring._vllm import VLLMCausalLM, check_generation_config  # noqa: E402

pytestmark = pytest.mark.vllm

START_TIMEOUT = 600  # an engine starts in about 20 s on 2 idle cores, 90 s on busy ones


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_llama_scorer(tmp_path_factory.mktemp("vllm-engine"), seed=4, head_dim=64)


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def end(pids) -> None:
    """Kill what a failed test left running (processes this test started)."""
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def wait_for_report(path, proc, timeout: float):
    """The JSON the script printed after ``REPORT `` (vLLM logs to stdout too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines(keepends=True) if path.exists() else []
        for line in lines:
            if line.startswith("REPORT ") and line.endswith("\n"):
                return json.loads(line[len("REPORT ") :])
        if proc.poll() is not None:
            pytest.fail(f"the script exited with {proc.returncode} before reporting")
        time.sleep(0.5)
    pytest.fail("the script did not report within the timeout")


def run_script(tmp_path, source: str, *args):
    """Start ``source`` as a script; its stdout goes to a file (an engine that
    inherited a pipe would keep it open)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(script), *map(str, args)],
            stdout=fh,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    return proc, out


# -- refused before any engine starts --------------------------------------------


@pytest.mark.parametrize("cls", [VLLMCausalLM, VLLMEncoder])
def test_bad_backend_kwargs_fail_before_any_engine_starts(model_dir, cls):
    before = children()
    with pytest.raises(ValueError, match="unknown key 'max_num_seq'.*'max_num_seqs'"):
        cls(model_dir, local_files_only=True, backend_kwargs={"max_num_seq": 4})
    with pytest.raises(ValueError, match=r"backend_kwargs\['dtype'\] cannot be set"):
        cls(model_dir, local_files_only=True, backend_kwargs={"dtype": "bfloat16"})
    assert children() == before


def test_unsupported_generation_setting_fails_before_any_engine_starts(model_dir, tmp_path):
    config = json.loads((model_dir / "generation_config.json").read_text())
    bad = tmp_path / "model"
    bad.mkdir()
    for f in model_dir.iterdir():
        (bad / f.name).symlink_to(f)
    (bad / "generation_config.json").unlink()
    (bad / "generation_config.json").write_text(json.dumps({**config, "no_repeat_ngram_size": 3}))
    before = children()
    with pytest.raises(ValueError, match="no_repeat_ngram_size=3"):
        check_generation_config(bad, local_files_only=True)
    with pytest.raises(ValueError, match="no_repeat_ngram_size=3"):
        VLLMCausalLM(bad, local_files_only=True)
    assert children() == before


@pytest.mark.parametrize("cls", [VLLMCausalLM, VLLMEncoder])
def test_a_device_the_installed_vllm_cannot_use_is_refused(model_dir, cls):
    with pytest.raises(ValueError, match="device='cuda', but the installed vLLM runs on 'cpu'"):
        cls(model_dir, device="cuda", local_files_only=True)


def test_the_engine_starts_on_first_use_not_at_construction(model_dir):
    before = children()
    lm = VLLMCausalLM(model_dir, local_files_only=True)
    assert lm._engines == {} and children() == before


# -- no process left behind -------------------------------------------------------

OWNER = """
import json, sys, time
from skdeita.scoring._vllm import VLLMCausalLM

if __name__ == "__main__":
    lm = VLLMCausalLM(sys.argv[1], device="cpu", local_files_only=True)
    lm.first_token_scores([lm.encode("Sort a list.")], [5])
    print("REPORT", json.dumps(lm.engine.pids()), flush=True)
    time.sleep(3600)
"""


def test_no_engine_process_outlives_a_killed_owner(model_dir, tmp_path):
    proc, out = run_script(tmp_path, OWNER, model_dir)
    pids: list[int] = []
    try:
        pids = wait_for_report(out, proc, START_TIMEOUT)
        assert pids and all(running(p) for p in pids)
        os.kill(proc.pid, signal.SIGKILL)  # no atexit, no finalizer runs
        proc.wait(30)
        deadline = time.monotonic() + 30
        while any(running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [p for p in pids if running(p)]
    finally:
        proc.kill()
        end(pids)


WORKER = """
import json, multiprocessing, sys, time
import psutil

def work(path, queue):
    from skdeita.scoring._vllm import VLLMCausalLM
    lm = VLLMCausalLM(path, device="cpu", local_files_only=True)
    lm.first_token_scores([lm.encode("Sort a list.")], [5])
    queue.put(lm.engine.pids())
    # Returns with the engine open, as a Dask worker's process ends.

def running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    worker = ctx.Process(target=work, args=(sys.argv[1], queue))
    worker.start()
    pids = queue.get(timeout=600)
    worker.join(120)
    time.sleep(1)
    print("REPORT", json.dumps({"pids": pids, "worker": worker.pid, "exitcode": worker.exitcode,
                      "running": [p for p in pids if running(p)]}), flush=True)
"""


def test_no_engine_process_outlives_a_worker_process(model_dir, tmp_path):
    proc, out = run_script(tmp_path, WORKER, model_dir)
    report = {}
    try:
        report = wait_for_report(out, proc, START_TIMEOUT + 150)
        assert report["exitcode"] == 0 and report["pids"]
        # Gone as the worker left (the exit hook), not later (the watchdog).
        assert report["running"] == []
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        end(report.get("pids", []) + ([report["worker"]] if "worker" in report else []))
