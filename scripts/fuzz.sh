#!/usr/bin/env bash
# fuzz.sh: open-ended fuzzing with fresh seeds, for developers (CI replays a fixed seed instead).
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]
# Builds the sanitizer+fuzz tree (build-sanitize, clang-14, ASan+UBSan, libFuzzer) if needed and
# runs each libFuzzer target for SECONDS (default 300) from its committed corpus. New coverage
# goes to fuzz-out/<target>/corpus, findings to fuzz-out/<target>/crash-* (and leak-*, oom-*,
# timeout-*). Exit status 1 when any target found something. A finding is fixed by: reproduce it
# (`build-sanitize/.../<target> fuzz-out/<target>/crash-...`), fix the code, add a unit test,
# and copy the input into the target's corpus under a name that says what it exercises, so the
# corpus replay in every build and the fixed-seed run in CI keep checking it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
secs=${1:-300}
shift || true
if [ ! -f build-sanitize/CTestTestfile.cmake ]; then
  cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-14 \
        -DMICLIP_SANITIZE=ON -DMICLIP_FUZZ=ON
fi
cmake --build build-sanitize -j "$(nproc)"

# ctest knows each target's binary and corpus: read them from its test list.
mapfile -t lines < <(cd build-sanitize && ctest -N -V -L fuzz | sed -n 's/^[0-9]*: Test command: //p')
found=0
for line in "${lines[@]}"; do
  eval "args=($line)"
  bin=${args[0]}
  # CI's command is `sh -c 'fresh work folder; exec "$0" "$@"' BINARY FLAGS... WORK CORPUS`.
  if [ "$(basename "$bin")" = sh ]; then bin=${args[3]}; fi
  corpus=${args[${#args[@]}-1]}
  name=$(basename "$bin")
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  out=fuzz-out/$name
  mkdir -p "$out/corpus"
  echo "=== $name: ${secs}s from $corpus"
  if ! "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$out/" \
       -print_final_stats=1 "$out/corpus" "$corpus" >"$out/log" 2>&1; then
    found=1
    echo "$name: FOUND something; see $out/log and:"
    ls "$out" | grep -E '^(crash|leak|oom|timeout|slow-unit)-' | sed "s|^|  $out/|" || true
  else
    grep -E 'stat::number_of_executed_units' "$out/log" | sed "s/^/  /" || true
  fi
done
exit $found
