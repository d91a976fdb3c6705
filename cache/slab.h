/*
 * The slab: one page-aligned mapping of max_memory bytes that holds every cached chunk, cut
 * into fixed-size slots. Allocated once at start-up (and registered once for RDMA later), so
 * the daemon never holds more chunk data than this.
 *
 * Backing memory, by preference (hugepages = auto):
 *   hugetlb  memfd with MFD_HUGETLB, when the hugepage pool has room for the whole slab;
 *   thp      anonymous memory advised MADV_HUGEPAGE (transparent huge pages);
 * hugepages = on insists on hugetlb and fails clearly without a pool; off uses small pages.
 */
#ifndef MOWS_CACHE_SLAB_H
#define MOWS_CACHE_SLAB_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

enum cache_slab_kind { SLAB_HUGETLB, SLAB_THP, SLAB_SMALL };

struct cache_slab {
	unsigned char *base;
	size_t map_len;        /* bytes mapped (rounded up to the page size used) */
	size_t slot_size;
	uint32_t nslots;
	int fd;                /* memfd for hugetlb, else -1 */
	enum cache_slab_kind kind;
};

/*
 * Maps a slab of @size bytes cut into slots of @slot_size (a power of two; @size is rounded
 * down to whole slots). Returns 0, or -errno with a message in @err. Logs one line saying
 * which memory it got. Call from one thread before sharing the slab.
 */
int cache_slab_init(struct cache_slab *s, uint64_t size, uint64_t slot_size,
		    enum config_hugepages mode, char *err, size_t errlen);

/* Unmaps the slab. Safe on a zeroed or already released slab. */
void cache_slab_release(struct cache_slab *s);

/* "hugetlb", "thp" or "off". */
const char *cache_slab_kind_name(enum cache_slab_kind kind);

static inline void *cache_slab_slot(const struct cache_slab *s, uint32_t slot)
{
	return s->base + (size_t)slot * s->slot_size;
}

#endif
