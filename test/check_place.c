/*
 * Pins net/place.h: known answers (computed with an independent Python implementation of
 * the definition in place.h), balance, minimal movement when a node joins or leaves, and an
 * order that depends only on the set of nodes.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/place.h"
#include "net/proto.h"

#define NFILES		1000
#define NCHUNKS		1000
#define NKEYS		(NFILES * NCHUNKS)
#define MAX_NODES	16

/* The test's keys: 1000 files of 1000 chunks each, as a model directory would have. */
static uint64_t file_keys[NFILES];

static void make_file_keys(void)
{
	char path[64];

	for (int f = 0; f < NFILES; f++) {
		snprintf(path, sizeof(path), "model/shard-%05d-of-01000.safetensors", f);
		file_keys[f] = proto_file_key(path, 4000ull << 20, 1700000000000000000ll + f);
	}
}

static void node_hashes(uint64_t *h, unsigned n)
{
	char id[32];

	for (unsigned i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "node-%u", i);
		h[i] = place_node_hash(id);
	}
}

/* Owner of every key, as a node number ("node-N"), for the nodes listed in @ids. */
static unsigned char *owners(const unsigned *ids, unsigned n)
{
	unsigned char *own = malloc(NKEYS);
	uint64_t h[MAX_NODES];
	unsigned bad = 0;
	char id[32];

	ck_assert_ptr_nonnull(own);
	for (unsigned i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "node-%u", ids[i]);
		h[i] = place_node_hash(id);
	}
	for (int f = 0; f < NFILES; f++) {
		for (int c = 0; c < NCHUNKS; c++) {
			unsigned o = place_owner(file_keys[f], (uint64_t)c, h, n);

			bad += o >= n;
			own[f * NCHUNKS + c] = o < n ? (unsigned char)ids[o] : 0xff;
		}
	}
	/* One assertion, not a million: Check writes a record for every passing one. */
	ck_assert_uint_eq(bad, 0);
	return own;
}

START_TEST(test_known_answers)
{
	static const unsigned want[4][8] = {
		{ 7, 1, 5, 4, 3, 2, 0, 6 },
		{ 1, 2, 0, 4, 3, 7, 6, 5 },
		{ 0, 4, 1, 6, 3, 2, 7, 5 },
		{ 5, 7, 4, 3, 0, 2, 1, 6 },
	};
	uint64_t h[8];
	unsigned order[8];

	node_hashes(h, 8);
	ck_assert_uint_eq(h[0], 0x2b629ac6ec40915aull);
	ck_assert_uint_eq(h[1], 0x5a6b4bff174abfefull);
	ck_assert_uint_eq(h[2], 0x27b3adcbb8972bc2ull);
	for (uint64_t c = 0; c < 4; c++) {
		place_rank(0x1ed7c03f21faae50ull, c, h, 8, order);
		for (int i = 0; i < 8; i++)
			ck_assert_uint_eq(order[i], want[c][i]);
		ck_assert_uint_eq(place_owner(0x1ed7c03f21faae50ull, c, h, 8), want[c][0]);
	}
}
END_TEST

START_TEST(test_edge_cases)
{
	uint64_t h[3] = { 42, 42, 7 };
	unsigned order[3];

	ck_assert_uint_eq(place_owner(1, 2, h, 0), PLACE_NONE);
	place_rank(1, 2, h, 0, order);
	ck_assert_uint_eq(place_owner(1, 2, h, 1), 0);
	place_rank(1, 2, h, 1, order);
	ck_assert_uint_eq(order[0], 0);
	/* Equal hashes (the same id twice) tie; the lower index ranks first, every time. */
	for (uint64_t c = 0; c < 1000; c++) {
		unsigned o = place_owner(9, c, h, 3);

		place_rank(9, c, h, 3, order);
		ck_assert_uint_eq(order[0], o);
		ck_assert_uint_ne(o, 1);
		for (int i = 0; i < 3; i++)
			if (order[i] == 1)
				ck_assert_uint_eq(order[i - 1], 0);
	}
}
END_TEST

START_TEST(test_balance_8)
{
	static const unsigned ids[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	unsigned char *own = owners(ids, 8);
	unsigned count[8] = { 0 };
	double share = NKEYS / 8.0;

	for (int k = 0; k < NKEYS; k++)
		count[own[k]]++;
	for (int i = 0; i < 8; i++) {
		ck_assert_msg(count[i] > share * 0.95 && count[i] < share * 1.05,
			      "node-%d owns %u of %d keys, expected %.0f +- 5%%", i, count[i],
			      NKEYS, share);
	}
	free(own);
}
END_TEST

START_TEST(test_join_moves_only_to_new_node)
{
	static const unsigned ids[9] = { 0, 1, 2, 3, 4, 5, 6, 7, 8 };
	unsigned char *before = owners(ids, 8), *after = owners(ids, 9);
	double share = NKEYS / 9.0;
	unsigned moved = 0, elsewhere = 0;

	for (int k = 0; k < NKEYS; k++) {
		if (before[k] == after[k])
			continue;
		elsewhere += after[k] != 8;
		moved++;
	}
	ck_assert_msg(elsewhere == 0, "%u keys moved between old nodes", elsewhere);
	ck_assert_msg(moved > share * 0.95 && moved < share * 1.05,
		      "%u keys moved to the 9th node, expected %.0f +- 5%%", moved, share);
	free(before);
	free(after);
}
END_TEST

START_TEST(test_leave_moves_only_its_keys)
{
	static const unsigned all[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	static const unsigned rest[7] = { 0, 1, 2, 4, 5, 6, 7 };
	unsigned char *before = owners(all, 8), *after = owners(rest, 7);
	unsigned moved = 0, had = 0, got[8] = { 0 }, wrong = 0;

	for (int k = 0; k < NKEYS; k++) {
		if (before[k] == 3) {
			had++;
			got[after[k]]++;
		}
		if (before[k] != after[k]) {
			wrong += before[k] != 3;
			moved++;
		}
	}
	ck_assert_uint_eq(got[3], 0);
	ck_assert_msg(wrong == 0, "%u keys of staying nodes moved", wrong);
	ck_assert_uint_eq(moved, had);
	/* The leaver's keys spread evenly over the others. */
	for (int i = 0; i < 8; i++)
		if (i != 3)
			ck_assert_msg(got[i] > had / 7.0 * 0.9 && got[i] < had / 7.0 * 1.1,
				      "node-%d took %u of node-3's %u keys", i, got[i], had);
	free(before);
	free(after);
}
END_TEST

/* The ranking depends on the set of nodes only, and dropping a node keeps the others' order. */
START_TEST(test_rank_determinism)
{
	static const unsigned perm[8] = { 5, 2, 7, 0, 3, 6, 1, 4 };
	uint64_t h[8], hp[8], h7[7];
	unsigned order[8], order_p[8], again[8], order7[7];
	unsigned bad = 0;

	node_hashes(h, 8);
	for (int i = 0; i < 8; i++)
		hp[i] = h[perm[i]];
	for (int i = 0, j = 0; i < 8; i++)
		if (i != 3)
			h7[j++] = h[i];
	/* Counts violations and asserts once: Check writes a record for every passing assert. */
	for (int f = 0; f < NFILES; f++) {
		for (uint64_t c = 0; c < 100; c++) {
			bool seen[8] = { false };

			place_rank(file_keys[f], c, h, 8, order);
			place_rank(file_keys[f], c, h, 8, again);
			bad += memcmp(order, again, sizeof(order)) != 0;
			bad += order[0] != place_owner(file_keys[f], c, h, 8);
			for (int i = 0; i < 8; i++) {
				if (order[i] >= 8 || seen[order[i]]) {
					bad++;
					break;
				}
				seen[order[i]] = true;
			}
			/* The same nodes listed in another order: the same ranking of nodes. */
			place_rank(file_keys[f], c, hp, 8, order_p);
			for (int i = 0; i < 8; i++)
				bad += perm[order_p[i]] != order[i];
			/* Without node 3: the others keep their relative order. */
			place_rank(file_keys[f], c, h7, 7, order7);
			for (int i = 0, j = 0; i < 8; i++) {
				if (order[i] == 3)
					continue;
				bad += order7[j] + (order7[j] >= 3) != order[i];
				j++;
			}
		}
	}
	ck_assert_uint_eq(bad, 0);
}
END_TEST

static Suite *place_suite(void)
{
	Suite *s = suite_create("place");
	TCase *tc = tcase_create("core");

	make_file_keys();
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_known_answers);
	tcase_add_test(tc, test_edge_cases);
	tcase_add_test(tc, test_balance_8);
	tcase_add_test(tc, test_join_moves_only_to_new_node);
	tcase_add_test(tc, test_leave_moves_only_its_keys);
	tcase_add_test(tc, test_rank_determinism);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(place_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
