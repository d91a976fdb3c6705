/*
 * mows-sim: a flow-level model of a mows cluster, for fleets too big to boot here.
 *
 *   mows-sim [options] cold          N nodes start at once and each reads the whole model
 *   mows-sim [options] join          K nodes join a warm cluster of N nodes at once
 *   mows-sim --table                 the calibration runs and the fleet predictions
 *
 * What is real: placement is net/place.c (libmows.a): the balanced place_map, or plain
 * rendezvous (place_rank) as the measured code used, built from the file list (file keys
 * from proto_file_key()) every node would see. What is modelled: links as
 * rates (one storage link that all storage reads share; each node's NIC up and down; an
 * optional host CPU limit that every byte moved crosses, for a bench machine that simulates
 * all nodes on a few cores), max-min fair sharing among the flows active at each moment,
 * recomputed at every event; a fixed latency per request (rtt to a peer, storage_latency to
 * storage) before a chunk's bytes flow. Each node behaves as mows does: a reader walks the
 * files in order keeping `window` chunks requested ahead of it; `threads` fill threads per
 * node take requests one at a time and each waits for its chunk (from storage or a peer);
 * a peer's request to fill a chunk joins the owner's fill queue (the swarm plan gives those
 * their own threads); one fill per chunk per node (single flight). Not modelled: TCP
 * dynamics, packet loss, queueing delay, heartbeats and membership, start-up, eviction,
 * failures. README "Fleet model" has the calibration and the predictions.
 *
 * The fetch plan (whom to ask) is plan_today() and plan_swarm() below, marked for
 * replacement by net/plan.c once that module exists.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "net/place.h"
#include "net/proto.h"

enum scenario { SC_COLD, SC_JOIN };
enum plan { PLAN_TODAY, PLAN_SWARM, PLAN_TREE };

struct sim_cfg {
	enum scenario scenario;
	enum plan plan;
	unsigned nodes;		/* cold: nodes; join: warm nodes already there */
	unsigned join;		/* join: nodes joining at once */
	unsigned shards, window, threads, replicas;
	unsigned fanout;	/* swarm: a holder serves this many waiters, the rest wait on them */
	unsigned pending_cost;	/* swarm: a source still getting the chunk counts as this many
				   more requests than one that holds it */
	double model;		/* bytes */
	double chunk;		/* bytes */
	double storage;		/* bytes/s of the shared storage link */
	double nic;		/* bytes/s of each node's link, each direction */
	double cpu;		/* bytes/s the host moves in all (INFINITY: no limit) */
	double cpu_per_node;	/* bytes/s of cpu each node's fixed work takes */
	double efficiency;	/* payload bytes per line byte on every link (TCP/IP headers) */
	double rtt, storage_latency; /* seconds */
	bool rendezvous;	/* plain rendezvous owners (mows before place_map) */
	bool stagger;		/* each reader starts at its own point of the model */
};

struct sim_result {
	double slowest, p50;	/* seconds until a reading node holds the whole model */
	double storage_bytes;
	double sent_max, sent_mean; /* bytes sent to peers per node (readers and, for join, all) */
	unsigned events;
};

/* ---- max-min fair flows ---- */

#define MAX_RES 3

struct flow {
	int src;		/* node, or -1 for storage */
	int dst;
	unsigned chunk;
	double left, rate;
	int res[MAX_RES];
	unsigned nres;
	bool frozen;
};

/*
 * A binary min-heap of fixed-size elements whose first member is their double key: the
 * progressive filling's resources and the simulation's events use the one implementation.
 */
#define MINHEAP_ESZ_MAX 64
struct minheap {
	unsigned char *v;
	size_t esz;		/* element size, set by the first push */
	unsigned n, cap;
};

struct heap_item { double key; unsigned res, ver; };
_Static_assert(offsetof(struct heap_item, key) == 0 && sizeof(struct heap_item) <= MINHEAP_ESZ_MAX,
	       "a minheap element starts with its double key");

struct net {
	unsigned nres;
	double *cap;		/* per resource, bytes/s; INFINITY = no limit */
	double *rem;
	unsigned *cnt, *start, *list, *ver;
	struct flow *flows;
	unsigned nflows, flows_cap;
	struct minheap heap;	/* (share, resource, version) for progressive filling */
	bool dirty;		/* flows started or ended since the rates were computed */
};

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p) {
		fprintf(stderr, "mows-sim: out of memory (%zu x %zu bytes)\n", n, size);
		exit(1);
	}
	return p;
}

static void *xrealloc(void *p, size_t n, size_t size)
{
	p = realloc(p, (n ? n : 1) * size);
	if (!p) {
		fprintf(stderr, "mows-sim: out of memory (%zu x %zu bytes)\n", n, size);
		exit(1);
	}
	return p;
}

static double mh_key(const struct minheap *h, unsigned i)
{
	double k;
	memcpy(&k, h->v + (size_t)i * h->esz, sizeof(k));
	return k;
}

static void mh_swap(struct minheap *h, unsigned a, unsigned b)
{
	unsigned char t[MINHEAP_ESZ_MAX], *pa = h->v + (size_t)a * h->esz,
					   *pb = h->v + (size_t)b * h->esz;
	memcpy(t, pa, h->esz);
	memcpy(pa, pb, h->esz);
	memcpy(pb, t, h->esz);
}

/* The smallest key, INFINITY when the heap is empty. */
static double mh_min(const struct minheap *h)
{
	return h->n ? mh_key(h, 0) : INFINITY;
}

static void mh_push(struct minheap *h, const void *e, size_t esz)
{
	h->esz = esz;
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 256;
		h->v = xrealloc(h->v, h->cap, esz);
	}
	unsigned i = h->n++;
	memcpy(h->v + (size_t)i * esz, e, esz);
	while (i && mh_key(h, (i - 1) / 2) > mh_key(h, i)) {
		mh_swap(h, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

/* Moves the element with the smallest key to @out; the heap must not be empty. */
static void mh_pop(struct minheap *h, void *out)
{
	unsigned i = 0;
	memcpy(out, h->v, h->esz);
	memcpy(h->v, h->v + (size_t)--h->n * h->esz, h->esz);
	for (;;) {
		unsigned l = 2 * i + 1, r = l + 1, m = i;

		if (l < h->n && mh_key(h, l) < mh_key(h, m))
			m = l;
		if (r < h->n && mh_key(h, r) < mh_key(h, m))
			m = r;
		if (m == i)
			break;
		mh_swap(h, i, m);
		i = m;
	}
}

static void heap_push(struct net *nt, double key, unsigned res)
{
	struct heap_item it = { key, res, nt->ver[res] };
	mh_push(&nt->heap, &it, sizeof(it));
}

/* Flows by resource, in CSR form: list[start[r] .. start[r + 1]). */
static void net_index(struct net *nt)
{
	memset(nt->cnt, 0, nt->nres * sizeof(*nt->cnt));
	for (unsigned f = 0; f < nt->nflows; f++)
		for (unsigned k = 0; k < nt->flows[f].nres; k++)
			nt->cnt[nt->flows[f].res[k]]++;
	nt->start[0] = 0;
	for (unsigned r = 0; r < nt->nres; r++)
		nt->start[r + 1] = nt->start[r] + nt->cnt[r];
	nt->list = xrealloc(nt->list, nt->start[nt->nres], sizeof(*nt->list));
	memset(nt->cnt, 0, nt->nres * sizeof(*nt->cnt));
	for (unsigned f = 0; f < nt->nflows; f++)
		for (unsigned k = 0; k < nt->flows[f].nres; k++) {
			unsigned r = (unsigned)nt->flows[f].res[k];

			nt->list[nt->start[r] + nt->cnt[r]++] = f;
		}
}

/*
 * Max-min fair rates by progressive filling: the resource whose remaining capacity per
 * unfrozen flow is smallest is the next bottleneck; its flows get that share.
 */
static void net_rates(struct net *nt)
{
	net_index(nt);
	nt->heap.n = 0;
	for (unsigned r = 0; r < nt->nres; r++) {
		nt->rem[r] = nt->cap[r];
		nt->ver[r]++;
		if (nt->cnt[r] && isfinite(nt->cap[r]))
			heap_push(nt, nt->rem[r] / nt->cnt[r], r);
	}
	for (unsigned f = 0; f < nt->nflows; f++) {
		nt->flows[f].frozen = false;
		nt->flows[f].rate = INFINITY;
	}
	while (nt->heap.n) {
		struct heap_item it;
		mh_pop(&nt->heap, &it);
		unsigned r = it.res;

		if (it.ver != nt->ver[r] || !nt->cnt[r])
			continue;
		double share = nt->rem[r] / nt->cnt[r];

		for (unsigned i = nt->start[r]; i < nt->start[r + 1]; i++) {
			struct flow *fl = &nt->flows[nt->list[i]];

			if (fl->frozen)
				continue;
			fl->frozen = true;
			fl->rate = share;
			for (unsigned k = 0; k < fl->nres; k++) {
				unsigned o = (unsigned)fl->res[k];

				nt->rem[o] -= share;
				nt->cnt[o]--;
				nt->ver[o]++;
				if (o != r && nt->cnt[o] && isfinite(nt->cap[o]))
					heap_push(nt, fmax(nt->rem[o], 0) / nt->cnt[o], o);
			}
		}
	}
}

/* ---- the cluster ---- */

enum ev_type { EV_REQUEST, EV_FLOW };

struct event {
	double t;
	enum ev_type type;
	int src, dst;		/* EV_REQUEST: dst asks src; EV_FLOW: src (-1 storage) -> dst */
	unsigned chunk;
	bool fill;
};

struct waiter {
	int node;		/* who waits for the chunk at the holder */
	int next;		/* index of the next waiter, -1 ends */
};

/* CH_SERVEFILL: swarm, a fill a peer asked for, on its own threads (issue 7 item 3). */
enum { CH_NONE, CH_FILLING, CH_SERVEFILL, CH_HELD };

#define JOB_LOCAL	0x80000000u	/* in a fill queue: a fill a peer asked for */

struct node {
	bool reads;		/* reads the whole model (cold: all; join: the new ones) */
	unsigned cursor;	/* the reader's next position not yet held */
	unsigned asked;		/* the reader has requested positions below this */
	unsigned start;		/* position 0 is this chunk (--stagger), then onwards, wrapping */
	unsigned busy;		/* fill threads working */
	unsigned *queue;	/* fill jobs (chunks) waiting for a thread: a ring */
	unsigned qhead, qlen, qcap;
	double done, sent;
	unsigned serving;	/* requests asked of this node and not yet answered */
};

struct sim {
	struct sim_cfg cfg;
	unsigned n, nchunks;
	double *bytes;		/* per chunk */
	unsigned *owner;	/* per chunk: its owner */
	unsigned *next_rank;	/* per chunk: ranks 1 and 2 (place_map_rank), for plan_today() */
	uint64_t *node_hash;
	unsigned char *state;	/* n x nchunks: CH_* */
	int *wait_head;		/* n x nchunks: first waiter, -1 none */
	struct waiter *waiters;
	unsigned nwaiters, waiters_cap;
	int free_waiter;
	unsigned **holders;	/* per chunk: nodes that hold or get it, in the order they began */
	unsigned *nholders;
	/* PLAN_TREE, per chunk: the owner's swarm table (net/swarm.h): requesters in arrival
	 * order, how many were assigned to each, how many the owner serves itself. */
	unsigned *tree_who, *tree_kids, *tree_n, *tree_served; /* served: sends running now */
	double delay;		/* extra latency of the request job_step() is sending (a REDIRECT) */
	struct node *nodes;
	struct minheap ev;	/* struct event by time */
	struct net net;
	double now, storage_bytes;
	unsigned readers_left, events;
};

#define RES_STORAGE	0
#define RES_CPU		1
#define RES_UP(i)	(2 + 2 * (i))
#define RES_DOWN(i)	(3 + 2 * (i))

static unsigned char *st(const struct sim *s, int node, unsigned c)
{
	return &s->state[(size_t)node * s->nchunks + c];
}

_Static_assert(offsetof(struct event, t) == 0 && sizeof(struct event) <= MINHEAP_ESZ_MAX,
	       "a minheap element starts with its double key");

static void ev_push(struct sim *s, struct event e)
{
	mh_push(&s->ev, &e, sizeof(e));
}

static void flow_start(struct sim *s, int src, int dst, unsigned c)
{
	struct net *nt = &s->net;
	struct flow *fl;

	if (nt->nflows == nt->flows_cap) {
		nt->flows_cap = nt->flows_cap ? 2 * nt->flows_cap : 1024;
		nt->flows = xrealloc(nt->flows, nt->flows_cap, sizeof(*nt->flows));
	}
	fl = &nt->flows[nt->nflows++];
	nt->dirty = true;
	*fl = (struct flow){ .src = src, .dst = dst, .chunk = c, .left = s->bytes[c] };
	fl->res[fl->nres++] = src < 0 ? RES_STORAGE : RES_UP(src);
	fl->res[fl->nres++] = RES_DOWN(dst);
	fl->res[fl->nres++] = RES_CPU;
	if (src < 0)
		s->storage_bytes += s->bytes[c];
	else
		s->nodes[src].sent += s->bytes[c];
}

static void waiter_add(struct sim *s, int holder, unsigned c, int node)
{
	int w = s->free_waiter;

	if (w >= 0) {
		s->free_waiter = s->waiters[w].next;
	} else {
		if (s->nwaiters == s->waiters_cap) {
			s->waiters_cap = s->waiters_cap ? 2 * s->waiters_cap : 1024;
			s->waiters = xrealloc(s->waiters, s->waiters_cap, sizeof(*s->waiters));
		}
		w = (int)s->nwaiters++;
	}
	s->waiters[w].node = node;
	s->waiters[w].next = s->wait_head[(size_t)holder * s->nchunks + c];
	s->wait_head[(size_t)holder * s->nchunks + c] = w;
}

static void job_push(struct node *nd, unsigned c)
{
	if (nd->qlen == nd->qcap) {
		unsigned ncap = nd->qcap ? 2 * nd->qcap : 64;
		unsigned *q = xcalloc(ncap, sizeof(*q));

		for (unsigned i = 0; i < nd->qlen; i++)
			q[i] = nd->queue[(nd->qhead + i) % nd->qcap];
		free(nd->queue);
		nd->queue = q;
		nd->qhead = 0;
		nd->qcap = ncap;
	}
	nd->queue[(nd->qhead + nd->qlen++) % nd->qcap] = c;
}

/*
 * ---- the fetch plan: REPLACE with net/plan.c once it exists ----
 *
 * Where node @x's fill thread gets chunk @c: a peer (*fill: whether that peer is asked to
 * fill it when it does not hold it) or storage (-1). @tried is the peer that just answered
 * ENOENT, or -1.
 *
 * plan_today(): mows as landed, with place_map owners: a non-owner asks the owner to fill;
 * the owner asks the node ranked after it without fill, then reads storage.
 */
static int plan_today(struct sim *s, int x, unsigned c, int tried, bool *fill)
{
	unsigned o = s->owner[c];
	const unsigned *nx = &s->next_rank[2 * c];

	*fill = false;
	if ((unsigned)x != o) {
		*fill = true;
		return (int)o;
	}
	if (tried >= 0)
		return -1;
	if (s->n < 2)
		return -1;
	return (int)(nx[0] != (unsigned)x ? nx[0] : nx[1]);
}

/*
 * plan_swarm(): item 4 of issue 7. Any node that holds the chunk or started getting it
 * before this one serves it (pipelined: a node still getting it serves once it has it), so
 * nodes that want a chunk at the same time form a tree instead of queueing at one uplink.
 * The source is picked by a hash among those earlier nodes (here every node knows at once
 * who has what; a real plan learns it from the owner or from holdings bitmaps). Only when
 * nobody has started does the owner fill it from storage (single flight). Waits only go to
 * nodes that began earlier or to the owner, and the owner waits on nobody, so no cycle of
 * waits can form; fills that peers ask for run on their own threads (item 3).
 */
#define SWARM_LOOK	16

static int plan_swarm(struct sim *s, int x, unsigned c, int tried, bool *fill)
{
	unsigned before = 0, best = ~0u, best_cost = 0;
	uint64_t best_w = 0;
	bool owner = s->owner[c] == (unsigned)x;

	while (before < s->nholders[c] && s->holders[c][before] != (unsigned)x)
		before++;
	*fill = true; /* wait at the source if it does not hold it yet */
	/* Looks at up to SWARM_LOOK of them (all when few), as a plan told of a few would. */
	for (unsigned j = 0; j < before && j < SWARM_LOOK && tried < 0; j++) {
		unsigned i = before <= SWARM_LOOK ? j :
			(unsigned)(fmix64(s->node_hash[x] ^ ((uint64_t)c << 8) ^ j) % before);
		unsigned h = s->holders[c][i];
		uint64_t w = fmix64(s->node_hash[x] ^ s->node_hash[h] ^ c);

		unsigned cost = s->nodes[h].serving;

		if (*st(s, (int)h, c) != CH_HELD) {
			if (owner)
				continue; /* the owner never waits: no cycle of waits */
			cost += s->cfg.pending_cost;
		}
		if (best == ~0u || cost < best_cost || (cost == best_cost && w > best_w)) {
			best = h;
			best_w = w;
			best_cost = cost;
		}
	}
	if (best != ~0u)
		return (int)best;
	if (s->owner[c] == (unsigned)x)
		return -1;
	return (int)s->owner[c];
}

/*
 * plan_tree(): the swarm as built (net/swarm.h, net/peer.c run_step): a non-owner asks the
 * owner with fill; the owner serves a requester itself while it sends the chunk to fewer
 * than `fanout` at that moment (tree_served counts them; a send that ends lowers it) and
 * answers the others with a REDIRECT (one more round trip) to the earliest requester that
 * has fewer than `fanout` assigned to it, which serves it once it holds the chunk
 * (GET WAIT). Each requester is served once (by the owner, or by the one it was assigned
 * to), so serve_waiters() hands nothing on. The owner's own plan is plan_today()'s.
 */
static int plan_tree(struct sim *s, int x, unsigned c, int tried, bool *fill)
{
	unsigned o = s->owner[c], fan = s->cfg.fanout;
	unsigned *who = &s->tree_who[(size_t)c * s->n], *kids = &s->tree_kids[(size_t)c * s->n];

	if ((unsigned)x == o && tried < 0 && s->cfg.scenario == SC_JOIN &&
	    (unsigned)x >= s->cfg.nodes) {
		/* An owner that joined probes the members older than it (plan.c rule 3): the
		 * warm nodes, which hold every chunk. */
		*fill = false;
		return (int)(fmix64(c) % s->cfg.nodes);
	}
	if ((unsigned)x == o || tried >= 0)
		return plan_today(s, x, c, tried, fill);
	*fill = true;
	if (s->tree_served[c] < fan) {
		s->tree_served[c]++;
		kids[s->tree_n[c]] = 0;
		who[s->tree_n[c]++] = (unsigned)x;
		return (int)o;
	}
	for (unsigned i = 0; i < s->tree_n[c]; i++)
		if (kids[i] < fan) {
			kids[i]++;
			kids[s->tree_n[c]] = 0;
			who[s->tree_n[c]++] = (unsigned)x;
			s->delay = s->cfg.rtt; /* the REDIRECT's round trip */
			return (int)who[i];
		}
	return (int)o;
}

static int plan_source(struct sim *s, int x, unsigned c, int tried, bool *fill)
{
	if (s->cfg.plan == PLAN_TREE)
		return plan_tree(s, x, c, tried, fill);
	if (s->cfg.plan == PLAN_SWARM)
		return plan_swarm(s, x, c, tried, fill);
	return plan_today(s, x, c, tried, fill);
}

/* ---- node behaviour ---- */

/*
 * Node @x's thread goes after chunk @c, @tried having said ENOENT. A fill a peer asked for
 * (@local) reads storage, as mows's cache_serve_chunk() does (local_only).
 */
static void job_step(struct sim *s, int x, unsigned c, int tried, bool local)
{
	bool fill = false;
	s->delay = 0;
	int src = local && s->cfg.plan != PLAN_TREE ? -1 : plan_source(s, x, c, tried, &fill);
	double delay = s->delay;

	if (src >= 0)
		s->nodes[src].serving++;

	if (src < 0) {
		ev_push(s, (struct event){ s->now + s->cfg.storage_latency, EV_FLOW, -1, x, c, false });
		return;
	}
	/* The whole round trip up front: the bytes flow once the request is there. */
	ev_push(s, (struct event){ s->now + s->cfg.rtt + delay, EV_REQUEST, src, x, c, fill });
}

static void threads_run(struct sim *s, int x)
{
	struct node *nd = &s->nodes[x];

	while (nd->busy < s->cfg.threads && nd->qlen) {
		unsigned c = nd->queue[nd->qhead] & ~JOB_LOCAL;
		bool local = nd->queue[nd->qhead] & JOB_LOCAL;

		nd->qhead = (nd->qhead + 1) % nd->qcap;
		nd->qlen--;
		nd->busy++;
		s->holders[c][s->nholders[c]++] = (unsigned)x; /* in the order gets began */
		job_step(s, x, c, -1, local);
	}
}

/* Node @x wants chunk @c: its reader, or a peer asking it to fill (@local). */
static void want(struct sim *s, int x, unsigned c, bool local)
{
	if (*st(s, x, c) != CH_NONE)
		return;
	if (local && s->cfg.plan != PLAN_TODAY) {
		*st(s, x, c) = CH_SERVEFILL;
		s->holders[c][s->nholders[c]++] = (unsigned)x;
		job_step(s, x, c, -1, true);
		return;
	}
	*st(s, x, c) = CH_FILLING;
	job_push(&s->nodes[x], c | (local ? JOB_LOCAL : 0));
	threads_run(s, x);
}

static void reader_advance(struct sim *s, int x)
{
	struct node *nd = &s->nodes[x];

	if (!nd->reads || nd->cursor >= s->nchunks)
		return;
	while (nd->cursor < s->nchunks &&
	       *st(s, x, (nd->start + nd->cursor) % s->nchunks) == CH_HELD)
		nd->cursor++;
	if (nd->cursor == s->nchunks) {
		nd->done = s->now;
		s->readers_left--;
		return;
	}
	while (nd->asked < s->nchunks && nd->asked < nd->cursor + s->cfg.window)
		want(s, x, (nd->start + nd->asked++) % s->nchunks, false);
}

/*
 * Part of the plan (REPLACE with net/plan.c): whom node @x serves chunk @c to once it holds
 * it. Today every waiter; swarm at most cfg.fanout, and each other waiter is handed to one
 * of those to wait on, so a chunk many nodes wait for spreads as a tree, not a star.
 */
static void serve_waiters(struct sim *s, int x, unsigned c)
{
	size_t at = (size_t)x * s->nchunks + c;
	unsigned k = 0, fan = s->cfg.plan == PLAN_SWARM ? s->cfg.fanout : ~0u;
	int served[64];

	for (int w = s->wait_head[at], nw; w >= 0; w = nw, k++) {
		nw = s->waiters[w].next;
		if (k < fan) {
			if (k < 64)
				served[k] = s->waiters[w].node;
			flow_start(s, x, s->waiters[w].node, c);
			s->waiters[w].next = s->free_waiter;
			s->free_waiter = w;
		} else { /* only with fan <= 64 */
			size_t to = (size_t)served[k % fan] * s->nchunks + c;

			s->nodes[x].serving--;
			s->nodes[served[k % fan]].serving++;
			s->waiters[w].next = s->wait_head[to];
			s->wait_head[to] = w;
		}
	}
	s->wait_head[at] = -1;
}

/* Chunk @c has arrived at node @x: serve who waits, free the thread, move the reader. */
static void arrived(struct sim *s, int x, unsigned c)
{
	bool pool = *st(s, x, c) == CH_FILLING;

	*st(s, x, c) = CH_HELD;
	serve_waiters(s, x, c);
	s->nodes[x].busy -= pool;
	threads_run(s, x);
	reader_advance(s, x);
}

/* @e.dst's request for e.chunk reaches e.src. */
static void request(struct sim *s, const struct event *e)
{
	unsigned char hs = *st(s, e->src, e->chunk);

	if (hs == CH_HELD) {
		flow_start(s, e->src, e->dst, e->chunk);
		return;
	}
	if (!e->fill) { /* mows answers ENOENT unless the chunk is ready */
		s->nodes[e->src].serving--;
		job_step(s, e->dst, e->chunk, e->src, false); /* the round trip was paid */
		return;
	}
	waiter_add(s, e->src, e->chunk, e->dst);
	want(s, e->src, e->chunk, true);
}

static void event_run(struct sim *s, const struct event *e)
{
	switch (e->type) {
	case EV_REQUEST:
		request(s, e);
		break;
	case EV_FLOW:
		flow_start(s, e->src, e->dst, e->chunk);
		break;
	}
}

/* Advances the flows to @t; completes those done, which may start others. */
static void flows_advance(struct sim *s, double t)
{
	struct net *nt = &s->net;
	double dt = t - s->now;
	unsigned kept = 0, ndone = 0;
	struct flow *done = xcalloc(nt->nflows, sizeof(*done));

	for (unsigned f = 0; f < nt->nflows; f++) {
		struct flow *fl = &nt->flows[f];

		fl->left -= isinf(fl->rate) ? fl->left : fl->rate * dt;
		if (fl->left <= 1e-6 * s->cfg.chunk) {
			done[ndone++] = *fl;
		} else {
			nt->flows[kept++] = *fl;
		}
	}
	nt->dirty |= kept != nt->nflows;
	nt->nflows = kept;
	s->now = t;
	for (unsigned i = 0; i < ndone; i++) {
		if (done[i].src >= 0)
			s->nodes[done[i].src].serving--;
		if (done[i].src >= 0 && s->cfg.plan == PLAN_TREE &&
		    (unsigned)done[i].src == s->owner[done[i].chunk] && s->tree_served[done[i].chunk])
			s->tree_served[done[i].chunk]--; /* the owner's send ended (swarm_done) */
		arrived(s, done[i].dst, done[i].chunk);
	}
	free(done);
}

static double next_completion(const struct sim *s)
{
	double best = INFINITY;

	for (unsigned f = 0; f < s->net.nflows; f++) {
		const struct flow *fl = &s->net.flows[f];
		double t = isinf(fl->rate) ? s->now : s->now + fl->left / fl->rate;

		best = t < best ? t : best;
	}
	return best;
}

static void sim_loop(struct sim *s)
{
	while (s->readers_left) {
		double tf = next_completion(s);
		double te = mh_min(&s->ev);
		double t = tf < te ? tf : te;

		if (isinf(t)) {
			fprintf(stderr, "mows-sim: stalled at %.3f s with %u readers left: every fill "
				"thread waits on a peer whose fill threads wait too (issue 7 item 3); "
				"mows would wait for request_timeout, then read storage\n", s->now,
				s->readers_left);
			exit(1);
		}
		flows_advance(s, t);
		while (s->ev.n && mh_min(&s->ev) <= s->now + 1e-12) {
			struct event e;
			mh_pop(&s->ev, &e);

			event_run(s, &e);
			s->events++;
		}
		if (s->net.dirty)
			net_rates(&s->net);
		s->net.dirty = false;
	}
}

/* ---- set-up ---- */

/* The model as files: @shards equal safetensors shards plus the small files beside them. */
static size_t model_files(const struct sim_cfg *cfg, struct place_file *files)
{
	static const char *const small[] = { "config.json", "generation_config.json",
		"tokenizer.json", "tokenizer_config.json", "model.safetensors.index.json" };
	static const uint64_t small_size[] = { 1200, 240, 11400000, 9700, 29000 };
	uint64_t rest = (uint64_t)cfg->model, each;
	size_t n = 0;
	char path[96];

	for (int i = 0; i < 5; i++, n++) {
		files[n].size = small_size[i] < rest / 64 ? small_size[i] : 1000;
		files[n].key = proto_file_key(small[i], files[n].size, 1700000000000000000ll);
		rest -= files[n].size;
	}
	each = rest / cfg->shards;
	for (unsigned sh = 0; sh < cfg->shards; sh++, n++) {
		snprintf(path, sizeof(path), "model-%05u-of-%05u.safetensors", sh + 1, cfg->shards);
		files[n].size = sh + 1 < cfg->shards ? each : rest - each * (cfg->shards - 1);
		files[n].key = proto_file_key(path, files[n].size, 1700000000000000000ll);
	}
	return n;
}

static void sim_place(struct sim *s, const struct place_file *files, size_t nfiles)
{
	struct place_map *m = NULL;
	unsigned *order = xcalloc(s->n, sizeof(*order)), c = 0;
	char id[32];

	for (unsigned i = 0; i < s->n; i++) {
		snprintf(id, sizeof(id), "node-%u", i);
		s->node_hash[i] = place_node_hash(id);
	}
	if (!s->cfg.rendezvous)
		m = place_map_new(s->node_hash, s->n, files, nfiles, (uint64_t)s->cfg.chunk,
				  s->cfg.replicas);
	if (!m && !s->cfg.rendezvous) {
		fprintf(stderr, "mows-sim: place_map_new: %s\n", strerror(errno));
		exit(1);
	}
	for (size_t f = 0; f < nfiles; f++) {
		for (uint64_t k = 0; (double)k * s->cfg.chunk < (double)files[f].size; k++, c++) {
			double left = (double)files[f].size - (double)k * s->cfg.chunk;

			s->bytes[c] = left < s->cfg.chunk ? left : s->cfg.chunk;
			if (m)
				place_map_rank(m, files[f].key, k, order);
			else
				place_rank(files[f].key, k, s->node_hash, s->n, order);
			s->owner[c] = order[0];
			s->next_rank[2 * c] = s->n > 1 ? order[1] : order[0];
			s->next_rank[2 * c + 1] = s->n > 2 ? order[2] : s->next_rank[2 * c];
		}
	}
	place_map_free(m);
	free(order);
}

static unsigned count_chunks(const struct sim_cfg *cfg, const struct place_file *files,
			     size_t nfiles)
{
	unsigned c = 0;

	for (size_t f = 0; f < nfiles; f++)
		c += (unsigned)ceil((double)files[f].size / cfg->chunk);
	return c;
}

static void sim_init(struct sim *s, const struct sim_cfg *cfg)
{
	struct place_file files[5 + 4096];
	size_t nfiles = model_files(cfg, files);

	memset(s, 0, sizeof(*s));
	s->cfg = *cfg;
	s->n = cfg->nodes + (cfg->scenario == SC_JOIN ? cfg->join : 0);
	s->nchunks = count_chunks(cfg, files, nfiles);
	s->bytes = xcalloc(s->nchunks, sizeof(*s->bytes));
	s->owner = xcalloc(s->nchunks, sizeof(*s->owner));
	s->next_rank = xcalloc(2 * (size_t)s->nchunks, sizeof(*s->next_rank));
	s->node_hash = xcalloc(s->n, sizeof(*s->node_hash));
	s->state = xcalloc((size_t)s->n * s->nchunks, 1);
	s->wait_head = xcalloc((size_t)s->n * s->nchunks, sizeof(*s->wait_head));
	memset(s->wait_head, 0xff, (size_t)s->n * s->nchunks * sizeof(*s->wait_head));
	s->free_waiter = -1;
	s->holders = xcalloc(s->nchunks, sizeof(*s->holders));
	s->nholders = xcalloc(s->nchunks, sizeof(*s->nholders));
	for (unsigned c = 0; c < s->nchunks; c++)
		s->holders[c] = xcalloc(s->n, sizeof(**s->holders));
	s->tree_who = xcalloc((size_t)s->nchunks * s->n, sizeof(*s->tree_who));
	s->tree_kids = xcalloc((size_t)s->nchunks * s->n, sizeof(*s->tree_kids));
	s->tree_n = xcalloc(s->nchunks, sizeof(*s->tree_n));
	s->tree_served = xcalloc(s->nchunks, sizeof(*s->tree_served));
	s->nodes = xcalloc(s->n, sizeof(*s->nodes));
	sim_place(s, files, nfiles);

	s->net.nres = 2 + 2 * s->n;
	s->net.cap = xcalloc(s->net.nres, sizeof(double));
	s->net.rem = xcalloc(s->net.nres, sizeof(double));
	s->net.cnt = xcalloc(s->net.nres, sizeof(unsigned));
	s->net.ver = xcalloc(s->net.nres, sizeof(unsigned));
	s->net.start = xcalloc(s->net.nres + 1, sizeof(unsigned));
	s->net.cap[RES_STORAGE] = cfg->storage * cfg->efficiency;
	s->net.cap[RES_CPU] = fmax(cfg->cpu - s->n * cfg->cpu_per_node, cfg->cpu / 100);
	for (unsigned i = 0; i < s->n; i++)
		s->net.cap[RES_UP(i)] = s->net.cap[RES_DOWN(i)] = cfg->nic * cfg->efficiency;
}

static void sim_free(struct sim *s)
{
	for (unsigned c = 0; c < s->nchunks; c++)
		free(s->holders[c]);
	for (unsigned i = 0; i < s->n; i++)
		free(s->nodes[i].queue);
	free(s->holders);
	free(s->tree_who);
	free(s->tree_kids);
	free(s->tree_n);
	free(s->tree_served);
	free(s->nholders);
	free(s->nodes);
	free(s->bytes);
	free(s->owner);
	free(s->next_rank);
	free(s->node_hash);
	free(s->state);
	free(s->wait_head);
	free(s->waiters);
	free(s->ev.v);
	free(s->net.cap);
	free(s->net.rem);
	free(s->net.cnt);
	free(s->net.ver);
	free(s->net.start);
	free(s->net.list);
	free(s->net.flows);
	free(s->net.heap.v);
}

/* A warm cluster: the first cfg.nodes nodes hold every chunk. */
static void sim_warm(struct sim *s)
{
	for (unsigned i = 0; i < s->cfg.nodes; i++)
		for (unsigned c = 0; c < s->nchunks; c++) {
			*st(s, (int)i, c) = CH_HELD;
			s->holders[c][s->nholders[c]++] = i;
		}
}

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void sim_run(const struct sim_cfg *cfg, struct sim_result *res)
{
	struct sim s;
	unsigned first = 0, nread;
	double *done;

	sim_init(&s, cfg);
	if (cfg->scenario == SC_JOIN) {
		sim_warm(&s);
		first = cfg->nodes;
	}
	nread = s.n - first;
	s.readers_left = nread;
	for (unsigned i = first; i < s.n; i++) {
		s.nodes[i].reads = true;
		if (cfg->stagger) /* readers spread evenly over the model */
			s.nodes[i].start = (unsigned)((uint64_t)(i - first) * s.nchunks / nread);
	}
	for (unsigned i = first; i < s.n; i++)
		reader_advance(&s, (int)i);
	sim_loop(&s);

	done = xcalloc(nread, sizeof(*done));
	memset(res, 0, sizeof(*res));
	for (unsigned i = first; i < s.n; i++)
		done[i - first] = s.nodes[i].done;
	qsort(done, nread, sizeof(*done), dbl_cmp);
	res->slowest = done[nread - 1];
	res->p50 = done[(nread - 1) / 2];
	res->storage_bytes = s.storage_bytes;
	for (unsigned i = 0; i < s.n; i++) {
		res->sent_max = fmax(res->sent_max, s.nodes[i].sent);
		res->sent_mean += s.nodes[i].sent / s.n;
	}
	res->events = s.events;
	free(done);
	sim_free(&s);
}

/* ---- command line ---- */

/* "400mbit", "2gbit", "2.5GB/s", "300MB/s", "inf": bytes per second, or -1. */
static double parse_rate(const char *s)
{
	static const struct { const char *unit; double mul; } units[] = {
		{ "kbit", 1e3 / 8 }, { "mbit", 1e6 / 8 }, { "gbit", 1e9 / 8 }, { "bit", 1.0 / 8 },
		{ "KB/s", 1e3 }, { "MB/s", 1e6 }, { "GB/s", 1e9 }, { "B/s", 1 },
	};
	char *end;
	double v;

	if (!strcmp(s, "inf"))
		return INFINITY;
	v = strtod(s, &end);
	if (end == s || v <= 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(end, units[i].unit))
			return v * units[i].mul;
	return -1;
}

/* "510M", "4M" (powers of 1024, as in mows.conf), "65GB" (powers of 1000), "1234": bytes. */
static double parse_bytes(const char *s)
{
	static const struct { const char *unit; double mul; } units[] = {
		{ "", 1 }, { "K", 1024.0 }, { "M", 1048576.0 }, { "G", 1073741824.0 },
		{ "KB", 1e3 }, { "MB", 1e6 }, { "GB", 1e9 }, { "TB", 1e12 },
	};
	char *end;
	double v = strtod(s, &end);

	if (end == s || v <= 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(end, units[i].unit))
			return v * units[i].mul;
	return -1;
}

/* "0.2ms", "50us", "1s", "0": seconds, or -1. */
static double parse_secs(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v < 0)
		return -1;
	if (!strcmp(end, "s") || (!*end && v == 0))
		return v;
	if (!strcmp(end, "ms"))
		return v / 1e3;
	if (!strcmp(end, "us"))
		return v / 1e6;
	return -1;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: mows-sim [options] cold|join\n"
		"       mows-sim --table\n"
		"  --nodes N            cold: nodes; join: warm nodes (8)\n"
		"  --join K             join: nodes joining at once (1)\n"
		"  --plan today|swarm|tree  fetch plan (today); tree: the swarm as built\n"
		"  --model SIZE         model bytes: 510M, 65GB (510M)\n"
		"  --shards N           safetensors shards, beside 5 small files (4)\n"
		"  --chunk SIZE         chunk size (4M)\n"
		"  --storage RATE       shared storage link: 400mbit, 2.5GB/s (400mbit)\n"
		"  --nic RATE           each node's link, each way (2gbit)\n"
		"  --cpu RATE           bytes/s the host moves in all, or inf (inf)\n"
		"  --cpu-per-node RATE  of that, what each node's fixed work takes (0)\n"
		"  --efficiency F       payload per line byte on every link, 0.9 to 1 (1)\n"
		"  --placement P        balanced (place_map) or rendezvous (balanced)\n"
		"  --rtt TIME           peer round trip per request: 0.2ms (0.2ms)\n"
		"  --storage-latency T  storage round trip per chunk (1ms)\n"
		"  --window N           readahead chunks per reader (16)\n"
		"  --threads N          fill threads per node (8)\n"
		"  --replicas N         owners per chunk (1)\n"
		"  --fanout N           swarm: waiters a holder serves itself, 1 to 64 (4)\n"
		"  --pending-cost N     swarm: extra cost of a source still getting the chunk (0)\n"
		"  --stagger            each reader starts at its own point, as a prefetch could\n"
		"  --kv                 print key=value lines for scripts\n");
}

static void cfg_default(struct sim_cfg *cfg)
{
	*cfg = (struct sim_cfg){
		.scenario = SC_COLD, .plan = PLAN_TODAY, .nodes = 8, .join = 1, .shards = 4,
		.window = 16, .threads = 8, .replicas = 1, .model = 510.0 * 1048576,
		.chunk = 4.0 * 1048576, .storage = 400e6 / 8, .nic = 2e9 / 8, .cpu = INFINITY,
		.rtt = 0.2e-3, .storage_latency = 1e-3, .efficiency = 1, .fanout = 4,
		.pending_cost = 0,
	};
}

/* Parses a positive count for @opt into @out, or says what is wrong. */
static int parse_count(const char *opt, const char *arg, unsigned *out)
{
	char *end;
	unsigned long v = strtoul(arg, &end, 10);

	if (end == arg || *end || v == 0 || v > 100000) {
		fprintf(stderr, "mows-sim: --%s '%s': expected a whole number from 1 to 100000\n",
			opt, arg);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int parse_value(const char *opt, const char *arg, double (*parse)(const char *),
		       const char *example, double *out)
{
	double v = parse(arg);

	if (v < 0) {
		fprintf(stderr, "mows-sim: --%s '%s': expected %s\n", opt, arg, example);
		return -1;
	}
	*out = v;
	return 0;
}

static void print_result(const struct sim_cfg *cfg, const struct sim_result *r, bool kv)
{
	double ideal = cfg->scenario == SC_COLD ? cfg->model / fmin(cfg->storage, cfg->nic)
						: cfg->model / cfg->nic;

	if (kv) {
		printf("slowest=%.6f\np50=%.6f\nideal=%.6f\nstorage_bytes=%.0f\nstorage_x=%.4f\n"
		       "sent_max=%.0f\nsent_mean=%.0f\nevents=%u\n", r->slowest, r->p50, ideal,
		       r->storage_bytes, r->storage_bytes / cfg->model, r->sent_max, r->sent_mean,
		       r->events);
		return;
	}
	printf("slowest %.2f s, P50 %.2f s, ideal %.2f s (%.2fx); storage %.2fx the model; "
	       "sent per node max %.2fx mean %.2fx the model\n", r->slowest, r->p50, ideal,
	       r->slowest / ideal, r->storage_bytes / cfg->model, r->sent_max / cfg->model,
	       r->sent_mean / cfg->model);
}

static void print_table(void);

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "nodes", 1, 0, 'n' }, { "join", 1, 0, 'j' }, { "plan", 1, 0, 'p' },
		{ "model", 1, 0, 'm' }, { "shards", 1, 0, 'S' }, { "chunk", 1, 0, 'c' },
		{ "storage", 1, 0, 's' }, { "nic", 1, 0, 'N' }, { "cpu", 1, 0, 'C' },
		{ "rtt", 1, 0, 'r' }, { "storage-latency", 1, 0, 'l' }, { "window", 1, 0, 'w' },
		{ "threads", 1, 0, 't' }, { "replicas", 1, 0, 'R' }, { "kv", 0, 0, 'k' },
		{ "table", 0, 0, 'T' }, { "cpu-per-node", 1, 0, 'P' }, { "efficiency", 1, 0, 'e' },
		{ "placement", 1, 0, 'L' }, { "fanout", 1, 0, 'f' }, { "stagger", 0, 0, 'g' },
		{ "pending-cost", 1, 0, 'D' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
	};
	struct sim_cfg cfg;
	struct sim_result res;
	bool kv = false, table = false;
	int o, rc = 0;

	cfg_default(&cfg);
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1 && !rc) {
		const char *name = "";

		for (const struct option *op = opts; op->name; op++)
			if (op->val == o)
				name = op->name;
		switch (o) {
		case 'n': rc = parse_count(name, optarg, &cfg.nodes); break;
		case 'j': rc = parse_count(name, optarg, &cfg.join); break;
		case 'S': rc = parse_count(name, optarg, &cfg.shards); break;
		case 'w': rc = parse_count(name, optarg, &cfg.window); break;
		case 't': rc = parse_count(name, optarg, &cfg.threads); break;
		case 'R': rc = parse_count(name, optarg, &cfg.replicas); break;
		case 'f':
			rc = parse_count(name, optarg, &cfg.fanout);
			if (!rc && cfg.fanout > 64) {
				fprintf(stderr, "mows-sim: --fanout '%s': expected 1 to 64\n", optarg);
				rc = -1;
			}
			break;
		case 'm': rc = parse_value(name, optarg, parse_bytes, "a size such as 510M or 65GB", &cfg.model); break;
		case 'c': rc = parse_value(name, optarg, parse_bytes, "a size such as 4M", &cfg.chunk); break;
		case 's': rc = parse_value(name, optarg, parse_rate, "a rate such as 400mbit or 2.5GB/s", &cfg.storage); break;
		case 'N': rc = parse_value(name, optarg, parse_rate, "a rate such as 2gbit or inf", &cfg.nic); break;
		case 'C': rc = parse_value(name, optarg, parse_rate, "a rate such as 300MB/s or inf", &cfg.cpu); break;
		case 'r': rc = parse_value(name, optarg, parse_secs, "a time such as 0.2ms", &cfg.rtt); break;
		case 'l': rc = parse_value(name, optarg, parse_secs, "a time such as 1ms", &cfg.storage_latency); break;
		case 'p':
			if (!strcmp(optarg, "today") || !strcmp(optarg, "swarm") ||
			    !strcmp(optarg, "tree")) {
				cfg.plan = optarg[0] == 's' ? PLAN_SWARM : optarg[1] == 'o' ?
					   PLAN_TODAY : PLAN_TREE;
			} else {
				fprintf(stderr, "mows-sim: --plan '%s': expected today, swarm or tree\n", optarg);
				rc = -1;
			}
			break;
		case 'P': rc = parse_value(name, optarg, parse_rate, "a rate such as 3MB/s", &cfg.cpu_per_node); break;
		case 'e':
			cfg.efficiency = strtod(optarg, NULL);
			if (cfg.efficiency < 0.5 || cfg.efficiency > 1) {
				fprintf(stderr, "mows-sim: --efficiency '%s': expected a fraction from 0.5 to 1, such as 0.956 for TCP over 1500-byte frames\n", optarg);
				rc = -1;
			}
			break;
		case 'L':
			if (!strcmp(optarg, "balanced") || !strcmp(optarg, "rendezvous")) {
				cfg.rendezvous = optarg[0] == 'r';
			} else {
				fprintf(stderr, "mows-sim: --placement '%s': expected balanced or rendezvous\n", optarg);
				rc = -1;
			}
			break;
		case 'g': cfg.stagger = true; break;
		case 'D':
			cfg.pending_cost = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'k': kv = true; break;
		case 'T': table = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (rc)
		return 2;
	if (table) {
		print_table();
		return 0;
	}
	if (optind + 1 != argc || (strcmp(argv[optind], "cold") && strcmp(argv[optind], "join"))) {
		usage(stderr);
		return 2;
	}
	cfg.scenario = argv[optind][0] == 'c' ? SC_COLD : SC_JOIN;
	if (cfg.model / cfg.chunk > 4e6 || cfg.shards > 4096) {
		fprintf(stderr, "mows-sim: %.0f chunks or %u shards: too many for this model; use "
			"a larger --chunk or fewer --shards\n", cfg.model / cfg.chunk, cfg.shards);
		return 2;
	}
	sim_run(&cfg, &res);
	print_result(&cfg, &res, kv);
	return 0;
}

/* ---- the README table ---- */

/* The bench machine (README "Cluster"): tools/mows-cluster on 2 cores, mows as landed. */
static struct sim_cfg bench_cfg(unsigned nodes, double model_mib, const char *storage,
				const char *nic)
{
	struct sim_cfg c;

	cfg_default(&c);
	c.nodes = nodes;
	c.model = model_mib * 1048576;
	c.storage = parse_rate(storage);
	c.nic = parse_rate(nic);
	c.rendezvous = true;	/* measured before place_map */
	c.efficiency = 0.956;	/* TCP payload in 1514-byte frames; tbf counts frames */
	c.cpu = 600e6;		/* fitted: what 2 cores move through veths, tbf, FUSE, CRC */
	c.cpu_per_node = 8e6;	/* fitted: each simulated host's daemons, ssh, reader */
	return c;
}

/* The fleet: a 65 GB model (Qwen3-32B in bf16, 17 shards), 2.5 GB/s storage, 200 Gbit/s. */
static struct sim_cfg fleet_cfg(unsigned nodes, enum plan plan)
{
	struct sim_cfg c;

	cfg_default(&c);
	c.nodes = nodes;
	c.plan = plan;
	c.model = 65e9;
	c.shards = 17;
	c.storage = 2.5e9;
	c.nic = 200e9 / 8;
	c.rtt = 50e-6;
	c.storage_latency = 0.5e-3;
	c.chunk = 64.0 * 1048576; /* coarser than mows's 4 MiB to keep runs short: see README */
	return c;
}

static void print_calibration(void)
{
	static const struct {
		const char *what;
		unsigned nodes, join;
		double mib;
		const char *storage, *nic;
		double time, storage_x;
	} runs[] = {
		{ "8 nodes cold, 510 MiB, 400 Mbit/s storage, 2 Gbit/s links", 8, 0, 510,
		  "400mbit", "2gbit", 13.2, 1.01 },
		{ "a 9th node joins those 8 warm", 8, 1, 510, "400mbit", "2gbit", 2.38, 0 },
		{ "16 nodes cold, 104 MiB, 200 Mbit/s storage", 16, 0, 104, "200mbit", "2gbit",
		  1.38 * 104 * 8.388608 / 200, 1.01 },
		{ "32 nodes cold, same", 32, 0, 104, "200mbit", "2gbit", 3.1 * 104 * 8.388608 / 200,
		  -1 },
		{ "6 nodes join a warm 2, 104 MiB, 300 Mbit/s links", 2, 6, 104, "400mbit",
		  "300mbit", 2.57 * 104 * 8.388608 / 300, 0.47 },
	};

	printf("| measured scenario (bench machine, mows as landed) | measured | simulated | "
	       "error | storage measured | storage simulated |\n|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		struct sim_cfg c = bench_cfg(runs[i].nodes, runs[i].mib, runs[i].storage,
					     runs[i].nic);
		struct sim_result r;
		char st[32] = "-";

		c.scenario = runs[i].join ? SC_JOIN : SC_COLD;
		c.join = runs[i].join ? runs[i].join : 1;
		sim_run(&c, &r);
		if (runs[i].storage_x >= 0)
			snprintf(st, sizeof(st), "%.2fx", runs[i].storage_x);
		printf("| %s | %.2f s | %.2f s | %+.0f%% | %s | %.2fx |\n", runs[i].what,
		       runs[i].time, r.slowest, 100 * (r.slowest / runs[i].time - 1), st,
		       r.storage_bytes / c.model);
		fflush(stdout);
	}
}

static void print_fleet(void)
{
	static const unsigned sizes[2] = { 100, 1000 };
	static const char *const plans[2] = { "today", "swarm" };

	printf("\n| fleet: 65 GB, 2.5 GB/s storage, 200 Gbit/s NICs | plan | slowest node | "
	       "x ideal | storage | sent per node max / mean |\n|---|---|---|---|---|---|\n");
	for (int si = 0; si < 2; si++) {
		for (int kind = 0; kind < 3; kind++) {
			for (int pl = 0; pl < 2; pl++) {
				struct sim_cfg c = fleet_cfg(sizes[si], pl ? PLAN_SWARM : PLAN_TODAY);
				struct sim_result r;
				char what[96];
				double ideal;

				c.scenario = kind ? SC_JOIN : SC_COLD;
				c.join = kind == 2 ? 50 : 1;
				if (!kind)
					snprintf(what, sizeof(what), "%u nodes cold at once", c.nodes);
				else
					snprintf(what, sizeof(what), "%u node%s join%s %u warm", c.join,
						 c.join > 1 ? "s" : "", c.join > 1 ? "" : "s", c.nodes);
				sim_run(&c, &r);
				ideal = kind ? c.model / c.nic : c.model / fmin(c.storage, c.nic);
				printf("| %s | %s | %.1f s | %.2fx | %.2fx | %.2fx / %.2fx |\n", what,
				       plans[pl], r.slowest, r.slowest / ideal,
				       r.storage_bytes / c.model, r.sent_max / c.model,
				       r.sent_mean / c.model);
				fflush(stdout);
			}
		}
	}
}

/* Placement against plan when node links, not storage, are tight (links only, no CPU). */
static void print_placement(void)
{
	printf("\n| 16 nodes cold, 510 MiB, 400 Mbit/s storage, 500 Mbit/s node links | plan | "
	       "slowest node | x ideal | sent per node max / mean |\n|---|---|---|---|---|\n");
	for (int pl = 0; pl < 2; pl++) {
		for (int rv = 1; rv >= 0; rv--) {
			struct sim_cfg c;
			struct sim_result r;
			double ideal;

			cfg_default(&c);
			c.nodes = 16;
			c.nic = 500e6 / 8;
			c.rendezvous = rv;
			c.plan = pl ? PLAN_SWARM : PLAN_TODAY;
			sim_run(&c, &r);
			ideal = c.model / fmin(c.storage, c.nic);
			printf("| %s placement | %s | %.1f s | %.2fx | %.2fx / %.2fx |\n",
			       rv ? "rendezvous" : "balanced (place_map)", pl ? "swarm" : "today",
			       r.slowest, r.slowest / ideal, r.sent_max / c.model,
			       r.sent_mean / c.model);
			fflush(stdout);
		}
	}
}

static void print_table(void)
{
	print_calibration();
	print_placement();
	print_fleet();
}
