/* fuzz_yaml.c - libFuzzer entry for the typed YAML loader: arbitrary bytes through libyaml,
 * the node tree, the schema, the cross-key checks, the canonical writer and the sweep. A
 * valid input's canonical text must parse back to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_config *cfg = NULL;
    mc_error err = {0};
    if (mc_config_parse_text((const char *)data, size, "<fuzz>", "/fuzz/base", &cfg, &err) !=
        MC_OK) {
        MC_ASSERT(cfg == NULL && err.code != MC_OK && err.msg[0]);
        return 0;
    }
    mc_config *again = NULL;
    mc_error err2 = {0};
    MC_ASSERT(mc_config_parse_text(cfg->canonical, strlen(cfg->canonical), "<canon>", "/", &again,
                                   &err2) == MC_OK);
    MC_ASSERT(!strcmp(again->canonical, cfg->canonical));
    mc_task *tasks = NULL;
    int n = 0;
    if (mc_config_all_tasks(cfg, &tasks, &n, &err) == MC_OK)
        for (int i = 0; i < n; i++) MC_ASSERT(tasks[i].id[0]);
    mc_tasks_free(&tasks);
    mc_config_free(&again);
    mc_config_free(&cfg);
    return 0;
}
