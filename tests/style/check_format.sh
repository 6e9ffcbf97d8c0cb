#!/usr/bin/env bash
# check_format.sh SOURCE_DIR: every C source and header of the project is formatted as the
# top-level .clang-format says (100 columns, 4-space indents; docs/architecture.md, "Style").
# On a failure it names the files; `scripts/format.sh` formats the tree.
set -u
src=$1
cf=$(command -v clang-format-14 || command -v clang-format) ||
    { echo "FAIL: clang-format-14 is not installed (scripts/install-deps.sh installs it)"; exit 1; }
cd "$src" || exit 1
if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files '*.c' '*.h')
else
    mapfile -t files < <(find src include tests tools bench -name '*.[ch]' | sort)
fi
[ ${#files[@]} -gt 50 ] || { echo "FAIL: only ${#files[@]} C files found under $src"; exit 1; }
bad=()
for f in "${files[@]}"; do
    "$cf" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
    echo "FAIL: ${#bad[@]} of ${#files[@]} files are not formatted (run scripts/format.sh):"
    printf '  %s\n' "${bad[@]}"
    exit 1
fi
echo "all ${#files[@]} C files formatted ($("$cf" --version | head -n1))"
