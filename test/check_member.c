/*
 * Pins net/member.h: the table stays bounded while thousands of distinct addresses come and
 * go over a daemon's life; a live peer among hundreds of dead addresses is probed, and so in
 * the member set, within 2 heartbeat rounds; departed entries are reclaimed; the digest
 * depends only on the member set; a full table refuses (and says so once).
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/member.h"

#define NS 1000000ull
#define ROUND_NS (1000 * NS)

static struct sockaddr_in addr_n(unsigned n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(7070) };
	sa.sin_addr.s_addr = htonl(0x0a000000u + n); /* 10.x.y.z, distinct for each n */
	return sa;
}

static struct member *seen(struct members *t, unsigned n)
{
	struct sockaddr_in sa = addr_n(n);
	return members_resolve_seen(t, (struct sockaddr *)&sa, sizeof(sa));
}

/* Addresses at or past LIVE_BASE answer (a live node); the others never do. */
#define LIVE_BASE 1000000u

/*
 * One heartbeat round as net/peer.c runs it: reclaim, pick, and "probe": a picked live
 * address answers (up, with its node id), a dead one does not (down after a while).
 */
static void heartbeat_round(struct members *t, uint64_t now, unsigned probes)
{
	struct member *gone[64];
	unsigned k;
	while ((k = members_reclaim(t, now, 3 * ROUND_NS, gone, 64)))
		for (unsigned i = 0; i < k; i++)
			member_put(gone[i]);
	struct member **ms = calloc(t->n + 1, sizeof(*ms));
	unsigned n = members_pick_round(t, now, members_ping_budget(t->n), probes, ROUND_NS, ms,
					t->n);
	for (unsigned i = 0; i < n; i++) {
		struct member *m = ms[i];
		unsigned a = ntohl(((struct sockaddr_in *)&m->sa)->sin_addr.s_addr) - 0x0a000000u;
		if (a >= LIVE_BASE) {
			char id[32];
			snprintf(id, sizeof(id), "live-%u", a - LIVE_BASE);
			member_set_id(m, id);
			m->up = true;
			m->last_seen_ns = now;
			m->probe_fails = 0;
		} else {
			m->probe_fails++; /* no answer: it backs off */
		}
		member_put(m);
	}
	free(ms);
}

static bool in_live_set(struct members *t, const char *id, uint64_t now)
{
	struct member *out[64];
	uint64_t h[64];
	unsigned n = members_live(t, now, out, h, 64);
	bool found = false;
	for (unsigned i = 0; i < n; i++) {
		found = found || !strcmp(out[i]->node_id, id);
		member_put(out[i]);
	}
	return found;
}

START_TEST(live_among_256_dead_within_two_rounds)
{
	struct members t;
	members_init(&t);
	members_resolve_begin(&t);
	for (unsigned i = 0; i < 256; i++)
		seen(&t, i);
	seen(&t, LIVE_BASE + 7);
	members_resolve_end(&t, 0);
	uint64_t now = ROUND_NS;
	unsigned rounds = 0;
	while (!in_live_set(&t, "live-7", now) && rounds < 10) {
		heartbeat_round(&t, now, MEMBERS_PROBES);
		now += ROUND_NS;
		rounds++;
	}
	ck_assert_msg(rounds <= 2, "the live peer joined after %u rounds", rounds);
	members_release(&t);
}
END_TEST

START_TEST(churn_of_thousands_stays_bounded)
{
	struct members t;
	members_init(&t);
	unsigned next_dead = 0, next_live = 0, max_n = 0;
	unsigned dead[200], live[8];
	uint64_t now = ROUND_NS;
	for (unsigned i = 0; i < 200; i++)
		dead[i] = next_dead++;
	for (unsigned i = 0; i < 8; i++)
		live[i] = LIVE_BASE + next_live++;
	for (unsigned round = 0; round < 400; round++) {
		/* Pods come and go: 20 dead addresses and, every 10 rounds, a live node replaced. */
		for (unsigned i = 0; i < 20; i++)
			dead[(round * 20 + i) % 200] = next_dead++;
		char want[32] = "";
		if (round % 10 == 0) {
			unsigned slot = round / 10 % 8;
			live[slot] = LIVE_BASE + next_live++;
			snprintf(want, sizeof(want), "live-%u", live[slot] - LIVE_BASE);
		}
		members_resolve_begin(&t);
		for (unsigned i = 0; i < 200; i++)
			seen(&t, dead[i]);
		for (unsigned i = 0; i < 8; i++)
			seen(&t, live[i]);
		members_resolve_end(&t, now);
		uint64_t joined_by = now + 2 * ROUND_NS;
		for (unsigned r = 0; r < 2; r++) {
			heartbeat_round(&t, now, MEMBERS_PROBES);
			now += ROUND_NS;
		}
		if (want[0])
			ck_assert_msg(in_live_set(&t, want, now) && now <= joined_by + ROUND_NS,
				      "round %u: %s not in the member set after 2 rounds", round, want);
		max_n = t.n > max_n ? t.n : max_n;
	}
	ck_assert_uint_ge(next_dead, 8000);      /* thousands of distinct addresses seen */
	ck_assert_uint_le(max_n, 208 + 20 * 4 + 8); /* current set plus those lingering */
	ck_assert_uint_ge(t.reclaimed, t.added - t.n);
	printf("churn: %u distinct addresses, at most %u entries, %llu reclaimed\n",
	       next_dead + next_live, max_n, (unsigned long long)t.reclaimed);
	members_release(&t);
}
END_TEST

/* 1,000 members up: a round pings O(log n) of them, suspects first, and every member in
 * turn (the one heard from longest ago). */
START_TEST(pings_per_round_are_logarithmic)
{
	struct members t;
	members_init(&t);
	static uint64_t pinged_at[1000];
	members_resolve_begin(&t);
	for (unsigned i = 0; i < 1000; i++) {
		struct member *m = seen(&t, i);
		char id[32];
		snprintf(id, sizeof(id), "n%u", i);
		member_set_id(m, id);
		m->up = true;
		m->hb = (struct link *)&t; /* a heartbeat link; never dereferenced here */
		m->last_seen_ns = 1 + i;
	}
	members_resolve_end(&t, 0);
	unsigned budget = members_ping_budget(t.n);
	ck_assert_uint_eq(budget, 12);
	t.v[777]->suspect = true;
	t.v[777]->last_seen_ns = 999999;
	struct member *ms[1000];
	uint64_t now = ROUND_NS;
	unsigned rounds = 0;
	for (; rounds < 200; rounds++, now += ROUND_NS) {
		unsigned n = members_pick_round(&t, now, budget, MEMBERS_PROBES, ROUND_NS, ms, 1000);
		ck_assert_uint_eq(n, budget);
		if (rounds == 0)
			ck_assert_ptr_eq(ms[0], t.v[777]);
		for (unsigned i = 0; i < n; i++) {
			unsigned a = ntohl(((struct sockaddr_in *)&ms[i]->sa)->sin_addr.s_addr) -
				     0x0a000000u;
			pinged_at[a] = now;
			ms[i]->last_seen_ns = now; /* it answered */
			ms[i]->suspect = false;
			member_put(ms[i]);
		}
		unsigned never = 0;
		for (unsigned i = 0; i < 1000; i++)
			never += !pinged_at[i];
		if (!never)
			break;
	}
	/* Everyone pinged once within n / budget rounds (84), at 12 messages a round. */
	ck_assert_uint_le(rounds + 1, (1000 + budget - 1) / budget);
	for (unsigned i = 0; i < t.n; i++)
		t.v[i]->hb = NULL;
	members_release(&t);
}
END_TEST

START_TEST(inbound_reclaimed_after_down)
{
	struct members t;
	members_init(&t);
	struct sockaddr_in sa = addr_n(5);
	struct member *m = members_add(&t, (struct sockaddr *)&sa, sizeof(sa));
	member_set_id(m, "in-1");
	m->inbound = true;
	m->up = true;
	struct member *gone[4];
	ck_assert_uint_eq(members_reclaim(&t, 100 * ROUND_NS, ROUND_NS, gone, 4), 0);
	m->up = false;
	m->gone_since_ns = 100 * ROUND_NS;
	member_get(m); /* a serving thread still uses it */
	ck_assert_uint_eq(members_reclaim(&t, 100 * ROUND_NS + 1, ROUND_NS, gone, 4), 0);
	ck_assert_uint_eq(members_reclaim(&t, 102 * ROUND_NS, ROUND_NS, gone, 4), 1);
	ck_assert_ptr_eq(gone[0], m);
	ck_assert(!m->listed);
	ck_assert_uint_eq(t.n, 0);
	member_put(gone[0]);
	ck_assert_uint_eq(m->refs, 1); /* still alive for its user */
	member_put(m);
	members_release(&t);
}
END_TEST

static void add_up(struct members *t, unsigned n, const char *id)
{
	struct sockaddr_in sa = addr_n(n);
	struct member *m = members_resolve_seen(t, (struct sockaddr *)&sa, sizeof(sa));
	member_set_id(m, id);
	m->up = true;
}

START_TEST(digest_depends_on_the_set_only)
{
	struct members a, b;
	unsigned na, nb;
	members_init(&a);
	members_init(&b);
	add_up(&a, 1, "n1");
	add_up(&a, 2, "n2");
	add_up(&a, 3, "n3");
	add_up(&b, 9, "n3");
	add_up(&b, 8, "n1");
	add_up(&b, 7, "n2");
	add_up(&b, 6, "n2"); /* the same node at a second address */
	uint64_t da = members_digest(&a, "n0", 0, &na);
	uint64_t db = members_digest(&b, "n0", 0, &nb);
	ck_assert_uint_eq(na, 4);
	ck_assert_uint_eq(nb, 4);
	ck_assert_uint_eq(da, db);
	a.v[0]->up = false;
	ck_assert_uint_ne(members_digest(&a, "n0", 0, &na), db);
	ck_assert_uint_eq(na, 3);
	members_release(&a);
	members_release(&b);
}
END_TEST

/* Rounds until a member that failed every probe for @dead_rounds is probed again, after it
 * came alive; with @connects_in, it also authenticated a connection to us as it came. */
static unsigned rounds_to_retry(unsigned dead_rounds, bool connects_in)
{
	struct members t;
	members_init(&t);
	members_resolve_begin(&t);
	struct member *m = seen(&t, 5);
	members_resolve_end(&t, 0);
	uint64_t now = ROUND_NS;
	struct member *ms[4];
	for (unsigned r = 0; r < dead_rounds; r++, now += ROUND_NS) {
		unsigned n = members_pick_round(&t, now, 2, MEMBERS_PROBES, ROUND_NS, ms, 4);
		for (unsigned i = 0; i < n; i++) {
			ms[i]->probe_fails++;
			member_put(ms[i]);
		}
	}
	if (connects_in)
		member_heard_from(m);
	unsigned rounds = 0;
	for (bool probed = false; !probed && rounds < 1000; now += ROUND_NS, rounds++) {
		unsigned n = members_pick_round(&t, now, 2, MEMBERS_PROBES, ROUND_NS, ms, 4);
		probed = n > 0;
		for (unsigned i = 0; i < n; i++)
			member_put(ms[i]);
	}
	members_release(&t);
	return rounds;
}

/* A node that starts after its peers backed off from its address (a cold burst's last node)
 * is probed in the next round once it connects in, and is never left for more than 16
 * rounds and a quarter even when it cannot connect in. */
START_TEST(late_node_probed_once_it_connects_in)
{
	unsigned in = rounds_to_retry(200, true);
	ck_assert_msg(in <= 1, "a node that connected in was probed after %u rounds", in);
	unsigned quiet = rounds_to_retry(200, false);
	ck_assert_msg(quiet <= 21, "a failing member waited %u rounds between probes", quiet);
}
END_TEST

START_TEST(full_table_refuses)
{
	struct members t;
	members_init(&t);
	t.max = 8;
	for (unsigned i = 0; i < 8; i++)
		ck_assert_ptr_nonnull(seen(&t, i));
	ck_assert_ptr_null(seen(&t, 100));
	ck_assert(t.full_logged);
	ck_assert_ptr_null(seen(&t, 101));
	ck_assert_uint_eq(t.n, 8);
	members_release(&t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("member");
	TCase *tc = tcase_create("member");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, live_among_256_dead_within_two_rounds);
	tcase_add_test(tc, churn_of_thousands_stays_bounded);
	tcase_add_test(tc, pings_per_round_are_logarithmic);
	tcase_add_test(tc, inbound_reclaimed_after_down);
	tcase_add_test(tc, digest_depends_on_the_set_only);
	tcase_add_test(tc, full_table_refuses);
	tcase_add_test(tc, late_node_probed_once_it_connects_in);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
