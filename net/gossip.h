/*
 * Membership gossip in the manner of SWIM: what one node believes about another (alive,
 * suspect, dead, left) and the queue of such beliefs waiting to be piggybacked on the
 * heartbeat PINGs and PONGs (net/proto.h, PROTO_CAP_GOSSIP). Pure: no I/O, no lock, no
 * clock; the owner (net/peer.c) holds peers->lock around every call (THREADS.md).
 *
 * Incarnations. Every node owns a 64-bit incarnation of itself: its wall-clock start time in
 * milliseconds shifted left by 20 bits, plus one for every time it refuted a suspicion of
 * itself. Only the node itself raises it, so a higher incarnation is always newer news, and
 * a restarted node starts above anything said about its earlier life.
 *
 * Merge rule. A belief is (incarnation, state) with the states ranked alive < suspect <
 * dead < left. A new belief replaces the one held when it is greater in that order
 * (incarnation first, then rank). So a suspicion beats "alive" of the same incarnation, dead
 * beats suspect, and only the member itself can undo either, by an "alive" with a higher
 * incarnation (SWIM's refutation).
 *
 * Dissemination. The queue holds at most one event per node (the newest belief). Each event
 * is sent at most gossip_retransmits(n) times (3 * ceil(log2(n + 1))), and a message takes
 * the events sent least often first, the newest among equals, at most PROTO_GOSSIP_MAX. With
 * every node pinging O(log n) members a round, an event reaches every node in O(log n)
 * rounds w.h.p., and no message grows with the cluster.
 */
#ifndef MOWS_NET_GOSSIP_H
#define MOWS_NET_GOSSIP_H

#include <stdbool.h>
#include <stdint.h>

#include "net/proto.h"

#define GOSSIP_QUEUE_MAX 4096   /* events held; past this the most-sent one is dropped */
#define GOSSIP_INC_SHIFT 20     /* refutations counted below the start time */

/* A node's first incarnation, from its wall-clock start time in ms. */
uint64_t gossip_first_inc(uint64_t realtime_ms);

/* Whether belief (@inc, @state) replaces the held (@held_inc, @held_state). */
bool gossip_overrides(uint64_t inc, uint8_t state, uint64_t held_inc, uint8_t held_state);

/* How many times an event is sent in a cluster of @n members (this node included). */
unsigned gossip_retransmits(unsigned n);
/* ceil(log2(n + 1)): the rounds in which news doubling each round reaches n members. */
unsigned gossip_log2(unsigned n);

/* One event in the queue. */
struct gossip_event {
	struct proto_gossip_event ev;
	unsigned sent;            /* times put into a message */
	uint64_t seq;             /* queue order: higher is newer */
};

struct gossip_queue {
	struct gossip_event *v;
	unsigned n, cap;
	uint64_t seq;
	uint64_t pushed, dropped; /* over the queue's life */
};

void gossip_queue_init(struct gossip_queue *q);
void gossip_queue_release(struct gossip_queue *q);

/*
 * Queues @ev as the newest event, replacing a queued one about the same node (whatever it
 * said: the caller only pushes what it now believes). Returns 0 or -ENOMEM.
 */
int gossip_queue_push(struct gossip_queue *q, const struct proto_gossip_event *ev);

/* The queued event about @node_id, or NULL. */
const struct gossip_event *gossip_queue_find(const struct gossip_queue *q, const char *node_id);

/*
 * Fills @out with up to @max events for one message: least sent first, newest among equals,
 * none about @skip_id (NULL: none skipped; the receiver hears about itself separately).
 * Counts each as sent once more and drops those sent @limit times. Returns how many.
 */
unsigned gossip_queue_take(struct gossip_queue *q, unsigned limit, const char *skip_id,
			   struct proto_gossip_event *out, unsigned max);

#endif
