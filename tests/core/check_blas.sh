#!/usr/bin/env bash
# check_blas.sh MICLIP: every CBLAS call of miclip (and of libgsl) binds to OpenBLAS. GSL's
# pkg-config links its reference CBLAS too; linked ahead of OpenBLAS it served every cblas_sgemm
# with a naive loop (87% of the intervene stage's time) without any error (CMakeLists.txt).
# Reads the dynamic linker's own account (LD_DEBUG=bindings, every symbol bound at start).
set -u
miclip=$1
out=$(LD_BIND_NOW=1 LD_DEBUG=bindings "$miclip" --version 2>&1 >/dev/null)
fail=0
for sym in cblas_sgemm cblas_sgemv cblas_sdot; do
    lines=$(grep "normal symbol \`$sym'" <<<"$out")
    if [ -z "$lines" ]; then
        echo "FAIL: the dynamic linker bound no $sym (does miclip still call it?)"; fail=1; continue
    fi
    if grep -q gslcblas <<<"$lines"; then
        echo "FAIL: $sym binds to GSL's reference CBLAS:"; grep gslcblas <<<"$lines" | sed 's/^ */  /'
        fail=1
    elif ! grep -q openblas <<<"$lines"; then
        echo "FAIL: $sym binds to neither OpenBLAS nor GSL:"; sed 's/^ */  /' <<<"$lines"; fail=1
    else
        echo "PASS: $sym binds to OpenBLAS ($(grep -o '/[^ ]*openblas[^ ]*' <<<"$lines" | sort -u | tr '\n' ' '))"
    fi
done
exit $fail
