/*
 * Pins net/gossip.h and the gossip parts of net/member.h and net/proto.h: the merge rule
 * (which of alive/suspect/dead/left wins for an incarnation), refutation by a higher
 * incarnation, the queue (one event per node, least sent and newest first, dropped after
 * gossip_retransmits() sends, bounded), the suspicion clock, the wire block and PING_REQ,
 * and that an
 * event pushed at one node of 64 reaches all of them in O(log n) rounds when each node
 * pings members_ping_budget() others a round.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/gossip.h"
#include "net/member.h"
#include "net/proto.h"

#define A PROTO_GOSSIP_ALIVE
#define S PROTO_GOSSIP_SUSPECT
#define D PROTO_GOSSIP_DEAD
#define L PROTO_GOSSIP_LEFT

static struct proto_gossip_event ev(const char *id, uint8_t state, uint64_t inc)
{
	struct proto_gossip_event e = { .state = state, .inc = inc };
	snprintf(e.node_id, sizeof(e.node_id), "%s", id);
	return e;
}

START_TEST(merge_rule)
{
	/* Same incarnation: alive < suspect < dead < left. */
	ck_assert(gossip_overrides(5, S, 5, A));
	ck_assert(gossip_overrides(5, D, 5, S));
	ck_assert(gossip_overrides(5, D, 5, A));
	ck_assert(gossip_overrides(5, L, 5, D));
	ck_assert(!gossip_overrides(5, A, 5, S));
	ck_assert(!gossip_overrides(5, S, 5, D));
	ck_assert(!gossip_overrides(5, S, 5, S));
	ck_assert(!gossip_overrides(5, A, 5, A));
	/* Only a higher incarnation undoes a suspicion or a death (refutation, restart). */
	ck_assert(gossip_overrides(6, A, 5, S));
	ck_assert(gossip_overrides(6, A, 5, D));
	ck_assert(gossip_overrides(6, A, 5, L));
	/* Old news loses whatever it says. */
	ck_assert(!gossip_overrides(4, D, 5, A));
	ck_assert(!gossip_overrides(4, L, 5, S));
	/* A suspicion of a newer life beats an older death. */
	ck_assert(gossip_overrides(6, S, 5, D));
	/* A restart starts above every refutation of the earlier life. */
	uint64_t before = gossip_first_inc(1700000000000ull);
	ck_assert(gossip_first_inc(1700000000001ull) > before + 100000);
	ck_assert(gossip_first_inc(0) != 0);
}
END_TEST

START_TEST(retransmits_are_logarithmic)
{
	ck_assert_uint_eq(gossip_retransmits(1), 3);
	ck_assert_uint_eq(gossip_retransmits(7), 9);
	ck_assert_uint_eq(gossip_retransmits(8), 12);
	ck_assert_uint_eq(gossip_retransmits(16), 15);
	ck_assert_uint_eq(gossip_retransmits(1000), 30);
}
END_TEST

START_TEST(queue_one_per_node_newest_first)
{
	struct gossip_queue q;
	struct proto_gossip_event out[PROTO_GOSSIP_MAX];
	gossip_queue_init(&q);
	struct proto_gossip_event e = ev("x", S, 5);
	ck_assert_int_eq(gossip_queue_push(&q, &e), 0);
	e = ev("y", S, 7);
	gossip_queue_push(&q, &e);
	e = ev("x", D, 5); /* replaces what was queued about x */
	gossip_queue_push(&q, &e);
	ck_assert_uint_eq(q.n, 2);
	ck_assert_uint_eq(gossip_queue_find(&q, "x")->ev.state, D);
	/* Newest first among the unsent; the receiver is skipped. */
	ck_assert_uint_eq(gossip_queue_take(&q, 3, NULL, out, 1), 1);
	ck_assert_str_eq(out[0].node_id, "x");
	ck_assert_uint_eq(gossip_queue_take(&q, 3, NULL, out, 1), 1);
	ck_assert_str_eq(out[0].node_id, "y");
	ck_assert_uint_eq(gossip_queue_take(&q, 3, "x", out, 8), 1);
	ck_assert_str_eq(out[0].node_id, "y");
	/* Least sent first: x (1 send) before y (2 sends); news jumps ahead of both. */
	e = ev("z", A, 9);
	gossip_queue_push(&q, &e);
	ck_assert_uint_eq(gossip_queue_take(&q, 3, NULL, out, 2), 2);
	ck_assert_str_eq(out[0].node_id, "z");
	ck_assert_str_eq(out[1].node_id, "x");
	/* x: 2 sends, y: 2, z: 1. Sent 3 times, an event is gone. */
	ck_assert_uint_eq(gossip_queue_take(&q, 3, NULL, out, 8), 3);
	ck_assert_uint_eq(q.n, 1); /* z, sent twice */
	ck_assert_uint_eq(gossip_queue_take(&q, 3, NULL, out, 8), 1);
	ck_assert_uint_eq(q.n, 0);
	ck_assert_uint_eq(gossip_queue_take(&q, 3, NULL, out, 8), 0);
	gossip_queue_release(&q);
}
END_TEST

START_TEST(queue_bounded)
{
	struct gossip_queue q;
	struct proto_gossip_event out[PROTO_GOSSIP_MAX];
	char id[32];
	gossip_queue_init(&q);
	for (unsigned i = 0; i < GOSSIP_QUEUE_MAX + 100; i++) {
		snprintf(id, sizeof(id), "n%u", i);
		struct proto_gossip_event e = ev(id, S, i + 1);
		ck_assert_int_eq(gossip_queue_push(&q, &e), 0);
	}
	ck_assert_uint_eq(q.n, GOSSIP_QUEUE_MAX);
	ck_assert_uint_eq(q.dropped, 100);
	/* The newest survive and go first. */
	ck_assert_uint_eq(gossip_queue_take(&q, 100, NULL, out, PROTO_GOSSIP_MAX + 5),
			  PROTO_GOSSIP_MAX);
	snprintf(id, sizeof(id), "n%u", GOSSIP_QUEUE_MAX + 99);
	ck_assert_str_eq(out[0].node_id, id);
	gossip_queue_release(&q);
}
END_TEST

START_TEST(member_suspicion_and_refutation)
{
	struct member m;
	memset(&m, 0, sizeof(m));
	m.caps = PROTO_CAP_GOSSIP;
	ck_assert(!member_gossiping(&m)); /* no incarnation known yet */
	ck_assert(member_gossip_apply(&m, A, 10, 1000));
	ck_assert(member_gossiping(&m));
	ck_assert(!member_gossip_apply(&m, A, 10, 2000));
	ck_assert(member_gossip_apply(&m, S, 10, 3000));
	ck_assert(!member_suspect_expired(&m, 3000 + 4999, 5000));
	ck_assert(member_suspect_expired(&m, 3000 + 5000, 5000));
	/* A refutation restarts the clock; suspecting again at the new incarnation runs anew. */
	ck_assert(member_gossip_apply(&m, A, 11, 7000));
	ck_assert(!member_suspect_expired(&m, 99999, 5000));
	ck_assert(!member_gossip_apply(&m, S, 10, 8000)); /* old suspicion */
	ck_assert(member_gossip_apply(&m, S, 11, 9000));
	ck_assert(!member_suspect_expired(&m, 13999, 5000));
	ck_assert(member_suspect_expired(&m, 14000, 5000));
	ck_assert(member_gossip_apply(&m, D, 11, 14000));
	ck_assert(!member_suspect_expired(&m, 99999, 5000));
	ck_assert(!member_gossip_apply(&m, S, 11, 15000));
	ck_assert(member_gossip_apply(&m, A, 12, 16000)); /* it outbid its death */
	/* No caps: never gossiping, whatever is known. */
	m.caps = 0;
	ck_assert(!member_gossiping(&m));
}
END_TEST

START_TEST(wire_round_trip_and_rejects)
{
	uint8_t buf[PROTO_PING_MAX_LEN + 16];
	struct proto_ping ping = { .mono_ms = 123456789 }, got;
	struct proto_gossip g = { .inc = 42, .n = PROTO_GOSSIP_MAX }, back;
	char id[PROTO_NODE_ID_MAX + 1];
	memset(id, 'a', PROTO_NODE_ID_MAX);
	id[PROTO_NODE_ID_MAX] = '\0';
	for (unsigned i = 0; i < PROTO_GOSSIP_MAX; i++) {
		id[0] = (char)('a' + i);
		g.ev[i] = ev(id, (uint8_t)(i % 4), 1000 + i);
	}
	ssize_t n = proto_ping_gossip_encode(buf, sizeof(buf), &ping, &g);
	ck_assert_int_eq(n, PROTO_PING_MAX_LEN); /* the largest block there is */
	ck_assert_int_eq(proto_ping_gossip_decode(buf, (size_t)n, &got, &back), 0);
	ck_assert_uint_eq(got.mono_ms, ping.mono_ms);
	ck_assert_uint_eq(back.inc, 42);
	ck_assert_uint_eq(back.n, PROTO_GOSSIP_MAX);
	for (unsigned i = 0; i < PROTO_GOSSIP_MAX; i++) {
		ck_assert_str_eq(back.ev[i].node_id, g.ev[i].node_id);
		ck_assert_uint_eq(back.ev[i].state, g.ev[i].state);
		ck_assert_uint_eq(back.ev[i].inc, g.ev[i].inc);
	}
	/* The old 8-byte form still decodes, as "no block". */
	ck_assert_int_eq(proto_ping_gossip_decode(buf, PROTO_PING_LEN, &got, &back), 0);
	ck_assert_uint_eq(back.inc, 0);
	ck_assert_uint_eq(back.n, 0);
	/* Truncated, trailing bytes, bad state, incarnation 0, count past the max, bad id. */
	for (size_t k = PROTO_PING_LEN + 1; k < (size_t)n; k += 7)
		ck_assert_int_eq(proto_ping_gossip_decode(buf, k, &got, &back), -EPROTO);
	ck_assert_int_eq(proto_ping_gossip_decode(buf, (size_t)n + 1, &got, &back), -EPROTO);
	uint8_t bad[PROTO_PING_MAX_LEN];
	struct proto_gossip one = { .inc = 7, .n = 1, .ev = { ev("node1", S, 9) } };
	n = proto_ping_gossip_encode(bad, sizeof(bad), &ping, &one);
	ck_assert_int_eq(n, PROTO_PING_LEN + 9 + 10 + 5);
	ck_assert_int_eq(proto_ping_gossip_decode(bad, (size_t)n, &got, &back), 0);
	bad[PROTO_PING_LEN + 9] = 4; /* state past LEFT */
	ck_assert_int_eq(proto_ping_gossip_decode(bad, (size_t)n, &got, &back), -EPROTO);
	bad[PROTO_PING_LEN + 9] = S;
	bad[PROTO_PING_LEN + 8] = PROTO_GOSSIP_MAX + 1; /* count */
	ck_assert_int_eq(proto_ping_gossip_decode(bad, (size_t)n, &got, &back), -EPROTO);
	bad[PROTO_PING_LEN + 8] = 1;
	memset(bad + PROTO_PING_LEN + 10, 0, 8); /* event incarnation 0 */
	ck_assert_int_eq(proto_ping_gossip_decode(bad, (size_t)n, &got, &back), -EPROTO);
	memset(bad + PROTO_PING_LEN, 0, 8); /* sender incarnation 0 */
	ck_assert_int_eq(proto_ping_gossip_decode(bad, (size_t)n, &got, &back), -EPROTO);
	n = proto_ping_gossip_encode(bad, sizeof(bad), &ping, &one);
	bad[n - 1] = ' '; /* not a node id byte */
	ck_assert_int_eq(proto_ping_gossip_decode(bad, (size_t)n, &got, &back), -EPROTO);
	/* Encoding refuses what decoding would. */
	one.ev[0].inc = 0;
	ck_assert_int_eq(proto_ping_gossip_encode(bad, sizeof(bad), &ping, &one), -EINVAL);
	one.ev[0].inc = 1;
	one.inc = 0;
	ck_assert_int_eq(proto_ping_gossip_encode(bad, sizeof(bad), &ping, &one), -EINVAL);
	one.inc = 1;
	ck_assert_int_eq(proto_ping_gossip_encode(bad, PROTO_PING_LEN + 12, &ping, &one), -ENOSPC);
	/* The header takes every size from 8 bytes to the largest block, nothing past it. */
	struct proto_hdr h;
	proto_hdr_encode(buf, PROTO_PONG, 0, PROTO_PING_MAX_LEN, 1);
	ck_assert_int_eq(proto_hdr_decode(buf, PROTO_HDR_LEN, &h, 1u << 20), 0);
	proto_hdr_encode(buf, PROTO_PING, 0, PROTO_PING_MAX_LEN + 1, 1);
	ck_assert_int_eq(proto_hdr_decode(buf, PROTO_HDR_LEN, &h, 1u << 20), -EPROTO);
}
END_TEST

START_TEST(ping_req_wire)
{
	uint8_t buf[PROTO_PING_REQ_MAX_LEN + 1];
	struct proto_ping_req rq = { .node_id = "node8" }, back;
	struct proto_ping_req_ack ack = { .age_ms = 1234 }, ack2;
	ssize_t n = proto_ping_req_encode(buf, sizeof(buf), &rq);
	ck_assert_int_eq(n, 6);
	ck_assert_int_eq(proto_ping_req_decode(buf, (size_t)n, &back), 0);
	ck_assert_str_eq(back.node_id, "node8");
	ck_assert_int_eq(proto_ping_req_decode(buf, (size_t)n - 1, &back), -EPROTO);
	ck_assert_int_eq(proto_ping_req_decode(buf, (size_t)n + 1, &back), -EPROTO);
	buf[2] = ' ';
	ck_assert_int_eq(proto_ping_req_decode(buf, (size_t)n, &back), -EPROTO);
	snprintf(rq.node_id, sizeof(rq.node_id), "bad id");
	ck_assert_int_eq(proto_ping_req_encode(buf, sizeof(buf), &rq), -EINVAL);
	proto_ping_req_ack_encode(buf, &ack);
	ck_assert_int_eq(proto_ping_req_ack_decode(buf, PROTO_PING_REQ_ACK_LEN, &ack2), 0);
	ck_assert_uint_eq(ack2.age_ms, 1234);
	ck_assert_int_eq(proto_ping_req_ack_decode(buf, 3, &ack2), -EPROTO);
	ck_assert_str_eq(proto_type_name(PROTO_PING_REQ), "PING_REQ");
	ck_assert_str_eq(proto_type_name(PROTO_PING_REQ_ACK), "PING_REQ_ACK");
	struct proto_hdr h;
	proto_hdr_encode(buf, PROTO_PING_REQ_ACK, 0, 5, 1);
	ck_assert_int_eq(proto_hdr_decode(buf, PROTO_HDR_LEN, &h, 1u << 20), -EPROTO);
	proto_hdr_encode(buf, PROTO_PING_REQ, 0, PROTO_PING_REQ_MAX_LEN + 1, 1);
	ck_assert_int_eq(proto_hdr_decode(buf, PROTO_HDR_LEN, &h, 1u << 20), -EPROTO);
}
END_TEST

/*
 * Dissemination as the daemon runs it, without the network: 64 nodes, each round every
 * node pings members_ping_budget(64) others (a rotating choice, as the least-recently-
 * pinged order gives), each PING and PONG carries gossip_queue_take() of the sender's queue,
 * and a receiver queues what is news to it. One suspicion raised at node 0 reaches all 64
 * within 2 * log2(64) rounds (SWIM's O(log n)); lone O(log n) pinging, where each node
 * finds out by pinging the member itself, needs about 64 / budget = 8 rounds for the last
 * node and every node pays its own ping timeout.
 */
#define SIM_N 64
static struct gossip_queue simq[SIM_N];
static bool knows[SIM_N];

static void sim_deliver(unsigned from, unsigned to, unsigned limit, unsigned *msgs)
{
	struct proto_gossip_event out[PROTO_GOSSIP_MAX];
	char id[16];
	snprintf(id, sizeof(id), "n%u", to);
	unsigned k = gossip_queue_take(&simq[from], limit, id, out, PROTO_GOSSIP_MAX);
	ck_assert_uint_le(k, PROTO_GOSSIP_MAX);
	(*msgs)++;
	for (unsigned i = 0; i < k; i++)
		if (!strcmp(out[i].node_id, "victim") && !knows[to]) {
			knows[to] = true;
			gossip_queue_push(&simq[to], &out[i]);
		}
}

START_TEST(dissemination_in_log_rounds)
{
	unsigned budget = members_ping_budget(SIM_N), limit = gossip_retransmits(SIM_N);
	unsigned msgs = 0, rounds = 0, informed = 1;
	memset(knows, 0, sizeof(knows));
	for (unsigned i = 0; i < SIM_N; i++)
		gossip_queue_init(&simq[i]);
	struct proto_gossip_event e = ev("victim", S, 77);
	gossip_queue_push(&simq[0], &e);
	knows[0] = true;
	/* Filler news at every node, as a busy cluster has: the suspicion must get through. */
	for (unsigned i = 0; i < SIM_N; i++)
		for (unsigned j = 0; j < 20; j++) {
			char id[16];
			snprintf(id, sizeof(id), "f%u-%u", i, j);
			struct proto_gossip_event f = ev(id, A, 1);
			gossip_queue_push(&simq[i], &f);
		}
	while (informed < SIM_N && rounds < 100) {
		rounds++;
		for (unsigned i = 0; i < SIM_N; i++)
			for (unsigned b = 0; b < budget; b++) {
				unsigned to = (i + 1 + (rounds * budget + b) * 7) % SIM_N;
				if (to == i)
					continue;
				sim_deliver(i, to, limit, &msgs); /* PING */
				sim_deliver(to, i, limit, &msgs); /* PONG */
			}
		informed = 0;
		for (unsigned i = 0; i < SIM_N; i++)
			informed += knows[i];
	}
	printf("gossip sim: %u nodes, budget %u, all informed after %u rounds, %.1f messages "
	       "per node per round\n", SIM_N, budget, rounds, (double)msgs / rounds / SIM_N);
	ck_assert_uint_eq(informed, SIM_N);
	ck_assert_uint_le(rounds, 12); /* 2 * log2(64) */
	for (unsigned i = 0; i < SIM_N; i++)
		gossip_queue_release(&simq[i]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("gossip");
	TCase *tc = tcase_create("gossip");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, merge_rule);
	tcase_add_test(tc, retransmits_are_logarithmic);
	tcase_add_test(tc, queue_one_per_node_newest_first);
	tcase_add_test(tc, queue_bounded);
	tcase_add_test(tc, member_suspicion_and_refutation);
	tcase_add_test(tc, wire_round_trip_and_rejects);
	tcase_add_test(tc, ping_req_wire);
	tcase_add_test(tc, dissemination_in_log_rounds);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
