#include "cache/backing.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "cache/tree.h"
#include "common/log.h"

/* Bytes of a relayed storage read between progress reports (backing_read()). */
#define BACKING_RELAY_PIECE (256u << 10)

/* pread() until @len bytes are in, riding out EINTR and short reads. */
static int pread_full(int fd, void *dst, size_t len, uint64_t off, const struct deadline *dl)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, (char *)dst + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ESTALE; /* the file shrank under us */
		got += (size_t)n;
		if (deadline_passed(dl))
			return -ETIMEDOUT;
	}
	return 0;
}

/*
 * Test-only fault, MOWS_TEST_FLIP=RELPATH:OFFSET: this node's storage returns byte OFFSET
 * of RELPATH with its lowest bit flipped, every time it is read (a bad disk or cache).
 */
static void test_flip(struct cache_file *f, uint64_t off, void *dst, size_t len)
{
	const char *spec = getenv("MOWS_TEST_FLIP");
	const char *colon = spec ? strrchr(spec, ':') : NULL;
	const char *rel = cache_file_relpath(f);
	if (!colon || (size_t)(colon - spec) != strlen(rel) || strncmp(spec, rel, strlen(rel)))
		return;
	uint64_t at = strtoull(colon + 1, NULL, 10);
	if (at < off || at >= off + len)
		return;
	((unsigned char *)dst)[at - off] ^= 1;
	log_warn("MOWS_TEST_FLIP: flipped a bit of byte %" PRIu64 " of %s as it was read", at,
		 rel);
}

/*
 * Reads @len bytes at @off into @dst. When the fill knows the CRC the bytes must have, reads
 * them in BACKING_RELAY_PIECE pieces and reports each on the fill's relay, so that the peers
 * that asked this node (the chunk's owner) for it get its bytes while storage still sends
 * them, chunk after chunk down a chain of nodes, instead of once the whole chunk is here. The
 * cache checks the CRC before a relayer sends the last byte (cache_relay_done()).
 */
static int backing_read(int fd, struct cache_file *f, void *dst, size_t len, uint64_t off,
			const struct deadline *dl, struct cache_fetch *out)
{
	if (!out->relay || !out->expect_known) {
		int rc = pread_full(fd, dst, len, off, dl);
		if (rc == 0)
			test_flip(f, off, dst, len);
		return rc;
	}
	cache_relay_announce(out->relay, out->expect);
	for (size_t got = 0; got < len;) {
		size_t n = len - got < BACKING_RELAY_PIECE ? len - got : BACKING_RELAY_PIECE;
		int rc = pread_full(fd, (char *)dst + got, n, off + got, dl);
		if (rc)
			return rc;
		test_flip(f, off + got, (char *)dst + got, n);
		got += n;
		cache_relay_progress(out->relay, (uint32_t)got);
	}
	return 0;
}

static int backing_fetch(void *ctx, struct cache_file *f, uint64_t chunk, void *dst, size_t len,
			 const struct deadline *dl, struct cache_fetch *out)
{
	/* The cache computes the CRC of what we read. */
	struct cache_tree *t = ctx;
	struct stat st;
	uint64_t off = chunk * cache_chunk_size(cache_tree_cache(t));
	int fd = cache_tree_fd_get(t, f);
	int rc = fd < 0 ? fd : backing_read(fd, f, dst, len, off, dl, out);
	/* The chunk now lives in the slab: keep no second copy in the backing's page cache. */
	if (rc == 0)
		posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
	if (rc == 0 && fstat(fd, &st) < 0)
		rc = -errno;
	if (rc == 0)
		cache_tree_identity(t, cache_file_relpath(f), &st);
	if (rc == 0 && !cache_file_same(f, st.st_dev, st.st_ino, (uint64_t)st.st_size,
					(int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec))
		rc = -ESTALE;
	if (fd >= 0)
		cache_tree_fd_put(t, fd);
	if (rc == -ESTALE) /* the snapshot is behind the store: new opens get the new file */
		cache_tree_meta_kick(t);
	if (rc && rc != -ESTALE) /* the cache reports a changed file, once per version */
		log_err("backing read of %s chunk %" PRIu64 " failed: %s", cache_file_relpath(f),
			chunk, strerror(-rc));
	return rc;
}

/* A completed file needs its descriptor no more: a FUSE store drops its temporary copy. */
static void backing_complete(void *ctx, struct cache_file *f)
{
	cache_tree_fd_release(ctx, f);
}

const struct cache_source_ops cache_backing_source = {
	.name = "backing",
	.fetch = backing_fetch,
	.complete = backing_complete,
};
