#!/usr/bin/env bash
# build.sh [BUILD_DIR] [extra cmake args...]: configure and build miclip (Release, gcc).
# Installs nothing; scripts/install-deps.sh does that.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
shift || true
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
echo "build.sh: built $build/miclip"
