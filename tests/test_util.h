/* test_util.h - the tiny assertion kit shared by the C tests. A failed check prints file:line
 * and the values, and the test's exit code counts the failures (0 only when all passed). */
#ifndef MICLIP_TEST_UTIL_H
#define MICLIP_TEST_UTIL_H

#include <math.h>
#include <stdio.h>

static int mc_test_failures = 0;
static int mc_test_checks = 0;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        mc_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            mc_test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        mc_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            mc_test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double mc_a_ = (a), mc_b_ = (b);                                                           \
        CHECK_MSG(fabs(mc_a_ - mc_b_) <= (tol), "%.9g vs %.9g (tol %.3g)", mc_a_, mc_b_,           \
                  (double)(tol));                                                                  \
    } while (0)

/* Ends main: prints "N passed, N failed" and returns the exit code. */
#define TEST_SUMMARY()                                                                             \
    (printf("%d passed, %d failed\n", mc_test_checks - mc_test_failures, mc_test_failures),        \
     mc_test_failures ? 1 : 0)

#endif
