/* sse_store_clients.c - open streams per client address, for the
 * per-client limit (SSEMaxStreamsPerClient), in the shared store.
 *
 * One entry per (address, child row), so a crashed child's share goes with
 * its row. The table is an open-addressing hash keyed by the address with
 * linear probing; a removed entry is filled by shifting later entries of
 * its probe chain back (no tombstones), so lookups stay short however long
 * the server runs. It has at least twice as many entries as the server may
 * hold streams, and every entry holds at least one stream, so it is never
 * more than half full; if it ever is full, a stream is simply not counted.
 *
 * The caller holds the store lock.
 */
#include <stdlib.h>
#include <string.h>

#include "sse_store_layout.h"

apr_uint32_t store_clients_for_size(apr_uint32_t max_streams)
{
    apr_uint32_t slots = 256;
    while (slots < 2 * (apr_uint64_t)max_streams && slots < (1u << 24)) {
        slots <<= 1;
    }
    return slots;
}

apr_uint32_t store_client_home(const sse_store *st, const unsigned char *addr)
{
    apr_uint64_t h = 14695981039346656037ULL;
    int i;
    for (i = 0; i < 16; i++) {
        h ^= addr[i];
        h *= 1099511628211ULL;
    }
    return (apr_uint32_t)(h & (st->hdr->client_slots - 1));
}

#define NEXT(st, i) (((i) + 1) & ((st)->hdr->client_slots - 1))

apr_uint32_t store_client_streams(sse_store *st, const unsigned char *addr)
{
    apr_uint32_t i = store_client_home(st, addr), k, sum = 0;
    for (k = 0; k < st->hdr->client_slots && st->clients[i].streams;
         k++, i = NEXT(st, i)) {
        if (!memcmp(st->clients[i].addr, addr, 16)) {
            sum += st->clients[i].streams;
        }
    }
    return sum;
}

static int insert(sse_store *st, const unsigned char *addr, int row,
                  apr_uint32_t streams)
{
    apr_uint32_t i = store_client_home(st, addr), k;
    for (k = 0; k < st->hdr->client_slots; k++, i = NEXT(st, i)) {
        store_client *c = &st->clients[i];
        if (!c->streams) {
            memcpy(c->addr, addr, 16);
            c->row = row;
            c->streams = streams;
            st->hdr->clients_used++;
            return 0;
        }
        if (c->row == row && !memcmp(c->addr, addr, 16)) {
            c->streams += streams;
            return 0;
        }
    }
    return -1;
}

int store_client_add(sse_store *st, const unsigned char *addr, int row)
{
    return insert(st, addr, row, 1);
}

/* Empties entry i and moves later entries of its chain back, so that no
 * entry is ever separated from its home by a free one. */
static void delete_at(sse_store *st, apr_uint32_t i)
{
    apr_uint32_t mask = st->hdr->client_slots - 1, j = i, k;
    st->clients[i].streams = 0;
    st->hdr->clients_used--;
    /* bounded: a torn table may have no free entry left */
    for (k = 0; k < mask; k++) {
        apr_uint32_t home;
        j = (j + 1) & mask;
        if (!st->clients[j].streams) return;
        home = store_client_home(st, st->clients[j].addr);
        /* j may move to i when its home is not cyclically in (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            st->clients[i] = st->clients[j];
            st->clients[j].streams = 0;
            i = j;
        }
    }
}

void store_client_remove(sse_store *st, const unsigned char *addr, int row)
{
    apr_uint32_t i = store_client_home(st, addr), k;
    for (k = 0; k < st->hdr->client_slots && st->clients[i].streams;
         k++, i = NEXT(st, i)) {
        store_client *c = &st->clients[i];
        if (c->row == row && !memcmp(c->addr, addr, 16)) {
            if (--c->streams == 0) delete_at(st, i);
            return;
        }
    }
}

void store_clients_drop_row(sse_store *st, int row)
{
    apr_uint32_t i = 0;
    while (i < st->hdr->client_slots) {
        /* a deletion may shift another entry into i: look again */
        if (st->clients[i].streams && st->clients[i].row == row) {
            delete_at(st, i);
        }
        else {
            i++;
        }
    }
}

/* Non-zero when a lookup from its home reaches entry i of t. */
static int reachable(const sse_store *st, const store_client *t,
                     apr_uint32_t i)
{
    apr_uint32_t j;
    for (j = store_client_home(st, t[i].addr); j != i; j = NEXT(st, j)) {
        if (!t[j].streams) return 0;
    }
    return 1;
}

int store_clients_rebuild(sse_store *st)
{
    apr_uint32_t n = st->hdr->client_slots, i, used = 0;
    int fixed = 0;
    store_client *old = malloc(sizeof(store_client) * n);
    apr_uint64_t *held = calloc(st->hdr->max_children, sizeof(*held));
    if (!old || !held) {
        free(old);
        free(held);
        return 0;
    }
    memcpy(old, st->clients, sizeof(store_client) * n);
    memset(st->clients, 0, sizeof(store_client) * n);
    for (i = 0; i < n; i++) {
        used += old[i].streams != 0;
    }
    fixed += used != st->hdr->clients_used;
    st->hdr->clients_used = 0;
    for (i = 0; i < n; i++) {
        store_client *c = &old[i];
        if (!c->streams) continue;
        /* a row's entries hold no more streams than the row has */
        if (c->row < 0 || (apr_uint32_t)c->row >= st->hdr->max_children
            || !st->children[c->row].pid
            || held[c->row] + c->streams > st->children[c->row].subscribers) {
            fixed++;
            continue;
        }
        held[c->row] += c->streams;
        fixed += !reachable(st, old, i);
        if (insert(st, c->addr, c->row, c->streams)) fixed++;
    }
    free(old);
    free(held);
    return fixed;
}
