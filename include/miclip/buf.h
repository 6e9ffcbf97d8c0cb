/* buf.h - a growing text buffer for tables, reports and key texts.
 *
 * A zeroed mc_buf is empty and ready. Appends never fail loudly: on allocation failure the
 * buffer sets oom and ignores later appends, so a caller checks oom once at the end. The
 * caller owns p (mc_buf_free releases it and zeroes the buffer).
 */
#ifndef MICLIP_BUF_H
#define MICLIP_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} mc_buf;

void mc_buf_printf(mc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mc_buf_free(mc_buf *b);
/* CSV field: quoted when it holds a comma, quote or newline. */
void mc_buf_csv(mc_buf *b, const char *s);

#endif
