#!/usr/bin/env bash
# llama.cpp's llama-server, built once from the llama.cpp sources inside the pinned
# llama-cpp-python sdist (the very kernels chatd's engine runs). Idempotent.
#
#   scripts/llama_server.sh [extra cmake targets...]   build if absent; print the server's path
#
# Tests start it as an OpenAI-kind and Anthropic-kind upstream; bench/peers.py builds its
# other tools (llama-bench, llama-batched-bench) into the same build through this script.
# Run the server with `--jinja` (tool calls, /v1/messages) and, on AMX CPUs, `--no-repack`
# (repacked Q4_1 weights crash llama_decode: docs/architecture.md, "llama.cpp traps").
#
# Env: CHATD_LLAMA_SERVER_CACHE (default ~/.cache/chatd/llama-server-<version>),
# PYTHON (the interpreter whose pip downloads the sdist; default python3).
# Needs cmake and a C++ compiler; installs them (Debian) when absent and run as root.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION=0.3.36
ROOT="${CHATD_LLAMA_SERVER_CACHE:-$HOME/.cache/chatd/llama-server-$VERSION}"
PYTHON="${PYTHON:-python3}"
SRC="$ROOT/llama_cpp_python-$VERSION/vendor/llama.cpp"
BUILD="$ROOT/build"
BIN="$BUILD/bin/llama-server"
TARGETS=(llama-server "$@")

have_all() {
    local t
    for t in "${TARGETS[@]}"; do [ -x "$BUILD/bin/$t" ] || return 1; done
}

if have_all; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$ROOT"
# One build at a time: tests and benchmarks may ask at once.
exec 9>"$ROOT/.lock"
flock 9
if have_all; then
    echo "$BIN"
    exit 0
fi

if ! command -v cmake >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1; then
    apt_install llama_server.sh "cmake and a C++ compiler" cmake g++
fi

if [ ! -f "$SRC/CMakeLists.txt" ]; then
    echo "llama_server.sh: fetching the llama-cpp-python==$VERSION sdist" >&2
    "$PYTHON" -m pip download -q --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$VERSION" -d "$ROOT/sdist" >&2
    tar -xzf "$ROOT/sdist/llama_cpp_python-$VERSION.tar.gz" -C "$ROOT"
fi

GEN=()
if command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi
echo "llama_server.sh: building ${TARGETS[*]} (Release, -j$(nproc)); this takes minutes" >&2
cmake "${GEN[@]}" -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$BUILD" -j"$(nproc)" --target "${TARGETS[@]}" >&2
echo "$BIN"
