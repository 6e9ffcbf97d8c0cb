/* fsutil.h - file helpers: atomic writes (temporary name, fsync, rename), mkdir -p, reading a
 * whole file with a size cap. Every output that is not an HDF5 store is written through
 * mc_write_file_atomic so a killed run never leaves a half-written file under its final name. */
#ifndef MICLIP_FSUTIL_H
#define MICLIP_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"

/* Creates dir and its parents (mode 0755); existing directories are fine. */
mc_status mc_mkdir_p(const char *dir, mc_error *err);
/* Writes n bytes to path: a new temporary "<path>.tmp.<pid>.<8 random>.<host>" in path's folder,
 * created with O_CREAT|O_EXCL|O_NOFOLLOW (a file or symlink planted there is never written
 * through), fsync, rename over path. The first write into a folder also sweeps it
 * (mc_fs_sweep_stale_once). */
mc_status mc_write_file_atomic(const char *path, const void *data, size_t n, mc_error *err);
/* Local. mc_write_file_atomic after creating path's directory (mc_mkdir_p). */
mc_status mc_write_text_file(const char *path, const char *text, size_t n, mc_error *err);
/* Local. mc_write_text_file unless path already holds exactly these bytes (then the file, and its
 * modification time, are left alone: a rerun that changes nothing touches no file). */
mc_status mc_write_text_file_if_changed(const char *path, const char *text, size_t n,
                                        mc_error *err);
/* Length of the random part of a temporary's name. */
#define MC_TMP_RANDOM_LEN 8
/* Removes from dir the temporaries of mc_write_file_atomic left by dead processes: those whose
 * name records this host and a pid that no longer exists (kill(pid, 0) fails with ESRCH). A
 * live process's temporaries, this process's and other hosts' are kept. One readdir, best
 * effort (nothing fails); returns how many were removed. */
int mc_fs_sweep_stale(const char *dir);
/* mc_fs_sweep_stale on the first call for a folder in this process; later calls do nothing. */
int mc_fs_sweep_stale_once(const char *dir);
/* Reads a whole file into a malloc'd, NUL-terminated buffer (the caller frees *out). Files
 * larger than max_bytes are refused with an error naming the file and both sizes. A FIFO or
 * pipe (`mkfifo`, `<(cmd)`) is read to its end; waiting for its writer is interrupted by a stop
 * signal (signals.h), which returns MC_ERR_INTERRUPTED. Other non-regular files are refused
 * without blocking. */
mc_status mc_read_file(const char *path, size_t max_bytes, char **out, size_t *len, mc_error *err);
bool mc_file_exists(const char *path);
bool mc_dir_exists(const char *path);
/* Joins dir and name with one '/' into buf; false on truncation. */
bool mc_path_join(char *buf, size_t cap, const char *dir, const char *name);

/* --- listing a folder with every skipped entry accounted for -------------------------------
 * What a dataset lister needs: no entry of a folder disappears without a word. */

#define MC_SKIP_EXAMPLES 5

/* Entries a listing passed over, summed over calls: the count and the first few, each as
 * "PATH (reason)". */
typedef struct {
    int64_t n;
    char first[MC_SKIP_EXAMPLES][320];
} mc_skip_log;

/* Records one skipped entry. */
void mc_skip_log_add(mc_skip_log *log, const char *path, const char *reason);
/* "a (why), b (why), c (why) and 12 more" into buf. */
void mc_skip_log_format(const mc_skip_log *log, char *buf, size_t cap);

typedef enum {
    MC_LIST_DIRS = 0, /* sub-folders (following symlinks) */
    MC_LIST_FILES = 1 /* files whose name passes want() */
} mc_list_kind;

/* Lists dir's entries into *names (malloc'd array of malloc'd names, *n of them), sorted by
 * byte order. "." and ".." are ignored. Entries passed over are recorded in skipped (may be
 * NULL): for MC_LIST_FILES hidden names (leading '.') and names want() refuses; for
 * MC_LIST_DIRS hidden folders and non-folders whose name want() accepts (an image beside the
 * class folders). Other non-folders beside folders (metadata files: README, attributes.jsonl,
 * label files) are ignored. An entry that should be listed but cannot be used is an error
 * (MC_ERR_IO) naming it, never a silent drop:
 *   - stat fails: it vanished while listing, or is a dangling symlink;
 *   - MC_LIST_FILES: it is not a regular file (a FIFO, device, socket or folder), or cannot be
 *     read (access(R_OK)). */
mc_status mc_list_dir(const char *dir, mc_list_kind kind, bool (*want)(const char *name),
                      mc_skip_log *skipped, char ***names, int64_t *n, mc_error *err);
/* Frees what mc_list_dir returned. */
void mc_list_free(char **names, int64_t n);

#endif
