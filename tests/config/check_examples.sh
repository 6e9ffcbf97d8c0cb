#!/usr/bin/env bash
# check_examples.sh MICLIP DIR: every committed example config validates and expands its tasks.
set -u
miclip=$1; dir=$2
n=0; fail=0
for f in "$dir"/*.yaml; do
  n=$((n+1))
  if out=$("$miclip" config --tasks "$f" 2>&1); then
    echo "ok $f ($(grep -Ec '^[a-z]+ [0-9]+ [a-z]' <<<"$out") tasks)"
  else
    echo "FAIL $f: $out"; fail=$((fail+1))
  fi
done
echo "$n examples, $fail failed"
[ "$n" -gt 0 ] && [ "$fail" -eq 0 ]
