#include "cache/slab.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/memfd.h>

#include "common/log.h"

#define HUGE_2M (2u << 20)

/* A counter of the 2 MiB hugepage pool, 0 when unreadable. */
static unsigned long pool_pages(const char *name)
{
	char path[128];
	unsigned long v = 0;
	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-2048kB/%s", name);
	FILE *fp = fopen(path, "r");
	if (fp) {
		if (fscanf(fp, "%lu", &v) != 1)
			v = 0;
		fclose(fp);
	}
	return v;
}

static size_t round_up(size_t v, size_t to)
{
	return (v + to - 1) / to * to;
}

/*
 * hugetlb pages are reserved at mmap time, so a pool too small fails here, not at a fault;
 * they are zeroed and taken from the pool only as the cache touches them.
 */
static int map_hugetlb(struct cache_slab *s, size_t len)
{
	int fd = memfd_create("mows-slab", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) < 0)
		goto out_close;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto out_close;
	s->base = p;
	s->map_len = len;
	s->fd = fd;
	s->kind = SLAB_HUGETLB;
	return 0;
out_close:;
	int rc = -errno;
	close(fd);
	return rc;
}

static int map_anon(struct cache_slab *s, size_t len, bool thp)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* THP madvise failing only costs speed, so it is not an error. */
	madvise(p, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	s->base = p;
	s->map_len = len;
	s->fd = -1;
	s->kind = thp ? SLAB_THP : SLAB_SMALL;
	return 0;
}

int cache_slab_init(struct cache_slab *s, uint64_t size, uint64_t slot_size,
		    enum config_hugepages mode, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->slot_size = slot_size;
	s->nslots = (uint32_t)(size / slot_size);
	if (s->nslots == 0) {
		snprintf(err, errlen, "max_memory %llu is smaller than one chunk (%llu)",
			 (unsigned long long)size, (unsigned long long)slot_size);
		return -EINVAL;
	}
	size_t len = round_up((size_t)s->nslots * slot_size, HUGE_2M);
	int rc = -EINVAL;
	if (mode != HUGEPAGES_OFF) {
		rc = map_hugetlb(s, len);
		if (rc == 0) {
			log_info("cache: %zu MiB in hugetlb pages (memfd)", len >> 20);
			return 0;
		}
		if (mode == HUGEPAGES_ON) {
			unsigned long total = pool_pages("nr_hugepages");
			unsigned long avail = pool_pages("free_hugepages") -
					      pool_pages("resv_hugepages");
			snprintf(err, errlen,
				 "hugepages = on: cannot get %zu MiB of 2 MiB hugetlb pages (%s; %lu "
				 "pages free); grow the pool (sysctl vm.nr_hugepages=%lu) or set "
				 "hugepages = auto", len >> 20, strerror(-rc), avail,
				 total + len / HUGE_2M - (avail < len / HUGE_2M ? avail : 0));
			return rc;
		}
	}
	rc = map_anon(s, len, mode == HUGEPAGES_AUTO);
	if (rc) {
		snprintf(err, errlen, "cannot map %zu MiB for the cache: %s", len >> 20,
			 strerror(-rc));
		return rc;
	}
	if (s->kind == SLAB_THP)
		log_info("cache: %zu MiB in transparent huge pages (hugetlb pool too small)",
			 len >> 20);
	else
		log_info("cache: %zu MiB in small pages (hugepages = off)", len >> 20);
	return 0;
}

void cache_slab_release(struct cache_slab *s)
{
	if (!s->base)
		return; /* zeroed or already released: nothing of ours to close */
	munmap(s->base, s->map_len);
	if (s->fd >= 0)
		close(s->fd);
	s->base = NULL;
	s->fd = -1;
}

const char *cache_slab_kind_name(enum cache_slab_kind kind)
{
	switch (kind) {
	case SLAB_HUGETLB: return "hugetlb";
	case SLAB_THP: return "thp";
	default: return "off";
	}
}
