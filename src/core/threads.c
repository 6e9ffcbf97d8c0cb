#include "miclip/miclip.h"

/* OpenBLAS's own setter; declared here so this file needs no cblas.h. */
void openblas_set_num_threads(int num_threads);

static int g_threads = 1; /* process-wide, set once by main before any work */

void mc_set_threads(int n) {
    g_threads = n > 0 ? n : 1;
    openblas_set_num_threads(g_threads);
}

int mc_get_threads(void) { return g_threads; }
