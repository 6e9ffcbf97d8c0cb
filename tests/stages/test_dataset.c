/* Dataset listing (src/stages/dataset.c): every layout, label mapping, sorting, sampling and
 * the errors. The files are empty: listing never decodes an image. Expected values follow from
 * the layouts' definitions (docs/config.md, datasets.*). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miclip/dataset.h"
#include "miclip/fsutil.h"
#include "test_util.h"

static char root[256];

static void touch(const char *rel) {
    char path[1024], dir[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    mc_error e = {0};
    MC_ASSERT(mc_mkdir_p(dir, &e) == MC_OK);
    FILE *f = fopen(path, "w");
    MC_ASSERT(f);
    fclose(f);
}

static void write_text(const char *rel, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    MC_ASSERT(f);
    fputs(text, f);
    fclose(f);
}

static mc_dataset_cfg cfg_of(int kind, const char *rel_root, const char *split, const char *labels,
                             const char *names) {
    static char r[1024], l[1024], n[1024];
    snprintf(r, sizeof r, "%s/%s", root, rel_root);
    snprintf(l, sizeof l, "%s/%s", root, labels ? labels : "");
    snprintf(n, sizeof n, "%s/%s", root, names ? names : "");
    mc_dataset_cfg c = {.kind = kind,
                        .root = r,
                        .split = (char *)(split ? split : ""),
                        .labels = labels ? l : (char *)"",
                        .class_names = names ? n : (char *)""};
    return c;
}

static const char *base(const char *p) { return strrchr(p, '/') + 1; }

static void test_imagefolder(void) {
    /* folders deliberately created out of order; files with and without image extensions */
    touch("if/train/zebra_fish/b.png");
    touch("if/train/zebra_fish/a.JPG");
    touch("if/train/zebra_fish/notes.txt");
    touch("if/train/apple/x.jpeg");
    touch("if/train/.hidden/y.png");
    mc_dataset ds;
    mc_error e = {0};
    mc_dataset_cfg c = cfg_of(MC_DS_IMAGEFOLDER, "if", "train", NULL, NULL);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_OK);
    CHECK(ds.n == 3 && ds.n_classes == 2);
    CHECK(!strcmp(ds.class_names[0], "apple") && !strcmp(ds.class_names[1], "zebra fish"));
    CHECK(!strcmp(base(ds.paths[0]), "x.jpeg") && ds.labels[0] == 0);
    CHECK(!strcmp(base(ds.paths[1]), "a.JPG") && ds.labels[1] == 1); /* byte order: 'a' < 'b' */
    CHECK(!strcmp(base(ds.paths[2]), "b.png") && ds.labels[2] == 1);
    /* issue 16: nothing is dropped without a word: notes.txt and .hidden are counted */
    CHECK_MSG(ds.skipped.n == 2, "%lld", (long long)ds.skipped.n);
    char ex[2048];
    mc_skip_log_format(&ds.skipped, ex, sizeof ex);
    CHECK_MSG(strstr(ex, "zebra_fish/notes.txt (not an image file name)") &&
                  strstr(ex, "train/.hidden (hidden folder)"),
              "%s", ex);
    /* id2label covering the classes (any case): labels become id2label indices */
    const char *id2label[4] = {"Zebra Fish", "cat", "APPLE", "dog"};
    mc_dataset d2;
    CHECK(mc_dataset_list(&c, id2label, 4, &d2, &e) == MC_OK);
    CHECK(d2.n_classes == 4 && d2.labels[0] == 2 && d2.labels[1] == 0);
    CHECK(!strcmp(d2.class_names[3], "dog"));
    /* an id2label that misses a class: folder order */
    const char *partial[2] = {"apple", "cat"};
    mc_dataset d3;
    CHECK(mc_dataset_list(&c, partial, 2, &d3, &e) == MC_OK);
    CHECK(d3.n_classes == 2 && d3.labels[2] == 1);
    char h1[65], h2[65];
    mc_dataset_hash(&ds, h1);
    mc_dataset_hash(&d2, h2);
    CHECK(strcmp(h1, h2) != 0); /* different labels, different identity */
    mc_dataset_free(&ds);
    mc_dataset_free(&d2);
    mc_dataset_free(&d3);
}

static void test_imagenet(void) {
    touch("in/train/n01440764/n01440764_1.JPEG");
    touch("in/train/n01443537/n01443537_7.JPEG");
    touch("in/train/n01443537/n01443537_2.JPEG");
    const char *id2label[2] = {"tench, Tinca tinca", "goldfish, Carassius auratus"};
    mc_dataset ds;
    mc_error e = {0};
    mc_dataset_cfg c = cfg_of(MC_DS_IMAGENET, "in", "train", NULL, NULL);
    CHECK(mc_dataset_list(&c, id2label, 2, &ds, &e) == MC_OK);
    /* wnid folders map to id2label by position (the sorted wnid order is ImageNet's) */
    CHECK(ds.n == 3 && ds.n_classes == 2 && ds.labels[0] == 0 && ds.labels[1] == 1 &&
          ds.labels[2] == 1);
    CHECK(!strcmp(ds.class_names[1], "goldfish, Carassius auratus"));
    CHECK(!strcmp(base(ds.paths[1]), "n01443537_2.JPEG"));
    mc_dataset_free(&ds);
    /* flat validation folder with file<TAB>wnid labels */
    touch("in/val/ILSVRC2012_val_00000002.JPEG");
    touch("in/val/ILSVRC2012_val_00000001.JPEG");
    write_text(
        "val_labels.tsv",
        "ILSVRC2012_val_00000002.JPEG\tn01440764\nILSVRC2012_val_00000001.JPEG\tn01443537\n");
    c = cfg_of(MC_DS_IMAGENET, "in", "val", "val_labels.tsv", NULL);
    CHECK(mc_dataset_list(&c, id2label, 2, &ds, &e) == MC_OK);
    CHECK(ds.n == 2 && !strcmp(base(ds.paths[0]), "ILSVRC2012_val_00000001.JPEG") &&
          ds.labels[0] == 1 && ds.labels[1] == 0);
    mc_dataset_free(&ds);
    /* one wnid per line, in sorted file order */
    write_text("val_lines.txt", "n01443537\nn01440764\n");
    c = cfg_of(MC_DS_IMAGENET, "in", "val", "val_lines.txt", NULL);
    CHECK(mc_dataset_list(&c, id2label, 2, &ds, &e) == MC_OK);
    CHECK(ds.n == 2 && ds.labels[0] == 1 && ds.labels[1] == 0);
    mc_dataset_free(&ds);
    /* a label file that does not match the folder */
    write_text("val_short.txt", "n01443537\n");
    c = cfg_of(MC_DS_IMAGENET, "in", "val", "val_short.txt", NULL);
    CHECK(mc_dataset_list(&c, id2label, 2, &ds, &e) == MC_ERR_FORMAT);
    CHECK(strstr(e.msg, "val_short.txt") != NULL);
    /* a class-name mapping file instead of id2label */
    write_text("names.tsv", "n01440764\ttench\nn01443537\tgoldfish\n");
    c = cfg_of(MC_DS_IMAGENET, "in", "train", NULL, "names.tsv");
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_OK);
    CHECK(ds.n_classes == 2 && !strcmp(ds.class_names[0], "tench") &&
          !strcmp(ds.class_names[1], "goldfish"));
    mc_dataset_free(&ds);
}

static void test_dtd_filelist(void) {
    touch("dtd/images/striped/s1.jpg");
    touch("dtd/images/banded/b1.jpg");
    mc_dataset ds;
    mc_error e = {0};
    mc_dataset_cfg c = cfg_of(MC_DS_DTD, "dtd", NULL, NULL, NULL);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_OK);
    CHECK(ds.n == 2 && !strcmp(ds.class_names[0], "banded") && ds.labels[1] == 1);
    mc_dataset_free(&ds);
    touch("fl/imgs/one.png");
    touch("fl/imgs/two.png");
    write_text("list.tsv", "imgs/two.png\tdog\nimgs/one.png\tcat\n");
    c = cfg_of(MC_DS_FILELIST, "fl", NULL, "list.tsv", NULL);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_OK);
    CHECK(ds.n == 2 && ds.n_classes == 2 && !strcmp(base(ds.paths[0]), "one.png") &&
          ds.labels[0] == 0 && ds.labels[1] == 1);
    mc_dataset_free(&ds);
}

static void test_sampling(void) {
    for (int i = 0; i < 50; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "big/c%d/%03d.png", i % 3, i);
        touch(rel);
    }
    mc_dataset_cfg c = cfg_of(MC_DS_IMAGEFOLDER, "big", NULL, NULL, NULL);
    mc_dataset a, b, d, all;
    mc_error e = {0};
    CHECK(mc_dataset_list(&c, NULL, 0, &a, &e) == MC_OK && a.n == 50);
    CHECK(mc_dataset_list(&c, NULL, 0, &b, &e) == MC_OK);
    CHECK(mc_dataset_list(&c, NULL, 0, &d, &e) == MC_OK);
    CHECK(mc_dataset_list(&c, NULL, 0, &all, &e) == MC_OK);
    CHECK(mc_dataset_sample(&a, 20, 7, &e) == MC_OK && a.n == 20);
    CHECK(mc_dataset_sample(&b, 20, 7, &e) == MC_OK);
    CHECK(mc_dataset_sample(&d, 20, 8, &e) == MC_OK);
    CHECK(mc_dataset_sample(&all, 50, 7, &e) == MC_OK && all.n == 50);
    int same = 1, differ = 0, sorted = 1;
    for (int i = 0; i < 20; i++) {
        same &= !strcmp(a.paths[i], b.paths[i]) && a.labels[i] == b.labels[i];
        differ |= strcmp(a.paths[i], d.paths[i]) != 0;
        if (i) sorted &= strcmp(a.paths[i - 1], a.paths[i]) < 0;
    }
    CHECK(same);   /* same seed, same subset */
    CHECK(differ); /* another seed, another subset */
    CHECK(sorted); /* kept in index order */
    mc_dataset_free(&a);
    mc_dataset_free(&b);
    mc_dataset_free(&d);
    mc_dataset_free(&all);
}

static void test_errors(void) {
    mc_dataset ds;
    mc_error e = {0};
    mc_dataset_cfg c = cfg_of(MC_DS_IMAGEFOLDER, "missing", NULL, NULL, NULL);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_ERR_IO && strstr(e.msg, "missing"));
    touch("noimg/cls/readme.txt");
    c = cfg_of(MC_DS_IMAGEFOLDER, "noimg", NULL, NULL, NULL);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_ERR_IO && strstr(e.msg, "no images"));
    touch("flat/a.png");
    c = cfg_of(MC_DS_IMAGEFOLDER, "flat", NULL, NULL, NULL);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_ERR_IO && strstr(e.msg, "no class folders"));
    c = cfg_of(MC_DS_FILELIST, "fl", NULL, NULL, NULL);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_ERR_CONFIG);
}

/* issue 16: an image name that cannot be used is an error naming it; bad label files too */
static void test_unusable(void) {
    mc_dataset ds;
    mc_error e = {0};
    char p[1024], q[1024];
    touch("un/cls/a.png");
    touch("un/cls/README.txt");
    touch("un/attributes.jsonl"); /* metadata beside the class folders: not counted */
    mc_dataset_cfg c = cfg_of(MC_DS_IMAGEFOLDER, "un", NULL, NULL, NULL);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_OK && ds.n == 1 && ds.skipped.n == 1);
    mc_dataset_free(&ds);
    touch("un/stray.png"); /* an image beside the class folders: counted */
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_OK && ds.n == 1 && ds.skipped.n == 2);
    char ex[2048];
    mc_skip_log_format(&ds.skipped, ex, sizeof ex);
    CHECK_MSG(strstr(ex, "un/stray.png (an image outside the class folders)"), "%s", ex);
    mc_dataset_free(&ds);
    snprintf(p, sizeof p, "%s/un/stray.png", root);
    unlink(p);
    /* a FIFO with an image name */
    snprintf(p, sizeof p, "%s/un/cls/pipe.png", root);
    CHECK(mkfifo(p, 0644) == 0);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_ERR_IO);
    CHECK_MSG(strstr(e.msg, "un/cls/pipe.png: is a FIFO, not an image file"), "%s", e.msg);
    unlink(p);
    /* a device (through a symlink) */
    snprintf(p, sizeof p, "%s/un/cls/dev.jpg", root);
    CHECK(symlink("/dev/null", p) == 0);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_ERR_IO);
    CHECK_MSG(strstr(e.msg, "un/cls/dev.jpg: is a character device"), "%s", e.msg);
    unlink(p);
    /* a file that vanished: a dangling symlink stands in for the race */
    snprintf(p, sizeof p, "%s/un/cls/gone.png", root);
    snprintf(q, sizeof q, "%s/un/cls/never-there.png", root);
    CHECK(symlink(q, p) == 0);
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_ERR_IO);
    CHECK_MSG(strstr(e.msg, "un/cls/gone.png: cannot stat: No such file or directory"), "%s",
              e.msg);
    unlink(p);
    /* unreadable (root reads everything: only checked as another user) */
    if (geteuid() != 0) {
        snprintf(p, sizeof p, "%s/un/cls/a.png", root);
        CHECK(chmod(p, 0) == 0);
        CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_ERR_IO &&
              strstr(e.msg, "a.png: cannot be read"));
        CHECK(chmod(p, 0644) == 0);
    }
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_OK && ds.n == 1);
    mc_dataset_free(&ds);
    /* class-name files are checked as UTF-8 text without NUL bytes */
    write_text("un/names_bad.tsv", "cls\tgood\ncls\tba\xff d\n");
    c = cfg_of(MC_DS_IMAGEFOLDER, "un", NULL, NULL, "un/names_bad.tsv");
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_ERR_FORMAT);
    CHECK_MSG(strstr(e.msg, "names_bad.tsv:2: invalid UTF-8 at byte 7 (0xFF)"), "%s", e.msg);
    snprintf(p, sizeof p, "%s/un/names_nul.tsv", root);
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite("cls\tok\n\ncls\tn\0l\n", 1, 16, f) == 16);
    if (f) fclose(f);
    c = cfg_of(MC_DS_IMAGEFOLDER, "un", NULL, NULL, "un/names_nul.tsv");
    CHECK(mc_dataset_list(&c, NULL, 0, &ds, &e) == MC_ERR_FORMAT);
    CHECK_MSG(strstr(e.msg, "names_nul.tsv:3: NUL byte at byte 6"), "%s", e.msg);
}

int main(void) {
    snprintf(root, sizeof root, "%s/dataset_test_%ld", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid());
    test_imagefolder();
    test_imagenet();
    test_dtd_filelist();
    test_sampling();
    test_errors();
    test_unusable();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return TEST_SUMMARY();
}
