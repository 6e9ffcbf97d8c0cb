/* strmap.c - open-addressing hash map from byte strings to int32 (FNV-1a hash, linear
 * probing, load factor <= 1/2). Keys are copied into one growing pool. */
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "text_internal.h"

static uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

void mc_strmap_init(mc_strmap *m) { memset(m, 0, sizeof *m); }

void mc_strmap_free(mc_strmap *m) {
    free(m->slots);
    free(m->entries);
    free(m->pool);
    memset(m, 0, sizeof *m);
}

void mc_strmap_clear(mc_strmap *m) {
    if (m->slots) memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
    m->pool_len = 0;
}

static bool rehash(mc_strmap *m, size_t cap) {
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return false;
    for (size_t i = 0; i < m->count; i++) {
        size_t k = m->entries[i].hash & (cap - 1);
        while (slots[k]) k = (k + 1) & (cap - 1);
        slots[k] = (uint32_t)(i + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return true;
}

bool mc_strmap_get(const mc_strmap *m, const char *key, size_t len, int32_t *value) {
    if (!m->cap) return false;
    uint32_t h = fnv1a(key, len);
    size_t k = h & (m->cap - 1);
    while (m->slots[k]) {
        const struct mc_strmap_entry *e = &m->entries[m->slots[k] - 1];
        if (e->hash == h && e->len == len && memcmp(m->pool + e->off, key, len) == 0) {
            *value = e->value;
            return true;
        }
        k = (k + 1) & (m->cap - 1);
    }
    return false;
}

bool mc_strmap_put(mc_strmap *m, const char *key, size_t len, int32_t value, bool *existing) {
    int32_t old;
    if (existing) *existing = false;
    if (mc_strmap_get(m, key, len, &old)) {
        if (existing) *existing = true;
        return true;
    }
    if (len > UINT32_MAX || m->count >= UINT32_MAX - 1) return false;
    if ((m->count + 1) * 2 > m->cap && !rehash(m, m->cap ? m->cap * 2 : 64)) return false;
    if (m->count == m->entries_cap) {
        size_t cap = m->entries_cap ? m->entries_cap * 2 : 64;
        void *p = mc_alloc_array(cap, sizeof *m->entries);
        if (!p) return false;
        if (m->count) memcpy(p, m->entries, m->count * sizeof *m->entries);
        free(m->entries);
        m->entries = p;
        m->entries_cap = cap;
    }
    size_t need;
    if (!mc_size_add(m->pool_len, len, &need)) return false;
    if (need > m->pool_cap) {
        size_t cap = m->pool_cap ? m->pool_cap : 1024;
        while (cap < need) {
            if (!mc_size_mul(cap, 2, &cap)) return false;
        }
        char *p = realloc(m->pool, cap);
        if (!p) return false;
        m->pool = p;
        m->pool_cap = cap;
    }
    if (len) memcpy(m->pool + m->pool_len, key, len);
    uint32_t h = fnv1a(key, len);
    m->entries[m->count] = (struct mc_strmap_entry){m->pool_len, (uint32_t)len, h, value};
    m->pool_len = need;
    size_t k = h & (m->cap - 1);
    while (m->slots[k]) k = (k + 1) & (m->cap - 1);
    m->slots[k] = (uint32_t)(m->count + 1);
    m->count++;
    return true;
}

const char *mc_strmap_key(const mc_strmap *m, size_t i, size_t *len) {
    if (i >= m->count) return NULL;
    *len = m->entries[i].len;
    return m->pool + m->entries[i].off;
}
