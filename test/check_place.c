/*
 * Pins net/place.h: known answers (computed with an independent Python implementation of
 * the definition in place.h), balance, minimal movement when a node joins or leaves, and an
 * order that depends only on the set of nodes.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
		for (int i = 1; i < 3; i++)
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

/* ---- balanced ownership (place_map) ---- */

#define MIB		(1ull << 20)
#define MAP_CHUNK	(4 * MIB)

/* A model shaped like the cluster bench's: 4 safetensors shards (~510 MiB) and small files. */
static size_t bench_model(struct place_file *files)
{
	static const char *const small[] = { "config.json", "tokenizer.json",
		"tokenizer_config.json", "generation_config.json", "model.safetensors.index.json" };
	static const uint64_t small_size[] = { 312, 178945, 41, 3, 1187 };
	char path[64];
	size_t n = 0;

	for (int i = 0; i < 5; i++, n++) {
		files[n].size = small_size[i];
		files[n].key = proto_file_key(small[i], files[n].size, 1700000000000000000ll);
	}
	for (int s = 0; s < 4; s++, n++) {
		snprintf(path, sizeof(path), "model-%05d-of-00004.safetensors", s + 1);
		files[n].size = (126ull + (uint64_t)s) * MIB + 9000 + 777 * (uint64_t)s;
		files[n].key = proto_file_key(path, files[n].size, 1700000000000000000ll);
	}
	return n;
}

static uint64_t total_size(const struct place_file *files, size_t n)
{
	uint64_t t = 0;

	for (size_t i = 0; i < n; i++)
		t += files[i].size;
	return t;
}

/* Node hashes of "pod-SET-i": many different member sets, as pod names would give. */
static void pod_hashes(uint64_t *h, unsigned n, unsigned set)
{
	char id[48];

	for (unsigned i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "pod-%u-%u", set, i);
		h[i] = place_node_hash(id);
	}
}

/* An independent Python implementation of the definition in place.h gave these. */
START_TEST(test_map_known_answers)
{
	static const struct place_file files[4] = {
		{ 0x1ed7c03f21faae50ull, 10500 }, { 0x0123456789abcdefull, 999 },
		{ 0xfedcba9876543210ull, 4000 }, { 0x5555aaaa5555aaaaull, 0 },
	};
	static const unsigned want[16][2] = {
		{ 1, 4 }, { 1, 2 }, { 0, 1 }, { 4, 3 }, { 2, 1 }, { 3, 0 }, { 3, 1 }, { 4, 0 },
		{ 1, 4 }, { 0, 2 }, { 4, 0 },			/* file 0, 11 chunks */
		{ 3, 4 },					/* file 1 */
		{ 0, 2 }, { 2, 3 }, { 2, 0 }, { 4, 3 },		/* file 2 */
	};
	static const uint64_t want_load[2][5] = { { 3000, 3000, 3000, 2999, 3500 },
						  { 3500, 3000, 3000, 3000, 2999 } };
	static const unsigned nchunks[4] = { 11, 1, 4, 0 };
	uint64_t h[5];
	unsigned got[3], k = 0;
	struct place_map *m;

	node_hashes(h, 5);
	m = place_map_new(h, 5, files, 4, 1000, 2);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(place_map_chunks(m), 16);
	ck_assert_uint_eq(place_map_levels(m), 2);
	for (int f = 0; f < 4; f++) {
		for (unsigned c = 0; c < nchunks[f]; c++, k++) {
			ck_assert_uint_eq(place_map_owners(m, files[f].key, c, got, 3), 2);
			ck_assert_uint_eq(got[0], want[k][0]);
			ck_assert_uint_eq(got[1], want[k][1]);
			ck_assert_uint_eq(place_map_owner(m, files[f].key, c), want[k][0]);
		}
		ck_assert_uint_eq(place_map_owner(m, files[f].key, nchunks[f]), PLACE_NONE);
	}
	for (unsigned j = 0; j < 2; j++)
		for (unsigned i = 0; i < 5; i++)
			ck_assert_uint_eq(place_map_load(m, j, i), want_load[j][i]);
	place_map_free(m);
}
END_TEST

/*
 * Bytes owned per node within +-15% of the mean and within one chunk (owners), within 25%
 * (replicas), for many member sets.
 */
static void check_balance(unsigned n, unsigned replicas)
{
	struct place_file files[16];
	size_t nf = bench_model(files);
	double mean = (double)total_size(files, nf) / n, worst = 0, worst_rep = 0;
	uint64_t h[MAX_NODES];
	unsigned bad = 0;

	for (unsigned set = 0; set < 100; set++) {
		struct place_map *m;

		pod_hashes(h, n, set);
		m = place_map_new(h, n, files, nf, MAP_CHUNK, replicas);
		ck_assert_ptr_nonnull(m);
		for (unsigned j = 0; j < place_map_levels(m); j++) {
			for (unsigned i = 0; i < n; i++) {
				double d = (double)place_map_load(m, j, i) - mean;

				d = d < 0 ? -d : d;
				if (j > 0) { /* replicas: no exact bound, see place.h */
					bad += d > 0.25 * mean;
					worst_rep = d / mean > worst_rep ? d / mean : worst_rep;
					continue;
				}
				bad += d > 0.15 * mean || d >= (double)MAP_CHUNK;
				worst = d / mean > worst ? d / mean : worst;
			}
		}
		place_map_free(m);
	}
	printf("place_map balance, %u nodes, replicas %u, 100 member sets: worst owner %.1f%% "
	       "from the mean, worst replica %.1f%%\n", n, replicas, worst * 100, worst_rep * 100);
	ck_assert_msg(bad == 0, "%u nodes: %u loads off by more than 15%% or a chunk (worst %.1f%%)",
		      n, bad, worst * 100);
}

START_TEST(test_map_balance_8)
{
	check_balance(8, 1);
}
END_TEST

START_TEST(test_map_balance_16)
{
	check_balance(16, 1);
}
END_TEST

/* Plain rendezvous misses the goal on the same model: the reason place_map exists. */
START_TEST(test_map_rendezvous_unbalanced)
{
	struct place_file files[16];
	size_t nf = bench_model(files);
	double mean = (double)total_size(files, nf) / 16, load[16] = { 0 }, worst = 0;
	uint64_t h[16];

	pod_hashes(h, 16, 0);
	for (size_t f = 0; f < nf; f++) {
		for (uint64_t c = 0; c * MAP_CHUNK < files[f].size; c++) {
			uint64_t b = files[f].size - c * MAP_CHUNK;

			load[place_owner(files[f].key, c, h, 16)] += (double)(b < MAP_CHUNK ? b : MAP_CHUNK);
		}
	}
	for (int i = 0; i < 16; i++)
		worst = load[i] / mean - 1 > worst ? load[i] / mean - 1 : worst;
	printf("plain rendezvous, 16 nodes: busiest node +%.0f%% over the mean\n", worst * 100);
	ck_assert(worst > 0.15);
}
END_TEST

/* The same members and files listed in any order: the same owners (as nodes) and digest. */
START_TEST(test_map_agreement)
{
	static const unsigned perm[16] = { 9, 3, 15, 0, 12, 6, 1, 14, 4, 11, 7, 2, 13, 5, 10, 8 };
	struct place_file files[16], rfiles[16];
	size_t nf = bench_model(files);
	uint64_t h[16], hp[16];
	struct place_map *a, *b;
	unsigned bad = 0, oa[3], ob[3];

	pod_hashes(h, 16, 7);
	for (int i = 0; i < 16; i++)
		hp[i] = h[perm[i]];
	for (size_t f = 0; f < nf; f++)
		rfiles[f] = files[nf - 1 - f];
	a = place_map_new(h, 16, files, nf, MAP_CHUNK, 3);
	b = place_map_new(hp, 16, rfiles, nf, MAP_CHUNK, 3);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq(place_map_digest(a), place_map_digest(b));
	for (size_t f = 0; f < nf; f++) {
		for (uint64_t c = 0; c * MAP_CHUNK < files[f].size; c++) {
			ck_assert_uint_eq(place_map_owners(a, files[f].key, c, oa, 3), 3);
			ck_assert_uint_eq(place_map_owners(b, files[f].key, c, ob, 3), 3);
			for (int j = 0; j < 3; j++)
				bad += perm[ob[j]] != oa[j];
		}
	}
	ck_assert_uint_eq(bad, 0);
	place_map_free(b);
	/* One member fewer: another digest. */
	b = place_map_new(h, 15, files, nf, MAP_CHUNK, 3);
	ck_assert_uint_ne(place_map_digest(a), place_map_digest(b));
	place_map_free(a);
	place_map_free(b);
}
END_TEST

/* Bytes whose owner differs between @a (nodes h[0..]) and @b (nodes h[shift..]). */
static uint64_t moved_bytes(const struct place_map *a, const struct place_map *b, unsigned shift,
			    const struct place_file *files, size_t nf, unsigned gone,
			    uint64_t *gone_bytes)
{
	uint64_t moved = 0;

	*gone_bytes = 0;
	for (size_t f = 0; f < nf; f++) {
		for (uint64_t c = 0; c * MAP_CHUNK < files[f].size; c++) {
			uint64_t bytes = files[f].size - c * MAP_CHUNK;
			unsigned oa = place_map_owner(a, files[f].key, c);
			unsigned ob = place_map_owner(b, files[f].key, c) + shift;

			bytes = bytes < MAP_CHUNK ? bytes : MAP_CHUNK;
			moved += oa != ob ? bytes : 0;
			*gone_bytes += oa == gone ? bytes : 0;
		}
	}
	return moved;
}

/*
 * A join or a leave moves the chunks it must (the newcomer's share, the leaver's chunks) and
 * some more, since loads shift along the order. Reports the mean fraction over 100 member
 * sets; asserts it stays below 4x the rendezvous minimum plus 5% of the model.
 */
static void check_movement(unsigned n)
{
	struct place_file files[16];
	size_t nf = bench_model(files);
	uint64_t total = total_size(files, nf), h[MAX_NODES + 1], gone_bytes;
	double join = 0, leave = 0;
	unsigned bad = 0;

	for (unsigned set = 0; set < 100; set++) {
		struct place_map *m, *mj, *ml;
		uint64_t moved;

		pod_hashes(h, n + 1, 1000 + set);
		m = place_map_new(h, n, files, nf, MAP_CHUNK, 1);
		mj = place_map_new(h, n + 1, files, nf, MAP_CHUNK, 1);
		ml = place_map_new(h + 1, n - 1, files, nf, MAP_CHUNK, 1);
		ck_assert(m && mj && ml);
		join += (double)moved_bytes(m, mj, 0, files, nf, PLACE_NONE, &gone_bytes) / total;
		moved = moved_bytes(m, ml, 1, files, nf, 0, &gone_bytes);
		bad += moved < gone_bytes; /* every chunk of the leaver moved */
		leave += (double)moved / total;
		place_map_free(m);
		place_map_free(mj);
		place_map_free(ml);
	}
	join /= 100;
	leave /= 100;
	printf("place_map movement, %u nodes: a join moves %.1f%% of the bytes (rendezvous "
	       "%.1f%%), a leave %.1f%% (rendezvous %.1f%%)\n", n, join * 100, 100.0 / (n + 1),
	       leave * 100, 100.0 / n);
	ck_assert_uint_eq(bad, 0);
	ck_assert_msg(join < 4.0 / (n + 1) + 0.05, "a join moved %.1f%%", join * 100);
	ck_assert_msg(leave < 4.0 / n + 0.05, "a leave moved %.1f%%", leave * 100);
}

START_TEST(test_map_movement_8)
{
	check_movement(8);
}
END_TEST

START_TEST(test_map_movement_16)
{
	check_movement(16);
}
END_TEST

/* Replicas: distinct owners, every level balanced, no more levels than nodes. */
START_TEST(test_map_replicas)
{
	struct place_file files[16];
	size_t nf = bench_model(files);
	uint64_t h[MAX_NODES];
	unsigned own[4], order[MAX_NODES], bad = 0;
	struct place_map *m;

	check_balance(8, 3);
	pod_hashes(h, 8, 3);
	m = place_map_new(h, 8, files, nf, MAP_CHUNK, 3);
	ck_assert_ptr_nonnull(m);
	for (size_t f = 0; f < nf; f++) {
		for (uint64_t c = 0; c * MAP_CHUNK < files[f].size; c++) {
			bool seen[MAX_NODES] = { false };

			ck_assert_uint_eq(place_map_owners(m, files[f].key, c, own, 4), 3);
			bad += own[0] == own[1] || own[0] == own[2] || own[1] == own[2];
			/* The rank starts with the owners and lists every node once. */
			place_map_rank(m, files[f].key, c, order);
			bad += memcmp(order, own, 3 * sizeof(*own)) != 0;
			for (int i = 0; i < 8; i++) {
				bad += order[i] >= 8 || seen[order[i]];
				if (order[i] < 8)
					seen[order[i]] = true;
			}
		}
	}
	ck_assert_uint_eq(bad, 0);
	place_map_free(m);
	m = place_map_new(h, 2, files, nf, MAP_CHUNK, 3);
	ck_assert_uint_eq(place_map_levels(m), 2);
	ck_assert_uint_eq(place_map_owners(m, files[0].key, 0, own, 4), 2);
	ck_assert_uint_ne(own[0], own[1]);
	place_map_free(m);
}
END_TEST

START_TEST(test_map_errors)
{
	struct place_file files[16], dup[2];
	size_t nf = bench_model(files);
	uint64_t h[3] = { 1, 2, 1 };
	unsigned order[3], want[3];
	struct place_map *m;

	errno = 0;
	ck_assert_ptr_null(place_map_new(h, 3, files, nf, MAP_CHUNK, 1));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(place_map_new(h, 0, files, nf, MAP_CHUNK, 1));
	ck_assert_ptr_null(place_map_new(h, 2, files, nf, 0, 1));
	ck_assert_ptr_null(place_map_new(h, 2, files, nf, MAP_CHUNK, 0));
	dup[0] = files[5];
	dup[1] = files[5];
	errno = 0;
	ck_assert_ptr_null(place_map_new(h, 2, dup, 2, MAP_CHUNK, 1));
	ck_assert_int_eq(errno, EINVAL);
	/* No files at all is a valid, empty map. */
	m = place_map_new(h, 2, NULL, 0, MAP_CHUNK, 1);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(place_map_chunks(m), 0);
	ck_assert_uint_eq(place_map_owner(m, files[0].key, 0), PLACE_NONE);
	place_map_free(m);
	/* A file the map lacks: PLACE_NONE, and the rank falls back to rendezvous. */
	m = place_map_new(h, 2, files, nf, MAP_CHUNK, 1);
	ck_assert_uint_eq(place_map_owner(m, 12345, 0), PLACE_NONE);
	ck_assert_uint_eq(place_map_owners(m, 12345, 0, order, 3), 0);
	place_map_rank(m, 12345, 0, order);
	place_rank(12345, 0, h, 2, want);
	ck_assert_uint_eq(order[0], want[0]);
	ck_assert_uint_eq(order[1], want[1]);
	ck_assert_uint_eq(place_map_load(m, 1, 0), 0);
	ck_assert_uint_eq(place_map_load(m, 0, 7), 0);
	place_map_free(NULL);
	place_map_free(m);
}
END_TEST

/* 1,000 nodes x ~16,000 chunks (a 65 GB model in 4 MiB chunks): time, balance, agreement. */
START_TEST(test_map_scale)
{
	enum { N = 1000, F = 17 };
	struct place_file files[F], rfiles[F];
	uint64_t *h = malloc(N * sizeof(*h)), *hr = malloc(N * sizeof(*h)), total = 0;
	struct timespec t0, t1;
	struct place_map *a, *b;
	double mean, worst = 0, secs;
	char path[64];

	ck_assert(h && hr);
	for (int f = 0; f < F; f++) {
		snprintf(path, sizeof(path), "model-%05d-of-%05d.safetensors", f + 1, F);
		files[f].size = 3824ull * 1000 * 1000 + 4321 * (uint64_t)f;
		files[f].key = proto_file_key(path, files[f].size, 1700000000000000000ll);
		rfiles[F - 1 - f] = files[f];
		total += files[f].size;
	}
	pod_hashes(h, N, 99);
	for (int i = 0; i < N; i++)
		hr[i] = h[N - 1 - i];
	clock_gettime(CLOCK_MONOTONIC, &t0);
	a = place_map_new(h, N, files, F, MAP_CHUNK, 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	b = place_map_new(hr, N, rfiles, F, MAP_CHUNK, 1);
	ck_assert(a && b);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	mean = (double)total / N;
	for (int i = 0; i < N; i++) {
		double d = (double)place_map_load(a, 0, (unsigned)i) / mean - 1;

		worst = (d < 0 ? -d : d) > worst ? (d < 0 ? -d : d) : worst;
	}
	printf("place_map: %d nodes x %zu chunks built in %.3f s, worst node %.1f%% from the "
	       "mean, map %zu KiB\n", N, place_map_chunks(a), secs, worst * 100,
	       place_map_chunks(a) * 4 / 1024);
	ck_assert_uint_eq(place_map_digest(a), place_map_digest(b));
	ck_assert(worst < 0.15);
	ck_assert(secs < 10);
	place_map_free(a);
	place_map_free(b);
	free(h);
	free(hr);
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
	tcase_add_test(tc, test_map_known_answers);
	tcase_add_test(tc, test_map_balance_8);
	tcase_add_test(tc, test_map_balance_16);
	tcase_add_test(tc, test_map_rendezvous_unbalanced);
	tcase_add_test(tc, test_map_agreement);
	tcase_add_test(tc, test_map_movement_8);
	tcase_add_test(tc, test_map_movement_16);
	tcase_add_test(tc, test_map_replicas);
	tcase_add_test(tc, test_map_errors);
	tcase_add_test(tc, test_map_scale);
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
