/*
 * mows-sim: a flow-level model of a mows cluster, for fleets too big to boot here.
 *
 *   mows-sim [options] cold          N nodes start at once and each reads the whole model
 *   mows-sim [options] join          K nodes join a warm cluster of N nodes at once
 *   mows-sim [options] members       membership gossip: rounds until all know of a change
 *   mows-sim --table                 the calibration runs and the fleet predictions
 *
 * What is real (linked from libmows.a): placement (net/place.c: the balanced place_map, or
 * plain rendezvous), the fetch plan of every miss (net/plan.c plan_make(), ranked by the
 * owners map, `older` flags set for the warm nodes of a join as net/peer.c mark_older()
 * does), the owner's swarm decision (net/swarm.c swarm_admit()/swarm_done(), one table per
 * node, busy as net/serve.c reckons it: SWARM_BUSY_SENDS sends in flight), and for
 * `members` the gossip queue and merge rule (net/gossip.c) with the heartbeat's per-round
 * ping budget (net/member.c members_ping_budget()).
 *
 * What is modelled: links as rates (one storage link all storage reads share; each node's
 * NIC up and down; an optional host CPU limit every byte crosses, for a bench machine that
 * runs all nodes on a few cores), max-min fair sharing among the flows active at each
 * moment, recomputed at every event; one round trip per request (rtt to a peer,
 * storage_latency to storage) before its bytes flow. Relaying while a chunk arrives: a node
 * that is still receiving a chunk from a peer serves it onward, its flow never ahead of its
 * own copy less one piece (--piece, DATA_PIECE): a flow that has caught up with that point
 * moves at its source's incoming rate (frozen with it in the max-min filling), one that has
 * reached it before the source has a piece more waits at 0. A chunk read from storage is
 * served only once whole, as in mows for a model without crc32.chunks (with it the backing
 * reports progress too; not modelled). Nodes behave as mows does: a reader
 * walks the files in order keeping `window` chunks requested ahead; `threads` fill threads
 * take them one at a time and run the plan step by step (a probe that finds nothing costs
 * its round trip; a REDIRECT one more; GET WAIT at a parent that has not begun falls back
 * to the owner with NOREDIRECT); a fill an owner does for a peer runs on the serving side
 * (no fill thread) with the probe-only plan; one fill per chunk per node.
 *
 * Not modelled: TCP dynamics, loss, queueing delay, daemon start-up, eviction, failures of
 * a transfer; the members scenario has no message loss or delay within a round.
 * README "Fleet model" has the calibration and the predictions.
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
#include "net/gossip.h"
#include "net/member.h"
#include "net/place.h"
#include "net/plan.h"
#include "net/proto.h"
#include "net/swarm.h"

enum scenario { SC_COLD, SC_JOIN, SC_MEMBERS };

struct sim_cfg {
	enum scenario scenario;
	unsigned nodes;		/* cold: nodes; join: warm nodes already there */
	unsigned join;		/* join: nodes joining at once */
	unsigned shards, window, threads, replicas;
	unsigned fanout;	/* swarm_fanout (net/swarm.h); 0: no swarm */
	bool relay;		/* serve a chunk while it arrives (else only once whole) */
	double piece;		/* bytes: a relay stays this far behind its source's copy */
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
	double sent_max, sent_mean; /* bytes sent to peers per node */
	double old_sent;	/* join: bytes the warm nodes sent, all together */
	unsigned events, redirects, fallbacks, relays;
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

/* ---- a min-heap ---- */

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

/* ---- max-min fair flows ---- */

#define MAX_RES 3

struct flow {
	int src;		/* node, or -1 for storage */
	int dst;
	unsigned chunk;
	unsigned job;		/* the fill at dst this flow ends */
	bool admitted;		/* src admitted it through swarm_admit(): swarm_done() at end */
	double left, rate;
	int res[MAX_RES];
	unsigned nres;
	int link;		/* relay caught up: moves at flow link's rate (-1: free) */
	bool stalled;		/* relay at its source's copy less a piece: rate 0 */
	bool frozen;
};

struct heap_item { double key; unsigned res, ver; };
_Static_assert(offsetof(struct heap_item, key) == 0 && sizeof(struct heap_item) <= MINHEAP_ESZ_MAX,
	       "a minheap element starts with its double key");

struct net {
	unsigned nres;
	double *cap;		/* per resource, bytes/s; INFINITY = no limit */
	double *rem;
	unsigned *cnt, *start, *list, *ver;
	unsigned *kid_start, *kids; /* per flow: the relays linked to it, CSR */
	struct flow *flows;
	unsigned nflows, flows_cap;
	struct minheap heap;	/* (share, resource, version) for progressive filling */
	bool dirty;		/* flows or their links changed since the rates were computed */
};

/* Flows by resource, in CSR form: list[start[r] .. start[r + 1]); relays by the flow they
 * are linked to: kids[kid_start[f] .. kid_start[f + 1]). */
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
	nt->kid_start = xrealloc(nt->kid_start, nt->nflows + 1, sizeof(*nt->kid_start));
	nt->kids = xrealloc(nt->kids, nt->nflows, sizeof(*nt->kids));
	memset(nt->kid_start, 0, (nt->nflows + 1) * sizeof(*nt->kid_start));
	for (unsigned f = 0; f < nt->nflows; f++)
		if (nt->flows[f].link >= 0)
			nt->kid_start[nt->flows[f].link + 1]++;
	for (unsigned f = 0; f < nt->nflows; f++)
		nt->kid_start[f + 1] += nt->kid_start[f];
	unsigned *next = xcalloc(nt->nflows, sizeof(*next));
	for (unsigned f = 0; f < nt->nflows; f++) {
		int l = nt->flows[f].link;

		if (l >= 0)
			nt->kids[nt->kid_start[l] + next[l]++] = f;
	}
	free(next);
}

/* A typed min-heap of (share, resource, version) for the progressive filling. */
static void rh_push(struct net *nt, double key, unsigned res)
{
	struct minheap *h = &nt->heap;
	struct heap_item *v;

	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 256;
		h->v = xrealloc(h->v, h->cap, sizeof(struct heap_item));
	}
	v = (struct heap_item *)h->v;
	unsigned i = h->n++;

	v[i] = (struct heap_item){ key, res, nt->ver[res] };
	while (i && v[(i - 1) / 2].key > v[i].key) {
		struct heap_item t = v[i];

		v[i] = v[(i - 1) / 2];
		v[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

static struct heap_item rh_pop(struct net *nt)
{
	struct minheap *h = &nt->heap;
	struct heap_item *v = (struct heap_item *)h->v, top = v[0];
	unsigned i = 0;

	v[0] = v[--h->n];
	for (;;) {
		unsigned l = 2 * i + 1, r = l + 1, m = i;

		if (l < h->n && v[l].key < v[m].key)
			m = l;
		if (r < h->n && v[r].key < v[m].key)
			m = r;
		if (m == i)
			break;
		struct heap_item t = v[i];

		v[i] = v[m];
		v[m] = t;
		i = m;
	}
	return top;
}

/*
 * Freezes flow @f at @rate, and with it every relay linked to it, transitively. The
 * resources whose share changed are noted in @touched (once each: @mark) for the caller to
 * push again.
 */
static void freeze(struct net *nt, unsigned f, double rate, unsigned *stack,
		   unsigned *touched, unsigned *ntouched, unsigned char *mark)
{
	unsigned sp = 0;

	stack[sp++] = f;
	while (sp) {
		unsigned g = stack[--sp];
		struct flow *fl = &nt->flows[g];

		if (fl->frozen)
			continue;
		fl->frozen = true;
		fl->rate = rate;
		for (unsigned k = 0; k < fl->nres; k++) {
			unsigned o = (unsigned)fl->res[k];

			nt->rem[o] -= rate;
			nt->cnt[o]--;
			nt->ver[o]++;
			if (!mark[o]) {
				mark[o] = 1;
				touched[(*ntouched)++] = o;
			}
		}
		for (unsigned i = nt->kid_start[g]; i < nt->kid_start[g + 1]; i++)
			if (!nt->flows[nt->kids[i]].frozen)
				stack[sp++] = nt->kids[i];
	}
}

/* Pushes the new share of every resource @touched and clears the list. */
static void push_touched(struct net *nt, unsigned *touched, unsigned *ntouched,
			 unsigned char *mark)
{
	for (unsigned i = 0; i < *ntouched; i++) {
		unsigned o = touched[i];

		mark[o] = 0;
		if (nt->cnt[o] && isfinite(nt->cap[o]))
			rh_push(nt, fmax(nt->rem[o], 0) / nt->cnt[o], o);
	}
	*ntouched = 0;
}

/*
 * Max-min fair rates by progressive filling: the resource whose remaining capacity per
 * unfrozen flow is smallest is the next bottleneck; its flows get that share. A relay linked
 * to its source's incoming flow rises with it and freezes when it does (it can go no faster
 * than its source's copy grows); a stalled relay is frozen at 0 from the start. That is
 * max-min fairness under the constraint rate(relay) <= rate(source) for caught-up relays.
 */
static void net_rates(struct net *nt)
{
	unsigned *stack = xcalloc(nt->nflows + 1, sizeof(*stack));
	unsigned *touched = xcalloc(nt->nres, sizeof(*touched)), ntouched = 0;
	unsigned char *mark = xcalloc(nt->nres, 1);

	net_index(nt);
	nt->heap.n = 0;
	for (unsigned f = 0; f < nt->nflows; f++) {
		nt->flows[f].frozen = false;
		nt->flows[f].rate = INFINITY;
	}
	for (unsigned r = 0; r < nt->nres; r++) {
		nt->rem[r] = nt->cap[r];
		nt->ver[r]++;
	}
	for (unsigned f = 0; f < nt->nflows; f++)
		if (nt->flows[f].stalled)
			freeze(nt, f, 0, stack, touched, &ntouched, mark);
	for (unsigned i = 0; i < ntouched; i++)
		mark[touched[i]] = 0;
	ntouched = 0;
	for (unsigned r = 0; r < nt->nres; r++)
		if (nt->cnt[r] && isfinite(nt->cap[r]))
			rh_push(nt, nt->rem[r] / nt->cnt[r], r);
	while (nt->heap.n) {
		struct heap_item it = rh_pop(nt);
		unsigned r = it.res;

		if (it.ver != nt->ver[r] || !nt->cnt[r])
			continue;
		double share = fmax(nt->rem[r], 0) / nt->cnt[r];

		for (unsigned i = nt->start[r]; i < nt->start[r + 1]; i++)
			if (!nt->flows[nt->list[i]].frozen)
				freeze(nt, nt->list[i], share, stack, touched, &ntouched, mark);
		push_touched(nt, touched, &ntouched, mark);
	}
	free(stack);
	free(touched);
	free(mark);
}

/* ---- the cluster ---- */

/* Requests, as net/peer.c run_step() sends them. */
enum req_mode { REQ_GET, REQ_FILL, REQ_WAIT, REQ_NOREDIRECT };

enum ev_type { EV_REQUEST, EV_STORAGE };

struct event {
	double t;
	enum ev_type type;
	enum req_mode mode;
	unsigned job;
	int to;			/* EV_REQUEST: the node asked */
};

_Static_assert(offsetof(struct event, t) == 0 && sizeof(struct event) <= MINHEAP_ESZ_MAX,
	       "a minheap element starts with its double key");

/* CH_QUEUED: the reader wants it, no fill thread has taken it yet. */
enum { CH_NONE, CH_QUEUED, CH_FILLING, CH_HELD };

/* One fill of one chunk at one node: the plan and where it is in it. */
struct job {
	int x;			/* the node filling */
	unsigned c;
	bool thread;		/* on a fill thread (the reader's miss), else for a peer */
	struct plan pl;
	int node[PLAN_MAX_STEPS]; /* pl.step[i].member as a node */
	unsigned step;
	int owner;		/* the node the current REQ_FILL went to */
	int next_free;
};

/* A request parked at a node until its chunk is whole (store and forward, --relay off). */
struct waiter {
	unsigned job;
	bool admitted;
	int next;
};

struct node {
	bool reads;		/* reads the whole model (cold: all; join: the new ones) */
	unsigned cursor;	/* the reader's next position not yet held */
	unsigned asked;		/* the reader has requested positions below this */
	unsigned start;		/* position 0 is this chunk (--stagger), then onwards, wrapping */
	unsigned busy;		/* fill threads working */
	unsigned *queue;	/* chunks waiting for a fill thread: a ring */
	unsigned qhead, qlen, qcap;
	unsigned sending;	/* flows from this node now (net/serve.c p->sending) */
	struct swarm *sw;	/* its swarm table as an owner */
	double done, sent;
};

#define TOP_MAX 32		/* ranks kept per chunk: what plan_make() can reach */

struct sim {
	struct sim_cfg cfg;
	unsigned n, nchunks, top;
	double *bytes;		/* per chunk */
	uint64_t *ckey, *cidx;	/* per chunk: file key and chunk index in the file */
	unsigned *rank;		/* per chunk: its top ranks (owners map), `top` of them */
	uint64_t *node_hash;
	unsigned char *state;	/* n x nchunks: CH_* */
	int *inflow;		/* n x nchunks: the flow filling it, -1 none */
	int *wait_head;		/* n x nchunks: first parked request, -1 none */
	struct waiter *waiters;
	unsigned nwaiters, waiters_cap;
	int free_waiter;
	struct job *jobs;
	unsigned njobs, jobs_cap;
	int free_job;
	struct node *nodes;
	struct minheap ev;	/* struct event by time */
	struct net net;
	double now, storage_bytes;
	unsigned readers_left, events, redirects, fallbacks, relays;
};

#define RES_STORAGE	0
#define RES_CPU		1
#define RES_UP(i)	(2 + 2 * (i))
#define RES_DOWN(i)	(3 + 2 * (i))

static size_t at(const struct sim *s, int node, unsigned c)
{
	return (size_t)node * s->nchunks + c;
}

static void ev_push(struct sim *s, struct event e)
{
	mh_push(&s->ev, &e, sizeof(e));
}

static unsigned job_new(struct sim *s, int x, unsigned c, bool thread)
{
	unsigned j;

	if (s->free_job >= 0) {
		j = (unsigned)s->free_job;
		s->free_job = s->jobs[j].next_free;
	} else {
		if (s->njobs == s->jobs_cap) {
			s->jobs_cap = s->jobs_cap ? 2 * s->jobs_cap : 1024;
			s->jobs = xrealloc(s->jobs, s->jobs_cap, sizeof(*s->jobs));
		}
		j = s->njobs++;
	}
	s->jobs[j] = (struct job){ .x = x, .c = c, .thread = thread, .owner = -1 };
	return j;
}

static void job_free(struct sim *s, unsigned j)
{
	s->jobs[j].next_free = s->free_job;
	s->free_job = (int)j;
}

/* Starts the flow of chunk @c from @src (-1: storage) to job @j's node. */
static void flow_start(struct sim *s, int src, unsigned j, bool admitted)
{
	struct net *nt = &s->net;
	int dst = s->jobs[j].x;
	unsigned c = s->jobs[j].c;
	struct flow *fl;

	if (nt->nflows == nt->flows_cap) {
		nt->flows_cap = nt->flows_cap ? 2 * nt->flows_cap : 1024;
		nt->flows = xrealloc(nt->flows, nt->flows_cap, sizeof(*nt->flows));
	}
	s->inflow[at(s, dst, c)] = (int)nt->nflows;
	fl = &nt->flows[nt->nflows++];
	nt->dirty = true;
	*fl = (struct flow){ .src = src, .dst = dst, .chunk = c, .job = j, .admitted = admitted,
			     .left = s->bytes[c], .link = -1 };
	fl->res[fl->nres++] = src < 0 ? RES_STORAGE : RES_UP(src);
	fl->res[fl->nres++] = RES_DOWN(dst);
	fl->res[fl->nres++] = RES_CPU;
	if (src < 0) {
		s->storage_bytes += s->bytes[c];
		return;
	}
	s->nodes[src].sent += s->bytes[c];
	s->nodes[src].sending++;
	if (s->state[at(s, src, c)] != CH_HELD)
		s->relays++;
}

static void waiter_add(struct sim *s, int holder, unsigned c, unsigned j, bool admitted)
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
	s->waiters[w] = (struct waiter){ .job = j, .admitted = admitted,
					 .next = s->wait_head[at(s, holder, c)] };
	s->wait_head[at(s, holder, c)] = w;
}

/* Whether @a ran PEER_OLDER_MS before @b started (net/peer.c mark_older()): in a join, the
 * warm nodes are older than the joiners; in a cold burst nobody is. */
static bool older_than(const struct sim *s, unsigned a, unsigned b)
{
	return s->cfg.scenario == SC_JOIN && a < s->cfg.nodes && b >= s->cfg.nodes;
}

/*
 * Job @j's plan: net/plan.c plan_make() over the chunk's top ranks (and the job's node, last
 * when it is not among them: a node ranked below them is reached by no step). Ranked by the
 * owners map, as net/peer.c does with owners_rank().
 */
static void job_plan(struct sim *s, unsigned j, bool probe_only)
{
	struct job *jb = &s->jobs[j];
	const unsigned *top = &s->rank[(size_t)jb->c * s->top];
	unsigned order[TOP_MAX + 1], node[TOP_MAX + 1], n = 0, self = ~0u;
	uint64_t hashes[TOP_MAX + 1];
	bool older[TOP_MAX + 1];

	for (unsigned i = 0; i < s->top; i++) {
		if (top[i] == (unsigned)jb->x)
			self = n;
		node[n] = top[i];
		n++;
	}
	if (self == ~0u) {
		self = n;
		node[n++] = (unsigned)jb->x;
	}
	for (unsigned i = 0; i < n; i++) {
		order[i] = i;
		hashes[i] = s->node_hash[node[i]];
		older[i] = older_than(s, node[i], (unsigned)jb->x);
	}
	struct plan_input in = { .file_key = s->ckey[jb->c], .chunk = s->cidx[jb->c],
				 .hashes = hashes, .n = n, .self = self,
				 .replicas = s->cfg.replicas, .probe_only = probe_only,
				 .older = older, .ranked = true };
	if (plan_make(&in, order, &jb->pl)) {
		fprintf(stderr, "mows-sim: plan_make refused node %d's plan\n", jb->x);
		exit(1);
	}
	for (unsigned i = 0; i < jb->pl.n; i++)
		jb->node[i] = (int)node[jb->pl.step[i].member];
	jb->step = 0;
}

/* Job @j sends its next step (a round trip), or reads storage when none is left. */
static void job_next(struct sim *s, unsigned j)
{
	struct job *jb = &s->jobs[j];

	if (jb->step >= jb->pl.n) {
		ev_push(s, (struct event){ s->now + s->cfg.storage_latency, EV_STORAGE, REQ_GET,
					   j, -1 });
		return;
	}
	const struct plan_step *st = &jb->pl.step[jb->step];

	if (st->fill)
		jb->owner = jb->node[jb->step];
	ev_push(s, (struct event){ s->now + s->cfg.rtt, EV_REQUEST,
				   st->fill ? REQ_FILL : REQ_GET, j, jb->node[jb->step] });
}

/* Node @x starts filling chunk @c: on a fill thread (@thread) or for a peer. */
static void fill_start(struct sim *s, int x, unsigned c, bool thread)
{
	unsigned j = job_new(s, x, c, thread);

	s->state[at(s, x, c)] = CH_FILLING;
	job_plan(s, j, !thread);
	job_next(s, j);
}

static void threads_run(struct sim *s, int x)
{
	struct node *nd = &s->nodes[x];

	while (nd->busy < s->cfg.threads && nd->qlen) {
		unsigned c = nd->queue[nd->qhead];

		nd->qhead = (nd->qhead + 1) % nd->qcap;
		nd->qlen--;
		if (s->state[at(s, x, c)] != CH_QUEUED)
			continue; /* a peer's request began it meanwhile */
		nd->busy++;
		fill_start(s, x, c, true);
	}
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

static void reader_advance(struct sim *s, int x)
{
	struct node *nd = &s->nodes[x];

	if (!nd->reads || nd->cursor >= s->nchunks)
		return;
	while (nd->cursor < s->nchunks &&
	       s->state[at(s, x, (nd->start + nd->cursor) % s->nchunks)] == CH_HELD)
		nd->cursor++;
	if (nd->cursor == s->nchunks) {
		nd->done = s->now;
		s->readers_left--;
		return;
	}
	while (nd->asked < s->nchunks && nd->asked < nd->cursor + s->cfg.window) {
		unsigned c = (nd->start + nd->asked++) % s->nchunks;

		if (s->state[at(s, x, c)] == CH_NONE) {
			s->state[at(s, x, c)] = CH_QUEUED;
			job_push(nd, c);
		}
	}
	threads_run(s, x);
}

/* Node @m serves job @j's chunk: now when it holds it or relays, else once it is whole. */
static void serve(struct sim *s, int m, unsigned j, bool admitted)
{
	unsigned c = s->jobs[j].c;

	if (s->state[at(s, m, c)] == CH_HELD || s->cfg.relay)
		flow_start(s, m, j, admitted);
	else
		waiter_add(s, m, c, j, admitted);
}

/* Job @j's GET FILL reaches owner @m (net/serve.c swarm_redirect(), then the fill). */
static void request_fill(struct sim *s, unsigned j, int m, bool noredirect)
{
	struct job *jb = &s->jobs[j];
	unsigned c = jb->c;
	uint32_t parent = 0;
	bool admitted = !noredirect && s->cfg.fanout;

	if (admitted && swarm_admit(s->nodes[m].sw, s->ckey[c], s->cidx[c], (uint32_t)jb->x + 1,
				    s->cfg.fanout, s->nodes[m].sending >= SWARM_BUSY_SENDS,
				    &parent)) {
		s->redirects++;
		/* the REDIRECT came back with this round trip; GET WAIT costs another */
		ev_push(s, (struct event){ s->now + s->cfg.rtt, EV_REQUEST, REQ_WAIT, j,
					   (int)parent - 1 });
		return;
	}
	unsigned char st = s->state[at(s, m, c)];

	if (st == CH_NONE || st == CH_QUEUED)
		fill_start(s, m, c, false);
	serve(s, m, j, admitted);
}

/* An event: job e->job's request reaches e->to, or its storage read begins. */
static void event_run(struct sim *s, const struct event *e)
{
	struct job *jb = &s->jobs[e->job];
	unsigned char st = e->to >= 0 ? s->state[at(s, e->to, jb->c)] : CH_NONE;

	if (e->type == EV_STORAGE) {
		flow_start(s, -1, e->job, false);
		return;
	}
	switch (e->mode) {
	case REQ_GET: /* mows answers ENOENT unless the chunk is here */
		if (st == CH_HELD) {
			flow_start(s, e->to, e->job, false);
			return;
		}
		jb->step++;
		job_next(s, e->job); /* this round trip was paid */
		return;
	case REQ_WAIT: /* held, or our fill of it runs: serve; else ENOENT */
		if (st == CH_HELD || st == CH_FILLING) {
			serve(s, e->to, e->job, false);
			return;
		}
		s->fallbacks++;
		ev_push(s, (struct event){ s->now + s->cfg.rtt, EV_REQUEST, REQ_NOREDIRECT,
					   e->job, jb->owner });
		return;
	case REQ_FILL:
	case REQ_NOREDIRECT:
		request_fill(s, e->job, e->to, e->mode == REQ_NOREDIRECT);
		return;
	}
}

/* Chunk @c is whole at node @x (its job @j is done): serve who waits, move the reader. */
static void arrived(struct sim *s, unsigned j)
{
	int x = s->jobs[j].x;
	unsigned c = s->jobs[j].c;
	size_t a = at(s, x, c);

	s->state[a] = CH_HELD;
	s->inflow[a] = -1;
	for (int w = s->wait_head[a], nw; w >= 0; w = nw) {
		nw = s->waiters[w].next;
		flow_start(s, x, s->waiters[w].job, s->waiters[w].admitted);
		s->waiters[w].next = s->free_waiter;
		s->free_waiter = w;
	}
	s->wait_head[a] = -1;
	if (s->jobs[j].thread)
		s->nodes[x].busy--;
	job_free(s, j);
	threads_run(s, x);
	reader_advance(s, x);
}

/* ---- relaying while a chunk arrives ---- */

/*
 * Bytes node @src can relay of flow @f's chunk and the rate they grow at (its incoming
 * flow). A fill from storage relays nothing before it ends: only a remote source reports
 * bytes as they land (cache_relay_progress(), net/mux.c); the backing's read does not.
 */
static void source_copy(const struct sim *s, const struct flow *f, double *got, double *rate)
{
	int pf = s->inflow[at(s, f->src, f->chunk)];
	bool remote = pf >= 0 && s->net.flows[pf].src >= 0;

	*got = remote ? s->bytes[f->chunk] - s->net.flows[pf].left : 0;
	*rate = remote ? s->net.flows[pf].rate : 0;
}

/*
 * How far relay @f is ahead of what it may send: its bytes less (its source's bytes less one
 * piece). > 0 it must wait; about 0 it moves with its source; < 0 it is free. NAN: not a
 * relay (storage, or a source that holds the chunk whole).
 */
static double relay_lead(const struct sim *s, const struct flow *f)
{
	double pgot, prate;

	if (f->src < 0 || s->state[at(s, f->src, f->chunk)] == CH_HELD)
		return NAN;
	source_copy(s, f, &pgot, &prate);
	double piece = fmin(s->cfg.piece, s->bytes[f->chunk]);

	return (s->bytes[f->chunk] - f->left) - (pgot - piece);
}

static double relay_tol(const struct sim *s, const struct flow *f)
{
	return 1e-4 * fmin(s->cfg.piece, s->bytes[f->chunk]);
}

/* Sets each relay stalled, linked to its source's incoming flow, or free (relay_lead()). */
static void relay_links(struct sim *s)
{
	for (unsigned i = 0; i < s->net.nflows; i++) {
		struct flow *f = &s->net.flows[i];
		double lead = relay_lead(s, f), tol = relay_tol(s, f);

		f->link = -1;
		f->stalled = false;
		if (isnan(lead))
			continue;
		if (lead > tol)
			f->stalled = true;
		else if (lead >= -tol)
			f->link = s->inflow[at(s, f->src, f->chunk)];
	}
}

/* When relay @f changes state at today's rates: a stalled one can go, a free one catches up. */
static double relay_change(const struct sim *s, const struct flow *f)
{
	double lead = relay_lead(s, f), pgot, prate;

	if (isnan(lead) || f->link >= 0)
		return INFINITY;
	source_copy(s, f, &pgot, &prate);
	if (f->stalled)
		return prate > 0 ? s->now + lead / prate : INFINITY;
	return f->rate > prate ? s->now + -lead / (f->rate - prate) : INFINITY;
}

/* ---- the event loop ---- */

/* Advances the flows to @t; completes those done, which may start others. @relay: a relay
 * changes state at @t (relay_change()), so the rates are due again. */
static void flows_advance(struct sim *s, double t, bool relay)
{
	struct net *nt = &s->net;
	double dt = t - s->now;
	unsigned kept = 0, ndone = 0;
	struct flow *done = xcalloc(nt->nflows, sizeof(*done));

	for (unsigned f = 0; f < nt->nflows; f++) {
		struct flow *fl = &nt->flows[f];

		fl->left -= isinf(fl->rate) ? fl->left : fl->rate * dt;
		if (fl->left <= 1e-6 * s->cfg.chunk)
			done[ndone++] = *fl;
		else
			nt->flows[kept++] = *fl;
	}
	nt->dirty |= kept != nt->nflows || relay;
	nt->nflows = kept;
	for (unsigned f = 0; f < kept; f++)
		s->inflow[at(s, nt->flows[f].dst, nt->flows[f].chunk)] = (int)f;
	s->now = t;
	for (unsigned i = 0; i < ndone; i++) {
		struct flow *f = &done[i];

		s->inflow[at(s, f->dst, f->chunk)] = -1;
		if (f->src >= 0) {
			s->nodes[f->src].sending--;
			if (f->admitted) /* the owner's send ended (net/serve.c) */
				swarm_done(s->nodes[f->src].sw, s->ckey[f->chunk], s->cidx[f->chunk],
					   (uint32_t)f->dst + 1);
		}
	}
	for (unsigned i = 0; i < ndone; i++)
		arrived(s, done[i].job);
	free(done);
}

/* The next time a flow ends or (*@relay) a relay changes state. */
static double next_change(const struct sim *s, bool *relay)
{
	double best = INFINITY, best_relay = INFINITY;

	for (unsigned f = 0; f < s->net.nflows; f++) {
		const struct flow *fl = &s->net.flows[f];
		double t = isinf(fl->rate) ? s->now : s->now + fl->left / fl->rate;

		best = t < best ? t : best;
		if (s->cfg.relay && fl->src >= 0) {
			t = relay_change(s, fl);
			best_relay = t < best_relay ? t : best_relay;
		}
	}
	*relay = best_relay <= best;
	return fmin(best, best_relay);
}

static void sim_loop(struct sim *s)
{
	while (s->readers_left) {
		bool relay;
		double tf = next_change(s, &relay);
		double te = mh_min(&s->ev);
		double t = tf < te ? tf : te;

		if (isinf(t)) {
			fprintf(stderr, "mows-sim: stalled at %.3f s with %u readers left: every fill "
				"waits on another (a cycle of waits the plan should rule out)\n",
				s->now, s->readers_left);
			exit(1);
		}
		flows_advance(s, t, relay && tf <= te);
		while (s->ev.n && mh_min(&s->ev) <= s->now + 1e-12) {
			struct event e;
			mh_pop(&s->ev, &e);

			event_run(s, &e);
			s->events++;
		}
		if (s->net.dirty) {
			if (s->cfg.relay)
				relay_links(s);
			net_rates(&s->net);
		}
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

/* Every chunk's ranking by the owners map every node builds alike (net/owners.h). */
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
			s->ckey[c] = files[f].key;
			s->cidx[c] = k;
			if (m)
				place_map_rank(m, files[f].key, k, order);
			else
				place_rank(files[f].key, k, s->node_hash, s->n, order);
			memcpy(&s->rank[(size_t)c * s->top], order, s->top * sizeof(*order));
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
	size_t cells;

	memset(s, 0, sizeof(*s));
	s->cfg = *cfg;
	s->n = cfg->nodes + (cfg->scenario == SC_JOIN ? cfg->join : 0);
	s->top = s->n < TOP_MAX ? s->n : TOP_MAX;
	s->nchunks = count_chunks(cfg, files, nfiles);
	cells = (size_t)s->n * s->nchunks;
	s->bytes = xcalloc(s->nchunks, sizeof(*s->bytes));
	s->ckey = xcalloc(s->nchunks, sizeof(*s->ckey));
	s->cidx = xcalloc(s->nchunks, sizeof(*s->cidx));
	s->rank = xcalloc((size_t)s->nchunks * s->top, sizeof(*s->rank));
	s->node_hash = xcalloc(s->n, sizeof(*s->node_hash));
	s->state = xcalloc(cells, 1);
	s->inflow = xcalloc(cells, sizeof(*s->inflow));
	memset(s->inflow, 0xff, cells * sizeof(*s->inflow));
	s->wait_head = xcalloc(cells, sizeof(*s->wait_head));
	memset(s->wait_head, 0xff, cells * sizeof(*s->wait_head));
	s->free_waiter = -1;
	s->free_job = -1;
	s->nodes = xcalloc(s->n, sizeof(*s->nodes));
	for (unsigned i = 0; i < s->n; i++) {
		s->nodes[i].sw = swarm_new();
		if (!s->nodes[i].sw) {
			fprintf(stderr, "mows-sim: swarm_new: %s\n", strerror(errno));
			exit(1);
		}
	}
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
	for (unsigned i = 0; i < s->n; i++) {
		free(s->nodes[i].queue);
		swarm_free(s->nodes[i].sw);
	}
	free(s->nodes);
	free(s->bytes);
	free(s->ckey);
	free(s->cidx);
	free(s->rank);
	free(s->node_hash);
	free(s->state);
	free(s->inflow);
	free(s->wait_head);
	free(s->waiters);
	free(s->jobs);
	free(s->ev.v);
	free(s->net.cap);
	free(s->net.rem);
	free(s->net.cnt);
	free(s->net.ver);
	free(s->net.start);
	free(s->net.list);
	free(s->net.kid_start);
	free(s->net.kids);
	free(s->net.flows);
	free(s->net.heap.v);
}

/* A warm cluster: the first cfg.nodes nodes hold every chunk. */
static void sim_warm(struct sim *s)
{
	for (unsigned i = 0; i < s->cfg.nodes; i++)
		for (unsigned c = 0; c < s->nchunks; c++)
			s->state[at(s, (int)i, c)] = CH_HELD;
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
		if (i < first)
			res->old_sent += s.nodes[i].sent;
	}
	res->events = s.events;
	res->redirects = s.redirects;
	res->fallbacks = s.fallbacks;
	res->relays = s.relays;
	free(done);
	sim_free(&s);
}

/* ---- membership: rounds of the heartbeat over the real gossip queue ---- */

/*
 * One node of the members scenario: its belief about the one node that changes (the
 * subject), the gossip queue it piggybacks on PINGs and PONGs (net/gossip.c), and when it
 * last heard each other node (pings go to suspects first, then the longest unheard).
 */
struct mnode {
	struct gossip_queue q;
	uint64_t inc;		/* belief about the subject: 0 not known */
	uint8_t st;
	unsigned since;		/* round its state began (member_gossip_apply()) */
	unsigned *seen;		/* per node: round last heard from, + 1 (0: never) */
	unsigned sent;		/* messages sent, all rounds */
};

/* A gossip event on its way to node @to: learned at the end of the round. */
struct mdelivery {
	unsigned to;
	struct proto_gossip_event ev;
};

struct msim {
	unsigned n, subject, round, timeout_rounds;
	struct mnode *v;
	struct mdelivery *pending;	/* this round's events, applied once it ends */
	unsigned npending, pending_cap;
	unsigned sent_max_round; /* most messages one node sent in one round */
	unsigned ev_max;	/* most gossip events one message carried */
	uint64_t events_sent;
	unsigned *round_sent;	/* per node, this round */
	char (*id)[24];
};

#define MSIM_WITNESSES 3	/* net/peer_gossip.c WITNESSES */

/* Node @t learns event @ev (net/peer_gossip.c do_apply()): news it passes on, a first
 * incarnation it does not. */
static void msim_apply(struct msim *m, unsigned t, const struct proto_gossip_event *ev)
{
	struct mnode *d = &m->v[t];
	bool known = d->inc != 0;

	if (t == m->subject || !gossip_overrides(ev->inc, ev->state, d->inc, d->st))
		return;
	if (ev->state != d->st || ev->state == PROTO_GOSSIP_ALIVE)
		d->since = m->round;
	d->inc = ev->inc;
	d->st = ev->state;
	if (known && gossip_queue_push(&d->q, ev)) {
		fprintf(stderr, "mows-sim: gossip_queue_push: out of memory\n");
		exit(1);
	}
}

/* @a sends @b a PING or PONG: its queue's events, at most PROTO_GOSSIP_MAX. */
static void msim_send(struct msim *m, unsigned a, unsigned b)
{
	struct proto_gossip_event ev[PROTO_GOSSIP_MAX];
	unsigned k = gossip_queue_take(&m->v[a].q, gossip_retransmits(m->n), m->id[b], ev,
				       PROTO_GOSSIP_MAX);

	m->v[a].sent++;
	m->round_sent[a]++;
	m->events_sent += k;
	m->ev_max = k > m->ev_max ? k : m->ev_max;
	m->v[b].seen[a] = m->round + 1;
	for (unsigned i = 0; i < k; i++) {
		if (m->npending == m->pending_cap) {
			m->pending_cap = m->pending_cap ? 2 * m->pending_cap : 1024;
			m->pending = xrealloc(m->pending, m->pending_cap, sizeof(*m->pending));
		}
		m->pending[m->npending++] = (struct mdelivery){ .to = b, .ev = ev[i] };
	}
}

/* The end of a round: every node learns what it was sent. News learned in one round is
 * passed on from the next (a conservative bound: a heartbeat round's pings are spread over
 * the interval, so news may in fact travel more than one hop a round). */
static void msim_deliver(struct msim *m)
{
	for (unsigned i = 0; i < m->npending; i++)
		msim_apply(m, m->pending[i].to, &m->pending[i].ev);
	m->npending = 0;
}

/* Node @i's belief turns to @st (it suspects, or a suspicion ran out): say so. */
static void msim_believe(struct msim *m, unsigned i, uint8_t st)
{
	struct proto_gossip_event ev = { .state = st, .inc = m->v[i].inc };

	snprintf(ev.node_id, sizeof(ev.node_id), "%s", m->id[m->subject]);
	msim_apply(m, i, &ev);
	if (gossip_queue_push(&m->v[i].q, &ev)) {
		fprintf(stderr, "mows-sim: gossip_queue_push: out of memory\n");
		exit(1);
	}
}

/* Whether node @i pings @a before @b this round (net/member.c ping_before()). */
static bool msim_before(const struct msim *m, unsigned i, unsigned a, unsigned b)
{
	bool sa = a == m->subject && m->v[i].st == PROTO_GOSSIP_SUSPECT;
	bool sb = b == m->subject && m->v[i].st == PROTO_GOSSIP_SUSPECT;

	if (sa != sb)
		return sa;
	if (m->v[i].seen[a] != m->v[i].seen[b])
		return m->v[i].seen[a] < m->v[i].seen[b];
	return fmix64(((uint64_t)i << 32) ^ a ^ ((uint64_t)m->round << 48)) <
	       fmix64(((uint64_t)i << 32) ^ b ^ ((uint64_t)m->round << 48));
}

/* One heartbeat round of node @i: suspicions that ran out, then its pings. */
static void msim_node_round(struct msim *m, unsigned i, unsigned budget, unsigned *pick)
{
	struct mnode *d = &m->v[i];
	unsigned np = 0;

	if (d->st == PROTO_GOSSIP_SUSPECT && m->round - d->since >= m->timeout_rounds)
		msim_believe(m, i, PROTO_GOSSIP_DEAD);
	for (unsigned j = 0; j < m->n; j++) {
		if (j == i || (j == m->subject && d->st >= PROTO_GOSSIP_DEAD))
			continue;
		unsigned k = np < budget ? np++ : budget;

		if (k == budget && !msim_before(m, i, j, pick[budget - 1]))
			continue;
		if (k == budget)
			k = budget - 1;
		while (k && msim_before(m, i, j, pick[k - 1])) {
			pick[k] = pick[k - 1];
			k--;
		}
		pick[k] = j;
	}
	for (unsigned k = 0; k < np; k++) {
		unsigned t = pick[k];

		if (t != m->subject) {
			msim_send(m, i, t);	/* PING */
			msim_send(m, t, i);	/* PONG */
			continue;
		}
		d->sent++;		/* a PING that gets no answer */
		m->round_sent[i]++;
		for (unsigned w = 0, asked = 0; w < m->n && asked < MSIM_WITNESSES; w++) {
			unsigned x = (i + 1 + w + m->round) % m->n;

			if (x == i || x == t)
				continue;
			asked++;	/* PING_REQ and its ACK: nobody heard the subject */
			d->sent++;
			m->round_sent[i]++;
			m->v[x].sent++;
			m->round_sent[x]++;
		}
		if (d->st == PROTO_GOSSIP_ALIVE)
			msim_believe(m, i, PROTO_GOSSIP_SUSPECT);
	}
}

struct msim_result {
	unsigned suspect_all, dead_all;	/* crash: rounds until every node suspects / holds dead */
	unsigned join_all;		/* join: rounds until every node has it as a member */
	double msgs_mean;		/* messages a node sends per round, mean */
	unsigned msgs_max;		/* most in one round by one node */
	unsigned ev_max;
	double ev_mean;			/* gossip events per message */
};

/*
 * A crash in a converged cluster of @n: every node knows the subject alive; it stops
 * answering at round 0. Rounds run until every other node holds it dead (or @max_rounds).
 */
static void msim_crash(unsigned n, unsigned timeout_rounds, unsigned max_rounds,
		       struct msim_result *r)
{
	struct msim m = { .n = n, .subject = 0, .timeout_rounds = timeout_rounds };
	unsigned budget = members_ping_budget(n);
	unsigned *pick = xcalloc(budget + 1, sizeof(*pick));
	uint64_t msgs = 0, sent_rounds = 0;

	m.v = xcalloc(n, sizeof(*m.v));
	m.id = xcalloc(n, sizeof(*m.id));
	m.round_sent = xcalloc(n, sizeof(*m.round_sent));
	for (unsigned i = 0; i < n; i++) {
		snprintf(m.id[i], sizeof(m.id[i]), "node-%u", i);
		gossip_queue_init(&m.v[i].q);
		m.v[i].seen = xcalloc(n, sizeof(*m.v[i].seen));
		m.v[i].inc = gossip_first_inc(1700000000000ull);
		m.v[i].st = PROTO_GOSSIP_ALIVE;
	}
	memset(r, 0, sizeof(*r));
	for (m.round = 0; m.round < max_rounds && !r->dead_all; m.round++) {
		bool all_suspect = true, all_dead = true;

		memset(m.round_sent, 0, n * sizeof(*m.round_sent));
		for (unsigned k = 0; k < n; k++) {
			unsigned i = (k + m.round * 7919) % n; /* a different order each round */

			if (i != m.subject)
				msim_node_round(&m, i, budget, pick);
		}
		msim_deliver(&m);
		for (unsigned i = 1; i < n; i++) {
			all_suspect = all_suspect && m.v[i].st >= PROTO_GOSSIP_SUSPECT;
			all_dead = all_dead && m.v[i].st >= PROTO_GOSSIP_DEAD;
			msgs += m.round_sent[i];
			m.sent_max_round = m.round_sent[i] > m.sent_max_round ? m.round_sent[i]
									     : m.sent_max_round;
		}
		sent_rounds += n - 1;
		if (all_suspect && !r->suspect_all)
			r->suspect_all = m.round + 1;
		if (all_dead)
			r->dead_all = m.round + 1;
	}
	r->msgs_mean = (double)msgs / (double)sent_rounds;
	r->msgs_max = m.sent_max_round;
	r->ev_max = m.ev_max;
	r->ev_mean = msgs ? (double)m.events_sent / (double)msgs : 0;
	for (unsigned i = 0; i < n; i++) {
		gossip_queue_release(&m.v[i].q);
		free(m.v[i].seen);
	}
	free(m.v);
	free(m.id);
	free(m.round_sent);
	free(m.pending);
	free(pick);
}

/*
 * A join: the newcomer knows every address (the same peer list) and opens a connection to
 * up to MEMBERS_PROBES members not up each round (net/member.c members_pick_round()); a
 * member adds it on that HELLO (net/peer.c peers_inbound()). Gossip does not carry a first
 * incarnation (do_apply()), so this and each member's own resolve_interval are the ways in.
 */
static unsigned msim_join_rounds(unsigned n)
{
	return (n + MEMBERS_PROBES - 1) / MEMBERS_PROBES;
}

static void print_members_row(unsigned n, unsigned timeout_rounds)
{
	struct msim_result r;

	msim_crash(n, timeout_rounds, 200, &r);
	printf("| %u | %u (%u pings) | %u | 1 | %u | %u | %.1f / %u | %.2f / %u |\n", n,
	       msim_join_rounds(n), members_ping_budget(n), n - 1, r.suspect_all, r.dead_all, r.msgs_mean, r.msgs_max, r.ev_mean,
	       r.ev_max);
	fflush(stdout);
}

static void print_members(unsigned only, unsigned timeout_rounds)
{
	static const unsigned sizes[] = { 8, 16, 32, 100, 1000 };

	printf("| nodes | join: rounds until all have it (pings per node per round) | join: "
	       "connections the newcomer opens | clean leave: rounds (LEAVE on every link) | "
	       "crash: rounds until all suspect | crash: rounds until all hold it dead | "
	       "messages per node per round, mean / max | gossip events per message, mean / "
	       "max |\n|---|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (!only || only == sizes[i])
			print_members_row(sizes[i], timeout_rounds);
	if (only && only != 8 && only != 16 && only != 32 && only != 100 && only != 1000)
		print_members_row(only, timeout_rounds);
}

/* ---- command line ---- */

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
		"usage: mows-sim [options] cold|join|members\n"
		"       mows-sim --table [--big]   (--big: with 1,000 nodes cold, ~8 min)\n"
		"  --nodes N            cold: nodes; join: warm nodes; members: nodes, or all\n"
		"                       of 8 16 32 100 1000 when not given (8)\n"
		"  --join K             join: nodes joining at once (1)\n"
		"  --fanout N           swarm_fanout, 0 (no swarm) to 64 (1, as mows.conf)\n"
		"  --relay on|off       serve a chunk while it arrives, or only once whole (on)\n"
		"  --piece SIZE         how far a relay stays behind its source (256K)\n"
		"  --model SIZE         model bytes: 510M, 65GB (510M)\n"
		"  --shards N           safetensors shards, beside 5 small files (4)\n"
		"  --chunk SIZE         chunk size (4M)\n"
		"  --storage RATE       shared storage link: 400mbit, 2.5GB/s (400mbit)\n"
		"  --nic RATE           each node's link, each way (2gbit)\n"
		"  --cpu RATE           bytes/s the host moves in all, or inf (inf)\n"
		"  --cpu-per-node RATE  of that, what each node's fixed work takes (0)\n"
		"  --efficiency F       payload per line byte on every link, 0.5 to 1 (1)\n"
		"  --placement P        balanced (place_map) or rendezvous (balanced)\n"
		"  --rtt TIME           peer round trip per request: 0.2ms (0.2ms)\n"
		"  --storage-latency T  storage round trip per chunk (1ms)\n"
		"  --window N           readahead chunks per reader (16)\n"
		"  --threads N          fill threads per node (8)\n"
		"  --replicas N         owners per chunk, 1 to 8 (1)\n"
		"  --timeout-rounds N   members: peer_timeout in heartbeats (5: 5 s / 1 s)\n"
		"  --stagger            each reader starts at its own point, as a prefetch could\n"
		"  --kv                 print key=value lines for scripts\n");
}

static void cfg_default(struct sim_cfg *cfg)
{
	*cfg = (struct sim_cfg){
		.scenario = SC_COLD, .nodes = 8, .join = 1, .shards = 4,
		.window = 16, .threads = 8, .replicas = 1, .model = 510.0 * 1048576,
		.chunk = 4.0 * 1048576, .storage = 400e6 / 8, .nic = 2e9 / 8, .cpu = INFINITY,
		.rtt = 0.2e-3, .storage_latency = 1e-3, .efficiency = 1, .fanout = 1,
		.relay = true, .piece = 256.0 * 1024,
	};
}

/* Parses a whole number from @min to @max for @opt into @out, or says what is wrong. */
static int parse_count(const char *opt, const char *arg, unsigned min, unsigned max,
		       unsigned *out)
{
	char *end;
	unsigned long v = strtoul(arg, &end, 10);

	if (end == arg || *end || v < min || v > max) {
		fprintf(stderr, "mows-sim: --%s '%s': expected a whole number from %u to %u\n",
			opt, arg, min, max);
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

static double ideal_of(const struct sim_cfg *cfg)
{
	return cfg->scenario == SC_COLD ? cfg->model / fmin(cfg->storage, cfg->nic)
					: cfg->model / cfg->nic;
}

static void print_result(const struct sim_cfg *cfg, const struct sim_result *r, bool kv)
{
	double ideal = ideal_of(cfg);

	if (kv) {
		printf("slowest=%.6f\np50=%.6f\nideal=%.6f\nstorage_bytes=%.0f\nstorage_x=%.4f\n"
		       "sent_max=%.0f\nsent_mean=%.0f\nold_sent=%.0f\nevents=%u\nredirects=%u\n"
		       "fallbacks=%u\nrelays=%u\n", r->slowest, r->p50, ideal, r->storage_bytes,
		       r->storage_bytes / cfg->model, r->sent_max, r->sent_mean, r->old_sent,
		       r->events, r->redirects, r->fallbacks, r->relays);
		return;
	}
	printf("slowest %.2f s, P50 %.2f s, ideal %.2f s (%.2fx); storage %.2fx the model; "
	       "sent per node max %.2fx mean %.2fx the model; %u redirects, %u relays\n",
	       r->slowest, r->p50, ideal, r->slowest / ideal, r->storage_bytes / cfg->model,
	       r->sent_max / cfg->model, r->sent_mean / cfg->model, r->redirects, r->relays);
}

static void print_table(bool big);

/* The members scenario's key=value lines for one size. */
static void print_members_kv(unsigned n, unsigned timeout_rounds)
{
	struct msim_result r;

	msim_crash(n, timeout_rounds, 200, &r);
	printf("nodes=%u\njoin_rounds=%u\nping_budget=%u\nsuspect_rounds=%u\ndead_rounds=%u\n"
	       "msgs_mean=%.3f\nmsgs_max=%u\nevents_mean=%.3f\nevents_max=%u\n", n,
	       msim_join_rounds(n), members_ping_budget(n), r.suspect_all, r.dead_all,
	       r.msgs_mean, r.msgs_max, r.ev_mean, r.ev_max);
}

static int parse_onoff(const char *opt, const char *arg, bool *out)
{
	if (!strcmp(arg, "on") || !strcmp(arg, "off")) {
		*out = arg[1] == 'n';
		return 0;
	}
	fprintf(stderr, "mows-sim: --%s '%s': expected on or off\n", opt, arg);
	return -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "nodes", 1, 0, 'n' }, { "join", 1, 0, 'j' }, { "relay", 1, 0, 'y' },
		{ "model", 1, 0, 'm' }, { "shards", 1, 0, 'S' }, { "chunk", 1, 0, 'c' },
		{ "storage", 1, 0, 's' }, { "nic", 1, 0, 'N' }, { "cpu", 1, 0, 'C' },
		{ "rtt", 1, 0, 'r' }, { "storage-latency", 1, 0, 'l' }, { "window", 1, 0, 'w' },
		{ "threads", 1, 0, 't' }, { "replicas", 1, 0, 'R' }, { "kv", 0, 0, 'k' },
		{ "table", 0, 0, 'T' }, { "cpu-per-node", 1, 0, 'P' }, { "efficiency", 1, 0, 'e' },
		{ "placement", 1, 0, 'L' }, { "fanout", 1, 0, 'f' }, { "stagger", 0, 0, 'g' },
		{ "piece", 1, 0, 'i' }, { "timeout-rounds", 1, 0, 'o' }, { "help", 0, 0, 'h' },
		{ "big", 0, 0, 'B' },
		{ 0, 0, 0, 0 },
	};
	struct sim_cfg cfg;
	struct sim_result res;
	bool kv = false, table = false, nodes_given = false, big = false;
	unsigned timeout_rounds = 5;
	int o, rc = 0;

	cfg_default(&cfg);
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1 && !rc) {
		const char *name = "";

		for (const struct option *op = opts; op->name; op++)
			if (op->val == o)
				name = op->name;
		switch (o) {
		case 'n':
			rc = parse_count(name, optarg, 1, 100000, &cfg.nodes);
			nodes_given = true;
			break;
		case 'j': rc = parse_count(name, optarg, 1, 100000, &cfg.join); break;
		case 'S': rc = parse_count(name, optarg, 1, 4096, &cfg.shards); break;
		case 'w': rc = parse_count(name, optarg, 1, 100000, &cfg.window); break;
		case 't': rc = parse_count(name, optarg, 1, 100000, &cfg.threads); break;
		case 'R': rc = parse_count(name, optarg, 1, PLAN_MAX_REPLICAS, &cfg.replicas); break;
		case 'f': rc = parse_count(name, optarg, 0, SWARM_FANOUT_MAX, &cfg.fanout); break;
		case 'o': rc = parse_count(name, optarg, 1, 1000, &timeout_rounds); break;
		case 'y': rc = parse_onoff(name, optarg, &cfg.relay); break;
		case 'm': rc = parse_value(name, optarg, parse_bytes, "a size such as 510M or 65GB", &cfg.model); break;
		case 'c': rc = parse_value(name, optarg, parse_bytes, "a size such as 4M", &cfg.chunk); break;
		case 'i': rc = parse_value(name, optarg, parse_bytes, "a size such as 256K", &cfg.piece); break;
		case 's': rc = parse_value(name, optarg, parse_rate, "a rate such as 400mbit or 2.5GB/s", &cfg.storage); break;
		case 'N': rc = parse_value(name, optarg, parse_rate, "a rate such as 2gbit or inf", &cfg.nic); break;
		case 'C': rc = parse_value(name, optarg, parse_rate, "a rate such as 300MB/s or inf", &cfg.cpu); break;
		case 'r': rc = parse_value(name, optarg, parse_secs, "a time such as 0.2ms", &cfg.rtt); break;
		case 'l': rc = parse_value(name, optarg, parse_secs, "a time such as 1ms", &cfg.storage_latency); break;
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
		case 'k': kv = true; break;
		case 'T': table = true; break;
		case 'B': big = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (rc)
		return 2;
	if (table) {
		print_table(big);
		return 0;
	}
	if (optind + 1 != argc || (strcmp(argv[optind], "cold") && strcmp(argv[optind], "join") &&
				   strcmp(argv[optind], "members"))) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[optind], "members")) {
		if (kv)
			print_members_kv(cfg.nodes < 2 ? 2 : cfg.nodes, timeout_rounds);
		else
			print_members(nodes_given ? (cfg.nodes < 2 ? 2 : cfg.nodes) : 0,
				      timeout_rounds);
		return 0;
	}
	cfg.scenario = argv[optind][0] == 'c' ? SC_COLD : SC_JOIN;
	if (cfg.model / cfg.chunk > 4e6) {
		fprintf(stderr, "mows-sim: %.0f chunks: too many for this model; use a larger "
			"--chunk\n", cfg.model / cfg.chunk);
		return 2;
	}
	sim_run(&cfg, &res);
	print_result(&cfg, &res, kv);
	return 0;
}

/* ---- the README table ---- */

/*
 * The bench machine (README "Cluster" and "Fleet shapes"): tools/mows-cluster on 2 cores,
 * readahead_chunks 16, fill_threads 8. Links carry TCP payload at 0.956 of the tbf rate
 * (1448-byte segments in 1514-byte frames); one host limit crosses every byte moved.
 */
static struct sim_cfg bench_cfg(unsigned nodes, double model_mib, const char *storage,
				const char *nic)
{
	struct sim_cfg c;

	cfg_default(&c);
	c.nodes = nodes;
	c.model = model_mib * 1048576;
	c.storage = parse_rate(storage);
	c.nic = parse_rate(nic);
	c.efficiency = 0.956;
	c.cpu = 600e6;		/* fitted (2026-11): what 2 cores move through veths, tbf, FUSE */
	c.cpu_per_node = 8e6;	/* fitted: each simulated host's daemons, ssh, reader */
	return c;
}

/* The fleet: a 65 GB model (Qwen3-32B in bf16, 17 shards), 2.5 GB/s storage, 200 Gbit/s. */
static struct sim_cfg fleet_cfg(unsigned nodes)
{
	struct sim_cfg c;

	cfg_default(&c);
	c.nodes = nodes;
	c.model = 65e9;
	c.shards = 17;
	c.storage = 2.5e9;
	c.nic = 200e9 / 8;
	c.rtt = 50e-6;
	c.storage_latency = 0.5e-3;
	c.chunk = 64.0 * 1048576; /* coarser than mows's 4 MiB to keep runs short: see README */
	c.piece = 4.0 * 1048576;  /* the same 1/16 of a chunk as 256 KiB of 4 MiB */
	return c;
}

struct calib {
	const char *what;
	unsigned nodes, join;
	double mib;
	const char *storage, *nic;
	double lo, hi, storage_x;	/* measured seconds (range), storage (-1: not measured) */
	unsigned fanout;		/* swarm_fanout of the code measured */
	bool old;			/* the code of 2026-11-24: rendezvous, no relaying */
};

static void print_calibration(void)
{
	static const struct calib runs[] = {
		{ "6 join a warm 2, 100 Mbit/s links (2026-12-01, 3 runs)", 2, 6, 102, "200mbit",
		  "100mbit", 11.72, 12.54, 0, 1, false },
		{ "the same at 300 Mbit/s (1 run)", 2, 6, 102, "200mbit", "300mbit", 4.17, 4.17,
		  0, 1, false },
		{ "16 cold, storage 50 / links 75 Mbit/s (2026-12-01, 2 runs)", 16, 0, 102,
		  "50mbit", "75mbit", 34.12, 34.94, 1.07, 1, false },
		{ "8 cold, same links (2026-11-30, fanout 1, 1 run)", 8, 0, 102, "50mbit",
		  "75mbit", 32.03, 32.03, 1.01, 1, false },
		{ "16 cold, 200 / 300 Mbit/s (2026-11-30, fanout 1, 1 run)", 16, 0, 102, "200mbit",
		  "300mbit", 9.13, 9.13, 1.01, 1, false },
		{ "32 cold, 200 / 300 Mbit/s (2026-11-30, fanout 4, 2 runs)", 32, 0, 102,
		  "200mbit", "300mbit", 14.58, 14.65, 1.06, 4, false },
		{ "8 cold, 510 MiB, 400 Mbit/s / 2 Gbit/s (2026-11-24 code)", 8, 0, 510, "400mbit",
		  "2gbit", 13.2, 13.2, 1.01, 0, true },
		{ "a 9th node joins those 8 warm (2026-11-24 code)", 8, 1, 510, "400mbit", "2gbit",
		  2.38, 2.38, 0, 0, true },
	};

	printf("| measured scenario (bench machine) | measured | simulated | error | simulated "
	       "with whole chunks (--relay off) | error | storage measured | storage simulated "
	       "|\n|---|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		const struct calib *k = &runs[i];
		struct sim_cfg c = bench_cfg(k->nodes, k->mib, k->storage, k->nic);
		struct sim_result r, w;
		char st[32] = "-", meas[48], whole[48] = "(as measured)";
		double mid = (k->lo + k->hi) / 2;

		c.scenario = k->join ? SC_JOIN : SC_COLD;
		c.join = k->join ? k->join : 1;
		c.fanout = k->fanout;
		c.rendezvous = k->old;
		c.relay = false;
		sim_run(&c, &w);
		c.relay = !k->old;
		if (c.relay)
			sim_run(&c, &r);
		else
			r = w;
		if (c.relay)
			snprintf(whole, sizeof(whole), "%.2f s | %+.0f%%", w.slowest,
				 100 * (w.slowest / mid - 1));
		else
			snprintf(whole, sizeof(whole), "same | -");
		if (k->storage_x >= 0)
			snprintf(st, sizeof(st), "%.2fx", k->storage_x);
		if (k->lo < k->hi)
			snprintf(meas, sizeof(meas), "%.2f-%.2f s", k->lo, k->hi);
		else
			snprintf(meas, sizeof(meas), "%.2f s", k->lo);
		printf("| %s | %s | %.2f s | %+.0f%% | %s | %s | %.2fx |\n", k->what, meas,
		       r.slowest, 100 * (r.slowest / mid - 1), whole, st,
		       r.storage_bytes / c.model);
		fflush(stdout);
	}
}

/* @big: with 1,000 nodes cold at once (about 8 minutes on one core). */
static void print_fleet(bool big)
{
	static const unsigned sizes[2] = { 100, 1000 };

	printf("\n| fleet: 65 GB, 2.5 GB/s storage, 200 Gbit/s NICs | slowest node | x ideal | "
	       "storage | sent per node max / mean | warm nodes sent |\n|---|---|---|---|---|---|\n");
	for (int si = 0; si < 2; si++) {
		for (int kind = 0; kind < 3; kind++) {
			struct sim_cfg c = fleet_cfg(sizes[si]);
			struct sim_result r;
			char what[96], old[32] = "-";

			c.scenario = kind ? SC_JOIN : SC_COLD;
			c.join = kind == 2 ? 50 : 1;
			if (!kind && sizes[si] > 100 && !big) {
				printf("| %u nodes cold at once | (mows-sim --table --big) | | | | |\n",
				       c.nodes);
				continue;
			}
			if (!kind)
				snprintf(what, sizeof(what), "%u nodes cold at once", c.nodes);
			else
				snprintf(what, sizeof(what), "%u node%s join%s %u warm", c.join,
					 c.join > 1 ? "s" : "", c.join > 1 ? "" : "s", c.nodes);
			sim_run(&c, &r);
			if (kind)
				snprintf(old, sizeof(old), "%.2fx", r.old_sent / c.model);
			printf("| %s | %.1f s | %.2fx | %.2fx | %.2fx / %.2fx | %s |\n", what,
			       r.slowest, r.slowest / ideal_of(&c), r.storage_bytes / c.model,
			       r.sent_max / c.model, r.sent_mean / c.model, old);
			fflush(stdout);
		}
	}
}

static void print_table(bool big)
{
	print_calibration();
	print_fleet(big);
	printf("\n");
	print_members(0, 5);
}
