/* Check suite for net/owners.c: the balanced ownership map as fetches use it. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "net/owners.h"
#include "net/place.h"

#define MiB (1024ull * 1024)
#define CHUNK (4 * MiB)
#define MAXN 16

/* A 500 MiB model: four shards and two small files, like a safetensors checkpoint. */
static const struct place_file model[] = {
	{ .key = 0x1111, .size = 131 * MiB }, { .key = 0x2222, .size = 129 * MiB + 17 },
	{ .key = 0x3333, .size = 125 * MiB }, { .key = 0x4444, .size = 115 * MiB },
	{ .key = 0x5555, .size = 4096 },      { .key = 0x6666, .size = 20000 },
};
static uint64_t gen = 1;
static unsigned lists;

static int list_model(void *ctx, struct place_file **files, size_t *n, uint64_t *g)
{
	(void)ctx;
	lists++;
	*files = malloc(sizeof(model));
	memcpy(*files, model, sizeof(model));
	*n = sizeof(model) / sizeof(model[0]);
	*g = gen;
	return 0;
}

static void node_hashes(uint64_t *h, unsigned n)
{
	char id[32];
	for (unsigned i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "node%u", i + 1);
		h[i] = place_node_hash(id);
	}
}

/* Bytes owned per node (order[0] of each chunk) through owners_rank(). */
static void owned_bytes(struct owners *o, const uint64_t *h, unsigned n, uint64_t *bytes)
{
	unsigned order[MAXN];
	memset(bytes, 0, n * sizeof(*bytes));
	for (size_t f = 0; f < sizeof(model) / sizeof(model[0]); f++)
		for (uint64_t c = 0; c * CHUNK < model[f].size; c++) {
			uint64_t len = model[f].size - c * CHUNK < CHUNK ? model[f].size - c * CHUNK
									 : CHUNK;
			owners_rank(o, model[f].key, c, h, n, order);
			bytes[order[0]] += len;
		}
}

static double worst_dev(const uint64_t *bytes, unsigned n)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total += bytes[i];
	double mean = (double)total / n, worst = 0;
	for (unsigned i = 0; i < n; i++) {
		double d = ((double)bytes[i] - mean) / mean;
		if (d < 0)
			d = -d;
		if (d > worst)
			worst = d;
	}
	return worst;
}

/* With a map built for the set, owned bytes are balanced within 15% at 8 and 16 nodes,
 * whatever order the fetch lists the members in; without one, rendezvous is not. */
START_TEST(balanced_in_any_order)
{
	for (unsigned n = 8; n <= 16; n += 8) {
		uint64_t h[MAXN], shuffled[MAXN], bytes[MAXN], per_node[MAXN];
		node_hashes(h, n);
		struct owners *o = owners_new(CHUNK, 1);
		ck_assert_ptr_nonnull(o);
		owned_bytes(o, h, n, bytes);
		double plain = worst_dev(bytes, n);
		ck_assert_int_eq(owners_update(o, h, n, list_model, NULL), 0);
		owned_bytes(o, h, n, bytes);
		ck_assert_msg(worst_dev(bytes, n) <= 0.15, "%u nodes: worst %.1f%% off the mean", n,
			      100 * worst_dev(bytes, n));
		ck_assert_msg(plain > 0.15, "%u nodes: rendezvous alone %.1f%%: the test cannot fail",
			      n, 100 * plain);
		/* Same set, reversed: each node owns the same bytes. */
		for (unsigned i = 0; i < n; i++)
			shuffled[i] = h[n - 1 - i];
		owned_bytes(o, shuffled, n, per_node);
		for (unsigned i = 0; i < n; i++)
			ck_assert_uint_eq(per_node[n - 1 - i], bytes[i]);
		owners_free(o);
	}
}
END_TEST

/* A fetch that sees another member set ranks by rendezvous, exactly as place_rank. */
START_TEST(other_set_falls_back)
{
	uint64_t h[MAXN];
	unsigned got[MAXN], want[MAXN];
	node_hashes(h, 9);
	struct owners *o = owners_new(CHUNK, 1);
	ck_assert_int_eq(owners_update(o, h, 8, list_model, NULL), 0);
	for (uint64_t c = 0; c < 30; c++) {
		owners_rank(o, 0x1111, c, h, 9, got); /* a ninth node the map lacks */
		place_rank(0x1111, c, h, 9, want);
		ck_assert_mem_eq(got, want, 9 * sizeof(unsigned));
		owners_rank(o, 0x7777, c, h, 8, got); /* a file the map lacks */
		place_rank(0x7777, c, h, 8, want);
		ck_assert_mem_eq(got, want, 8 * sizeof(unsigned));
	}
	owners_free(o);
}
END_TEST

/* A new map only when the set or the file generation changes; the digest follows it. */
START_TEST(rebuilt_on_change_only)
{
	uint64_t h[MAXN], d1, d2, d3;
	unsigned m;
	node_hashes(h, 10);
	struct owners *o = owners_new(CHUNK, 2);
	owners_digest(o, &d1, &m);
	ck_assert_uint_eq(d1, 0);
	ck_assert_uint_eq(m, 0);
	ck_assert_int_eq(owners_update(o, h, 8, list_model, NULL), 0);
	owners_digest(o, &d1, &m);
	ck_assert_uint_eq(m, 8);
	ck_assert_uint_ne(d1, 0);
	ck_assert_int_eq(owners_update(o, h, 8, list_model, NULL), 0);
	owners_digest(o, &d2, &m);
	ck_assert_uint_eq(d1, d2);
	ck_assert_int_eq(owners_update(o, h, 10, list_model, NULL), 0);
	owners_digest(o, &d3, &m);
	ck_assert_uint_eq(m, 10);
	ck_assert_uint_ne(d3, d1);
	gen++;
	unsigned before = lists;
	ck_assert_int_eq(owners_update(o, h, 10, list_model, NULL), 0);
	ck_assert_uint_eq(lists, before + 1);
	owners_free(o);
}
END_TEST

/* owners_built_for(): the set the map was built for, in any order, and no other; a fetch
 * that sees false builds the map before it ranks (net/peer.c), so that it does not ask
 * another owner than the nodes whose heartbeat built theirs. Builders on two threads at
 * once leave one map for the last set. */
static void *update_thread(void *arg)
{
	uint64_t h[MAXN];
	node_hashes(h, 10);
	for (int i = 0; i < 50; i++)
		owners_update(arg, h, (i & 1) ? 10 : 9, list_model, NULL);
	return NULL;
}

START_TEST(built_for_its_set_only)
{
	uint64_t h[MAXN], rev[MAXN];
	unsigned m;
	uint64_t d;
	node_hashes(h, 10);
	for (unsigned i = 0; i < 8; i++)
		rev[i] = h[7 - i];
	struct owners *o = owners_new(CHUNK, 1);
	ck_assert(!owners_built_for(o, h, 8));
	ck_assert_int_eq(owners_update(o, h, 8, list_model, NULL), 0);
	ck_assert(owners_built_for(o, h, 8));
	ck_assert(owners_built_for(o, rev, 8));
	ck_assert(!owners_built_for(o, h, 7));
	ck_assert(!owners_built_for(o, h, 9));
	ck_assert(!owners_built_for(o, h + 1, 8)); /* as many members, one of them another */
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, update_thread, o), 0);
	for (int i = 0; i < 50; i++)
		owners_update(o, h, (i & 1) ? 10 : 9, list_model, NULL);
	pthread_join(t, NULL);
	ck_assert_int_eq(owners_update(o, h, 10, list_model, NULL), 0);
	ck_assert(owners_built_for(o, h, 10));
	owners_digest(o, &d, &m);
	ck_assert_uint_eq(m, 10);
	owners_free(o);
}
END_TEST

static Suite *owners_suite(void)
{
	Suite *s = suite_create("owners");
	TCase *tc = tcase_create("owners");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, balanced_in_any_order);
	tcase_add_test(tc, other_set_falls_back);
	tcase_add_test(tc, rebuilt_on_change_only);
	tcase_add_test(tc, built_for_its_set_only);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	log_set_level(LOG_CRIT);
	SRunner *sr = srunner_create(owners_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
