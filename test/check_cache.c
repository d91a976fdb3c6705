/*
 * The chunk cache against a fake fill source whose bytes are a pure function of (file
 * identity, offset), so every byte a reader gets can be checked. The source counts fetches
 * per (file, chunk) and can sleep, fail, block until released, or return different bytes.
 *
 * Each test runs in its own forked child (CK_FORK), so the fake's globals start clean and a
 * crash in a fill thread fails only that test.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "common/config.h"
#include "common/crc.h"
#include "common/deadline.h"
#include "common/log.h"

#define CHUNK (64u * 1024)
#define SLOTS 16u
#define MAX_FILES 8
#define MAX_CHUNKS 320
#define MAX_SPANS 64

/* ---- deterministic bytes ---- */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Byte @off of the file with @seed is byte (off % 8) of a word keyed by seed and off / 8. */
static void gen_bytes(uint64_t seed, uint64_t off, void *dst, size_t len)
{
	unsigned char *p = dst;
	size_t k = 0;

	while (k < len) {
		uint64_t o = off + k;
		uint64_t w = mix64(seed ^ mix64(o >> 3));

		for (unsigned b = o & 7; b < 8 && k < len; b++, k++)
			p[k] = (unsigned char)(w >> (8 * b));
	}
}

/* ---- the fake fill source ---- */

struct fake_file {
	char relpath[64];
	dev_t dev;
	ino_t ino;
	uint64_t size;
	int64_t mtime_ns;
	uint64_t seed;
};

struct fake {
	pthread_mutex_t lock;
	pthread_cond_t cond;                       /* a block was lifted */
	struct fake_file files[MAX_FILES];         /* protected by lock */
	int nfiles;                                /* protected by lock */
	atomic_uint fetches[MAX_FILES][MAX_CHUNKS];
	atomic_uint done[MAX_FILES][MAX_CHUNKS];   /* fetches that returned */
	atomic_bool fail[MAX_FILES][MAX_CHUNKS];
	atomic_bool block[MAX_FILES][MAX_CHUNKS];  /* written under lock when lifted */
	atomic_bool corrupt[MAX_FILES][MAX_CHUNKS];
	atomic_bool stale[MAX_FILES][MAX_CHUNKS];  /* answer -ESTALE: the file changed */
	atomic_uint total;
	atomic_uint unknown;                       /* fetches for a file we never added */
	atomic_int nblocked;
	atomic_uint sleep_us;
	atomic_uint invalidates;
	atomic_uint remote_calls;                  /* fetches that may ask a node to fill */
	atomic_uint remote_probes;                 /* probe_only fetches (an owner fill) */
	atomic_bool remote_ok;
	atomic_ullong last_cookie;
	atomic_bool rcorrupt[MAX_FILES][MAX_CHUNKS]; /* the peer flips a bit in this chunk */
	atomic_uint charges;                         /* remote_charge calls */
	atomic_uint charged_origin, charged_chunk;   /* of the latest */
	atomic_uint charged_sent, charged_good;
};

static struct fake fk;

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* Adds an identity the fake can serve; returns its index. */
static int fake_add(const char *relpath, ino_t ino, uint64_t size, int64_t mtime_ns)
{
	pthread_mutex_lock(&fk.lock);
	int i = fk.nfiles++;
	ck_assert_int_lt(i, MAX_FILES);
	struct fake_file *ff = &fk.files[i];
	snprintf(ff->relpath, sizeof(ff->relpath), "%s", relpath);
	ff->dev = 7;
	ff->ino = ino;
	ff->size = size;
	ff->mtime_ns = mtime_ns;
	ff->seed = mix64(str_hash(relpath) ^ mix64((uint64_t)ino) ^ mix64((uint64_t)mtime_ns));
	pthread_mutex_unlock(&fk.lock);
	return i;
}

static struct fake_file fake_file(int i)
{
	pthread_mutex_lock(&fk.lock);
	struct fake_file ff = fk.files[i];
	pthread_mutex_unlock(&fk.lock);
	return ff;
}

static int fake_find(struct cache_file *f)
{
	int found = -1;

	pthread_mutex_lock(&fk.lock);
	for (int i = 0; i < fk.nfiles && found < 0; i++) {
		struct fake_file *ff = &fk.files[i];
		if (cache_file_same(f, ff->dev, ff->ino, ff->size, ff->mtime_ns) &&
		    strcmp(cache_file_relpath(f), ff->relpath) == 0)
			found = i;
	}
	pthread_mutex_unlock(&fk.lock);
	return found;
}

static void fake_release(int i, uint64_t chunk)
{
	pthread_mutex_lock(&fk.lock);
	atomic_store(&fk.block[i][chunk], false);
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.lock);
}

static void fake_release_all(void)
{
	pthread_mutex_lock(&fk.lock);
	for (int i = 0; i < MAX_FILES; i++)
		for (int k = 0; k < MAX_CHUNKS; k++)
			atomic_store(&fk.block[i][k], false);
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.lock);
}

static int fake_fetch(void *ctx, struct cache_file *f, uint64_t chunk, void *dst, size_t len,
		      const struct deadline *dl, struct cache_fetch *out)
{
	(void)ctx;
	(void)dl; /* a blocked fetch ignores its deadline on purpose: the cache must not */
	(void)out;
	int i = fake_find(f);

	atomic_fetch_add(&fk.total, 1);
	if (i < 0 || chunk >= MAX_CHUNKS) {
		atomic_fetch_add(&fk.unknown, 1);
		return -ENOENT;
	}
	struct fake_file ff = fake_file(i);
	atomic_fetch_add(&fk.fetches[i][chunk], 1);
	if (chunk * CHUNK + len > ff.size || (len != CHUNK && chunk * CHUNK + len != ff.size))
		atomic_fetch_add(&fk.unknown, 1); /* a length the cache should never ask for */
	unsigned us = atomic_load(&fk.sleep_us);
	if (us)
		usleep(us);
	if (atomic_load(&fk.block[i][chunk])) {
		pthread_mutex_lock(&fk.lock);
		atomic_fetch_add(&fk.nblocked, 1);
		while (atomic_load(&fk.block[i][chunk]))
			pthread_cond_wait(&fk.cond, &fk.lock);
		atomic_fetch_sub(&fk.nblocked, 1);
		pthread_mutex_unlock(&fk.lock);
	}
	int rc = 0;
	if (atomic_load(&fk.fail[i][chunk])) {
		rc = -EIO;
	} else if (atomic_load(&fk.stale[i][chunk])) {
		rc = -ESTALE;
	} else {
		gen_bytes(ff.seed, chunk * CHUNK, dst, len);
		if (atomic_load(&fk.corrupt[i][chunk]))
			((unsigned char *)dst)[len / 2] ^= 0x40;
	}
	atomic_fetch_add(&fk.done[i][chunk], 1);
	return rc;
}

static const struct cache_source_ops fake_ops = {
	.name = "fake",
	.fetch = fake_fetch,
};

/* A peer: fails unless remote_ok, then serves the same bytes and vouches for their CRC. */
static int remote_fetch(void *ctx, struct cache_file *f, uint64_t chunk, void *dst, size_t len,
			const struct deadline *dl, struct cache_fetch *out)
{
	if (out->probe_only) { /* ask nodes that hold it: none here */
		atomic_fetch_add(&fk.remote_probes, 1);
		return -ENOENT;
	}
	atomic_fetch_add(&fk.remote_calls, 1);
	if (!atomic_load(&fk.remote_ok))
		return -EHOSTUNREACH;
	int rc = fake_fetch(ctx, f, chunk, dst, len, dl, out);
	int i = fake_find(f);
	if (rc == 0 && i >= 0 && atomic_load(&fk.rcorrupt[i][chunk]))
		((unsigned char *)dst)[len / 3] ^= 0x01; /* its storage was bad: the CRC agrees */
	if (rc == 0) {
		out->crc = mows_crc32(0, dst, len);
		out->crc_known = true;
		out->origin = 7;
	}
	return rc;
}

static void remote_charge(void *ctx, uint32_t origin, struct cache_file *f, uint64_t chunk,
			  uint32_t sent, uint32_t good)
{
	(void)ctx;
	(void)f;
	atomic_store(&fk.charged_origin, origin);
	atomic_store(&fk.charged_chunk, (unsigned)chunk);
	atomic_store(&fk.charged_sent, sent);
	atomic_store(&fk.charged_good, good);
	atomic_fetch_add(&fk.charges, 1);
}

static const struct cache_source_ops remote_ops = {
	.name = "remote",
	.remote = true,
	.fetch = remote_fetch,
	.charge = remote_charge,
};

static void on_invalidate(void *ctx, uint64_t cookie)
{
	(void)ctx;
	atomic_store(&fk.last_cookie, cookie);
	atomic_fetch_add(&fk.invalidates, 1);
}

static void setup(void)
{
	memset(&fk, 0, sizeof(fk));
	pthread_mutex_init(&fk.lock, NULL);
	pthread_cond_init(&fk.cond, NULL);
	log_set_level(getenv("MOWS_TEST_LOG") ? LOG_DEBUG : LOG_CRIT);
}

static void teardown(void)
{
	fake_release_all();
}

/* ---- helpers ---- */

struct opts {
	unsigned slots;
	enum config_verify verify;
	unsigned timeout_ms;
	unsigned readahead;
	bool remote_first;  /* register the remote source before the local one */
	bool relay_first;   /* register the relaying remote source before the local one */
};

/* Second pass of the suite: chunks in files on a tmpfs of the cache's own (cache/store.h). */
static char store_dir[64];

/*
 * A peer that relays: announces the chunk's CRC, lands the first half and reports it, waits
 * while the chunk is blocked (fake_release), then fails (fk.fail) or lands the rest.
 */
static int relay_fetch(void *ctx, struct cache_file *f, uint64_t chunk, void *dst, size_t len,
		       const struct deadline *dl, struct cache_fetch *out)
{
	(void)ctx;
	(void)dl;
	int i = fake_find(f);
	if (i < 0 || out->probe_only)
		return -ENOENT;
	struct fake_file ff = fake_file(i);
	gen_bytes(ff.seed, chunk * CHUNK, dst, len);
	uint32_t crc = mows_crc32(0, dst, len);
	cache_relay_announce(out->relay, crc);
	cache_relay_progress(out->relay, (uint32_t)len / 2);
	pthread_mutex_lock(&fk.lock);
	while (atomic_load(&fk.block[i][chunk]))
		pthread_cond_wait(&fk.cond, &fk.lock);
	pthread_mutex_unlock(&fk.lock);
	if (atomic_load(&fk.fail[i][chunk]))
		return -EIO;
	cache_relay_progress(out->relay, (uint32_t)len);
	out->crc = crc;
	out->crc_known = true;
	out->origin = 9;
	return 0;
}

static const struct cache_source_ops relay_ops = {
	.name = "relay",
	.remote = true,
	.fetch = relay_fetch,
};

static struct cache *cache_make(struct opts o)
{
	struct mows_config cfg;
	char err[512];

	config_defaults(&cfg);
	cfg.chunk_size = CHUNK;
	cfg.max_memory = (uint64_t)(o.slots ? o.slots : SLOTS) * CHUNK;
	cfg.hugepages = HUGEPAGES_OFF;
	cfg.fill_threads = 4;
	cfg.fill_timeout_ms = o.timeout_ms ? o.timeout_ms : 5000;
	cfg.readahead_chunks = o.readahead;
	cfg.verify = o.verify;
	if (store_dir[0]) {
		cfg.cache_store = STORE_FILES;
		snprintf(cfg.cache_dir, sizeof(cfg.cache_dir), "%s", store_dir);
	}
	struct cache *c = cache_new(&cfg, err, sizeof(err));
	ck_assert_msg(c != NULL, "cache_new: %s", err);
	if (o.remote_first)
		ck_assert_int_eq(cache_add_source(c, &remote_ops, &fk), 0);
	if (o.relay_first)
		ck_assert_int_eq(cache_add_source(c, &relay_ops, &fk), 0);
	ck_assert_int_eq(cache_add_source(c, &fake_ops, &fk), 0);
	struct cache_events ev = { .invalidate = on_invalidate, .ctx = &fk };
	cache_set_events(c, &ev);
	ck_assert_int_eq(cache_start(c), 0);
	return c;
}

static struct cache_file *open_ver(struct cache *c, int i, bool has_crc, uint32_t crc,
				   uint64_t cookie, bool *replaced)
{
	struct fake_file ff = fake_file(i);
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	struct cache_file_info info = {
		.relpath = ff.relpath, .fd = fd, .dev = ff.dev, .ino = ff.ino, .size = ff.size,
		.mtime_ns = ff.mtime_ns, .has_crc = has_crc, .crc = crc, .cookie = cookie,
		.key = ff.seed,
	};
	bool dummy;
	struct cache_file *f = cache_file_open(c, &info, replaced ? replaced : &dummy);
	ck_assert_ptr_nonnull(f);
	return f;
}

static struct cache_file *open_plain(struct cache *c, int i)
{
	return open_ver(c, i, false, 0, 100 + (uint64_t)i, NULL);
}

static uint32_t file_crc(int i)
{
	struct fake_file ff = fake_file(i);
	unsigned char *buf = malloc(CHUNK);
	uint32_t crc = 0;

	ck_assert_ptr_nonnull(buf);
	for (uint64_t off = 0; off < ff.size; off += CHUNK) {
		size_t n = ff.size - off < CHUNK ? (size_t)(ff.size - off) : CHUNK;
		gen_bytes(ff.seed, off, buf, n);
		crc = mows_crc32(crc, buf, n);
	}
	free(buf);
	return crc;
}

/*
 * Checks that @n spans are exactly bytes [@off, @off + @total) of fake file @i and cover one
 * chunk each. Returns 0, or a description of the first difference in @why.
 */
static int spans_check(int i, uint64_t off, ssize_t total, const struct cache_span *spans,
		       unsigned n, char *why, size_t whylen)
{
	struct fake_file ff = fake_file(i);
	uint64_t pos = off;
	unsigned char *want = malloc(CHUNK);

	if (!want)
		return -ENOMEM;
	for (unsigned k = 0; k < n; k++) {
		uint64_t chunk_end = (pos / CHUNK + 1) * CHUNK;
		if (spans[k].len == 0 || pos + spans[k].len > chunk_end) {
			snprintf(why, whylen, "span %u at %llu has length %zu (chunk ends at %llu)",
				 k, (unsigned long long)pos, spans[k].len,
				 (unsigned long long)chunk_end);
			free(want);
			return -1;
		}
		gen_bytes(ff.seed, pos, want, spans[k].len);
		if (memcmp(spans[k].data, want, spans[k].len) != 0) {
			size_t b = 0;
			while (((const unsigned char *)spans[k].data)[b] == want[b])
				b++;
			snprintf(why, whylen, "%s: wrong byte at offset %llu (span %u)",
				 ff.relpath, (unsigned long long)(pos + b), k);
			free(want);
			return -1;
		}
		pos += spans[k].len;
	}
	free(want);
	if (pos - off != (uint64_t)total) {
		snprintf(why, whylen, "spans cover %llu bytes, cache_read returned %zd",
			 (unsigned long long)(pos - off), total);
		return -1;
	}
	return 0;
}

static uint64_t expect_len(int i, uint64_t off, size_t len)
{
	uint64_t size = fake_file(i).size;

	if (off >= size)
		return 0;
	return size - off < len ? size - off : len;
}

/* Reads, checks every byte against the generator and unpins. Returns cache_read's result. */
static ssize_t read_check(struct cache *c, struct cache_file *f, int i, uint64_t off,
			  size_t len)
{
	struct cache_span spans[MAX_SPANS];
	unsigned n = 99;
	char why[256];
	ssize_t got = cache_read(c, f, off, len, false, spans, MAX_SPANS, &n);

	if (got < 0) {
		ck_assert_msg(n == 0, "read(%llu, %zu) returned %zd but set %u spans",
			      (unsigned long long)off, len, got, n);
		return got;
	}
	ck_assert_msg((uint64_t)got == expect_len(i, off, len),
		      "read(%llu, %zu) of size %llu returned %zd",
		      (unsigned long long)off, len, (unsigned long long)fake_file(i).size, got);
	ck_assert_msg(spans_check(i, off, got, spans, n, why, sizeof(why)) == 0,
		      "read(%llu, %zu): %s", (unsigned long long)off, len, why);
	if (got == 0)
		ck_assert_uint_eq(n, 0);
	cache_read_done(c, spans, n);
	return got;
}

static void read_all_ok(struct cache *c, struct cache_file *f, int i)
{
	uint64_t size = fake_file(i).size;

	for (uint64_t off = 0; off < size; off += CHUNK)
		ck_assert_int_eq(read_check(c, f, i, off, CHUNK), (ssize_t)expect_len(i, off, CHUNK));
}

static enum cache_file_state state_of(struct cache *c, struct cache_file *f)
{
	struct cache_file_status st;

	cache_file_get_status(c, f, &st);
	return st.state;
}

/* Plain reads of the fake's counters, for readable assertion messages. */
static unsigned ld(atomic_uint *v)
{
	return atomic_load(v);
}

static unsigned long long ld64(atomic_ullong *v)
{
	return atomic_load(v);
}

static int64_t ms_since(uint64_t t0)
{
	return (int64_t)((mono_ns() - t0) / 1000000);
}

/* Waits up to @ms for *@v to reach at least @want. */
static bool wait_uint(atomic_uint *v, unsigned want, int ms)
{
	uint64_t t0 = mono_ns();

	while (atomic_load(v) < want) {
		if (ms_since(t0) > ms)
			return false;
		usleep(1000);
	}
	return true;
}

static bool wait_blocked(int want, int ms)
{
	uint64_t t0 = mono_ns();

	while (atomic_load(&fk.nblocked) < want) {
		if (ms_since(t0) > ms)
			return false;
		usleep(1000);
	}
	return true;
}

static uint64_t rnd(uint64_t *s)
{
	*s = mix64(*s);
	return *s;
}

/* A reader on its own thread, for reads that block. */
struct bg_read {
	pthread_t t;
	struct cache *c;
	struct cache_file *f;
	int i;
	uint64_t off;
	size_t len;
	ssize_t rc;
	int64_t ms;
	bool bad_bytes;
	char why[256];
};

static void *bg_read_main(void *arg)
{
	struct bg_read *r = arg;
	struct cache_span spans[MAX_SPANS];
	unsigned n = 0;
	uint64_t t0 = mono_ns();

	r->rc = cache_read(r->c, r->f, r->off, r->len, false, spans, MAX_SPANS, &n);
	r->ms = ms_since(t0);
	if (r->rc >= 0) {
		r->bad_bytes = spans_check(r->i, r->off, r->rc, spans, n, r->why,
					   sizeof(r->why)) != 0;
		cache_read_done(r->c, spans, n);
	}
	return NULL;
}

static void bg_start(struct bg_read *r, struct cache *c, struct cache_file *f, int i,
		     uint64_t off, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->c = c;
	r->f = f;
	r->i = i;
	r->off = off;
	r->len = len;
	ck_assert_int_eq(pthread_create(&r->t, NULL, bg_read_main, r), 0);
}

/* ---- chunk index ---- */

START_TEST(test_index_offsets)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	int a = fake_add("a.bin", 11, 5 * CHUNK + 123, 1000);
	int b = fake_add("dir/b.bin", 12, CHUNK, 1000);
	int d = fake_add("tiny", 13, 1000, 1000);
	struct cache_file *fa = open_plain(c, a), *fb = open_plain(c, b), *fd = open_plain(c, d);
	struct { struct cache_file *f; int i; } files[] = { { fa, a }, { fb, b }, { fd, d } };
	const uint64_t offs[] = { 0, 1, 7, 8, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 7,
				  3 * CHUNK + 5, 5 * CHUNK - 1, 5 * CHUNK, 5 * CHUNK + 122,
				  5 * CHUNK + 123, 5 * CHUNK + 124, 999, 1000, 6 * CHUNK, 1ull << 40 };
	const size_t lens[] = { 0, 1, 2, 9, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK,
				3 * CHUNK + 5, 5 * CHUNK + 123, 64 * CHUNK };

	for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++)
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
			for (size_t k = 0; k < 3; k++)
				read_check(c, files[k].f, files[k].i, offs[o], lens[l]);

	uint64_t s = 42;
	for (int r = 0; r < 2000; r++) {
		size_t k = rnd(&s) % 3;
		uint64_t size = fake_file(files[k].i).size;
		uint64_t off = rnd(&s) % (size + 10);
		size_t len = (size_t)(rnd(&s) % (3 * CHUNK));
		ck_assert_int_ge(read_check(c, files[k].f, files[k].i, off, len), 0);
	}
	/* Each chunk was filled once: everything fits, so nothing was evicted. */
	for (size_t k = 0; k < 3; k++) {
		uint64_t nch = (fake_file(files[k].i).size + CHUNK - 1) / CHUNK;
		for (uint64_t ch = 0; ch < nch; ch++)
			ck_assert_uint_eq(ld(&fk.fetches[files[k].i][ch]), 1);
	}
	ck_assert_uint_eq(ld(&fk.unknown), 0);

	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_eq(st.evictions, 0);
	ck_assert_uint_eq(st.fills, 6 + 1 + 1);
	ck_assert_uint_eq(st.fill_errors, 0);
	cache_file_put(c, fa);
	cache_file_put(c, fb);
	cache_file_put(c, fd);
	cache_free(c);
}
END_TEST

/* A range wider than @max spans is refused, and the refusal pins nothing. */
START_TEST(test_index_span_limit)
{
	struct cache *c = cache_make((struct opts){ .timeout_ms = 300 });
	int a = fake_add("a", 1, 40 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct cache_span spans[MAX_SPANS];
	unsigned n = 99;

	ck_assert_int_eq(cache_read(c, f, CHUNK / 2, 2 * CHUNK, false, spans, 2, &n), -EINVAL);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(cache_read(c, f, CHUNK / 2, CHUNK, false, spans, 2, &n), CHUNK);
	ck_assert_uint_eq(n, 2);
	cache_read_done(c, spans, n);
	/* Many single-chunk reads of distinct chunks: leaked pins would starve them. */
	for (int round = 0; round < 3; round++)
		for (uint64_t k = 0; k < 40; k++)
			ck_assert_int_eq(read_check(c, f, a, k * CHUNK + 3, 100), 100);
	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_le(st.used_memory, st.max_memory);
	ck_assert_uint_eq(st.max_memory, (uint64_t)SLOTS * CHUNK);
	ck_assert_uint_gt(st.evictions, 0);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* "clamped to the file's size": a length that overflows off + len is still clamped. */
START_TEST(test_index_huge_length)
{
	struct cache *c = cache_make((struct opts){ 0 });
	int a = fake_add("a", 1, 3 * CHUNK + 10, 1);
	struct cache_file *f = open_plain(c, a);

	ck_assert_int_eq(read_check(c, f, a, 0, SIZE_MAX / 2), 3 * CHUNK + 10);
	ck_assert_int_eq(read_check(c, f, a, 10, SIZE_MAX), 3 * CHUNK);
	ck_assert_int_eq(read_check(c, f, a, UINT64_MAX - 1, 16), 0);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

START_TEST(test_empty_file)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_FILE });
	int a = fake_add("empty", 1, 0, 1);
	int b = fake_add("empty2", 2, 0, 1);
	struct cache_file *f = open_ver(c, a, true, 0, 1, NULL);
	struct cache_file *g = open_ver(c, b, true, 0x1234, 2, NULL);
	struct cache_file_status st;
	uint32_t crc = 7;

	ck_assert_int_eq(read_check(c, f, a, 0, 100), 0);
	cache_file_get_status(c, f, &st);
	ck_assert_uint_eq(st.chunks_total, 0);
	ck_assert_int_eq(st.state, CACHE_FILE_VERIFIED);
	ck_assert_int_eq(cache_file_verify(c, f, &crc), 0);
	ck_assert_uint_eq(crc, 0);
	ck_assert_int_eq(cache_file_prefetch(c, f, NULL, NULL), 0);
	cache_file_get_status(c, g, &st);
	ck_assert_int_eq(st.state, CACHE_FILE_BAD);
	ck_assert_int_eq(cache_file_verify(c, g, &crc), -EBADMSG);
	ck_assert_uint_eq(ld(&fk.total), 0);
	cache_file_put(c, f);
	cache_file_put(c, g);
	cache_free(c);
}
END_TEST

START_TEST(test_stats_counters)
{
	struct cache *c = cache_make((struct opts){ 0 });
	int a = fake_add("a", 1, 4 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct cache_stats st;
	const char *name = NULL;
	uint64_t bytes = 0;

	read_check(c, f, a, 10, 100);
	read_check(c, f, a, 20, 100);
	read_check(c, f, a, CHUNK - 50, 100);
	cache_get_stats(c, &st);
	ck_assert_uint_eq(st.misses, 2);
	ck_assert_uint_eq(st.hits, 2);
	ck_assert_uint_eq(st.bytes_read, 300);
	ck_assert_uint_eq(st.fills, 2);
	ck_assert_uint_eq(st.chunk_size, CHUNK);
	ck_assert_uint_eq(st.slots, SLOTS);
	ck_assert_uint_eq(st.slots_ready, 2);
	ck_assert_uint_eq(st.used_memory, 2 * CHUNK);
	ck_assert_str_eq(st.slab_kind, store_dir[0] ? "files" : "off");
	ck_assert_uint_eq(cache_source_stats(c, 0, &name, &bytes), 1);
	ck_assert_str_eq(name, "fake");
	ck_assert_uint_eq(bytes, 2 * CHUNK);
	ck_assert_uint_eq(cache_chunk_size(c), CHUNK);
	ck_assert_uint_eq(cache_file_size(f), 4 * CHUNK);
	ck_assert_str_eq(cache_file_relpath(f), "a");
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* Resident bytes of this process, from /proc/self/statm. */
static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *fp = fopen("/proc/self/statm", "r");
	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(fscanf(fp, "%lu %lu", &size, &resident), 2);
	fclose(fp);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The slab is faulted in only a bounded lead ahead of the slots in use, not all at start. */
START_TEST(test_memory_taken_as_filled)
{
	const unsigned slots = (1536u << 20) / CHUNK; /* a 1.5 GiB cache */
	uint64_t before = rss_bytes();
	struct cache *c = cache_make((struct opts){ .slots = slots });
	int a = fake_add("a", 1, 8 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);

	usleep(1500 * 1000); /* ample time for a populate thread that ran ahead unbounded */
	uint64_t idle = rss_bytes() - before;
	ck_assert_msg(idle <= (512u << 20), "an idle 1.5 GiB cache holds %llu MiB",
		      (unsigned long long)(idle >> 20));
	read_check(c, f, a, 0, 8 * CHUNK);
	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_eq(st.used_memory, 8 * CHUNK);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* ---- single flight ---- */

struct herd {
	struct cache *c;
	struct cache_file *f;
	int i;
	uint64_t nchunks;
	pthread_barrier_t *bar;
	atomic_uint *errors;
	atomic_uint *reads;
	uint64_t seed;
	char why[256];
};

/* Records the first failure of a reader thread; the main thread asserts. */
static void herd_fail(struct herd *h, const char *why)
{
	if (atomic_fetch_add(h->errors, 1) == 0)
		snprintf(h->why, sizeof(h->why), "%s", why);
}

static void *herd_one_main(void *arg)
{
	struct herd *h = arg;
	struct cache_span spans[MAX_SPANS];
	unsigned n = 0;
	char why[256];

	pthread_barrier_wait(h->bar);
	ssize_t got = cache_read(h->c, h->f, 3 * CHUNK + 100, 5000, false, spans, MAX_SPANS, &n);
	if (got != 5000) {
		snprintf(why, sizeof(why), "cache_read returned %zd", got);
		herd_fail(h, why);
		return NULL;
	}
	if (spans_check(h->i, 3 * CHUNK + 100, got, spans, n, why, sizeof(why)))
		herd_fail(h, why);
	cache_read_done(h->c, spans, n);
	return NULL;
}

START_TEST(test_single_flight_one_chunk)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	int a = fake_add("w", 1, 8 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	pthread_barrier_t bar;
	atomic_uint errors = 0;
	struct herd h[16];
	pthread_t th[16];

	atomic_store(&fk.sleep_us, 50000);
	pthread_barrier_init(&bar, NULL, 16);
	for (int t = 0; t < 16; t++) {
		h[t] = (struct herd){ .c = c, .f = f, .i = a, .bar = &bar, .errors = &errors };
		ck_assert_int_eq(pthread_create(&th[t], NULL, herd_one_main, &h[t]), 0);
	}
	for (int t = 0; t < 16; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < 16; t++)
		ck_assert_msg(h[t].why[0] == 0, "reader %d: %s", t, h[t].why);
	ck_assert_uint_eq(ld(&errors), 0);
	ck_assert_uint_eq(ld(&fk.fetches[a][3]), 1);
	ck_assert_uint_eq(ld(&fk.total), 1);
	pthread_barrier_destroy(&bar);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* Readers in lockstep over a file four times the cache: each chunk is fetched exactly once. */
static void *herd_lockstep_main(void *arg)
{
	struct herd *h = arg;
	struct cache_span spans[MAX_SPANS];
	char why[256];

	for (uint64_t k = 0; k < h->nchunks; k++) {
		pthread_barrier_wait(h->bar);
		uint64_t off = k * CHUNK + rnd(&h->seed) % (CHUNK / 2);
		size_t len = 1 + (size_t)(rnd(&h->seed) % (CHUNK / 2));
		unsigned n = 0;
		ssize_t got = cache_read(h->c, h->f, off, len, false, spans, MAX_SPANS, &n);
		atomic_fetch_add(h->reads, 1);
		if (got < 0 || (uint64_t)got != expect_len(h->i, off, len)) {
			snprintf(why, sizeof(why), "read(%llu, %zu) returned %zd",
				 (unsigned long long)off, len, got);
			herd_fail(h, why);
			continue;
		}
		if (spans_check(h->i, off, got, spans, n, why, sizeof(why)))
			herd_fail(h, why);
		cache_read_done(h->c, spans, n);
	}
	return NULL;
}

/* Free-running readers, each over every chunk in its own random order. */
static void *herd_random_main(void *arg)
{
	struct herd *h = arg;
	char why[256];
	uint64_t *order = malloc(h->nchunks * sizeof(*order));

	if (!order)
		return NULL;
	for (uint64_t k = 0; k < h->nchunks; k++)
		order[k] = k;
	for (uint64_t k = h->nchunks - 1; k > 0; k--) {
		uint64_t j = rnd(&h->seed) % (k + 1), t = order[k];
		order[k] = order[j];
		order[j] = t;
	}
	pthread_barrier_wait(h->bar);
	for (uint64_t k = 0; k < h->nchunks; k++) {
		struct cache_span spans[MAX_SPANS];
		uint64_t off = order[k] * CHUNK;
		unsigned n = 0;
		ssize_t got = cache_read(h->c, h->f, off, CHUNK, false, spans, MAX_SPANS, &n);
		atomic_fetch_add(h->reads, 1);
		if (got < 0 || (uint64_t)got != expect_len(h->i, off, CHUNK)) {
			snprintf(why, sizeof(why), "read(%llu) returned %zd",
				 (unsigned long long)off, got);
			herd_fail(h, why);
			continue;
		}
		if (spans_check(h->i, off, got, spans, n, why, sizeof(why)))
			herd_fail(h, why);
		cache_read_done(h->c, spans, n);
	}
	free(order);
	return NULL;
}

static void run_herd(struct cache *c, struct cache_file *f, int i, uint64_t nchunks,
		     void *(*fn)(void *), unsigned nthreads, unsigned *reads)
{
	pthread_barrier_t bar;
	atomic_uint errors = 0, nreads = 0;
	struct herd h[8];
	pthread_t t[8];

	pthread_barrier_init(&bar, NULL, nthreads);
	for (unsigned k = 0; k < nthreads; k++) {
		h[k] = (struct herd){ .c = c, .f = f, .i = i, .nchunks = nchunks, .bar = &bar,
				      .errors = &errors, .reads = &nreads, .seed = 77 + k };
		ck_assert_int_eq(pthread_create(&t[k], NULL, fn, &h[k]), 0);
	}
	for (unsigned k = 0; k < nthreads; k++)
		pthread_join(t[k], NULL);
	pthread_barrier_destroy(&bar);
	for (unsigned k = 0; k < nthreads; k++)
		ck_assert_msg(h[k].why[0] == 0, "reader %u: %s", k, h[k].why);
	ck_assert_uint_eq(ld(&errors), 0);
	*reads = atomic_load(&nreads);
}

START_TEST(test_single_flight_many_chunks)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	const uint64_t nchunks = 4 * SLOTS;
	int a = fake_add("big", 1, nchunks * CHUNK - 1000, 1);
	struct cache_file *f = open_plain(c, a);
	unsigned reads = 0;

	atomic_store(&fk.sleep_us, 2000);
	run_herd(c, f, a, nchunks, herd_lockstep_main, 8, &reads);
	ck_assert_uint_eq(reads, 8 * nchunks);
	for (uint64_t k = 0; k < nchunks; k++)
		ck_assert_msg(atomic_load(&fk.fetches[a][k]) == 1, "chunk %llu fetched %u times",
			      (unsigned long long)k, atomic_load(&fk.fetches[a][k]));

	/* Free-running: every read correct; a fetch per chunk read at most, one per chunk at
	 * least, and with the cache a quarter of the file, no more than one per reader and chunk. */
	unsigned before = atomic_load(&fk.total);
	atomic_store(&fk.sleep_us, 500);
	run_herd(c, f, a, nchunks, herd_random_main, 8, &reads);
	unsigned fetched = atomic_load(&fk.total) - before;
	ck_assert_uint_eq(reads, 8 * nchunks);
	ck_assert_uint_le(fetched, reads);
	ck_assert_uint_ge(fetched, nchunks - SLOTS);
	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_eq(st.fills, atomic_load(&fk.total));
	ck_assert_uint_eq(st.fill_errors, 0);
	ck_assert_uint_eq(ld(&fk.unknown), 0);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/*
 * Readers of one chunk that all had to wait for a free slot: when slots come free at once,
 * still one fill.
 */
START_TEST(test_single_flight_under_pressure)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .timeout_ms = 3000 });
	int a = fake_add("pressure", 1, 40 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct cache_span held[SLOTS];
	struct bg_read r[4];
	unsigned n;

	for (unsigned k = 0; k < SLOTS; k++)
		ck_assert_int_eq(cache_read(c, f, k * CHUNK, 10, false, &held[k], 1, &n), 10);
	for (int k = 0; k < 4; k++)
		bg_start(&r[k], c, f, a, 30 * CHUNK + 100 * (uint64_t)k, 50);
	usleep(200 * 1000);
	ck_assert_uint_eq(ld(&fk.fetches[a][30]), 0);
	cache_read_done(c, held, 4);
	for (int k = 0; k < 4; k++) {
		pthread_join(r[k].t, NULL);
		ck_assert_msg(r[k].rc == 50 && !r[k].bad_bytes, "reader %d: %zd %s", k, r[k].rc,
			      r[k].why);
	}
	ck_assert_msg(atomic_load(&fk.fetches[a][30]) == 1,
		      "chunk 30 fetched %u times by 4 readers that waited for a slot",
		      atomic_load(&fk.fetches[a][30]));
	cache_read_done(c, held + 4, SLOTS - 4);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* ---- eviction under many threads ---- */

struct churn {
	struct cache *c;
	struct cache_file *f[2];
	int i[2];
	atomic_bool *stop;
	atomic_uint *errors;
	uint64_t seed;
	unsigned reads;
	char why[256];
};

static void *churn_main(void *arg)
{
	struct churn *w = arg;
	char why[256];

	while (!atomic_load(w->stop)) {
		struct cache_span spans[MAX_SPANS];
		unsigned n = 0, which = rnd(&w->seed) & 1;
		uint64_t size = fake_file(w->i[which]).size;
		uint64_t off = rnd(&w->seed) % size;
		/* At most two chunks per read: 8 readers x 2 pins can never pin all 16 slots
		 * while every reader still waits for a slot. */
		size_t len = 1 + (size_t)(rnd(&w->seed) % (CHUNK + CHUNK / 2));
		if (off % CHUNK + len > 2 * CHUNK)
			len = 2 * CHUNK - off % CHUNK;
		ssize_t got = cache_read(w->c, w->f[which], off, len, rnd(&w->seed) % 4 == 0,
					 spans, MAX_SPANS, &n);
		w->reads++;
		if (got < 0 || (uint64_t)got != expect_len(w->i[which], off, len)) {
			if (atomic_fetch_add(w->errors, 1) == 0)
				snprintf(w->why, sizeof(w->why), "read(%llu, %zu) returned %zd",
					 (unsigned long long)off, len, got);
			continue;
		}
		bool bad = spans_check(w->i[which], off, got, spans, n, why, sizeof(why)) != 0;
		if (!bad) {
			/* Hold the pin while others evict, then look again. */
			usleep((useconds_t)(rnd(&w->seed) % 300));
			bad = spans_check(w->i[which], off, got, spans, n, why, sizeof(why)) != 0;
		}
		if (bad && atomic_fetch_add(w->errors, 1) == 0)
			snprintf(w->why, sizeof(w->why), "%s", why);
		cache_read_done(w->c, spans, n);
	}
	return NULL;
}

struct watch {
	struct cache *c;
	atomic_bool *stop;
	unsigned samples, over, ready_over;
	uint64_t worst;
};

static void *watch_main(void *arg)
{
	struct watch *w = arg;

	while (!atomic_load(w->stop)) {
		struct cache_stats st;
		cache_get_stats(w->c, &st);
		w->samples++;
		if (st.used_memory > st.max_memory) {
			w->over++;
			w->worst = st.used_memory;
		}
		if (st.slots_ready > st.slots)
			w->ready_over++;
		usleep(200);
	}
	return NULL;
}

START_TEST(test_eviction_many_threads)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .readahead = 2 });
	int a = fake_add("big-a", 1, 200 * CHUNK + 777, 1);
	int b = fake_add("big-b", 2, 100 * CHUNK, 1);
	struct cache_file *fa = open_plain(c, a), *fb = open_plain(c, b);
	atomic_bool stop = false;
	atomic_uint errors = 0;
	struct churn w[8];
	pthread_t t[8], wt;
	struct watch wa = { .c = c, .stop = &stop };

	atomic_store(&fk.sleep_us, 100);
	ck_assert_int_eq(pthread_create(&wt, NULL, watch_main, &wa), 0);
	for (int k = 0; k < 8; k++) {
		w[k] = (struct churn){ .c = c, .f = { fa, fb }, .i = { a, b }, .stop = &stop,
				       .errors = &errors, .seed = 1234 + (uint64_t)k };
		ck_assert_int_eq(pthread_create(&t[k], NULL, churn_main, &w[k]), 0);
	}
	usleep(1500 * 1000);
	atomic_store(&stop, true);
	unsigned reads = 0;
	for (int k = 0; k < 8; k++) {
		pthread_join(t[k], NULL);
		reads += w[k].reads;
	}
	pthread_join(wt, NULL);
	for (int k = 0; k < 8; k++)
		ck_assert_msg(w[k].why[0] == 0, "reader %d: %s", k, w[k].why);
	ck_assert_uint_eq(ld(&errors), 0);
	ck_assert_msg(wa.over == 0, "used_memory %llu > max_memory in %u of %u samples",
		      (unsigned long long)wa.worst, wa.over, wa.samples);
	ck_assert_uint_eq(wa.ready_over, 0);
	ck_assert_uint_gt(reads, 100);

	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_gt(st.evictions, 0);
	ck_assert_uint_le(st.used_memory, st.max_memory);
	ck_assert_uint_eq(st.fill_errors, 0);
	ck_assert_uint_eq(ld(&fk.unknown), 0);
	/* Quiet now: every slot not free is ready and unpinned; status agrees with the stats. */
	usleep(100 * 1000);
	cache_get_stats(c, &st);
	struct cache_file_status sa, sb;
	cache_file_get_status(c, fa, &sa);
	cache_file_get_status(c, fb, &sb);
	ck_assert_uint_eq(st.used_memory, (uint64_t)st.slots_ready * CHUNK);
	ck_assert_uint_eq(sa.chunks_cached + sb.chunks_cached, st.slots_ready);
	ck_assert_uint_le(sa.cached_bytes, sa.chunks_cached * CHUNK);
	cache_file_put(c, fa);
	cache_file_put(c, fb);
	cache_free(c);
}
END_TEST

/* ---- pins ---- */

START_TEST(test_pinned_not_evicted)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .timeout_ms = 300 });
	int a = fake_add("p", 1, 40 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct cache_span held[SLOTS][2];
	unsigned nheld[SLOTS];
	char why[256];

	for (unsigned k = 0; k < SLOTS; k++) {
		ck_assert_int_eq(cache_read(c, f, k * CHUNK + 1, 10, false, held[k], 2, &nheld[k]),
				 10);
		ck_assert_uint_eq(nheld[k], 1);
	}
	uint64_t t0 = mono_ns();
	ck_assert_int_eq(read_check(c, f, a, 20 * CHUNK, 10), -EIO);
	int64_t ms = ms_since(t0);
	ck_assert_msg(ms >= 250 && ms < 3000, "gave up after %lld ms (fill_timeout 300)",
		      (long long)ms);
	ck_assert_uint_eq(ld(&fk.fetches[a][20]), 0);
	for (unsigned k = 0; k < SLOTS; k++)
		ck_assert_msg(spans_check(a, k * CHUNK + 1, 10, held[k], 1, why, sizeof(why)) == 0,
			      "pinned chunk %u: %s", k, why);
	/* A hit on a pinned chunk still works with every slot pinned. */
	ck_assert_int_eq(read_check(c, f, a, 5 * CHUNK, 100), 100);

	/* A reader waiting for a slot gets the first one unpinned. */
	struct bg_read r;
	bg_start(&r, c, f, a, 21 * CHUNK, 50);
	usleep(100 * 1000);
	cache_read_done(c, held[0], nheld[0]);
	pthread_join(r.t, NULL);
	ck_assert_msg(r.rc == 50, "waiting reader got %zd after %lld ms", r.rc, (long long)r.ms);
	ck_assert_msg(!r.bad_bytes, "%s", r.why);

	for (unsigned k = 1; k < SLOTS; k++)
		cache_read_done(c, held[k], nheld[k]);
	ck_assert_int_eq(read_check(c, f, a, 20 * CHUNK, 10), 10);
	read_all_ok(c, f, a);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* ---- fill errors and deadlines ---- */

START_TEST(test_fill_error_not_cached)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .timeout_ms = 300 });
	int a = fake_add("e", 1, 40 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);

	atomic_store(&fk.fail[a][2], true);
	ck_assert_int_eq(read_check(c, f, a, 2 * CHUNK + 5, 10), -EIO);
	ck_assert_int_eq(read_check(c, f, a, CHUNK + 5, 2 * CHUNK), -EIO);
	ck_assert_int_eq(read_check(c, f, a, 2 * CHUNK, 3 * CHUNK), -EIO);
	ck_assert_uint_eq(ld(&fk.fetches[a][2]), 3);
	/* Failing multi-chunk reads must not leak pins on the chunks that did fill first. */
	for (int k = 0; k < 5; k++)
		ck_assert_int_eq(read_check(c, f, a, 0, 3 * CHUNK), -EIO);
	ck_assert_uint_eq(ld(&fk.fetches[a][2]), 8);
	struct cache_span held[SLOTS];
	unsigned n;
	for (unsigned k = 0; k < SLOTS; k++) {
		ck_assert_msg(cache_read(c, f, (20 + k) * CHUNK, 1, false, &held[k], 1, &n) == 1,
			      "pin %u of %u failed: pins leaked by failed reads?", k, SLOTS);
	}
	for (unsigned k = 0; k < SLOTS; k++)
		cache_read_done(c, &held[k], 1);

	atomic_store(&fk.fail[a][2], false);
	unsigned before = atomic_load(&fk.fetches[a][2]);
	ck_assert_int_eq(read_check(c, f, a, 2 * CHUNK + 5, 10), 10);
	ck_assert_uint_eq(ld(&fk.fetches[a][2]), before + 1);
	ck_assert_int_eq(read_check(c, f, a, CHUNK + 5, 2 * CHUNK), 2 * CHUNK);

	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_eq(st.fill_errors, 8);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* A source saying the file changed under it (-ESTALE) makes the version stale. */
START_TEST(test_fill_stale)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	int a = fake_add("st", 1, 4 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);

	ck_assert_int_eq(read_check(c, f, a, 0, 10), 10);
	atomic_store(&fk.stale[a][2], true);
	ck_assert_int_eq(read_check(c, f, a, 2 * CHUNK, 10), -EIO);
	ck_assert_int_eq(state_of(c, f), CACHE_FILE_STALE);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

START_TEST(test_fill_deadline)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .timeout_ms = 300 });
	int a = fake_add("d", 1, 10 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct bg_read r;

	atomic_store(&fk.block[a][1], true);
	bg_start(&r, c, f, a, CHUNK + 10, 20);
	ck_assert(wait_blocked(1, 2000));
	uint64_t t0 = mono_ns();
	ck_assert_int_eq(read_check(c, f, a, CHUNK, 5), -EIO);
	int64_t ms = ms_since(t0);
	ck_assert_msg(ms >= 250 && ms < 2500, "second reader gave up after %lld ms", (long long)ms);
	pthread_join(r.t, NULL);
	ck_assert_msg(r.rc == -EIO, "blocked read returned %zd", r.rc);
	ck_assert_msg(r.ms >= 250 && r.ms < 2500, "first reader gave up after %lld ms",
		      (long long)r.ms);
	/* Other chunks still fill while one fill thread is stuck. */
	ck_assert_int_eq(read_check(c, f, a, 0, CHUNK - 1), CHUNK - 1);
	ck_assert_int_eq(read_check(c, f, a, 5 * CHUNK, 100), 100);

	fake_release(a, 1);
	ck_assert(wait_uint(&fk.done[a][1], 1, 2000));
	ck_assert_int_eq(read_check(c, f, a, CHUNK + 10, 20), 20);
	ck_assert_uint_le(ld(&fk.fetches[a][1]), 2);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/*
 * A fill stuck in its source fails every waiter at the fill's own deadline, not each at a
 * deadline of its own; a request after that deadline (the kernel retrying the page) fails
 * at once while the source is still stuck, and starts no second fill.
 */
START_TEST(test_fill_deadline_shared)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .timeout_ms = 400 });
	int a = fake_add("d", 1, 4 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct bg_read r1, r2;

	atomic_store(&fk.block[a][1], true);
	bg_start(&r1, c, f, a, CHUNK + 10, 20);
	ck_assert(wait_blocked(1, 2000));
	usleep(250 * 1000);
	bg_start(&r2, c, f, a, CHUNK + 100, 20);
	pthread_join(r1.t, NULL);
	pthread_join(r2.t, NULL);
	ck_assert_msg(r1.rc == -EIO && r1.ms >= 350 && r1.ms < 1000,
		      "first reader: %zd after %lld ms", r1.rc, (long long)r1.ms);
	ck_assert_msg(r2.rc == -EIO && r2.ms < 300,
		      "a reader that came 250 ms into a 400 ms fill waited %lld ms (%zd): its own "
		      "deadline, not the fill's", (long long)r2.ms, r2.rc);
	uint64_t t0 = mono_ns();
	ck_assert_int_eq(read_check(c, f, a, CHUNK, 5), -EIO);
	int64_t ms = ms_since(t0);
	ck_assert_msg(ms < 100, "a request after the stuck fill's deadline waited %lld ms",
		      (long long)ms);
	ck_assert_uint_eq(ld(&fk.fetches[a][1]), 1);

	fake_release(a, 1);
	ck_assert(wait_uint(&fk.done[a][1], 1, 2000));
	ck_assert_int_eq(read_check(c, f, a, CHUNK + 10, 20), 20);
	ck_assert_uint_le(ld(&fk.fetches[a][1]), 2);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* verify = strict with a stuck chunk: the first read fails at fill_timeout, a retry at once. */
START_TEST(test_verify_strict_stuck)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_STRICT, .timeout_ms = 400 });
	int b = fake_add("good", 2, 4 * CHUNK + 3, 1);
	struct cache_file *fb = open_ver(c, b, true, file_crc(b), 2, NULL);

	atomic_store(&fk.block[b][2], true);
	uint64_t t0 = mono_ns();
	ck_assert_int_eq(read_check(c, fb, b, 100, 10), -EIO);
	int64_t ms = ms_since(t0);
	ck_assert_msg(ms >= 350 && ms < 1000, "first strict read failed after %lld ms",
		      (long long)ms);
	t0 = mono_ns();
	ck_assert_int_eq(read_check(c, fb, b, 100, 10), -EIO);
	ms = ms_since(t0);
	ck_assert_msg(ms < 100, "a strict read retried while the chunk is stuck waited %lld ms",
		      (long long)ms);
	fake_release(b, 2);
	ck_assert(wait_uint(&fk.done[b][2], 1, 2000));
	ck_assert_int_eq(read_check(c, fb, b, 100, 10), 10);
	ck_assert_int_eq(state_of(c, fb), CACHE_FILE_VERIFIED);
	cache_file_put(c, fb);
	cache_free(c);
}
END_TEST

/*
 * A fill whose waiter gave up (deadline) after its chunk was dropped (evicted, or the file
 * replaced) is still running in a fill thread: its slot must not be freed or handed out
 * until that fill returns.
 */
static void abandoned_fill(bool by_new_version, bool reuse)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .timeout_ms = 300 });
	int a = fake_add("x", 1, 40 * CHUNK, 1);
	int a2 = fake_add("x", 1, 40 * CHUNK, 2);
	int b = fake_add("other", 2, 40 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a), *g = open_plain(c, b), *f2 = NULL;
	struct bg_read r;
	struct cache_span held[SLOTS];
	unsigned nheld = 0, n;

	atomic_store(&fk.block[a][0], true);
	bg_start(&r, c, f, a, 0, 100);
	ck_assert(wait_blocked(1, 2000));
	if (by_new_version) {
		bool replaced = false;
		f2 = open_ver(c, a2, false, 0, 5, &replaced);
		ck_assert(replaced);
	} else {
		cache_file_evict(c, f);
	}
	pthread_join(r.t, NULL);
	ck_assert_int_eq(r.rc, -EIO);
	if (reuse) {
		/* Pin every slot the cache will give out: none may be the one still filling. */
		for (unsigned k = 0; k < SLOTS; k++) {
			if (cache_read(c, g, k * CHUNK, CHUNK, false, &held[nheld], 1, &n) != CHUNK)
				break;
			nheld++;
		}
	}
	fake_release(a, 0);
	ck_assert(wait_uint(&fk.done[a][0], 1, 2000));
	usleep(50 * 1000);
	char why[256];
	for (unsigned k = 0; k < nheld; k++)
		ck_assert_msg(spans_check(b, k * CHUNK, CHUNK, &held[k], 1, why, sizeof(why)) == 0,
			      "pinned chunk %u overwritten by an abandoned fill: %s", k, why);
	ck_assert_msg(!reuse || nheld >= SLOTS - 1, "only %u slots could be pinned", nheld);
	cache_read_done(c, held, nheld);
	read_all_ok(c, g, b);
	if (f2)
		read_all_ok(c, f2, a2);
	struct cache_stats st;
	cache_get_stats(c, &st);
	ck_assert_uint_le(st.used_memory, st.max_memory);
	ck_assert_uint_eq(st.used_memory, (uint64_t)st.slots_ready * CHUNK);
	cache_file_put(c, f);
	cache_file_put(c, f2);
	cache_file_put(c, g);
	cache_free(c);
}

START_TEST(test_abandoned_fill_after_evict)
{
	abandoned_fill(false, false);
}
END_TEST

START_TEST(test_abandoned_fill_after_replace)
{
	abandoned_fill(true, false);
}
END_TEST

START_TEST(test_abandoned_fill_slot_reuse)
{
	abandoned_fill(false, true);
}
END_TEST

/* ---- versions ---- */

START_TEST(test_versions)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .timeout_ms = 2000 });
	int va = fake_add("f", 5, 6 * CHUNK + 9, 1000);
	int vb = fake_add("f", 5, 6 * CHUNK + 9, 2000);  /* rewritten in place */
	int vc = fake_add("f", 5, 3 * CHUNK, 2000);      /* then truncated */
	bool replaced = true;
	struct cache_file *fa = open_ver(c, va, false, 0, 1, &replaced);
	struct cache_span held[2];
	unsigned nheld;
	char why[256];

	ck_assert(!replaced);
	read_all_ok(c, fa, va);
	ck_assert_int_eq(cache_read(c, fa, 10, 100, false, held, 2, &nheld), 100);
	/* A fill of the old version still running when the new one arrives. */
	atomic_store(&fk.block[va][4], true);
	struct cache_file *tmp = open_ver(c, va, false, 0, 1, &replaced);
	ck_assert(!replaced);
	ck_assert_ptr_eq(tmp, fa);
	cache_file_put(c, tmp);
	cache_file_evict(c, fa);
	struct bg_read r;
	bg_start(&r, c, fa, va, 4 * CHUNK + 1, 10);
	ck_assert(wait_blocked(1, 2000));

	struct cache_file *fb = open_ver(c, vb, false, 0, 1, &replaced);
	ck_assert(replaced);
	ck_assert_ptr_ne(fb, fa);
	struct cache_file *found = cache_file_find(c, "f");
	ck_assert_ptr_eq(found, fb);
	cache_file_put(c, found);
	struct cache_file_status st;
	cache_file_get_status(c, fa, &st);
	ck_assert_int_eq(st.state, CACHE_FILE_STALE);

	read_all_ok(c, fb, vb);
	fake_release(va, 4);
	pthread_join(r.t, NULL);
	ck_assert_msg(r.rc == -EIO || (r.rc == 10 && !r.bad_bytes),
		      "old-version read during the switch: rc %zd %s", r.rc, r.why);
	ck_assert_int_eq(read_check(c, fb, vb, 4 * CHUNK + 1, 10), 10);
	/* The old handle: old bytes or EIO, never the new ones. */
	for (uint64_t off = 0; off < 6 * CHUNK + 9; off += CHUNK / 2) {
		struct cache_span spans[MAX_SPANS];
		unsigned n;
		ssize_t got = cache_read(c, fa, off, 1000, false, spans, MAX_SPANS, &n);
		if (got < 0) {
			ck_assert_int_eq(got, -EIO);
			continue;
		}
		ck_assert_msg(spans_check(va, off, got, spans, n, why, sizeof(why)) == 0,
			      "old handle at %llu: %s", (unsigned long long)off, why);
		cache_read_done(c, spans, n);
	}
	ck_assert_msg(spans_check(va, 10, 100, held, nheld, why, sizeof(why)) == 0,
		      "chunk pinned across the switch: %s", why);
	cache_read_done(c, held, nheld);

	struct cache_file *fc = open_ver(c, vc, false, 0, 1, &replaced);
	ck_assert(replaced);
	read_all_ok(c, fc, vc);
	ck_assert_int_eq(read_check(c, fc, vc, 3 * CHUNK, 10), 0);
	ssize_t old = read_check(c, fb, vb, 3 * CHUNK, 10);
	ck_assert_msg(old == 10 || old == -EIO, "replaced version read returned %zd", old);
	found = cache_file_find(c, "f");
	ck_assert_ptr_eq(found, fc);
	ck_assert(cache_file_same(found, 7, 5, 3 * CHUNK, 2000));
	cache_file_put(c, found);
	ck_assert_ptr_null(cache_file_find(c, "nope"));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_uint_eq(ld(&fk.unknown), 0);
	cache_file_put(c, fa);
	cache_file_put(c, fb);
	cache_file_put(c, fc);
	cache_free(c);
}
END_TEST

/* ---- verification ---- */

static void read_all_any(struct cache *c, struct cache_file *f, int i, unsigned *eio)
{
	uint64_t size = fake_file(i).size;

	*eio = 0;
	for (uint64_t off = 0; off < size; off += CHUNK) {
		ssize_t got = read_check(c, f, i, off, CHUNK);
		if (got == -EIO)
			(*eio)++;
		else
			ck_assert_int_eq(got, (ssize_t)expect_len(i, off, CHUNK));
	}
}

START_TEST(test_verify_file_good)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_FILE });
	int a = fake_add("good", 1, 7 * CHUNK + 4321, 1);
	uint32_t crc = file_crc(a), computed = 0;
	struct cache_file *f = open_ver(c, a, true, crc, 55, NULL);
	struct cache_file_status st;

	read_all_ok(c, f, a);
	cache_file_get_status(c, f, &st);
	ck_assert_int_eq(st.state, CACHE_FILE_VERIFIED);
	ck_assert(st.has_crc);
	ck_assert_uint_eq(st.expected_crc, crc);
	ck_assert_int_eq(cache_file_verify(c, f, &computed), 0);
	ck_assert_uint_eq(computed, crc);
	ck_assert_uint_eq(ld(&fk.invalidates), 0);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/*
 * verify = file: once our readahead fills every chunk not yet checked, a read of a chunk
 * that is ready waits for the whole-file check instead of handing out bytes the check is
 * about to prove wrong (a kernel asking for the file a window at a time, mmap).
 */
START_TEST(test_verify_file_check_soon)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_FILE, .readahead = 4 });
	int a = fake_add("soon", 1, 3 * CHUNK + 100, 1);
	struct cache_file *f = open_ver(c, a, true, file_crc(a) ^ 1, 0x500, NULL);
	struct cache_span spans[MAX_SPANS];
	unsigned n;
	struct bg_read r;

	atomic_store(&fk.block[a][3], true);
	ck_assert_int_eq(cache_read(c, f, 0, 100, true, spans, MAX_SPANS, &n), 100);
	cache_read_done(c, spans, n);
	ck_assert(wait_uint(&fk.done[a][2], 1, 2000));
	ck_assert(wait_blocked(1, 2000));
	bg_start(&r, c, f, a, CHUNK + 10, 100); /* chunk 1 is ready, chunk 3 still filling */
	usleep(150 * 1000);
	fake_release(a, 3);
	pthread_join(r.t, NULL);
	ck_assert_msg(r.rc == -EIO, "a read of a ready chunk while the rest of a bad file was "
		      "filling returned %zd after %lld ms, not EIO after the check", r.rc,
		      (long long)r.ms);
	ck_assert_msg(r.ms >= 100, "it did not wait for the check (%lld ms)", (long long)r.ms);
	ck_assert_int_eq(state_of(c, f), CACHE_FILE_BAD);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* A version that mismatched once (RETRYING) hands out none of its refill unchecked. */
START_TEST(test_verify_file_retrying_gated)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_FILE });
	int a = fake_add("retry", 1, 3 * CHUNK + 100, 1);
	struct cache_file *f = open_ver(c, a, true, file_crc(a), 0x501, NULL);
	struct cache_span spans[MAX_SPANS];
	unsigned n;

	atomic_store(&fk.corrupt[a][1], true); /* storage gives chunk 1 wrong, every time */
	ck_assert_int_eq(read_check(c, f, a, 0, 10), 10);
	ck_assert_int_eq(cache_read(c, f, CHUNK, 10, false, spans, MAX_SPANS, &n), 10);
	cache_read_done(c, spans, n); /* wrong bytes: chunk 3 was not asked for yet */
	ck_assert_int_eq(cache_file_prefetch(c, f, NULL, NULL), 0); /* chunks 2, 3: mismatch */
	ck_assert_int_eq(state_of(c, f), CACHE_FILE_RETRYING);
	/* The refill of chunk 1 is as wrong: no read may have it before the check. */
	ck_assert_int_eq(read_check(c, f, a, CHUNK + 10, 10), -EIO);
	ck_assert_int_eq(state_of(c, f), CACHE_FILE_BAD);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

START_TEST(test_verify_file_bad)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_FILE });
	int a = fake_add("bad", 1, 5 * CHUNK + 100, 1);
	uint32_t crc = file_crc(a), computed = 0;
	struct cache_file *f = open_ver(c, a, true, crc ^ 1, 0xc00c1e, NULL);
	unsigned eio;

	/* The read of the last chunk waits for the check, which reads every chunk again from
	 * the source, mismatches again and fails it: the reader never reaches EOF. */
	read_all_any(c, f, a, &eio);
	ck_assert_uint_eq(eio, 1);
	ck_assert_int_eq(state_of(c, f), CACHE_FILE_BAD);
	ck_assert(wait_uint(&fk.invalidates, 1, 2000));
	ck_assert_uint_eq(ld64(&fk.last_cookie), 0xc00c1e);
	read_all_any(c, f, a, &eio);
	ck_assert_uint_eq(eio, 6);
	for (uint64_t k = 0; k < 6; k++)
		ck_assert_uint_eq(ld(&fk.fetches[a][k]), 2);
	/* Two checks failed; their kernel invalidations may have been folded into one. */
	ck_assert_int_eq(read_check(c, f, a, 0, 10), -EIO);
	ck_assert_int_eq(read_check(c, f, a, 3 * CHUNK, 10), -EIO);
	ck_assert_int_eq(cache_file_verify(c, f, &computed), -EBADMSG);
	ck_assert_uint_eq(computed, crc);
	ck_assert_int_eq(cache_file_prefetch(c, f, NULL, NULL), -EIO);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

START_TEST(test_verify_api)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	int a = fake_add("a", 1, 3 * CHUNK + 1, 1);
	int b = fake_add("b", 2, 2 * CHUNK, 1);
	int d = fake_add("d", 3, 4 * CHUNK - 3, 1);
	uint32_t crc_a = file_crc(a), crc_b = file_crc(b), crc_d = file_crc(d), computed = 0;
	struct cache_file *fa = open_ver(c, a, true, crc_a, 1, NULL);
	struct cache_file *fb = open_ver(c, b, true, crc_b + 1, 2, NULL);
	struct cache_file *fd = open_ver(c, d, false, 0, 3, NULL);

	read_check(c, fa, a, CHUNK, 10); /* partly cached already */
	ck_assert_int_eq(cache_file_verify(c, fa, &computed), 0);
	ck_assert_uint_eq(computed, crc_a);
	ck_assert_int_eq(state_of(c, fa), CACHE_FILE_VERIFIED);
	computed = 0;
	ck_assert_int_eq(cache_file_verify(c, fb, &computed), -EBADMSG);
	ck_assert_uint_eq(computed, crc_b);
	ck_assert_int_eq(state_of(c, fb), CACHE_FILE_BAD);
	ck_assert_uint_ge(ld(&fk.invalidates), 1);
	computed = 0;
	ck_assert_int_eq(cache_file_verify(c, fd, &computed), -ENODATA);
	ck_assert_uint_eq(computed, crc_d);
	ck_assert_int_eq(state_of(c, fd), CACHE_FILE_OK);
	/* verify = chunk does not fail reads on a file mismatch: only file and strict do. */
	ck_assert_int_eq(read_check(c, fa, a, 0, 10), 10);
	cache_file_put(c, fa);
	cache_file_put(c, fb);
	cache_file_put(c, fd);
	cache_free(c);
}
END_TEST

/* "a refill that disagrees fails": an evicted chunk that comes back different is an EIO. */
START_TEST(test_verify_chunk_refill_differs)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	int a = fake_add("flaky", 1, 4 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);

	read_all_ok(c, f, a);
	cache_file_evict(c, f);
	atomic_store(&fk.corrupt[a][1], true);
	ck_assert_int_eq(read_check(c, f, a, 0, 10), 10);
	ck_assert_int_eq(read_check(c, f, a, CHUNK, 10), -EIO);
	atomic_store(&fk.corrupt[a][1], false);
	ck_assert_int_eq(read_check(c, f, a, CHUNK, 10), 10);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

START_TEST(test_verify_strict)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_STRICT });
	int a = fake_add("bad", 1, 4 * CHUNK + 17, 1);
	int b = fake_add("good", 2, 5 * CHUNK + 3, 1);
	int d = fake_add("unlisted", 3, 2 * CHUNK, 1);
	struct cache_file *fa = open_ver(c, a, true, file_crc(a) ^ 0x80000000u, 1, NULL);
	struct cache_file *fb = open_ver(c, b, true, file_crc(b), 2, NULL);
	struct cache_file *fd = open_ver(c, d, false, 0, 3, NULL);

	ck_assert_int_eq(read_check(c, fa, a, 100, 10), -EIO);
	ck_assert_int_eq(state_of(c, fa), CACHE_FILE_BAD);
	ck_assert_int_eq(read_check(c, fa, a, 100, 10), -EIO);

	ck_assert_int_eq(read_check(c, fb, b, 100, 10), 10);
	for (uint64_t k = 0; k < 6; k++)
		ck_assert_msg(atomic_load(&fk.fetches[b][k]) >= 1,
			      "strict: chunk %llu not filled before the first read returned",
			      (unsigned long long)k);
	ck_assert_int_eq(state_of(c, fb), CACHE_FILE_VERIFIED);
	read_all_ok(c, fb, b);
	ck_assert_int_eq(read_check(c, fd, d, 100, 10), 10);
	cache_file_put(c, fa);
	cache_file_put(c, fb);
	cache_file_put(c, fd);
	cache_free(c);
}
END_TEST

/* First reads of a strict file from many threads at once: all wait for the check. */
START_TEST(test_verify_strict_concurrent)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_STRICT });
	int b = fake_add("good", 2, 6 * CHUNK + 3, 1);
	struct cache_file *fb = open_ver(c, b, true, file_crc(b), 2, NULL);
	struct bg_read r[6];

	atomic_store(&fk.sleep_us, 2000);
	for (int round = 0; round < 2; round++) {
		for (int k = 0; k < 6; k++) {
			bg_start(&r[k], c, fb, b, (uint64_t)k * CHUNK + 7, 100);
			usleep(3000); /* some arrive during the check, some after it */
		}
		for (int k = 0; k < 6; k++) {
			pthread_join(r[k].t, NULL);
			ck_assert_msg(r[k].rc == 100 && !r[k].bad_bytes, "round %d reader %d: %zd %s",
				      round, k, r[k].rc, r[k].why);
		}
	}
	ck_assert_int_eq(state_of(c, fb), CACHE_FILE_VERIFIED);
	cache_file_put(c, fb);
	cache_free(c);
}
END_TEST

/* ---- prefetch, evict, readahead ---- */

struct progress {
	unsigned calls, stop_at;
	uint64_t last, total;
	bool backwards;
};

static bool on_progress(void *arg, uint64_t done, uint64_t total)
{
	struct progress *p = arg;

	p->calls++;
	if (done <= p->last)
		p->backwards = true;
	p->last = done;
	p->total = total;
	return !(p->stop_at && p->calls == p->stop_at);
}

START_TEST(test_prefetch)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	int a = fake_add("pf", 1, 10 * CHUNK + 500, 1);
	int b = fake_add("pf-big", 2, 3 * SLOTS * CHUNK, 1);
	int d = fake_add("pf-cancel", 3, 12 * CHUNK, 1);
	struct cache_file *f = open_ver(c, a, false, 0, 0xabc, NULL);
	struct progress p = { 0 };
	struct cache_file_status st;

	atomic_store(&fk.sleep_us, 1000);
	ck_assert_int_eq(cache_file_prefetch(c, f, on_progress, &p), 0);
	ck_assert(!p.backwards);
	ck_assert_uint_eq(p.last, 10 * CHUNK + 500);
	ck_assert_uint_eq(p.total, 10 * CHUNK + 500);
	ck_assert_uint_ge(p.calls, 1);
	cache_file_get_status(c, f, &st);
	ck_assert_uint_eq(st.cached_bytes, 10 * CHUNK + 500);
	ck_assert_uint_eq(st.chunks_cached, 11);
	ck_assert_uint_eq(st.chunks_total, 11);
	for (uint64_t k = 0; k < 11; k++)
		ck_assert_uint_eq(ld(&fk.fetches[a][k]), 1);
	read_all_ok(c, f, a);
	ck_assert_uint_eq(ld(&fk.total), 11);
	/* Prefetching again costs nothing. */
	ck_assert_int_eq(cache_file_prefetch(c, f, NULL, NULL), 0);
	ck_assert_uint_eq(ld(&fk.total), 11);

	cache_file_evict(c, f);
	cache_file_get_status(c, f, &st);
	ck_assert_uint_eq(st.cached_bytes, 0);
	ck_assert_uint_eq(st.chunks_cached, 0);
	ck_assert(wait_uint(&fk.invalidates, 1, 2000));
	ck_assert_uint_eq(ld64(&fk.last_cookie), 0xabc);
	read_all_ok(c, f, a);
	ck_assert_uint_eq(ld(&fk.fetches[a][0]), 2);

	/* Larger than the cache: completes, and the cache holds what fits. */
	struct cache_file *g = open_plain(c, b);
	ck_assert_int_eq(cache_file_prefetch(c, g, NULL, NULL), 0);
	cache_file_get_status(c, g, &st);
	ck_assert_uint_le(st.cached_bytes, (uint64_t)SLOTS * CHUNK);
	ck_assert_uint_gt(st.cached_bytes, 0);
	for (uint64_t k = 0; k < 3 * SLOTS; k++)
		ck_assert_uint_ge(ld(&fk.fetches[b][k]), 1);
	read_all_ok(c, g, b);

	/* Cancelled by the callback. */
	struct cache_file *h = open_plain(c, d);
	struct progress q = { .stop_at = 3 };
	ck_assert_int_eq(cache_file_prefetch(c, h, on_progress, &q), -ECANCELED);
	ck_assert_uint_eq(q.calls, 3);
	ck_assert(!q.backwards);
	ck_assert_uint_lt(q.last, 12 * CHUNK);
	read_all_ok(c, h, d);
	cache_file_put(c, f);
	cache_file_put(c, g);
	cache_file_put(c, h);
	cache_free(c);
}
END_TEST

START_TEST(test_readahead)
{
	struct cache *c = cache_make((struct opts){ .readahead = 4 });
	int a = fake_add("seq", 1, 30 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct cache_span spans[MAX_SPANS];
	unsigned n;

	ck_assert_int_eq(cache_read(c, f, 100, 10, true, spans, MAX_SPANS, &n), 10);
	cache_read_done(c, spans, n);
	for (uint64_t k = 1; k <= 4; k++)
		ck_assert_msg(wait_uint(&fk.done[a][k], 1, 2000), "chunk %llu not read ahead",
			      (unsigned long long)k);
	ck_assert_int_eq(read_check(c, f, a, 20 * CHUNK, 10), 10);
	usleep(100 * 1000);
	ck_assert_uint_eq(ld(&fk.fetches[a][5]), 0);
	ck_assert_uint_eq(ld(&fk.fetches[a][21]), 0);
	unsigned before = atomic_load(&fk.total);
	for (uint64_t k = 0; k <= 4; k++) /* hits */
		ck_assert_int_eq(read_check(c, f, a, k * CHUNK, CHUNK), CHUNK);
	ck_assert_int_eq(read_check(c, f, a, 20 * CHUNK, CHUNK), CHUNK);
	ck_assert_uint_eq(ld(&fk.total), before);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* A sequential read of a missing chunk starts the readahead before it waits for that chunk:
 * while chunk 0's fill is held, chunks 1..4 are fetched already. */
struct seq_reader {
	struct cache *c;
	struct cache_file *f;
	ssize_t rc;
};

static void *seq_reader_main(void *arg)
{
	struct seq_reader *r = arg;
	struct cache_span spans[MAX_SPANS];
	unsigned n = 0;
	r->rc = cache_read(r->c, r->f, 0, 10, true, spans, MAX_SPANS, &n);
	if (r->rc >= 0)
		cache_read_done(r->c, spans, n);
	return NULL;
}

START_TEST(test_readahead_before_wait)
{
	struct cache *c = cache_make((struct opts){ .readahead = 4 });
	int a = fake_add("seq0", 1, 30 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	atomic_store(&fk.block[a][0], true);
	struct seq_reader r = { .c = c, .f = f };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, seq_reader_main, &r), 0);
	ck_assert(wait_blocked(1, 2000));
	for (uint64_t k = 1; k <= 4; k++)
		ck_assert_msg(wait_uint(&fk.done[a][k], 1, 2000),
			      "chunk %llu not read ahead while the read waited for chunk 0",
			      (unsigned long long)k);
	ck_assert_uint_eq(ld(&fk.fetches[a][5]), 0);
	fake_release(a, 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(r.rc, 10);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* ---- readahead past a file's end (struct cache_next_ops) ---- */

/* The reader's order for the fake files: next_of[i] is the file after i (-1: none). */
static int next_of[MAX_FILES];
static struct cache *next_cache;
static atomic_uint next_calls;

static struct cache_file *fake_next(void *ctx, struct cache_file *f)
{
	(void)ctx;
	atomic_fetch_add(&next_calls, 1);
	int i = fake_find(f);
	return i < 0 || next_of[i] < 0 ? NULL : open_plain(next_cache, next_of[i]);
}

/* A cache with readahead 4 whose reader order is a -> b -> c (each -1 when absent). */
static struct cache *cache_with_order(int a, int b, int c3)
{
	struct cache *c = cache_make((struct opts){ .readahead = 4 });
	for (int k = 0; k < MAX_FILES; k++)
		next_of[k] = -1;
	next_of[a] = b;
	if (b >= 0)
		next_of[b] = c3;
	next_cache = c;
	atomic_store(&next_calls, 0);
	cache_set_next(c, &(struct cache_next_ops){ .next = fake_next });
	return c;
}

static uint64_t stat_next(struct cache *c)
{
	struct cache_stats st;
	cache_get_stats(c, &st);
	return st.readahead_next;
}

static void read_seq(struct cache *c, struct cache_file *f, uint64_t off, size_t len,
		     bool seq)
{
	struct cache_span spans[MAX_SPANS];
	unsigned n = 0;
	ck_assert_int_eq(cache_read(c, f, off, len, seq, spans, MAX_SPANS, &n), (ssize_t)len);
	cache_read_done(c, spans, n);
}

/* Fetches of chunks [from, to) of fake file @i once the fills settle (all should be 0). */
static unsigned fetched(int i, uint64_t from, uint64_t to)
{
	unsigned sum = 0;
	for (uint64_t k = from; k < to; k++)
		sum += ld(&fk.fetches[i][k]);
	return sum;
}

/*
 * A sequential reader of a 3-chunk file: the window (4) past its end goes to the first
 * chunks of the next file, 2 at the first read, 4 at the last; never more than the window,
 * and each chunk once however many reads see it.
 */
START_TEST(test_readahead_next_file)
{
	int a = fake_add("m/a", 1, 3 * CHUNK, 1), b = fake_add("m/b", 2, 10 * CHUNK, 1);
	int d = fake_add("m/d", 3, 10 * CHUNK, 1);
	struct cache *c = cache_with_order(a, b, d);
	struct cache_file *f = open_plain(c, a);
	read_seq(c, f, 0, 100, true);
	ck_assert_msg(wait_uint(&fk.done[b][1], 1, 2000), "b's chunk 1 was not read ahead");
	usleep(50 * 1000);
	ck_assert_uint_eq(fetched(b, 2, 10), 0);
	ck_assert_uint_eq(stat_next(c), 2);
	for (uint64_t off = 100; off < 3 * CHUNK; off += CHUNK / 2) /* many reads, one carry each */
		read_seq(c, f, off, off + CHUNK / 2 > 3 * CHUNK ? 3 * CHUNK - off : CHUNK / 2, true);
	ck_assert_msg(wait_uint(&fk.done[b][3], 1, 2000), "b's chunk 3 was not read ahead");
	usleep(50 * 1000);
	ck_assert_uint_eq(fetched(b, 4, 10), 0);  /* the window holds */
	ck_assert_uint_eq(fetched(d, 0, 10), 0);  /* b had room for all of it */
	for (uint64_t k = 0; k < 4; k++)
		ck_assert_uint_eq(ld(&fk.fetches[b][k]), 1);
	ck_assert_uint_eq(stat_next(c), 4);
	ck_assert_uint_le(ld(&next_calls), 4); /* looked up when the overhang grew, not per read */
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* A random reader (every read not sequential) never reads into the next file. */
START_TEST(test_readahead_next_random)
{
	int a = fake_add("m/a", 1, 3 * CHUNK, 1), b = fake_add("m/b", 2, 10 * CHUNK, 1);
	struct cache *c = cache_with_order(a, b, -1);
	struct cache_file *f = open_plain(c, a);
	for (uint64_t k = 3; k-- > 0;)
		read_seq(c, f, k * CHUNK + 7, 100, false);
	usleep(100 * 1000);
	ck_assert_uint_eq(fetched(b, 0, 10), 0);
	ck_assert_uint_eq(stat_next(c), 0);
	ck_assert_uint_eq(ld(&next_calls), 0);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/*
 * The window runs on through a one-chunk file into the one after it, and stops at the last
 * file; chunks of the next file already cached are not fetched again or counted.
 */
START_TEST(test_readahead_next_chain_and_last)
{
	int a = fake_add("m/a", 1, 2 * CHUNK, 1), s = fake_add("m/s", 2, 100, 1);
	int b = fake_add("m/t", 3, 10 * CHUNK, 1);
	struct cache *c = cache_with_order(a, s, b);
	struct cache_file *g = open_plain(c, b);
	read_seq(c, g, 0, 100, false); /* b's chunk 0 cached before */
	struct cache_file *f = open_plain(c, a);
	read_seq(c, f, CHUNK, 100, true); /* window 2..5: 4 past a's end */
	ck_assert_msg(wait_uint(&fk.done[b][2], 1, 2000), "t's chunk 2 was not read ahead");
	ck_assert_msg(wait_uint(&fk.done[s][0], 1, 2000), "s was not read ahead");
	usleep(50 * 1000);
	ck_assert_uint_eq(ld(&fk.fetches[b][0]), 1);
	ck_assert_uint_eq(fetched(b, 3, 10), 0);
	ck_assert_uint_eq(stat_next(c), 3); /* s:0, t:1, t:2 */
	/* t is the last file: its own window past its end asks and finds nothing. */
	unsigned before = ld(&fk.total);
	read_seq(c, g, 9 * CHUNK, 100, true);
	usleep(50 * 1000);
	ck_assert_uint_eq(ld(&fk.total), before + 1); /* t's chunk 9 itself, nothing after */
	ck_assert_uint_eq(stat_next(c), 3);
	cache_file_put(c, f);
	cache_file_put(c, g);
	cache_free(c);
}
END_TEST

/* ---- peers: sources in order, local-only fills, serving chunks ---- */

struct relay_reader {
	struct cache *c;
	struct cache_file *f;
	int i;
	uint64_t chunk;
	ssize_t rc;
};

static void *relay_reader_main(void *arg)
{
	struct relay_reader *r = arg;
	r->rc = read_check(r->c, r->f, r->i, r->chunk * CHUNK, CHUNK);
	return NULL;
}

/* Pins chunk @k of @f for relaying once its source announced it (2 s at most). */
static struct cache_relay *relay_pin_wait(struct cache *c, struct cache_file *f, uint64_t k,
					  struct cache_span *span)
{
	struct cache_relay *relay = NULL;
	for (int t = 0; t < 2000; t++) {
		if (cache_relay_pin(c, f, k, span, &relay) == 0)
			return relay;
		usleep(1000);
	}
	ck_abort_msg("chunk %llu was never announced for relaying", (unsigned long long)k);
	return NULL;
}

/*
 * Relaying (the swarm): while a remote source receives a chunk, a relayer may pin the slot
 * and see the announced CRC and the bytes landed so far, which are already the right ones;
 * when the fill ends well cache_relay_done() gives the checked CRC, when it fails -EIO (and
 * a later attempt changes `attempt`), so a relayer never finishes a chunk it must not.
 */
START_TEST(test_relay)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .relay_first = true });
	int a = fake_add("relayed", 1, 8 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct cache_span span, other;
	struct cache_relay *r;
	uint32_t crc = 0;
	unsigned char want[CHUNK];

	ck_assert_int_eq(cache_relay_pin(c, f, 2, &other, &r), -ENOENT); /* no fill runs */
	atomic_store(&fk.block[a][1], true);
	struct relay_reader rd = { .c = c, .f = f, .i = a, .chunk = 1 };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, relay_reader_main, &rd), 0);
	r = relay_pin_wait(c, f, 1, &span);
	gen_bytes(fake_file(a).seed, CHUNK, want, CHUNK);
	ck_assert_uint_eq(span.len, CHUNK);
	ck_assert_uint_eq(atomic_load(&r->arrived), CHUNK / 2);
	ck_assert_uint_eq(atomic_load(&r->crc), mows_crc32(0, want, CHUNK));
	ck_assert_int_eq(memcmp(span.data, want, CHUNK / 2), 0);
	ck_assert_int_eq(cache_relay_done(c, &span, &crc), 0);
	fake_release(a, 1);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(rd.rc, CHUNK);
	ck_assert_int_eq(cache_relay_done(c, &span, &crc), 1);
	ck_assert_uint_eq(crc, mows_crc32(0, want, CHUNK));
	ck_assert_int_eq(memcmp(span.data, want, CHUNK), 0);
	cache_read_done(c, &span, 1);
	ck_assert_int_eq(cache_relay_pin(c, f, 1, &other, &r), -ENOENT); /* cached now */

	/* A fill that fails after its first half: the relayer learns it, never a success. */
	atomic_store(&fk.block[a][3], true);
	atomic_store(&fk.fail[a][3], true);
	rd = (struct relay_reader){ .c = c, .f = f, .i = a, .chunk = 3 };
	ck_assert_int_eq(pthread_create(&t, NULL, relay_reader_main, &rd), 0);
	r = relay_pin_wait(c, f, 3, &span);
	uint32_t attempt = atomic_load(&r->attempt);
	fake_release(a, 3);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_lt(rd.rc, 0);
	ck_assert_int_eq(cache_relay_done(c, &span, &crc), -EIO);
	ck_assert_uint_ne(atomic_load(&r->attempt), attempt); /* the local source tried too */
	cache_read_done(c, &span, 1);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* cache_relay_wait() on its own thread, with how long it took. */
struct relay_waiter {
	struct cache *c;
	struct cache_file *f;
	uint64_t chunk;
	unsigned ms;
	struct cache_span span;
	struct cache_relay *relay;
	int rc;
	int64_t took_ms;
	atomic_bool done;
};

static void *relay_waiter_main(void *arg)
{
	struct relay_waiter *w = arg;
	struct deadline dl = deadline_in_ms(w->ms);
	uint64_t t0 = mono_ns();
	w->rc = cache_relay_wait(w->c, w->f, w->chunk, &dl, &w->span, &w->relay);
	w->took_ms = ms_since(t0);
	atomic_store(&w->done, true);
	return NULL;
}

/*
 * An owner asked for a chunk its own fill is receiving (the swarm, net/serve.c): with no
 * fill running, cache_relay_wait() answers -ENOENT at once; with a remote source that
 * announced the bytes, it pins the slot for relaying at once; with a source that never
 * announces (storage), it waits for the end of that fill and answers -ENOENT (the caller
 * then sends the cached chunk), or -ETIMEDOUT at its deadline.
 */
START_TEST(test_relay_wait)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .relay_first = true });
	int a = fake_add("owned", 1, 8 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct relay_waiter w = { .c = c, .f = f, .chunk = 2, .ms = 2000 };
	pthread_t t;

	relay_waiter_main(&w); /* nothing runs */
	ck_assert_int_eq(w.rc, -ENOENT);
	ck_assert_int_lt(w.took_ms, 500);

	atomic_store(&fk.block[a][1], true); /* announced, half landed, then held */
	struct relay_reader rd = { .c = c, .f = f, .i = a, .chunk = 1 };
	ck_assert_int_eq(pthread_create(&t, NULL, relay_reader_main, &rd), 0);
	struct cache_span span;
	relay_pin_wait(c, f, 1, &span); /* the source announced */
	cache_read_done(c, &span, 1);
	w = (struct relay_waiter){ .c = c, .f = f, .chunk = 1, .ms = 2000 };
	relay_waiter_main(&w);
	ck_assert_int_eq(w.rc, 0);
	ck_assert_int_lt(w.took_ms, 500);
	ck_assert_uint_eq(atomic_load(&w.relay->arrived), CHUNK / 2);
	ck_assert_int_eq(cache_relay_done(c, &w.span, &(uint32_t){ 0 }), 0);
	fake_release(a, 1);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(rd.rc, CHUNK);
	cache_read_done(c, &w.span, 1);
	cache_file_put(c, f);
	cache_free(c);

	/* Only the local source: its fill never announces. */
	c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	f = open_plain(c, a);
	atomic_store(&fk.block[a][4], true);
	struct bg_read r = { .c = c, .f = f, .i = a, .off = 4 * CHUNK, .len = CHUNK };
	ck_assert_int_eq(pthread_create(&r.t, NULL, bg_read_main, &r), 0);
	ck_assert(wait_blocked(1, 2000));
	w = (struct relay_waiter){ .c = c, .f = f, .chunk = 4, .ms = 100 };
	relay_waiter_main(&w);
	ck_assert_int_eq(w.rc, -ETIMEDOUT);
	ck_assert_int_ge(w.took_ms, 90);
	w = (struct relay_waiter){ .c = c, .f = f, .chunk = 4, .ms = 5000 };
	ck_assert_int_eq(pthread_create(&t, NULL, relay_waiter_main, &w), 0);
	usleep(100 * 1000);
	ck_assert_msg(!atomic_load(&w.done), "cache_relay_wait did not wait for a running fill");
	fake_release(a, 4);
	ck_assert_int_eq(pthread_join(r.t, NULL), 0);
	ck_assert_int_eq(r.rc, CHUNK);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(w.rc, -ENOENT);
	ck_assert_int_lt(w.took_ms, 4000);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

START_TEST(test_sources_and_serve)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .remote_first = true });
	int a = fake_add("s", 1, 3 * CHUNK + 5, 1);
	int a2 = fake_add("s", 1, 3 * CHUNK + 5, 2);
	struct cache_file *f = open_plain(c, a);
	struct deadline dl = deadline_in_ms(2000);
	struct cache_span span;
	uint32_t crc = 0;
	char why[256];
	const char *name;
	uint64_t bytes;

	/* Sources in registration order: the peer fails, the backing one fills. */
	ck_assert_int_eq(read_check(c, f, a, 10, 10), 10);
	ck_assert_uint_eq(ld(&fk.remote_calls), 1);
	ck_assert_uint_eq(cache_source_stats(c, 0, &name, &bytes), 2);
	ck_assert_str_eq(name, "remote");
	ck_assert_uint_eq(bytes, 0);
	cache_source_stats(c, 1, &name, &bytes);
	ck_assert_str_eq(name, "fake");
	ck_assert_uint_eq(bytes, CHUNK);

	/* Not cached and no fill wanted. */
	ck_assert_int_eq(cache_serve_chunk(c, f, 1, false, &dl, &span, &crc), -ENOENT);
	ck_assert_uint_eq(ld(&fk.fetches[a][1]), 0);
	ck_assert_int_eq(cache_serve_chunk(c, f, 4, true, &dl, &span, &crc), -EINVAL);
	/* A fill for a peer never asks a peer to fill, even one that would answer: it only
	 * probes holders (cache_fetch.probe_only). */
	atomic_store(&fk.remote_ok, true);
	ck_assert_int_eq(cache_serve_chunk(c, f, 3, true, &dl, &span, &crc), 0);
	ck_assert_uint_eq(ld(&fk.remote_calls), 1);
	ck_assert_uint_eq(ld(&fk.remote_probes), 1);
	ck_assert_uint_eq(span.len, 5);
	ck_assert_int_eq(spans_check(a, 3 * CHUNK, 5, &span, 1, why, sizeof(why)), 0);
	ck_assert_uint_eq(crc, mows_crc32(0, span.data, span.len));
	cache_read_done(c, &span, 1);
	/* Cached: served without a fill, with the CRC the fill recorded. */
	ck_assert_int_eq(cache_serve_chunk(c, f, 0, false, &dl, &span, &crc), 0);
	ck_assert_uint_eq(span.len, CHUNK);
	ck_assert_uint_eq(crc, mows_crc32(0, span.data, span.len));
	ck_assert_int_eq(spans_check(a, 0, CHUNK, &span, 1, why, sizeof(why)), 0);
	cache_read_done(c, &span, 1);
	ck_assert_uint_eq(ld(&fk.fetches[a][0]), 1);

	/* A reader's fill may use the peer, which now answers. */
	ck_assert_int_eq(read_check(c, f, a, CHUNK, 10), 10);
	ck_assert_uint_eq(ld(&fk.remote_calls), 2);
	ck_assert_int_eq(cache_serve_chunk(c, f, 1, false, &dl, &span, &crc), 0);
	ck_assert_uint_eq(crc, mows_crc32(0, span.data, span.len));
	cache_read_done(c, &span, 1);

	struct cache_file *k = cache_file_by_key(c, fake_file(a).seed);
	ck_assert_ptr_eq(k, f);
	ck_assert_uint_eq(cache_file_key(f), fake_file(a).seed);
	ck_assert_int_eq(cache_file_mtime_ns(f), 1);
	cache_file_put(c, k);
	ck_assert_ptr_null(cache_file_by_key(c, 12345));
	ck_assert_int_eq(errno, ENOENT);

	/* A replaced version is not served to peers. */
	struct cache_file *f2 = open_plain(c, a2);
	ck_assert_int_eq(cache_serve_chunk(c, f, 0, true, &dl, &span, &crc), -EIO);
	ck_assert_ptr_null(cache_file_by_key(c, fake_file(a).seed));
	k = cache_file_by_key(c, fake_file(a2).seed);
	ck_assert_ptr_eq(k, f2);
	cache_file_put(c, k);
	cache_file_put(c, f);
	cache_file_put(c, f2);
	cache_free(c);
}
END_TEST

struct begun_probe {
	struct cache *c;
	struct cache_file *f;
	uint64_t chunk;
	int calls, pin_rc;
};

static void begun_probe_fn(void *ctx)
{
	struct begun_probe *b = ctx;
	struct cache_span span;
	struct cache_relay *relay;
	b->calls++;
	b->pin_rc = cache_relay_pin(b->c, b->f, b->chunk, &span, &relay);
	if (b->pin_rc == 0)
		cache_read_done(b->c, &span, 1);
}

/* cache_serve_fill() tells its caller once its own fill began, before a byte is read (a
 * relayer finds the fill then, not announced yet), and never when it did not fill. */
START_TEST(test_serve_fill_begun)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	int a = fake_add("b", 1, 3 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct deadline dl = deadline_in_ms(2000);
	struct cache_span span;
	uint32_t crc = 0;
	char why[256];
	struct begun_probe b = { c, f, 1, 0, 0 };
	struct cache_begun begun = { begun_probe_fn, &b };

	ck_assert_int_eq(cache_serve_fill(c, f, 1, &dl, &span, &crc, &begun), 0);
	ck_assert_int_eq(b.calls, 1);
	ck_assert_int_eq(b.pin_rc, -EAGAIN); /* began; the source announced nothing yet */
	ck_assert_uint_eq(ld(&fk.fetches[a][1]), 1);
	ck_assert_int_eq(spans_check(a, CHUNK, CHUNK, &span, 1, why, sizeof(why)), 0);
	ck_assert_uint_eq(crc, mows_crc32(0, span.data, span.len));
	cache_read_done(c, &span, 1);
	/* Cached now: served, no fill, no call. */
	ck_assert_int_eq(cache_serve_fill(c, f, 1, &dl, &span, &crc, &begun), 0);
	ck_assert_int_eq(b.calls, 1);
	ck_assert_uint_eq(ld(&fk.fetches[a][1]), 1);
	cache_read_done(c, &span, 1);
	/* Past the end: refused before any fill. */
	ck_assert_int_eq(cache_serve_fill(c, f, 3, &dl, &span, &crc, &begun), -EINVAL);
	ck_assert_int_eq(b.calls, 1);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* The CRC of chunk @k of fake file @i, @len bytes long. */
static uint32_t chunk_crc(int i, uint64_t off, size_t len)
{
	unsigned char *buf = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(buf);
	gen_bytes(fake_file(i).seed, off, buf, len);
	uint32_t crc = mows_crc32(0, buf, len);
	free(buf);
	return crc;
}

/* Writes DIR/crc32.chunks listing fake file @i in chunks of @cs bytes; returns DIR's fd. */
static int write_sidecar(char *dir, int i, uint64_t cs)
{
	struct fake_file ff = fake_file(i);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(dfd, 0);
	int fd = openat(dfd, "crc32.chunks", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	FILE *out = fdopen(fd, "w");
	ck_assert_ptr_nonnull(out);
	fprintf(out, "mows-crc32-chunks 1 %llu\n%llu %s", (unsigned long long)cs,
		(unsigned long long)ff.size, ff.relpath);
	for (uint64_t off = 0; off < ff.size; off += cs)
		fprintf(out, " %08x", chunk_crc(i, off, ff.size - off < cs ? ff.size - off : cs));
	fputc('\n', out);
	fclose(out);
	return dfd;
}

static void remove_sidecar(const char *dir, int dfd)
{
	unlinkat(dfd, "crc32.chunks", 0);
	close(dfd);
	rmdir(dir);
}

/* A bad chunk from storage is read twice, then EIO for that chunk only, and reported. */
START_TEST(test_sidecar_storage_bad)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_FILE });
	int a = fake_add("side", 1, 5 * CHUNK + 99, 1);
	char dir[] = "/tmp/check_cache.XXXXXX";
	int dfd = write_sidecar(dir, a, CHUNK);
	ck_assert_int_eq(cache_chunkmap_refresh(c, dfd, "crc32.txt"), 0);
	atomic_store(&fk.corrupt[a][3], true);
	struct cache_file *f = open_ver(c, a, true, file_crc(a), 9, NULL);
	struct cache_file_status st;
	struct cache_bad_chunk bad[4];
	uint32_t computed;

	cache_file_get_status(c, f, &st);
	ck_assert(st.has_chunk_crcs);
	ck_assert_int_eq(read_check(c, f, a, 0, 3 * CHUNK), 3 * CHUNK);
	ck_assert_int_eq(read_check(c, f, a, 3 * CHUNK, 10), -EIO);
	ck_assert_uint_eq(ld(&fk.fetches[a][3]), 2); /* read again once */
	ck_assert_int_eq(read_check(c, f, a, 4 * CHUNK, CHUNK + 99), CHUNK + 99);
	ck_assert_uint_eq(cache_file_bad_chunks(c, f, bad, 4), 1);
	ck_assert_uint_eq(bad[0].chunk, 3);
	ck_assert_uint_eq(bad[0].offset, 3 * CHUNK);
	ck_assert_uint_eq(bad[0].len, CHUNK);
	ck_assert_uint_eq(bad[0].expected, chunk_crc(a, 3 * CHUNK, CHUNK));
	ck_assert_uint_ne(bad[0].got, bad[0].expected);
	ck_assert_int_eq(cache_file_verify(c, f, &computed), -EBADMSG);
	ck_assert_int_eq(state_of(c, f), CACHE_FILE_OK); /* not the whole file: one chunk */
	/* The storage heals: the chunk reads right and is no longer reported. */
	atomic_store(&fk.corrupt[a][3], false);
	ck_assert_int_eq(read_check(c, f, a, 3 * CHUNK, 10), 10);
	ck_assert_uint_eq(cache_file_bad_chunks(c, f, bad, 4), 0);
	ck_assert_int_eq(cache_file_verify(c, f, &computed), 0);
	cache_file_put(c, f);
	cache_free(c);
	remove_sidecar(dir, dfd);
}
END_TEST

/* A peer's chunk that fails the sidecar is charged and never cached; the backing fills it. */
START_TEST(test_sidecar_peer_bad)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK, .remote_first = true });
	int a = fake_add("side", 1, 4 * CHUNK, 1);
	char dir[] = "/tmp/check_cache.XXXXXX";
	/* Chunks of CHUNK / 4 in the file: combined into CHUNK-sized ones on load. */
	int dfd = write_sidecar(dir, a, CHUNK / 4);
	ck_assert_int_eq(cache_chunkmap_refresh(c, dfd, "crc32.txt"), 0);
	atomic_store(&fk.remote_ok, true);
	atomic_store(&fk.rcorrupt[a][1], true);
	struct cache_file *f = open_plain(c, a);
	read_all_ok(c, f, a);
	ck_assert_uint_eq(ld(&fk.charges), 1);
	ck_assert_uint_eq(ld(&fk.charged_origin), 7);
	ck_assert_uint_eq(ld(&fk.charged_chunk), 1);
	ck_assert_uint_eq(ld(&fk.charged_good), chunk_crc(a, CHUNK, CHUNK));
	ck_assert_uint_eq(ld(&fk.fetches[a][1]), 2); /* the peer's, then the backing's */
	cache_file_put(c, f);
	cache_free(c);
	remove_sidecar(dir, dfd);
}
END_TEST

/* A sidecar in chunks larger than chunk_size cannot be used: it is ignored, not applied. */
START_TEST(test_sidecar_chunk_too_big)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_FILE });
	int a = fake_add("side", 1, 4 * CHUNK, 1);
	char dir[] = "/tmp/check_cache.XXXXXX";
	int dfd = write_sidecar(dir, a, 2 * CHUNK);
	ck_assert_int_eq(cache_chunkmap_refresh(c, dfd, "crc32.txt"), 0);
	struct cache_file *f = open_ver(c, a, true, file_crc(a), 9, NULL);
	struct cache_file_status st;
	cache_file_get_status(c, f, &st);
	ck_assert(!st.has_chunk_crcs);
	read_all_ok(c, f, a);
	ck_assert_int_eq(state_of(c, f), CACHE_FILE_VERIFIED);
	cache_file_put(c, f);
	cache_free(c);
	remove_sidecar(dir, dfd);
}
END_TEST

/*
 * Provenance: a peer whose storage flipped a bit sends a chunk with a matching CRC. The
 * whole-file check fails, the file is refilled from local storage only, matches, and the
 * peer that sent the differing chunk is charged. Nothing is served to peers meanwhile.
 */
START_TEST(test_provenance_refill)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_FILE, .remote_first = true });
	int a = fake_add("p", 1, 6 * CHUNK + 10, 1);
	atomic_store(&fk.remote_ok, true);
	atomic_store(&fk.rcorrupt[a][2], true);
	struct cache_file *f = open_ver(c, a, true, file_crc(a), 5, NULL);
	unsigned calls;
	uint64_t k;

	/* Chunks 0..5: from the peer (chunk 2 wrong; nobody can tell yet). */
	for (k = 0; k < 6; k++) {
		struct cache_span sp[MAX_SPANS];
		unsigned n;
		ck_assert_int_eq(cache_read(c, f, k * CHUNK, CHUNK, false, sp, MAX_SPANS, &n),
				 CHUNK);
		cache_read_done(c, sp, n);
	}
	calls = ld(&fk.remote_calls);
	ck_assert_uint_eq(calls, 6);
	/* The last chunk completes the file: the read waits for the check and the refill. The
	 * reader had chunk 2 from the peer, which the refill proved wrong: reads past the start
	 * fail, so it does not reach EOF unwarned, until a read starts over at offset 0. */
	ck_assert_int_eq(read_check(c, f, a, 6 * CHUNK, 10), -EIO);
	ck_assert_int_eq(read_check(c, f, a, 6 * CHUNK, 10), -EIO);
	ck_assert_int_eq(read_check(c, f, a, 3 * CHUNK, 10), -EIO);
	ck_assert_int_eq(read_check(c, f, a, 0, CHUNK), CHUNK);
	ck_assert_int_eq(read_check(c, f, a, 6 * CHUNK, 10), 10);
	ck_assert_int_eq(state_of(c, f), CACHE_FILE_VERIFIED);
	ck_assert_uint_le(ld(&fk.remote_calls), calls + 1); /* the refill asked no peer */
	ck_assert(wait_uint(&fk.charges, 1, 2000));
	ck_assert_uint_eq(ld(&fk.charges), 1);
	ck_assert_uint_eq(ld(&fk.charged_origin), 7);
	ck_assert_uint_eq(ld(&fk.charged_chunk), 2);
	ck_assert_uint_eq(ld(&fk.charged_good), chunk_crc(a, 2 * CHUNK, CHUNK));
	ck_assert_uint_ne(ld(&fk.charged_sent), ld(&fk.charged_good));
	read_all_ok(c, f, a);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* Our own storage is bad: the refill mismatches too, the file turns bad, no peer charged. */
START_TEST(test_provenance_own_storage_bad)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_FILE, .remote_first = true });
	int a = fake_add("p", 1, 3 * CHUNK, 1);
	struct deadline dl = deadline_in_ms(2000);
	struct cache_span span;
	uint32_t crc, computed;
	atomic_store(&fk.corrupt[a][1], true);
	struct cache_file *f = open_ver(c, a, true, file_crc(a), 5, NULL);
	ck_assert_int_eq(cache_file_verify(c, f, &computed), -EBADMSG);
	ck_assert_int_eq(state_of(c, f), CACHE_FILE_BAD);
	ck_assert_uint_eq(ld(&fk.charges), 0);
	ck_assert_int_eq(cache_serve_chunk(c, f, 0, true, &dl, &span, &crc), -EIO);
	ck_assert_int_eq(read_check(c, f, a, 0, 10), -EIO);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* ---- passthrough (store mode) ---- */

/* Whether bytes [0, size) of descriptor @fd are fake file @i. */
static bool fd_matches(int fd, int i)
{
	struct fake_file ff = fake_file(i);
	unsigned char *got = malloc(CHUNK), *want = malloc(CHUNK);
	bool ok = got && want;
	for (uint64_t off = 0; ok && off < ff.size; off += CHUNK) {
		size_t n = ff.size - off < CHUNK ? (size_t)(ff.size - off) : CHUNK;
		gen_bytes(ff.seed, off, want, n);
		ok = pread(fd, got, n, (off_t)off) == (ssize_t)n && memcmp(got, want, n) == 0;
	}
	free(got);
	free(want);
	return ok;
}

/* Reads fake file @i chunk by chunk (fewer slots than chunks), checking every byte. */
static void read_chunks_ok(struct cache *c, struct cache_file *f, int i)
{
	for (uint64_t off = 0; off < fake_file(i).size; off += CHUNK)
		ck_assert_int_eq(read_check(c, f, i, off, CHUNK), (ssize_t)expect_len(i, off, CHUNK));
}

static uint64_t fd_blocks(int fd)
{
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/* Passthrough pins a complete file: eviction pressure never takes its bytes; the last put
 * gives them back to eviction, which punches them out of the file. */
START_TEST(test_passthrough_pins)
{
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	int a = fake_add("pt", 1, 4 * CHUNK + 99, 1);
	int b = fake_add("churn", 2, 40 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a), *g = open_plain(c, b);

	if (!store_dir[0]) {
		ck_assert_int_eq(cache_file_passthrough_get(c, f), -EOPNOTSUPP);
		goto out;
	}
	ck_assert_int_eq(cache_file_passthrough_get(c, f), -EAGAIN); /* nothing cached yet */
	read_check(c, f, a, 0, 2 * CHUNK);
	ck_assert_int_eq(cache_file_passthrough_get(c, f), -EAGAIN); /* partly cached */
	struct deadline dl = deadline_in_ms(5000);
	ck_assert_int_eq(cache_file_wait_complete(c, f, &dl), 0);
	int fd = cache_file_passthrough_get(c, f);
	ck_assert_int_ge(fd, 0);
	int fd2 = cache_file_passthrough_get(c, f); /* a second open */
	ck_assert_int_ge(fd2, 0);
	ck_assert(fd_matches(fd2, a));
	close(fd2);
	ck_assert(fd_matches(fd, a));
	unsigned before = ld(&fk.total);
	for (int round = 0; round < 3; round++)
		read_chunks_ok(c, g, b); /* 40 chunks through 11 free slots */
	ck_assert_uint_ge(ld(&fk.total) - before, 3 * 40);
	ck_assert(fd_matches(fd, a));
	for (unsigned k = 0; k < 5; k++)
		ck_assert_uint_eq(ld(&fk.fetches[a][k]), 1);
	cache_file_passthrough_put(c, f);
	ck_assert(fd_matches(fd, a)); /* one open left */
	cache_file_passthrough_put(c, f);
	read_chunks_ok(c, g, b);
	ck_assert_uint_eq(fd_blocks(fd), 0); /* evicted: punched out of the file */
	ck_assert_int_eq(cache_file_passthrough_get(c, f), -EAGAIN);
out:
	cache_file_put(c, f);
	cache_file_put(c, g);
	cache_free(c);
}
END_TEST

/* Only a version that matched its manifest entry opens in passthrough (verify = file). */
START_TEST(test_passthrough_verified_only)
{
	if (!store_dir[0])
		return;
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_FILE });
	int a = fake_add("good", 1, 3 * CHUNK + 5, 1);
	int b = fake_add("bad", 2, 3 * CHUNK + 5, 1);
	struct cache_file *f = open_ver(c, a, true, file_crc(a), 7, NULL);
	struct cache_file *g = open_ver(c, b, true, file_crc(b) ^ 1, 8, NULL);
	struct deadline dl = deadline_in_ms(5000);

	ck_assert_int_eq(cache_file_wait_complete(c, f, &dl), 0);
	int fd = cache_file_passthrough_get(c, f);
	ck_assert_int_ge(fd, 0);
	ck_assert(fd_matches(fd, a));
	ck_assert_int_lt(cache_file_wait_complete(c, g, &dl), 0);
	ck_assert_int_eq(cache_file_passthrough_get(c, g), -EAGAIN);
	cache_file_passthrough_put(c, f);
	cache_file_put(c, f);
	cache_file_put(c, g);
	cache_free(c);
}
END_TEST

/* A file larger than the cache never becomes complete: the open is served the ordinary way. */
START_TEST(test_passthrough_too_big)
{
	if (!store_dir[0])
		return;
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	int a = fake_add("big", 1, 20 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct deadline dl = deadline_in_ms(5000);

	ck_assert_int_eq(cache_file_wait_complete(c, f, &dl), -EAGAIN);
	ck_assert_int_eq(cache_file_passthrough_get(c, f), -EAGAIN);
	read_chunks_ok(c, f, a);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

/* A pinned chunk that was dropped from the index (mowsctl evict) keeps its range of the file:
 * a new fill of that chunk waits for it or takes it back, never writes under a reader. */
START_TEST(test_store_one_occupant)
{
	if (!store_dir[0])
		return;
	struct cache *c = cache_make((struct opts){ .verify = VERIFY_CHUNK });
	int a = fake_add("occ", 1, 4 * CHUNK, 1);
	struct cache_file *f = open_plain(c, a);
	struct deadline dl = deadline_in_ms(5000);

	ck_assert_int_eq(cache_file_wait_complete(c, f, &dl), 0);
	int fd = cache_file_passthrough_get(c, f);
	ck_assert_int_ge(fd, 0);
	cache_file_evict(c, f);
	read_check(c, f, a, 0, 4 * CHUNK); /* the pinned chunks are taken back */
	for (unsigned k = 0; k < 4; k++)
		ck_assert_uint_eq(ld(&fk.fetches[a][k]), 1);
	ck_assert(fd_matches(fd, a));
	cache_file_passthrough_put(c, f);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

static void foreach_count(void *arg, struct cache_file *f)
{
	(void)f;
	(*(unsigned *)arg)++;
}

START_TEST(test_foreach_current_only)
{
	struct cache *c = cache_make((struct opts){ 0 });
	int a = fake_add("one", 1, CHUNK, 1);
	int a2 = fake_add("one", 1, CHUNK, 2);
	int b = fake_add("two", 2, CHUNK, 1);
	struct cache_file *f = open_plain(c, a), *g = open_plain(c, b), *f2 = open_plain(c, a2);
	unsigned count = 0;

	cache_foreach_file(c, foreach_count, &count);
	ck_assert_uint_eq(count, 2);
	ck_assert_str_eq(cache_file_state_name(CACHE_FILE_STALE), "stale");
	cache_file_put(c, f);
	cache_file_put(c, f2);
	cache_file_put(c, g);
	cache_free(c);
}
END_TEST

static Suite *cache_suite(void)
{
	Suite *s = suite_create("cache");
	struct { const char *name; const TTest *t; } tests[] = {
		{ "index_offsets", test_index_offsets },
		{ "index_span_limit", test_index_span_limit },
		{ "index_huge_length", test_index_huge_length },
		{ "empty_file", test_empty_file },
		{ "stats_counters", test_stats_counters },
		{ "memory_taken_as_filled", test_memory_taken_as_filled },
		{ "single_flight_one_chunk", test_single_flight_one_chunk },
		{ "single_flight_many_chunks", test_single_flight_many_chunks },
		{ "single_flight_under_pressure", test_single_flight_under_pressure },
		{ "eviction_many_threads", test_eviction_many_threads },
		{ "pinned_not_evicted", test_pinned_not_evicted },
		{ "fill_error_not_cached", test_fill_error_not_cached },
		{ "fill_stale", test_fill_stale },
		{ "fill_deadline", test_fill_deadline },
		{ "fill_deadline_shared", test_fill_deadline_shared },
		{ "abandoned_fill_after_evict", test_abandoned_fill_after_evict },
		{ "abandoned_fill_after_replace", test_abandoned_fill_after_replace },
		{ "abandoned_fill_slot_reuse", test_abandoned_fill_slot_reuse },
		{ "versions", test_versions },
		{ "verify_file_good", test_verify_file_good },
		{ "verify_file_bad", test_verify_file_bad },
		{ "verify_file_check_soon", test_verify_file_check_soon },
		{ "verify_file_retrying_gated", test_verify_file_retrying_gated },
		{ "verify_api", test_verify_api },
		{ "verify_chunk_refill_differs", test_verify_chunk_refill_differs },
		{ "verify_strict", test_verify_strict },
		{ "verify_strict_concurrent", test_verify_strict_concurrent },
		{ "verify_strict_stuck", test_verify_strict_stuck },
		{ "prefetch", test_prefetch },
		{ "readahead", test_readahead },
		{ "foreach_current_only", test_foreach_current_only },
		{ "sources_and_serve", test_sources_and_serve },
		{ "serve_fill_begun", test_serve_fill_begun },
		{ "relay", test_relay },
		{ "relay_wait", test_relay_wait },
		{ "readahead_before_wait", test_readahead_before_wait },
		{ "readahead_next_file", test_readahead_next_file },
		{ "readahead_next_random", test_readahead_next_random },
		{ "readahead_next_chain_and_last", test_readahead_next_chain_and_last },
		{ "sidecar_storage_bad", test_sidecar_storage_bad },
		{ "sidecar_peer_bad", test_sidecar_peer_bad },
		{ "sidecar_chunk_too_big", test_sidecar_chunk_too_big },
		{ "provenance_refill", test_provenance_refill },
		{ "provenance_own_storage_bad", test_provenance_own_storage_bad },
		{ "passthrough_pins", test_passthrough_pins },
		{ "passthrough_verified_only", test_passthrough_verified_only },
		{ "passthrough_too_big", test_passthrough_too_big },
		{ "store_one_occupant", test_store_one_occupant },
	};

	for (size_t k = 0; k < sizeof(tests) / sizeof(tests[0]); k++) {
		TCase *tc = tcase_create(tests[k].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, 60);
		tcase_add_test(tc, tests[k].t);
		suite_add_tcase(s, tc);
	}
	return s;
}

static int run_suite(void)
{
	SRunner *sr = srunner_create(cache_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed;
}

/* The whole suite twice: chunks in the slab, then in files on the store's tmpfs (as root). */
int main(void)
{
	int failed = run_suite();
	snprintf(store_dir, sizeof(store_dir), "/tmp/mows-check-store.%d", (int)getpid());
	printf("again with cache_store = files in %s\n", store_dir);
	fflush(stdout);
	failed += run_suite();
	umount2(store_dir, MNT_DETACH); /* left by a test that failed before cache_free() */
	rmdir(store_dir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
