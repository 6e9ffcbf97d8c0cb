/* dataset.h - image datasets as a deterministic list of (path, label).
 *
 * Layouts (config key datasets.*.kind; docs/config.md):
 *   imagefolder  ROOT[/SPLIT]/<class>/<image>         classes = sorted folder names
 *   world        the tiny world: ROOT/SPLIT/<class>/   (imagefolder; "red_circle" -> "red circle")
 *   dtd          ROOT/images/<class>/<image>
 *   imagenet     ROOT[/SPLIT]/<wnid>/<image>, or a flat folder with a label file
 *                (`file<TAB>wnid` lines, or one wnid per line in sorted file order)
 *   filelist     the label file lists `path<TAB>class` lines (paths relative to ROOT)
 * Images are files ending in .jpg/.jpeg/.png (any case). Every list is sorted by byte order of
 * the path, so the index of an image depends only on the files, never on the file system's
 * directory order or the rank count.
 *
 * Labels: when the target model has an id2label whose names cover every class of the dataset
 * (folder names with '_' read as ' ', compared case-insensitively; or a class_names mapping
 * file wnid<TAB>name), labels are id2label indices and the class list is id2label; otherwise
 * the classes are the folders in sorted order (torchvision ImageFolder's order).
 *
 * Sampling: mc_dataset_sample keeps n images chosen by the seed (a permutation keyed by
 * (seed, subset stream)), in ascending index order so reads stay local.
 *
 * Listing skips nothing silently (docs/extract.md, "What the listing skips"): an entry of a
 * class folder whose name is not an image's (README.txt) or is hidden, a hidden folder or an
 * image file beside the class folders is counted in skipped (other files there are metadata) (mc_dataset_load warns once on rank 0 with the count and the
 * first names; extraction records the count as the store attribute dataset_n_skipped); an
 * image name that cannot be used (vanished, dangling symlink, FIFO, device, socket, unreadable)
 * is an error naming the file.
 *
 * Under MPI, rank 0 lists the files and broadcasts the list (mc_dataset_load).
 * Ownership: every string belongs to the mc_dataset; free with mc_dataset_free.
 */
#ifndef MICLIP_DATASET_H
#define MICLIP_DATASET_H

#include <stdint.h>

#include "miclip/comm.h"
#include "miclip/config.h"
#include "miclip/fsutil.h"
#include "miclip/status.h"

typedef struct {
    int64_t n;       /* images */
    char **paths;    /* [n] absolute paths */
    int32_t *labels; /* [n] class index */
    int n_classes;
    char **class_names;  /* [n_classes] human-readable ("red circle", "tench") */
    char *root;          /* the dataset root (identity) */
    mc_skip_log skipped; /* folder entries passed over while listing (in class folders: not an
                          * image by name, hidden; beside them: hidden folders, image files):
                          * n on every rank, the examples on rank 0 (the lister) only */
} mc_dataset;

/* Collective. Lists the dataset described by cfg. id2label (may be NULL) is the target model's
 * label list of n_labels names. Errors name the folder or file. */
mc_status mc_dataset_load(const mc_comm *c, const mc_dataset_cfg *cfg, const char *const *id2label,
                          int n_labels, mc_dataset *out, mc_error *err);
/* Local: the same on one process. */
mc_status mc_dataset_list(const mc_dataset_cfg *cfg, const char *const *id2label, int n_labels,
                          mc_dataset *out, mc_error *err);
/* Keeps n images (0 or n >= ds->n keeps all) drawn by seed. */
mc_status mc_dataset_sample(mc_dataset *ds, int64_t n, uint64_t seed, mc_error *err);
/* SHA-256 hex of the class list and every (path, label): the dataset's identity. */
void mc_dataset_hash(const mc_dataset *ds, char hex[65]);
void mc_dataset_free(mc_dataset *ds); /* frees the contents, zeroes the struct */

#endif
