/*
 * Pins net/plan.h: who is asked for a chunk, in which order, with or without fill, and when
 * this node reads storage itself. Rank orders come from place_rank() itself, so the tests
 * state the policy in terms of ranks, not of particular hashes.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/place.h"
#include "net/plan.h"
#include "net/swarm.h"

#define N 16

static uint64_t hashes[N];
static unsigned order[N];

static void setup_nodes(unsigned n)
{
	char id[32];
	for (unsigned i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "node-%u", i);
		hashes[i] = place_node_hash(id);
	}
}

/* The rank of member @m for the chunk. */
static unsigned rank_of(const struct plan_input *in, unsigned m)
{
	unsigned o[N];
	place_rank(in->file_key, in->chunk, in->hashes, in->n, o);
	for (unsigned r = 0; r < in->n; r++)
		if (o[r] == m)
			return r;
	return ~0u;
}

/* Finds a chunk for which this node (member @self) sits at rank @want. */
static struct plan_input input_with_self_rank(unsigned n, unsigned self, unsigned want,
					      unsigned replicas)
{
	struct plan_input in = { .file_key = 0x1234, .hashes = hashes, .n = n, .self = self,
				 .replicas = replicas };
	for (in.chunk = 0; in.chunk < 100000; in.chunk++)
		if (rank_of(&in, self) == want)
			return in;
	ck_abort_msg("no chunk puts self at rank %u", want);
	return in;
}

START_TEST(alone_reads_storage)
{
	setup_nodes(1);
	struct plan_input in = { .file_key = 1, .chunk = 2, .hashes = hashes, .n = 1,
				 .replicas = 1 };
	struct plan pl;
	ck_assert_int_eq(plan_make(&in, order, &pl), 0);
	ck_assert_uint_eq(pl.n, 0);
	ck_assert(pl.self_owner);
}
END_TEST

/* An owner probes the next-ranked members, never asking a fill: several nodes that joined
 * at once may hold the ranks above the old owner, who still has the chunk. */
START_TEST(owner_probes_previous_owners_without_fill)
{
	setup_nodes(12);
	struct plan_input in = input_with_self_rank(12, 3, 0, 1);
	struct plan pl;
	ck_assert_int_eq(plan_make(&in, order, &pl), 0);
	ck_assert(pl.self_owner);
	ck_assert_uint_eq(pl.n, PLAN_PROBES);
	for (unsigned s = 0; s < pl.n; s++) {
		ck_assert(!pl.step[s].fill);
		ck_assert_uint_eq(rank_of(&in, pl.step[s].member), s + 1);
	}
	/* With fewer members, every other member is probed. */
	setup_nodes(4);
	in = input_with_self_rank(4, 1, 0, 1);
	ck_assert_int_eq(plan_make(&in, order, &pl), 0);
	ck_assert_uint_eq(pl.n, 3);
}
END_TEST

/* Beyond the next-ranked member, only members that ran well before us are probed: after a
 * join they hold what we own; in a cold burst none is older, one probe and then storage. */
START_TEST(owner_probes_only_older_members)
{
	setup_nodes(12);
	bool older[N] = { 0 };
	struct plan_input in = input_with_self_rank(12, 3, 0, 1);
	unsigned o[N];
	place_rank(in.file_key, in.chunk, hashes, 12, o);
	older[o[5]] = older[o[9]] = true;
	in.older = older;
	struct plan pl;
	ck_assert_int_eq(plan_make(&in, order, &pl), 0);
	ck_assert(pl.self_owner);
	ck_assert_uint_eq(pl.n, 3); /* the next-ranked member always, then the older ones */
	ck_assert_uint_eq(pl.step[0].member, o[1]);
	ck_assert_uint_eq(pl.step[1].member, o[5]);
	ck_assert_uint_eq(pl.step[2].member, o[9]);
	ck_assert(!pl.step[0].fill && !pl.step[1].fill && !pl.step[2].fill);
	memset(older, 0, sizeof(older)); /* a cold burst: the next-ranked member only */
	ck_assert_int_eq(plan_make(&in, order, &pl), 0);
	ck_assert(pl.self_owner);
	ck_assert_uint_eq(pl.n, 1);
	ck_assert_uint_eq(pl.step[0].member, o[1]);
}
END_TEST

/* Filling for a peer that asked us as its owner: probes only, never a fill request. */
START_TEST(probe_only_never_asks_a_fill)
{
	setup_nodes(12);
	for (unsigned want = 0; want < 12; want += 5) {
		struct plan_input in = input_with_self_rank(12, 2, want, 1);
		in.probe_only = true;
		struct plan pl;
		ck_assert_int_eq(plan_make(&in, order, &pl), 0);
		ck_assert(pl.self_owner);
		ck_assert_uint_eq(pl.n, PLAN_PROBES);
		for (unsigned s = 0; s < pl.n; s++) {
			ck_assert(!pl.step[s].fill);
			ck_assert_uint_ne(pl.step[s].member, in.self);
		}
	}
}
END_TEST

START_TEST(non_owner_asks_owner_with_fill)
{
	setup_nodes(8);
	struct plan_input in = input_with_self_rank(8, 3, 5, 1);
	struct plan pl;
	ck_assert_int_eq(plan_make(&in, order, &pl), 0);
	ck_assert(!pl.self_owner);
	ck_assert_uint_ge(pl.n, 2);
	/* Rank 0 first with fill; after it fails, rank 1 owns it and fills; and so on. */
	for (unsigned s = 0; s < pl.n; s++) {
		ck_assert_uint_ne(pl.step[s].member, in.self);
		ck_assert_uint_eq(rank_of(&in, pl.step[s].member), s);
		ck_assert(pl.step[s].fill);
	}
	ck_assert_uint_eq(pl.n, 1 + PLAN_EXTRA);
}
END_TEST

START_TEST(self_becomes_owner_after_failures)
{
	setup_nodes(8);
	/* We sit at rank 2 with one replica: after ranks 0 and 1 fail, we own it. */
	struct plan_input in = input_with_self_rank(8, 0, 2, 1);
	struct plan pl;
	ck_assert_int_eq(plan_make(&in, order, &pl), 0);
	ck_assert(pl.self_owner);
	ck_assert_uint_eq(pl.n, 2 + 5); /* two owners, then the 5 below us probed */
	ck_assert_uint_eq(rank_of(&in, pl.step[0].member), 0);
	ck_assert(pl.step[0].fill);
	ck_assert_uint_eq(rank_of(&in, pl.step[1].member), 1);
	ck_assert(pl.step[1].fill);
	for (unsigned s = 2; s < pl.n; s++) {
		ck_assert_uint_eq(rank_of(&in, pl.step[s].member), s + 1); /* no fill */
		ck_assert(!pl.step[s].fill);
	}
}
END_TEST

START_TEST(replicas_two)
{
	setup_nodes(8);
	struct plan_input in = input_with_self_rank(8, 4, 1, 2);
	struct plan pl;
	ck_assert_int_eq(plan_make(&in, order, &pl), 0);
	ck_assert(pl.self_owner);
	/* Rank 0 is the other owner: asked with fill first, then ranks 2.. without. */
	ck_assert_uint_eq(pl.n, 1 + 6);
	ck_assert(pl.step[0].fill);
	ck_assert_uint_eq(rank_of(&in, pl.step[0].member), 0);
	for (unsigned s = 1; s < pl.n; s++) {
		ck_assert(!pl.step[s].fill);
		ck_assert_uint_eq(rank_of(&in, pl.step[s].member), s + 1);
	}
}
END_TEST

START_TEST(hints_first_without_fill)
{
	setup_nodes(8);
	bool holds[N] = { 0 };
	struct plan_input in = input_with_self_rank(8, 0, 6, 1);
	unsigned o[N];
	place_rank(in.file_key, in.chunk, hashes, 8, o);
	holds[o[4]] = holds[o[2]] = holds[in.self] = true;
	in.holds = holds;
	struct plan pl;
	ck_assert_int_eq(plan_make(&in, order, &pl), 0);
	ck_assert_uint_ge(pl.n, 3);
	ck_assert_uint_eq(pl.step[0].member, o[2]);
	ck_assert(!pl.step[0].fill);
	ck_assert_uint_eq(pl.step[1].member, o[4]);
	ck_assert(!pl.step[1].fill);
	ck_assert_uint_eq(pl.step[2].member, o[0]);
	ck_assert(pl.step[2].fill);
	for (unsigned s = 0; s < pl.n; s++)
		ck_assert_uint_ne(pl.step[s].member, in.self);
}
END_TEST

START_TEST(never_self_never_twice_bounded)
{
	setup_nodes(N);
	for (unsigned n = 2; n <= N; n++)
		for (unsigned r = 1; r <= 3; r++)
			for (uint64_t c = 0; c < 200; c++) {
				struct plan_input in = { .file_key = 99, .chunk = c, .hashes = hashes,
							 .n = n, .self = (unsigned)c % n,
							 .replicas = r };
				struct plan pl;
				ck_assert_int_eq(plan_make(&in, order, &pl), 0);
				ck_assert_uint_le(pl.n, r + PLAN_EXTRA + PLAN_PROBES);
				for (unsigned s = 0; s < pl.n; s++) {
					ck_assert_uint_ne(pl.step[s].member, in.self);
					ck_assert_uint_lt(pl.step[s].member, n);
					for (unsigned t = 0; t < s; t++)
						ck_assert_uint_ne(pl.step[s].member,
								  pl.step[t].member);
				}
				/* An owner by rank always ends the plan by reading storage. */
				if (rank_of(&in, in.self) < r)
					ck_assert(pl.self_owner);
			}
}
END_TEST

START_TEST(bad_self)
{
	setup_nodes(4);
	struct plan_input in = { .hashes = hashes, .n = 4, .self = 4, .replicas = 1 };
	struct plan pl;
	ck_assert_int_eq(plan_make(&in, order, &pl), -EINVAL);
}
END_TEST

/* The swarm (net/swarm.h): the owner serves fanout requesters, then hands each later one
 * to the earliest that has room; the tree is acyclic and bounded. */
START_TEST(swarm_tree)
{
	struct swarm *s = swarm_new();
	ck_assert_ptr_nonnull(s);
	uint32_t parent_of[40] = { 0 };
	unsigned kids[40] = { 0 }, direct = 0;
	for (uint32_t who = 1; who <= 30; who++) {
		uint32_t parent = 0;
		if (swarm_admit(s, 0x1234, 7, who, 4, false, &parent)) {
			ck_assert_uint_lt(parent, who); /* arrived before: no cycle */
			ck_assert_uint_ge(parent, 1);
			parent_of[who] = parent;
			kids[parent]++;
		} else {
			direct++;
		}
	}
	ck_assert_uint_eq(direct, 4); /* none of the owner's sends ended meanwhile */
	for (uint32_t who = 1; who <= 30; who++)
		ck_assert_uint_le(kids[who], 4);
	/* Requesters 5..8 go to 1, 9..12 to 2: the earliest with room. */
	ck_assert_uint_eq(parent_of[5], 1);
	ck_assert_uint_eq(parent_of[8], 1);
	ck_assert_uint_eq(parent_of[9], 2);
	/* Depth: 30 requesters with fanout 4 are at most two levels below the owner. */
	for (uint32_t who = 1; who <= 30; who++)
		ck_assert(!parent_of[who] || !parent_of[parent_of[who]] ||
			  !parent_of[parent_of[parent_of[who]]]);
	/* One that asks again is served by the owner; so is every requester of another chunk
	 * and every requester with the swarm off. */
	uint32_t parent = 0;
	ck_assert(!swarm_admit(s, 0x1234, 7, 20, 4, false, &parent));
	ck_assert(!swarm_admit(s, 0x1234, 8, 20, 4, false, &parent));
	ck_assert(!swarm_admit(s, 0x9999, 7, 99, 0, false, &parent));
	/* Once the owner's sends end, it serves the next requesters itself again. */
	for (uint32_t who = 1; who <= 4; who++)
		swarm_done(s, 0x1234, 7, who);
	swarm_done(s, 0x1234, 7, 5); /* never served by the owner: no effect */
	for (uint32_t who = 31; who <= 34; who++)
		ck_assert(!swarm_admit(s, 0x1234, 7, who, 4, false, &parent));
	ck_assert(swarm_admit(s, 0x1234, 7, 35, 4, false, &parent));
	ck_assert_uint_eq(parent, 7); /* 1..6 have 4 each, 7 has 29 and 30 */
	for (uint32_t who = 100; who < 110; who++)
		ck_assert(!swarm_admit(s, 0x9999, 7, who, 0, false, &parent));
	swarm_free(s);
}
END_TEST

/* Past SWARM_MAX_REQ requesters of one chunk (a cold burst of hundreds of nodes), the later
 * ones form a chain: each is handed to the one that came before it, never served by the
 * owner, whose uplink would otherwise carry the chunk to every one of them. */
START_TEST(swarm_overflow_chain)
{
	struct swarm *s = swarm_new();
	uint32_t parent = 0, served = 0;
	for (uint32_t who = 1; who <= SWARM_MAX_REQ; who++)
		served += !swarm_admit(s, 0x55, 9, who, 1, false, &parent);
	ck_assert_uint_eq(served, 1);
	for (uint32_t who = SWARM_MAX_REQ + 1; who <= 1000; who++) {
		ck_assert_msg(swarm_admit(s, 0x55, 9, who, 1, who % 2 == 0, &parent),
			      "requester %u past the record was served by the owner", who);
		ck_assert_uint_eq(parent, who - 1); /* arrived before it: no cycle */
	}
	/* The chain's last link asking again is served; a recorded requester too. */
	ck_assert(!swarm_admit(s, 0x55, 9, 1000, 1, false, &parent));
	ck_assert(!swarm_admit(s, 0x55, 9, 3, 1, false, &parent));
	swarm_free(s);
}
END_TEST

/* A busy owner (its uplink taken by other sends) serves each chunk to its first requester
 * only and hands the rest on, to the earlier requester with the fewest children (at most
 * fanout); an owner that is not busy serves as before. */
START_TEST(swarm_busy_owner)
{
	struct swarm *s = swarm_new();
	uint32_t parent = 0;
	ck_assert(!swarm_admit(s, 0x77, 3, 1, 4, true, &parent)); /* the first: served */
	for (uint32_t who = 2; who <= 5; who++) { /* each to the one before: no children yet */
		parent = 0;
		ck_assert(swarm_admit(s, 0x77, 3, who, 4, true, &parent));
		ck_assert_uint_eq(parent, who - 1);
	}
	/* Not busy: served up to fanout at once (1 is being served: 3 more). */
	ck_assert(!swarm_admit(s, 0x77, 3, 20, 4, false, &parent));
	ck_assert(!swarm_admit(s, 0x77, 3, 21, 4, false, &parent));
	ck_assert(!swarm_admit(s, 0x77, 3, 22, 4, false, &parent));
	ck_assert(swarm_admit(s, 0x77, 3, 23, 4, false, &parent));
	ck_assert_uint_eq(parent, 1); /* not busy: the earliest with room */
	/* Busy again: 1..4 have a child each, 5 and 20..23 none: the earliest of those. */
	ck_assert(swarm_admit(s, 0x77, 3, 6, 4, true, &parent));
	ck_assert_uint_eq(parent, 5);
	/* The owner's sends ended: still busy, so later requesters still go to holders. */
	for (uint32_t who = 20; who <= 22; who++)
		swarm_done(s, 0x77, 3, who);
	swarm_done(s, 0x77, 3, 1);
	ck_assert(swarm_admit(s, 0x77, 3, 7, 4, true, &parent));
	ck_assert_uint_eq(parent, 20);
	/* Not busy: served up to fanout at once, as without the flag. */
	ck_assert(!swarm_admit(s, 0x77, 3, 8, 4, false, &parent));
	/* A requester asking again (its parent failed it) is served by the owner, busy or not. */
	ck_assert(!swarm_admit(s, 0x77, 3, 4, 4, true, &parent));
	/* Fanout 1: each later requester goes to the one before it (a relay chain). */
	ck_assert(!swarm_admit(s, 0x78, 0, 1, 1, true, &parent));
	ck_assert(swarm_admit(s, 0x78, 0, 2, 1, true, &parent));
	ck_assert(swarm_admit(s, 0x78, 0, 3, 1, true, &parent));
	ck_assert_uint_eq(parent, 2);
	ck_assert(swarm_admit(s, 0x78, 0, 4, 1, true, &parent));
	ck_assert_uint_eq(parent, 3);
	/* The swarm off: never redirected, busy or not. */
	ck_assert(!swarm_admit(s, 0x79, 0, 1, 0, true, &parent));
	ck_assert(!swarm_admit(s, 0x79, 0, 2, 0, true, &parent));
	swarm_free(s);
}
END_TEST

/* The table is bounded: many chunks replace the least recently used entries, and a
 * forgotten chunk only means the owner serves its requesters itself. */
START_TEST(swarm_bounded)
{
	struct swarm *s = swarm_new();
	uint32_t parent = 0;
	for (uint64_t c = 0; c < 100000; c++)
		ck_assert(!swarm_admit(s, 42, c, 1, 4, false, &parent));
	for (uint32_t who = 11; who <= 13; who++) /* 1 is the first already */
		ck_assert(!swarm_admit(s, 42, 99999, who, 4, false, &parent));
	ck_assert(swarm_admit(s, 42, 99999, 20, 4, false, &parent));
	ck_assert_uint_eq(parent, 1); /* recorded first for chunk 99999 */
	/* More requesters than an entry records: the owner serves fanout of them, the rest
	 * are handed on (past the record, in a chain: swarm_overflow_chain). */
	unsigned redirected = 0;
	for (uint32_t who = 1000; who < 1000 + 2 * SWARM_MAX_REQ; who++)
		redirected += swarm_admit(s, 43, 0, who, 4, false, &parent);
	ck_assert_uint_eq(redirected, 2 * SWARM_MAX_REQ - 4);
	swarm_free(s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("plan");
	TCase *tc = tcase_create("plan");
	tcase_add_test(tc, alone_reads_storage);
	tcase_add_test(tc, owner_probes_previous_owners_without_fill);
	tcase_add_test(tc, probe_only_never_asks_a_fill);
	tcase_add_test(tc, owner_probes_only_older_members);
	tcase_add_test(tc, non_owner_asks_owner_with_fill);
	tcase_add_test(tc, self_becomes_owner_after_failures);
	tcase_add_test(tc, replicas_two);
	tcase_add_test(tc, hints_first_without_fill);
	tcase_add_test(tc, never_self_never_twice_bounded);
	tcase_add_test(tc, bad_self);
	tcase_add_test(tc, swarm_tree);
	tcase_add_test(tc, swarm_bounded);
	tcase_add_test(tc, swarm_busy_owner);
	tcase_add_test(tc, swarm_overflow_chain);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
