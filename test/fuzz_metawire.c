/*
 * libFuzzer target for the wire form of a metadata snapshot (cache/meta.h), the bytes a
 * peer sends for its tree: any input decodes or is refused without reading outside it, and
 * every snapshot accepted encodes back to exactly the input (one form per snapshot), with
 * every name found again where it was. Build and run with test/fuzz.sh.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/meta.h"
#include "cache/tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/* cache/meta.c's listing side, never reached by decoding. */
int cache_tree_open(struct cache_tree *t, const char *relpath, enum cache_tree_open_mode mode,
		    struct stat *st)
{
	(void)t, (void)relpath, (void)mode, (void)st;
	abort();
}

int cache_tree_root_fd(const struct cache_tree *t)
{
	(void)t;
	abort();
}

void cache_tree_identity(const struct cache_tree *t, const char *relpath, struct stat *st)
{
	(void)t, (void)relpath, (void)st;
	abort();
}

static void fix(void *ctx, const char *relpath, struct stat *st)
{
	(void)ctx;
	st->st_ino = strlen(relpath) + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[128];
	struct cache_meta *m = cache_meta_decode(data, size, fix, NULL, err, sizeof(err));
	if (!m) {
		CHECK(errno == EPROTO || errno == ENOMEM);
		return 0;
	}
	uint8_t *again;
	size_t len;
	CHECK(cache_meta_encode(m, &again, &len) == 0);
	CHECK(len == size && memcmp(again, data, size) == 0);
	free(again);
	for (uint64_t i = 0; i < cache_meta_count(m) && i < 64; i++) {
		char *rel = cache_meta_relpath(m, i);
		CHECK(rel);
		CHECK(cache_meta_find(m, rel) == (int64_t)i);
		CHECK(cache_meta_stat(m, i)->st_ino == strlen(rel) + 1);
		free(rel);
	}
	cache_meta_put(m);
	return 0;
}
