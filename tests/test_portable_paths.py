"""The portable loops that a CPU without AVX-512 runs, tested on a machine that has AVX-512.

Where the CPU has AVX-512F, fusednn's hand-written AVX-512 paths take over (the GEMM's
micro-kernel; dropout's and augment's Philox, augment's bilinear rows, layer norm, the softmax-CE
exp pass, the direct convolution), so the loops that every other CPU runs would go untested here.
``FUSEDNN_DISABLE_AVX512=1`` turns those paths off when the module loads; this file runs the
test files of the families that have them again, in a subprocess with the variable set.
(The sanitizer job runs the same list with the same variable itself: see .ci/sanitize.)
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fusednn

TESTS = Path(__file__).resolve().parent
# The test files of every family with an AVX-512 path of its own.
FAMILY_TEST_FILES = ["test_gemm.py", "test_linear.py", "test_rnn.py", "test_conv.py", "test_dropout.py",
                     "test_augment.py", "test_transforms.py", "test_norm.py", "test_xent.py"]

needs_avx512 = pytest.mark.skipif(not fusednn.build_info()["avx512_paths"],
                                  reason="no AVX-512 paths run here: the main test run already takes the portable loops")


def _run(code_or_args, **env):
    return subprocess.run([sys.executable, *code_or_args], env={**os.environ, **env}, capture_output=True,
                          text=True, cwd=TESTS.parent, timeout=1200)


@needs_avx512
@pytest.mark.parametrize("value, expected", [("1", False), ("yes", False), ("0", True), ("", True)])
def test_the_variable_switches_the_avx512_paths(value, expected):
    r = _run(["-c", "import fusednn; print(fusednn.build_info()['avx512_paths'])"], FUSEDNN_DISABLE_AVX512=value)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(expected)


@needs_avx512
def test_the_portable_loops_pass_the_family_tests():
    r = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(TESTS / f) for f in FAMILY_TEST_FILES)],
             FUSEDNN_DISABLE_AVX512="1")
    assert r.returncode == 0, f"with FUSEDNN_DISABLE_AVX512=1:\n{r.stdout[-6000:]}\n{r.stderr[-2000:]}"
