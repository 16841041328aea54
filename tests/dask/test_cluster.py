"""``skdeita.local_cluster``: one GPU per worker on a node with N GPUs. On CPU
the placement is checked by simulation: each worker process's own
``CUDA_VISIBLE_DEVICES``, which is all a CUDA library sees."""

from __future__ import annotations

import os

import pytest

from skdeita import local_cluster

distributed = pytest.importorskip("distributed")


def visible_devices(cluster) -> list[str]:
    with distributed.Client(cluster) as client:
        return sorted(client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES", "")).values())


def test_each_gpu_worker_sees_its_own_device(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with local_cluster(2, device="cuda", silence_logs=50) as cluster:
        assert visible_devices(cluster) == ["0", "1"]
        assert all(w.nthreads == 1 for w in cluster.scheduler.workers.values())


def test_gpu_workers_take_the_devices_this_process_may_use(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6")
    with local_cluster(2, device="cuda", silence_logs=50) as cluster:
        assert visible_devices(cluster) == ["3", "5"]


def test_more_gpu_workers_than_visible_devices_is_an_error(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(ValueError, match="one worker per GPU"):
        local_cluster(2, device="cuda")


def test_cpu_workers_are_a_plain_local_cluster(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with local_cluster(2, silence_logs=50) as cluster:
        assert visible_devices(cluster) == ["", ""]


def test_cli_gives_each_worker_plain_cuda(tmp_path, capsys):
    from skdeita.cli import main

    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"instruction": "a", "response": "b"}\n')
    args = ["curate", str(pool), "-o", str(tmp_path / "o.jsonl"), "--budget", "1"]
    assert main([*args, "--cluster", "local:2", "--device", "cuda:1"]) == 2
    err = capsys.readouterr().err
    assert "each worker gets one GPU" in err and "--device cuda" in err
