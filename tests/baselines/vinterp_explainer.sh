#!/bin/sh
# A scripted V-Interp explainer for the tests (a stand-in for the user's LMM), called as
# `vinterp_explainer.sh GRID.png MANIFEST.json`: prints the class the target predicts most often
# among the unit's top images, read from the manifest (ties: the smallest in byte order), then a
# second line the stage ignores. Deterministic; one awk process, so hundreds of units cost little.
LC_ALL=C exec awk -F'"' '
/"prediction":/ { n[$4]++ }
END {
    b = ""; f = 0
    for (c in n) if (!f || n[c] > n[b] || (n[c] == n[b] && c < b)) { b = c; f = 1 }
    print b
    print "(a second line the stage ignores)"
}' "$2"
