#!/usr/bin/env bash
# Compile and link fusednn._C_cuda (no GPU needed): cuBLASLt from NVIDIA's wheel, one GPU
# architecture, then fail if the module leaves any of fusednn's own symbols undefined (a kernel
# that a binding calls but no .cu file defines would only fail at import, on a GPU machine).
set -euo pipefail
build="$1"
pip install nvidia-cublas cmake ninja pybind11
cmake -S . -B "$build" -G Ninja -DFUSEDNN_CUDA=ON -DFUSEDNN_CUDA_ARCHITECTURES=90 \
  -DPython_EXECUTABLE="$(command -v python)"
cmake --build "$build" --target _C_cuda
module="$(ls "$build"/_C_cuda*.so)"
missing="$(nm -D --undefined-only -C "$module" | grep 'fdnn::' || true)"
if [ -n "$missing" ]; then
  echo "fusednn._C_cuda leaves these symbols undefined:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "fusednn._C_cuda: compiled and linked ($module)"
