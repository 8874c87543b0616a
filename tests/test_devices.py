"""Which device ``vaelib.resolve_device`` picks, on any machine.

The availability checks are replaced with monkeypatch (``torch.cuda.is_available``,
``vaelib.devices._mps_available`` and ``vaelib.devices._mps_works``), so every
branch runs here without a GPU or a Mac: CUDA first, then a working MPS, a
failing MPS falls back to the CPU with a warning that says why, and an
explicit request for a device the machine lacks raises ``DeviceError``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import vaelib as vl
import vaelib.devices as devices


@pytest.fixture
def machine(monkeypatch):
    """``machine(cuda=..., mps=..., mps_failure=...)`` sets what this machine appears to have."""

    def set_machine(*, cuda: bool = False, mps: bool = False, mps_failure: str | None = None, gpus: int = 1):
        calls = {"mps_works": 0}

        def mps_works():
            calls["mps_works"] += 1
            return mps_failure

        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus if cuda else 0)
        monkeypatch.setattr(devices, "_mps_available", lambda: mps)
        monkeypatch.setattr(devices, "_mps_works", mps_works)
        return calls

    return set_machine


def test_auto_picks_cuda_when_present_even_with_mps(machine):
    calls = machine(cuda=True, mps=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vl.resolve_device("auto") == torch.device("cuda")
    assert calls["mps_works"] == 0, "MPS is not probed when CUDA is there"


def test_auto_picks_mps_when_present_and_working(machine):
    calls = machine(mps=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on the happy path
        assert vl.resolve_device("auto") == torch.device("mps")
    assert calls["mps_works"] == 1, "MPS is tried with a first computation before it is chosen"


def test_auto_falls_back_to_cpu_with_a_warning_that_says_why_when_mps_fails(machine):
    machine(mps=True, mps_failure="RuntimeError: MPS backend out of memory")
    with pytest.warns(UserWarning) as record:
        assert vl.resolve_device("auto") == torch.device("cpu")
    assert len(record) == 1
    message = str(record[0].message)
    assert "MPS" in message and "CPU" in message
    assert "RuntimeError: MPS backend out of memory" in message, "the warning names the failure"
    assert "device='cpu'" in message, "the warning says how to silence it"
    assert record[0].filename == __file__, "the warning points at the caller, not at vaelib"


def test_auto_picks_cpu_when_there_is_nothing_else(machine):
    calls = machine()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vl.resolve_device("auto") == torch.device("cpu")
        assert vl.resolve_device() == torch.device("cpu"), "'auto' is the default"
    assert calls["mps_works"] == 0


def test_explicit_mps_without_mps_raises(machine):
    machine(cuda=True)
    with pytest.raises(vl.DeviceError, match="MPS"):
        vl.resolve_device("mps")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", torch.device("cuda")])
def test_explicit_cuda_without_cuda_raises(machine, name):
    machine(mps=True)
    with pytest.raises(vl.DeviceError, match="no usable CUDA GPU"):
        vl.resolve_device(name)


def test_explicit_devices_that_exist_are_returned(machine):
    machine(cuda=True, mps=True, gpus=2)
    assert vl.resolve_device("cuda") == torch.device("cuda")
    assert vl.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert vl.resolve_device("mps") == torch.device("mps")
    assert vl.resolve_device("cpu") == torch.device("cpu")
    assert vl.resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_a_gpu_index_the_machine_lacks_raises(machine):
    machine(cuda=True, gpus=1)
    with pytest.raises(vl.DeviceError, match="1 GPU"):
        vl.resolve_device("cuda:3")


@pytest.mark.parametrize("name", ["tpu", "gpu", "", "cuda:x"])
def test_unknown_or_unsupported_names_raise_device_error(machine, name):
    machine()
    with pytest.raises(vl.DeviceError):
        vl.resolve_device(name)


def test_device_error_is_a_vaelib_error():
    assert issubclass(vl.DeviceError, vl.VaelibError)


def test_the_real_checks_run_here():
    """Unpatched, the checks answer for this machine without raising."""
    assert isinstance(devices._mps_available(), bool)
    assert vl.resolve_device("auto").type in ("cuda", "mps", "cpu")
