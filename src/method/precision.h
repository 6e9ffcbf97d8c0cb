/* precision.h - localization precision of a method's units (docs/intervene.md, "Localization
 * precision"): for each class c and each of its tau units, the fraction of the unit's top-n_c
 * activating images (n_c = c's image count) that are images of c, ties at the threshold shared
 * out as their expected fraction under uniform tie-breaking. */
#ifndef MICLIP_METHOD_PRECISION_H
#define MICLIP_METHOD_PRECISION_H

#include <stdint.h>

#include "miclip/status.h"

/* Local. acts: [n, n_units] row-major, one row per image; rows sorted by class, class c's rows
 * [first[c], first[c+1]). units: [C * tau] (each in [0, n_units)). prec: [C] receives the mean
 * over c's tau units of their precision, NAN for a class without images. Returns the mean over
 * the classes with images (NAN when none). Fails only for memory. */
mc_status mc_unit_precision(const float *acts, int64_t n, int64_t n_units, const int64_t *first,
                            int64_t C, const int32_t *units, int64_t tau, double *prec,
                            double *mean, mc_error *err);

#endif
