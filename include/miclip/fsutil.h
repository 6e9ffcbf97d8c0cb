/* fsutil.h - file helpers: atomic writes (temporary name, fsync, rename), mkdir -p, reading a
 * whole file with a size cap. Every output that is not an HDF5 store is written through
 * mc_write_file_atomic so a killed run never leaves a half-written file under its final name. */
#ifndef MICLIP_FSUTIL_H
#define MICLIP_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

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
 * signal (comm.h), which returns MC_ERR_INTERRUPTED. Other non-regular files are refused
 * without blocking. */
mc_status mc_read_file(const char *path, size_t max_bytes, char **out, size_t *len, mc_error *err);
bool mc_file_exists(const char *path);
bool mc_dir_exists(const char *path);
/* Joins dir and name with one '/' into buf; false on truncation. */
bool mc_path_join(char *buf, size_t cap, const char *dir, const char *name);

#endif
