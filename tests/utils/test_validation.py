"""utils/_validation.py check_device: a device the installed torch can use,
checked before any model loads."""

from __future__ import annotations

import pytest

from skdeita.utils._validation import CUDA_TORCH_INSTALL, check_device

torch = pytest.importorskip("torch")

cpu_build = pytest.mark.skipif(
    torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None,
    reason="this torch is a GPU build",
)


@cpu_build
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_cpu_only_torch_asked_for_cuda_says_so_and_how_to_install_a_cuda_build(device):
    with pytest.raises(ValueError) as info:
        check_device(device, param="--device")
    message = str(info.value)
    assert message.startswith(f"--device={device!r}: the installed torch {torch.__version__}")
    assert "is a CPU-only build (torch.version.cuda is None)" in message
    assert CUDA_TORCH_INSTALL in message


def test_the_install_command_is_pytorchs_cuda_index_for_the_pinned_torch():
    assert CUDA_TORCH_INSTALL == (
        "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130"
    )


@cpu_build
def test_a_cuda_build_without_a_gpu_says_no_device_and_names_its_cuda(monkeypatch):
    # A CUDA build cannot be installed here: only its version string is set.
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(ValueError, match="no CUDA device is available here") as info:
        check_device("cuda")
    assert "built for CUDA 13.0" in str(info.value)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_cpu_and_auto_pass(device):
    check_device(device)


def test_an_unknown_device_is_named():
    with pytest.raises(ValueError, match=r"device='gpu0' is not a device"):
        check_device("gpu0")
