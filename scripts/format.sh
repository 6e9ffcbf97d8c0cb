#!/usr/bin/env bash
# format.sh: formats every C source and header git tracks with clang-format-14 and the top-level
# .clang-format (what the style_format test checks).
set -euo pipefail
cd "$(dirname "$0")/.."
cf=$(command -v clang-format-14 || command -v clang-format)
git ls-files -z '*.c' '*.h' | xargs -0 "$cf" -i
