/*
 * Serving never waits on fetching: a peer's request that this node fill a chunk as its
 * owner (cache_serve_chunk with fill, what net/serve.c calls) completes while every cache
 * fill thread is busy waiting on a remote peer. Before the fix such a request queued behind
 * those fills, so nodes whose fill threads waited on each other stalled until timeouts.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache.h"
#include "common/config.h"
#include "common/deadline.h"

#define CHUNK (64u * 1024)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static bool released;                 /* protected by lock */
static atomic_uint remote_waiting;    /* fills inside the "remote" source */

static atomic_uint remote_probes;     /* probe_only calls: holders asked, no fill */

/*
 * A remote source that waits for a peer that does not answer until the test says so, as a
 * fill request to a peer can. A probe (probe_only) is answered at once, as the peers source
 * answers it: asking a holder never waits on anyone's fill.
 */
static int remote_fetch(void *ctx, struct cache_file *f, uint64_t chunk, void *dst,
			size_t len, const struct deadline *dl, struct cache_fetch *out)
{
	(void)ctx, (void)f, (void)chunk, (void)dst, (void)len, (void)dl;
	if (out->probe_only) {
		atomic_fetch_add(&remote_probes, 1);
		return -ENOENT;
	}
	atomic_fetch_add(&remote_waiting, 1);
	pthread_mutex_lock(&lock);
	while (!released)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	return -ENOENT;
}

static int local_fetch(void *ctx, struct cache_file *f, uint64_t chunk, void *dst, size_t len,
		       const struct deadline *dl, struct cache_fetch *out)
{
	(void)ctx, (void)f, (void)dl, (void)out;
	memset(dst, (int)(0x40 + chunk), len);
	return 0;
}

static const struct cache_source_ops remote_ops = { .name = "remote", .remote = true,
						    .fetch = remote_fetch };
static const struct cache_source_ops local_ops = { .name = "local", .fetch = local_fetch };

struct reader {
	struct cache *c;
	struct cache_file *f;
	uint64_t chunk;
	ssize_t rc;
};

static void *read_main(void *arg)
{
	struct reader *r = arg;
	struct cache_span sp[2];
	unsigned n = 0;
	r->rc = cache_read(r->c, r->f, r->chunk * CHUNK, CHUNK, false, sp, 2, &n);
	if (r->rc > 0)
		cache_read_done(r->c, sp, n);
	return NULL;
}

static struct cache *make_cache(void)
{
	struct mows_config cfg;
	char err[512];
	config_defaults(&cfg);
	cfg.chunk_size = CHUNK;
	cfg.max_memory = 16ull * CHUNK;
	cfg.hugepages = HUGEPAGES_OFF;
	cfg.fill_threads = 1;
	cfg.fill_timeout_ms = 20000;
	cfg.readahead_chunks = 0;
	struct cache *c = cache_new(&cfg, err, sizeof(err));
	ck_assert_msg(c != NULL, "cache_new: %s", err);
	ck_assert_int_eq(cache_add_source(c, &remote_ops, NULL), 0);
	ck_assert_int_eq(cache_add_source(c, &local_ops, NULL), 0);
	ck_assert_int_eq(cache_start(c), 0);
	return c;
}

static struct cache_file *open_file(struct cache *c)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	struct cache_file_info info = { .relpath = "model.bin", .fd = fd, .dev = 1, .ino = 2,
					.size = 8ull * CHUNK, .mtime_ns = 3, .key = 4 };
	bool replaced;
	struct cache_file *f = cache_file_open(c, &info, &replaced);
	ck_assert_ptr_nonnull(f);
	return f;
}

/* Asks for @chunk as owner and checks it arrives, within 2 s, with its bytes. */
static void serve_as_owner(struct cache *c, struct cache_file *f, uint64_t chunk)
{
	struct deadline dl = deadline_in_ms(2000);
	struct cache_span span;
	uint32_t crc;
	uint64_t t0 = mono_ns();
	int rc = cache_serve_chunk(c, f, chunk, true, &dl, &span, &crc);
	uint64_t ms = (mono_ns() - t0) / 1000000;
	ck_assert_msg(rc == 0, "owner fill of chunk %llu: %s after %llu ms (queued behind fills "
		      "waiting on peers?)", (unsigned long long)chunk, strerror(-rc),
		      (unsigned long long)ms);
	ck_assert_uint_eq(span.len, CHUNK);
	const unsigned char *b = span.data;
	ck_assert_uint_eq(b[0], 0x40 + chunk);
	ck_assert_uint_eq(b[CHUNK - 1], 0x40 + chunk);
	ck_assert_uint_lt(ms, 1000);
	cache_read_done(c, &span, 1);
}

START_TEST(owner_fill_while_fill_threads_wait_on_peers)
{
	struct cache *c = make_cache();
	struct cache_file *f = open_file(c);
	/* The only fill thread takes chunk 0 and waits on a "peer"; chunk 3 queues behind it. */
	struct reader r0 = { c, f, 0, 0 }, r3 = { c, f, 3, 0 };
	pthread_t t0, t3;
	ck_assert_int_eq(pthread_create(&t0, NULL, read_main, &r0), 0);
	struct deadline dl = deadline_in_ms(5000);
	while (atomic_load(&remote_waiting) == 0 && !deadline_passed(&dl))
		usleep(1000);
	ck_assert_uint_eq(atomic_load(&remote_waiting), 1);
	ck_assert_int_eq(pthread_create(&t3, NULL, read_main, &r3), 0);
	usleep(100000);
	/* A chunk nobody asked for yet, and one already waiting in the queue. */
	serve_as_owner(c, f, 5);
	serve_as_owner(c, f, 3);
	ck_assert_uint_eq(atomic_load(&remote_waiting), 1); /* still stuck on its "peer" */
	pthread_mutex_lock(&lock);
	released = true;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	pthread_join(t0, NULL);
	pthread_join(t3, NULL);
	ck_assert_int_eq(r0.rc, CHUNK);
	ck_assert_int_eq(r3.rc, CHUNK);
	cache_file_put(c, f);
	cache_free(c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ownerfill");
	TCase *tc = tcase_create("ownerfill");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, owner_fill_while_fill_threads_wait_on_peers);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
