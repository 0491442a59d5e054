"""check_torch on a CUDA device: the framework suite's torch items (tests/framework_code.py)
in float32, bfloat16 and float16, and TF32. Skipped where torch sees no GPU; run with
`pytest -m gpu tests/test_gpu.py` on a machine that has one."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import framework_code as fc  # noqa: E402
import gradcheck  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device: run on a machine with a GPU"
    ),
]

GPU_DTYPES = ["float32", "bfloat16", "float16"]
TORCH_CORRECT = [i for i in fc.CORRECT if i.framework == "torch"]
TORCH_BUGGY = [i for i in fc.BUGGY if i.framework == "torch"]


@pytest.fixture(autouse=True)
def tf32_off():
    """Every test starts and ends with TF32 off, whatever it (or the harness) set."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _verdicts(result) -> dict:
    return {
        d: (str(v), b)
        for d, v, b in zip(result.cases.dtype, result.cases.verdict, result.cases.blame)
    }


@pytest.mark.parametrize("item", TORCH_CORRECT, ids=lambda i: i.label)
def test_correct_code_passes_on_the_gpu(item):
    result = fc.check(item, GPU_DTYPES, device="cuda")
    assert _verdicts(result) == dict.fromkeys(GPU_DTYPES, ("PASS", "")), str(result)


@pytest.mark.parametrize("item", TORCH_BUGGY, ids=lambda i: i.label)
def test_a_bug_fails_on_the_gpu_blamed_on_the_users_code(item):
    verdicts = _verdicts(fc.check(item, GPU_DTYPES, device="cuda"))
    assert verdicts["float32"] == ("FAIL", item.engine)
    if item.bug in fc.GROSS:
        assert verdicts["bfloat16"] == verdicts["float16"] == ("FAIL", item.engine)


def test_tensors_on_the_gpu_choose_the_device():
    x = torch.tensor(fc.x_only(0)()["x"], dtype=torch.float32, device="cuda")
    result = gradcheck.check_torch(fc.Sigmoid.apply, {"x": x}, reference="sigmoid(x)")
    assert _verdicts(result) == {"float32": ("PASS", "")}, str(result)


def _matmul_bounds(tf32: bool):
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((64, 64)), "w": rng.standard_normal((64, 64))}
    torch.backends.cuda.matmul.allow_tf32 = tf32
    # against fd of the Function itself (a reference's torch engine runs with TF32 off and
    # gives the setting back: test_check_frameworks.py::test_a_reference_keeps_the_users_tf32_flag)
    result = gradcheck.check_torch(fc.MatMul.apply, inputs, dtypes=["float32"], device="cuda")
    assert torch.backends.cuda.matmul.allow_tf32 is tf32
    rows = result.comparisons[result.comparisons.engine_a == "MatMul"].set_index("param")
    return result, rows.bound


def test_tf32_passes_with_a_wider_tolerance():
    off, off_bounds = _matmul_bounds(False)
    on, on_bounds = _matmul_bounds(True)
    assert _verdicts(off) == {"float32": ("PASS", "")}, str(off)
    assert _verdicts(on) == {"float32": ("PASS", "")}, str(on)
    for param in ["x", "w", "(value)"]:
        assert on_bounds[param] > off_bounds[param], (param, on_bounds[param], off_bounds[param])


def test_tf32_with_a_reference_checks_the_users_code_as_it_runs():
    torch.backends.cuda.matmul.allow_tf32 = True
    rng = np.random.default_rng(1)
    inputs = {"x": rng.standard_normal((64, 64)), "w": rng.standard_normal((64, 64))}
    result = gradcheck.check_torch(
        fc.MatMul.apply, inputs, reference="x @ w", dtypes=["float32"], device="cuda"
    )
    assert _verdicts(result) == {"float32": ("PASS", "")}, str(result)
    assert torch.backends.cuda.matmul.allow_tf32 is True
