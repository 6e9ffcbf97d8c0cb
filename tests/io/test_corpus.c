/* test_corpus.c - every committed file of tests/io/corpus is opened through both entry points
 * (mmap and buffer) and must give the status listed in corpus_expect.tsv, with a message that
 * names the file and contains the listed substrings (the tensor or field). Also checks that
 * every corpus file is listed, so a new hostile file cannot go unchecked.
 * usage: test_corpus CORPUS_DIR EXPECT_TSV */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/fsutil.h"
#include "miclip/safetensors.h"
#include "test_util.h"

static mc_status status_from_name(const char *name) {
    for (int s = 0; s < MC_STATUS_COUNT; s++)
        if (!strcmp(mc_status_name((mc_status)s), name)) return (mc_status)s;
    return MC_STATUS_COUNT;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_corpus CORPUS_DIR EXPECT_TSV\n");
        return 2;
    }
    mc_error err = {0};
    char *tsv;
    size_t len;
    if (mc_read_file(argv[2], 1u << 20, &tsv, &len, &err) != MC_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int listed = 0, hostile = 0;
    char *save = NULL;
    for (char *line = strtok_r(tsv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char *fields[8];
        int nf = 0;
        char *s2 = NULL;
        for (char *tok = strtok_r(line, "\t", &s2); tok && nf < 8; tok = strtok_r(NULL, "\t", &s2))
            fields[nf++] = tok;
        CHECK(nf >= 2);
        if (nf < 2) continue;
        listed++;
        char path[4096];
        mc_path_join(path, sizeof path, argv[1], fields[0]);
        mc_status want = status_from_name(fields[1]);
        CHECK_MSG(want != MC_STATUS_COUNT, "unknown status %s", fields[1]);
        if (want != MC_OK) hostile++;

        mc_st_file *f = NULL;
        memset(&err, 0, sizeof err);
        mc_status got = mc_st_open(path, &f, &err);
        CHECK_MSG(got == want, "%s: got %s (%s), want %s", fields[0], mc_status_name(got), err.msg,
                  fields[1]);
        if (got != MC_OK) {
            CHECK_MSG(f == NULL, "%s: failed open left a file", fields[0]);
            CHECK_MSG(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s",
                      fields[0], err.msg);
            for (int i = 2; i < nf; i++)
                CHECK_MSG(strstr(err.msg, fields[i]) != NULL, "%s: message lacks '%s': %s",
                          fields[0], fields[i], err.msg);
            printf("%-40s %-11s %s\n", fields[0], mc_status_name(got), err.msg);
        } else {
            /* touch every byte of every tensor (valgrind/ASan check the views) */
            unsigned sum = 0;
            for (int i = 0; i < mc_st_count(f); i++) {
                const mc_st_tensor *t = mc_st_at(f, i);
                for (size_t b = 0; b < t->nbytes; b++) sum += ((const unsigned char *)t->data)[b];
                CHECK(mc_st_find(f, t->name) == t);
            }
            printf("%-40s ok          %d tensors (byte sum %u)\n", fields[0], mc_st_count(f), sum);
        }
        mc_st_close(&f);

        /* the buffer entry point must agree, naming its label */
        char *buf;
        size_t n;
        if (mc_read_file(path, 1u << 30, &buf, &n, &err) == MC_OK) {
            memset(&err, 0, sizeof err);
            mc_status got2 = mc_st_open_buffer(buf, n, "LABEL", &f, &err);
            CHECK_MSG(got2 == want, "%s (buffer): got %s (%s)", fields[0], mc_status_name(got2),
                      err.msg);
            if (got2 != MC_OK) CHECK(strstr(err.msg, "LABEL") != NULL);
            mc_st_close(&f);
            free(buf);
        } else {
            CHECK_MSG(0, "cannot read %s: %s", path, err.msg);
        }
    }
    free(tsv);
    /* every file of the corpus must be listed */
    int files = 0;
    DIR *d = opendir(argv[1]);
    CHECK(d != NULL);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') files++;
        closedir(d);
    }
    CHECK_MSG(files == listed, "%d corpus files, %d listed in %s", files, listed, argv[2]);
    CHECK(hostile >= 30);
    printf("%d files (%d hostile)\n", listed, hostile);
    return TEST_SUMMARY();
}
