/* shared_store.h - a store derived once and read by many tasks (the SAE code store, the unit
 * statistics; docs/store.md, "Shared stores").
 *
 * The first task that needs the store writes it under the store's writer lock; a task that finds
 * another run writing it waits for that run and reads the complete store; a writer that died
 * leaves no lock, and the next task resumes (or rebuilds) its store. Tasks of a Slurm array may
 * therefore start together.
 */
#ifndef MICLIP_METHOD_SHARED_STORE_H
#define MICLIP_METHOD_SHARED_STORE_H

#include <stdbool.h>

#include "miclip/comm.h"
#include "miclip/store.h"

/* Collective. Writes the store st, opened by mc_store_resume (created: a fresh store whose layout
 * is still to be made), and ends it with mc_store_finish (which closes it, also on failure). */
typedef mc_status (*mc_shared_store_build)(const mc_comm *c, mc_store *st, bool created, void *user,
                                           mc_error *err);

/* Collective. Leaves a complete store at path: reuses it when complete (what names it in the
 * log line), else creates path's folder, takes the writer lock and calls build, or waits for the
 * run that holds the lock (2 s apart, 20 minutes). The caller then opens it read-only. */
mc_status mc_shared_store_ensure(const mc_comm *c, const char *path, const char *what,
                                 mc_shared_store_build build, void *user, mc_error *err);

#endif
