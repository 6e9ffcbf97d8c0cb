/* shared_store.c - a store derived once and read by many tasks (shared_store.h). */
#include "method/shared_store.h"

#include <string.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "method/keys.h"

enum { WAIT_TRIES = 600 }; /* 2 s apart: a concurrent writer gets 20 minutes */

mc_status mc_shared_store_ensure(const mc_comm *c, const char *path, const char *what,
                                 mc_shared_store_build build, void *user, mc_error *err) {
    char dir[MC_PATH_CAP];
    if (!mc_strlcpy(dir, path, sizeof dir))
        return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        mc_strlcpy(dir, ".", sizeof dir);
    mc_status s = MC_OK;
    for (int attempt = 0; s == MC_OK; attempt++) {
        bool complete = false, created = false;
        mc_store *st = NULL;
        s = mc_store_peek_complete(c, path, &complete, err);
        if (s == MC_OK && complete) mc_info0("%s complete, reusing (%s)", what, path);
        if (s != MC_OK || complete) break;
        s = mc_comm_agree(c, c->rank == 0 ? mc_mkdir_p(dir, err) : MC_OK, err);
        if (s == MC_OK) s = mc_store_resume(c, path, &st, &created, err);
        /* Another task finished it between our peek and our lock: leave a complete store as it
         * is (the array's other tasks may be reading it). */
        if (s == MC_OK && !created && mc_store_is_complete(st, "/")) {
            s = mc_store_close(&st, err);
            break;
        }
        if (s == MC_OK) {
            s = build(c, st, created, user, err);
            break;
        }
        if (s != MC_ERR_LOCKED || attempt >= WAIT_TRIES) break;
        if (attempt == 0) mc_info0("another run is writing %s; waiting", path);
        sleep(2);
        s = MC_OK;
    }
    return s;
}
