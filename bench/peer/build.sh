#!/usr/bin/env bash
# Build the llama.cpp peer: llama-cpp-python 0.3.36 compiled from source into .venv-peer.
# Idempotent: does nothing when .venv-peer already imports llama_cpp at 0.3.36.
# Why these flags: a plain (GGML_NATIVE) build turns on AMX on this CPU and then segfaults on
# any prompt of >= 2 tokens; --no-cache-dir keeps pip from reusing such a crashing wheel.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${PEER_VENV:-$ROOT/.venv-peer}"
VERSION="0.3.36"
PY="$VENV/bin/python"

if [ -x "$PY" ] && "$PY" -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.__version__ == '$VERSION' else 1)" 2>/dev/null; then
    echo "peer: $VENV already has llama_cpp $VERSION; nothing to do"
    exit 0
fi

if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
"$PY" -m pip install --upgrade pip
"$PY" -m pip install numpy gguf jinja2

export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
"$PY" -m pip install --no-cache-dir --force-reinstall --no-binary llama-cpp-python \
    "llama-cpp-python[server]==$VERSION"

"$PY" -c "import llama_cpp; print('peer: built llama_cpp', llama_cpp.__version__)"
