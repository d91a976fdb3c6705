#include "net/meta_share.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/deadline.h"
#include "common/hash.h"
#include "common/log.h"
#include "net/link.h"
#include "net/peer_priv.h"
#include "net/place.h"
#include "net/proto.h"

#define RETRY_MS 100            /* the lister has no snapshot yet: ask again this soon */
#define MAX_RESTARTS 3          /* the snapshot changed while we read it in pieces */
#define REFRESH_MIN_MS 1000     /* a listing this young answers every REFRESH */

struct meta_share {
	struct peers *p;
	struct cache_tree *t;
	const struct mows_config *cfg;

	pthread_mutex_t lock;
	pthread_cond_t idle;
	bool stopping;          /* protected by lock */
	bool busy;              /* a fetch runs; protected by lock */
	struct link *link;      /* to the lister; used by the fetching thread, shut down by
				 * meta_share_stop() under lock */
	char link_node[PROTO_NODE_ID_MAX + 1]; /* the node @link goes to; fetching thread */
	uint8_t *frame;         /* one META frame's payload; fetching thread */
	char last_lister[PROTO_NODE_ID_MAX + 1]; /* for logging changes; fetching thread */
	int last_err;           /* the last ask's result, logged when it changes; fetching thread */
	uint64_t refused;       /* a version that did not import; fetching thread */
	unsigned fanout;        /* children per node of the ask tree; set at new */
};

/* ---- answering ---- */

static int answer_status(int status, uint8_t **ans, uint32_t *anslen)
{
	struct proto_meta a = { .status = status };
	*ans = malloc(PROTO_META_FIXED_LEN);
	if (!*ans)
		return -ENOMEM;
	proto_meta_encode(*ans, &a);
	*anslen = PROTO_META_FIXED_LEN;
	return 0;
}

/*
 * Whether a REFRESH from a node holding @have lists again: yes when ours is older than a
 * poll, or when it holds ours and ours is older than REFRESH_MIN_MS. A node behind ours (it
 * has not polled since our last listing, and a fill of it found a file changed) takes ours:
 * the burst of refreshes that one change causes across the cluster lists once, and the
 * store is listed at most once per REFRESH_MIN_MS however many nodes ask.
 */
static bool refresh_due(struct meta_share *ms, uint64_t have)
{
	uint64_t age = cache_tree_meta_age_ms(ms->t);
	return age == UINT64_MAX || age >= CACHE_TREE_POLL_MS ||
	       (have == cache_tree_meta_version(ms->t) && age >= REFRESH_MIN_MS);
}

int meta_share_answer(struct meta_share *ms, const void *payload, uint32_t len, uint8_t **ans,
		      uint32_t *anslen)
{
	struct proto_meta_get rq;
	int rc = proto_meta_get_decode(payload, len, &rq);
	if (rc)
		return rc;
	if (!ms)
		return answer_status(ENOENT, ans, anslen);
	if ((rq.flags & PROTO_META_REFRESH) && refresh_due(ms, rq.have_version)) {
		rc = cache_tree_meta_refresh(ms->t, ms->cfg->request_timeout_ms);
		if (rc && rc != -ESRCH) /* ESRCH: our mount's snapshot is still on its way */
			log_info("metadata: a refresh a peer asked for: %s; sharing the snapshot "
				 "taken before", strerror(-rc));
	}
	struct cache_tree_share sh;
	if (cache_tree_share_get(ms->t, &sh))
		return answer_status(EAGAIN, ans, anslen);
	struct proto_meta a = { .version = sh.version, .age_ms = sh.age_ms, .total = sh.len,
				.offset = rq.offset };
	if (rq.have_version == sh.version)
		a.flags = PROTO_META_SAME;
	else if (rq.offset <= sh.len)
		a.length = (uint32_t)(sh.len - rq.offset < PROTO_META_PIECE_MAX ? sh.len - rq.offset
									: PROTO_META_PIECE_MAX);
	else
		a = (struct proto_meta){ .status = ERANGE }; /* a new, shorter version: restart */
	*ans = malloc(PROTO_META_FIXED_LEN + a.length);
	if (*ans) {
		proto_meta_encode(*ans, &a);
		if (a.length)
			memcpy(*ans + PROTO_META_FIXED_LEN, sh.bytes + rq.offset, a.length);
		*anslen = PROTO_META_FIXED_LEN + a.length;
	}
	cache_tree_share_put(&sh);
	return *ans ? 0 : -ENOMEM;
}

/* ---- asking ---- */

/*
 * Positions to ask, from the live set ranked for META_SHARE_KEY (position 0 is the lister)
 * and this node's position @pos: its ancestors in the fan-out tree (parent (pos - 1) /
 * fanout, then its parent, ... up to 0), then the positions below @pos the ancestors left
 * out, lowest first. At most @max; none for the lister itself.
 */
static unsigned ask_order(unsigned pos, unsigned fanout, unsigned *out, unsigned max)
{
	unsigned k = 0;
	for (unsigned p = pos; p > 0 && k < max;) {
		p = (p - 1) / fanout;
		out[k++] = p;
	}
	for (unsigned p = 1; p < pos && k < max; p++) {
		bool seen = false;
		for (unsigned j = 0; j < k; j++)
			seen = seen || out[j] == p;
		if (!seen)
			out[k++] = p;
	}
	return k;
}

/*
 * The members this node asks, in order (see ask_order), referenced; an empty list when it
 * is the lister. Returns how many. *@digest (may be NULL): the live set, order-independent.
 */
static unsigned ranked(struct meta_share *ms, struct member **out, unsigned max,
		       uint64_t *digest)
{
	struct member **mv;
	uint64_t *hashes, d = 0;
	unsigned n = peers_live(ms->p, &mv, &hashes), k = 0, pos[META_SHARE_TRIES];
	unsigned *order = n ? malloc(n * sizeof(*order)) : NULL;
	for (unsigned i = 0; i < n; i++)
		d += fmix64(hashes[i]);
	if (order) {
		place_rank(META_SHARE_KEY, 0, hashes, n, order);
		unsigned self = 0;
		while (self < n && order[self] != n - 1) /* we are index n - 1 */
			self++;
		k = ask_order(self, ms->fanout, pos, max < META_SHARE_TRIES ? max :
							   META_SHARE_TRIES);
		pthread_mutex_lock(&ms->p->lock);
		for (unsigned i = 0; i < k; i++) {
			out[i] = mv[order[pos[i]]];
			member_get(out[i]);
		}
		pthread_mutex_unlock(&ms->p->lock);
	}
	free(order);
	peers_live_put(ms->p, mv, hashes, n);
	if (digest)
		*digest = d;
	return k;
}

static void member_drop(struct meta_share *ms, struct member *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&ms->p->lock);
	member_put(m);
	pthread_mutex_unlock(&ms->p->lock);
}

static void link_drop(struct meta_share *ms)
{
	pthread_mutex_lock(&ms->lock);
	struct link *l = ms->link;
	ms->link = NULL;
	pthread_mutex_unlock(&ms->lock);
	link_free(l);
}

/* A link to @m (kept between asks while it stays open). 0 or -errno. */
static int link_to(struct meta_share *ms, struct member *m, const struct deadline *dl)
{
	if (ms->link && !strcmp(ms->link_node, m->node_id) && !link_closed(ms->link))
		return 0;
	link_drop(ms);
	int rc;
	struct link *l = peers_link_open(ms->p, m, dl, &rc);
	if (!l)
		return rc;
	pthread_mutex_lock(&ms->lock);
	bool stop = ms->stopping;
	if (!stop)
		ms->link = l;
	pthread_mutex_unlock(&ms->lock);
	if (stop) {
		link_free(l);
		return -ECANCELED;
	}
	snprintf(ms->link_node, sizeof(ms->link_node), "%s", m->node_id);
	return 0;
}

/* One META_GET on the link; the answer decoded into @a (its data in ms->frame). */
static int exchange(struct meta_share *ms, const struct proto_meta_get *rq,
		    struct proto_meta *a, const struct deadline *dl)
{
	uint8_t buf[PROTO_META_GET_LEN];
	struct proto_hdr hdr;
	proto_meta_get_encode(buf, rq);
	int rc = link_send_frame(ms->link, PROTO_META_GET, 1, buf, sizeof(buf), dl);
	if (rc == 0)
		rc = link_recv_frame(ms->link, &hdr, ms->frame,
				     PROTO_META_FIXED_LEN + PROTO_META_PIECE_MAX, dl);
	if (rc == 0 && (hdr.type != PROTO_META || hdr.req_id != 1))
		rc = -EPROTO;
	if (rc == 0)
		rc = proto_meta_decode(ms->frame, hdr.len, a);
	if (rc)
		link_drop(ms); /* the stream is out of step: a new link next time */
	return rc;
}

/*
 * Takes the snapshot of the lister on the link: SAME, or every piece of its current
 * version. Returns 1 (current), -EAGAIN (it has none yet), -ESTALE (older than the ttl),
 * or another -errno.
 */
static int take(struct meta_share *ms, bool refresh, const struct deadline *dl)
{
	struct proto_meta_get rq = { .have_version = cache_tree_meta_version(ms->t),
				     .flags = refresh ? PROTO_META_REFRESH : 0 };
	struct proto_meta a;
	uint8_t *blob = NULL;
	int rc = -EAGAIN; /* changed under us every time: ask again at the next poll */
	for (unsigned restarts = 0; restarts <= MAX_RESTARTS; restarts++) {
		rc = exchange(ms, &rq, &a, dl);
		if (rc == 0 && a.status)
			rc = -a.status;
		if (rc == 0 && a.age_ms > ms->cfg->metadata_ttl_ms + 8ull * CACHE_TREE_POLL_MS)
			rc = -ESTALE; /* the lister does not list (its store may be down): a
				       * poll per level of the tree is the slack */
		if (rc || (a.flags & PROTO_META_SAME)) {
			if (rc == 0)
				cache_tree_meta_heard(ms->t, a.version, a.age_ms);
			break;
		}
		uint64_t version = a.version, total = a.total;
		if (version == ms->refused) {
			rc = -EPROTO; /* refused before: not again every poll */
			break;
		}
		free(blob);
		blob = malloc(total ? total : 1);
		if (!blob)
			return -ENOMEM;
		uint64_t off = 0;
		while (rc == 0 && a.version == version && a.total == total && a.offset == off) {
			if (a.length)
				memcpy(blob + off, a.data, a.length);
			off += a.length;
			if (off == total)
				break;
			struct proto_meta_get next = { .offset = off };
			rc = exchange(ms, &next, &a, dl);
			if (rc == 0 && a.status)
				rc = -a.status;
		}
		if (rc == 0 && off == total) {
			rc = cache_tree_meta_import(ms->t, blob, total, version, a.age_ms);
			if (rc)
				ms->refused = version;
			break;
		}
		if (rc && rc != -ERANGE)
			break;
		rc = -EAGAIN; /* it changed under us: again, from the start */
		rq = (struct proto_meta_get){ 0 };
	}
	free(blob);
	return rc ? rc : 1;
}

static bool enter(struct meta_share *ms)
{
	pthread_mutex_lock(&ms->lock);
	bool ok = !ms->stopping;
	ms->busy = ok;
	pthread_mutex_unlock(&ms->lock);
	return ok;
}

static void leave(struct meta_share *ms)
{
	pthread_mutex_lock(&ms->lock);
	ms->busy = false;
	pthread_cond_broadcast(&ms->idle);
	pthread_mutex_unlock(&ms->lock);
}

/* One ask of @m: 1 current, -EAGAIN it has no snapshot yet, -ENOTCONN unreachable, else
 * -errno (this node lists when due). */
static int ask(struct meta_share *ms, struct member *m, bool refresh)
{
	struct deadline cdl = deadline_in_ms(ms->cfg->request_timeout_ms);
	int rc = link_to(ms, m, &cdl);
	if (rc)
		return rc == -ECANCELED ? rc : -ENOTCONN;
	/* A REFRESH may wait for the lister's listing (its request_timeout), then the answer. */
	struct deadline dl = deadline_in_ms(2ull * ms->cfg->request_timeout_ms + 1000);
	rc = take(ms, refresh, &dl);
	if (rc == 1 && strcmp(ms->last_lister, m->node_id)) {
		log_info("metadata: node %s lists the backing for the cluster; taking its snapshot",
			 m->node_id);
		snprintf(ms->last_lister, sizeof(ms->last_lister), "%s", m->node_id);
	}
	return rc;
}

/*
 * One ask now, of this node's parent in the fan-out tree, or when it cannot be reached of
 * the next in ask_order (at most META_SHARE_TRIES): 1 current, 0 this node lists (it is the
 * lister, none answered, or an answer failed), -EAGAIN the node asked has no snapshot yet.
 */
static int ask_once(struct meta_share *ms, bool refresh)
{
	struct member *cand[META_SHARE_TRIES];
	unsigned k = ranked(ms, cand, META_SHARE_TRIES, NULL);
	int rc = 0;
	const char *who = NULL;
	for (unsigned i = 0; i < k; i++) {
		rc = ask(ms, cand[i], refresh);
		who = cand[i]->node_id;
		if (rc != -ENOTCONN)
			break;
	}
	if (rc < 0 && rc != -EAGAIN && rc != ms->last_err)
		log_info("metadata: the snapshot of node %s: %s; listing the backing here when due",
			 who, rc == -ESTALE ? "older than metadata_ttl" :
			 rc == -ENOTCONN ? "unreachable" : strerror(-rc));
	ms->last_err = rc;
	for (unsigned i = 0; i < k; i++)
		member_drop(ms, cand[i]);
	return rc == 1 || rc == -EAGAIN ? rc : 0;
}

/* The tree's source: the metadata thread asks before it would list. */
static int fetch(void *ctx, bool forced)
{
	struct meta_share *ms = ctx;
	if (!enter(ms))
		return 0;
	int rc = ask_once(ms, forced);
	leave(ms);
	return rc == 1;
}

/* Waits until the live member set has been the same for three heartbeats (bounded). */
static void settle(struct meta_share *ms)
{
	if (!ms->cfg->peers[0] && !ms->cfg->peers_file[0])
		return; /* nobody to wait for: peers that come later find our snapshot */
	uint64_t hb = ms->cfg->heartbeat_ms, quiet_ms = 3 * hb;
	struct deadline dl = deadline_in_ms(META_SHARE_SETTLE_MAX_MS);
	uint64_t last = 0, since = mono_ns();
	while (!deadline_passed(&dl)) {
		uint64_t d;
		struct member *first[META_SHARE_TRIES];
		for (unsigned k = ranked(ms, first, META_SHARE_TRIES, &d); k > 0; k--)
			member_drop(ms, first[k - 1]);
		if (d != last) {
			last = d;
			since = mono_ns();
		} else if (mono_ns() - since >= quiet_ms * 1000000ull) {
			return;
		}
		struct timespec ts = { 0, (long)(hb < 100 ? hb : 100) * 1000000l };
		nanosleep(&ts, NULL);
	}
}

/*
 * Up to META_SHARE_OLDER live members that ran PEER_OLDER_MS or more before this node
 * started (they were there before a join burst, so they hold the cluster's snapshot), from a
 * position this node's hash picks, so that joiners spread over them; referenced.
 */
static unsigned older_members(struct meta_share *ms, struct member **out)
{
	struct member **mv;
	uint64_t *hashes;
	unsigned n = peers_live(ms->p, &mv, &hashes), k = 0;
	struct peers *p = ms->p;
	pthread_mutex_lock(&p->lock);
	for (unsigned j = 0; n > 1 && j + 1 < n && k < META_SHARE_OLDER; j++) {
		struct member *m = mv[(j + p->node_hash) % (n - 1)];
		if (m && m->started_ns &&
		    m->started_ns + (uint64_t)PEER_OLDER_MS * 1000000 <= p->start_ns) {
			member_get(m);
			out[k++] = m;
		}
	}
	pthread_mutex_unlock(&p->lock);
	peers_live_put(p, mv, hashes, n);
	return k;
}

/*
 * In a join burst this node's parent, even the lister, may be another new node with no
 * snapshot yet: a member that ran before us has the cluster's. 1 = taken from one of them.
 */
static int take_from_older(struct meta_share *ms)
{
	struct member *old[META_SHARE_OLDER];
	unsigned k = older_members(ms, old);
	int rc = 0;
	for (unsigned i = 0; i < k && rc != 1; i++)
		rc = ask(ms, old[i], false);
	for (unsigned i = 0; i < k; i++)
		member_drop(ms, old[i]);
	return rc == 1;
}

/*
 * A running cluster has a snapshot already: a node that joins it takes it from its parent at
 * once instead of waiting for the member set to settle (that wait is for a cold burst, whose
 * nodes must agree on one lister). Tries for two heartbeats, in which the first members are
 * learned. When the parent has no snapshot yet, or this node ranks first itself, it asks the
 * members that ran well before it (a join burst: new nodes took the top ranks); when there
 * are none, it is a cold burst and the wait for the member set follows. 1 = taken.
 */
static int take_warm(struct meta_share *ms)
{
	if (!ms->cfg->peers[0] && !ms->cfg->peers_file[0])
		return 0;
	struct deadline dl = deadline_in_ms(2ull * ms->cfg->heartbeat_ms);
	while (!deadline_passed(&dl) && enter(ms)) {
		struct member *cand[META_SHARE_TRIES];
		unsigned k = ranked(ms, cand, META_SHARE_TRIES, NULL);
		for (unsigned i = 0; i < k; i++)
			member_drop(ms, cand[i]);
		struct member **mv;
		uint64_t *hashes;
		unsigned n = peers_live(ms->p, &mv, &hashes);
		peers_live_put(ms->p, mv, hashes, n);
		int rc = k ? ask_once(ms, false) : 0;
		if (rc != 1 && (k || n > 1))
			rc = take_from_older(ms);
		leave(ms);
		if (rc == 1 || k || n > 1)
			return rc == 1; /* n > 1 with no parent and no older member: we list */
		struct timespec ts = { 0, 50 * 1000000l };
		nanosleep(&ts, NULL);
	}
	return 0;
}

int meta_share_first(struct meta_share *ms)
{
	uint64_t t0 = mono_ns();
	if (take_warm(ms) == 1) {
		log_info("metadata: took the running cluster's snapshot from node %s in %.1f s",
			 ms->last_lister, (double)(mono_ns() - t0) / 1e9);
		return 0;
	}
	settle(ms);
	struct deadline dl = deadline_in_ms(META_SHARE_FIRST_MS);
	int rc = -EAGAIN;
	while (rc == -EAGAIN && !deadline_passed(&dl) && enter(ms)) {
		rc = ask_once(ms, false);
		leave(ms);
		if (rc == -EAGAIN) {
			struct timespec ts = { 0, RETRY_MS * 1000000l };
			nanosleep(&ts, NULL);
		}
	}
	if (rc == 1) {
		log_info("metadata: took the cluster's snapshot from node %s in %.1f s",
			 ms->last_lister, (double)(mono_ns() - t0) / 1e9);
		return 0;
	}
	if (rc == -EAGAIN)
		log_warn("metadata: the lister had no snapshot within %u s; listing the backing here",
			 META_SHARE_FIRST_MS / 1000);
	return cache_tree_meta_load(ms->t);
}

struct meta_share *meta_share_new(struct peers *p, struct cache_tree *t,
				  const struct mows_config *cfg)
{
	struct meta_share *ms = calloc(1, sizeof(*ms));
	if (!ms)
		return NULL;
	ms->frame = malloc(PROTO_META_FIXED_LEN + PROTO_META_PIECE_MAX);
	if (!ms->frame || deadline_cond_init(&ms->idle)) {
		free(ms->frame);
		free(ms);
		errno = ENOMEM;
		return NULL;
	}
	ms->p = p;
	ms->t = t;
	ms->cfg = cfg;
	ms->fanout = META_SHARE_FANOUT;
	const char *f = getenv("MOWS_TEST_META_FANOUT"); /* test-only: deep trees, few nodes */
	if (f && atoi(f) >= 1)
		ms->fanout = (unsigned)atoi(f);
	pthread_mutex_init(&ms->lock, NULL);
	p->meta = ms;
	cache_tree_meta_set_source(t, &(struct cache_tree_meta_source){ .fetch = fetch,
									.ctx = ms });
	return ms;
}

void meta_share_stop(struct meta_share *ms)
{
	if (!ms)
		return;
	pthread_mutex_lock(&ms->lock);
	ms->stopping = true;
	if (ms->link)
		link_shutdown(ms->link);
	while (ms->busy)
		pthread_cond_wait(&ms->idle, &ms->lock);
	pthread_mutex_unlock(&ms->lock);
	link_drop(ms);
}

void meta_share_free(struct meta_share *ms)
{
	if (!ms)
		return;
	link_drop(ms);
	pthread_mutex_destroy(&ms->lock);
	pthread_cond_destroy(&ms->idle);
	free(ms->frame);
	free(ms);
}
