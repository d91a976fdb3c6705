/* Membership gossip: beliefs, the merge rule and the dissemination queue. See gossip.h. */
#include "net/gossip.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t gossip_first_inc(uint64_t realtime_ms)
{
	return (realtime_ms << GOSSIP_INC_SHIFT) | 1;
}

bool gossip_overrides(uint64_t inc, uint8_t state, uint64_t held_inc, uint8_t held_state)
{
	if (inc != held_inc)
		return inc > held_inc;
	return state > held_state;
}

unsigned gossip_log2(unsigned n)
{
	unsigned log = 0;
	while ((1ull << log) < (uint64_t)n + 1)
		log++;
	return log;
}

unsigned gossip_retransmits(unsigned n)
{
	unsigned log = gossip_log2(n);
	return 3 * (log ? log : 1);
}

void gossip_queue_init(struct gossip_queue *q)
{
	memset(q, 0, sizeof(*q));
}

void gossip_queue_release(struct gossip_queue *q)
{
	free(q->v);
	memset(q, 0, sizeof(*q));
}

static int find(const struct gossip_queue *q, const char *node_id)
{
	for (unsigned i = 0; i < q->n; i++)
		if (!strcmp(q->v[i].ev.node_id, node_id))
			return (int)i;
	return -1;
}

const struct gossip_event *gossip_queue_find(const struct gossip_queue *q, const char *node_id)
{
	int i = find(q, node_id);
	return i < 0 ? NULL : &q->v[i];
}

static void drop(struct gossip_queue *q, unsigned i)
{
	q->v[i] = q->v[--q->n];
}

/* The queue is full: the event sent most often (the oldest among equals) makes room. */
static void drop_most_sent(struct gossip_queue *q)
{
	unsigned worst = 0;
	for (unsigned i = 1; i < q->n; i++)
		if (q->v[i].sent > q->v[worst].sent ||
		    (q->v[i].sent == q->v[worst].sent && q->v[i].seq < q->v[worst].seq))
			worst = i;
	drop(q, worst);
	q->dropped++;
}

int gossip_queue_push(struct gossip_queue *q, const struct proto_gossip_event *ev)
{
	int i = find(q, ev->node_id);
	if (i < 0) {
		if (q->n >= GOSSIP_QUEUE_MAX)
			drop_most_sent(q);
		if (q->n == q->cap) {
			unsigned cap = q->cap ? 2 * q->cap : 16;
			struct gossip_event *v = realloc(q->v, cap * sizeof(*v));
			if (!v)
				return -ENOMEM;
			q->v = v;
			q->cap = cap;
		}
		i = (int)q->n++;
	}
	q->v[i].ev = *ev;
	q->v[i].sent = 0;
	q->v[i].seq = ++q->seq;
	q->pushed++;
	return 0;
}

/* Least sent first, newest among equals. */
static bool take_before(const struct gossip_event *a, const struct gossip_event *b)
{
	if (a->sent != b->sent)
		return a->sent < b->sent;
	return a->seq > b->seq;
}

unsigned gossip_queue_take(struct gossip_queue *q, unsigned limit, const char *skip_id,
			   struct proto_gossip_event *out, unsigned max)
{
	unsigned idx[PROTO_GOSSIP_MAX], k = 0;
	if (max > PROTO_GOSSIP_MAX)
		max = PROTO_GOSSIP_MAX;
	for (unsigned i = 0; i < q->n; i++) {
		if (skip_id && !strcmp(q->v[i].ev.node_id, skip_id))
			continue;
		/* insertion into the small sorted idx[] */
		unsigned pos = k < max ? k++ : max;
		while (pos > 0 && take_before(&q->v[i], &q->v[idx[pos - 1]])) {
			if (pos < max)
				idx[pos] = idx[pos - 1];
			pos--;
		}
		if (pos < max)
			idx[pos] = i;
	}
	for (unsigned j = 0; j < k; j++) {
		out[j] = q->v[idx[j]].ev;
		q->v[idx[j]].sent++;
	}
	/* Drop the spent ones from the highest index down, so the indexes stay valid. */
	for (unsigned i = q->n; i-- > 0;)
		if (q->v[i].sent >= limit)
			drop(q, i);
	return k;
}
