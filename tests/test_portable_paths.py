"""The code paths that other CPUs run, tested on a machine that would take a faster one.

Where the CPU has AVX-512F, fusednn's hand-written AVX-512 paths take over (the GEMM's
micro-kernel; dropout's and augment's Philox, augment's bilinear rows, layer norm, the softmax-CE
exp pass, the direct convolution), so the loops that every other CPU runs would go untested here.
``FUSEDNN_DISABLE_AVX512=1`` turns those paths off when the module loads; this file runs the
test files of the families that have them again, in a subprocess with the variable set.
Without AVX-512 (or with it turned off), CPUs with AVX2 run hand-written AVX2 paths (the Philox
rounds of dropout, noise and augment's noise; the GEMM kernel; float32 layer norm and
softmax-CE), so in that run those families take them; ``FUSEDNN_DISABLE_AVX2=1`` turns those off
too, and the families that use them are run again with both variables set: the generic loops.
(Of the GEMM's families, test_gemm.py and test_conv.py are run again: conv's products take
OpenBLAS only where the CPU has no own kernel, while test_linear.py runs every case with each
kernel setting, and test_rnn.py its recurrent products, in every run.)
(The sanitizer job runs the same lists with the same variables itself: see .ci/sanitize.)
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

# The test files of the families with an AVX2 path (the Philox rounds; the GEMM; layer norm;
# softmax-CE).
AVX2_FAMILY_TEST_FILES = ["test_gemm.py", "test_conv.py", "test_dropout.py", "test_augment.py", "test_transforms.py",
                          "test_norm.py", "test_xent.py"]

INFO = fusednn.build_info()


def _cpu_flags():
    """The CPU's feature flags (Linux), or None where /proc/cpuinfo cannot tell."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), None)
    except OSError:
        return None


FLAGS = _cpu_flags()
needs_avx512 = pytest.mark.skipif(not INFO["avx512_paths"],
                                  reason="no AVX-512 paths run here: the main test run already takes the portable loops")


# The nested test runs: two workers each, whatever the core count (the outer run has its own).
NESTED_PYTEST = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"]


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
    r = _run([*NESTED_PYTEST, *(str(TESTS / f) for f in FAMILY_TEST_FILES)],
             FUSEDNN_DISABLE_AVX512="1")
    assert r.returncode == 0, f"with FUSEDNN_DISABLE_AVX512=1:\n{r.stdout[-6000:]}\n{r.stderr[-2000:]}"


@pytest.mark.skipif(FLAGS is None or "avx2" not in FLAGS, reason="this CPU has no AVX2 (or /proc/cpuinfo cannot tell)")
@pytest.mark.parametrize("avx512_value", ["1", "0"])
@pytest.mark.parametrize("value, disabled", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_the_avx2_variable_switches_the_avx2_paths_where_avx512_ones_do_not_run(avx512_value, value, disabled):
    r = _run(["-c", "import fusednn; i = fusednn.build_info(); print(i['avx512_paths'], i['avx2_paths'])"],
             FUSEDNN_DISABLE_AVX512=avx512_value, FUSEDNN_DISABLE_AVX2=value)
    assert r.returncode == 0, r.stderr
    avx512, avx2 = r.stdout.split()
    assert avx2 == str(not disabled and avx512 == "False")
    assert avx512 == str(avx512_value == "0" and "avx512f" in FLAGS), "FUSEDNN_DISABLE_AVX2 changed the AVX-512 paths"


@pytest.mark.skipif(not (INFO["avx512_paths"] or INFO["avx2_paths"]),
                    reason="no hand-written SIMD path runs here: the main test run already takes the generic loops")
def test_the_generic_loops_of_the_avx2_families_pass_their_tests():
    r = _run([*NESTED_PYTEST, *(str(TESTS / f) for f in AVX2_FAMILY_TEST_FILES)],
             FUSEDNN_DISABLE_AVX512="1", FUSEDNN_DISABLE_AVX2="1")
    assert r.returncode == 0, f"with FUSEDNN_DISABLE_AVX512=1 FUSEDNN_DISABLE_AVX2=1:\n{r.stdout[-6000:]}\n{r.stderr[-2000:]}"
