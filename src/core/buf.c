/* buf.c - the growing text buffer (buf.h). */
#include "miclip/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mc_buf_printf(mc_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if (b->p && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void mc_buf_free(mc_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void mc_buf_csv(mc_buf *b, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        mc_buf_printf(b, "%s", s);
        return;
    }
    mc_buf_printf(b, "\"");
    for (const char *p = s; *p; p++) mc_buf_printf(b, *p == '"' ? "\"\"" : "%c", *p);
    mc_buf_printf(b, "\"");
}
