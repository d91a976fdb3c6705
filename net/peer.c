/* The peers glue: lifecycle, resolution, heartbeats and probes, fetching. See net/peer.h. */
#include "net/peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/crc.h"
#include "common/log.h"
#include "net/auth.h"
#include "net/peer_priv.h"
#include "net/place.h"
#include "net/mux.h"
#include "net/owners.h"
#include "net/plan.h"
#include "net/srv.h"
#include "net/tcp.h"

#define PROBE_HANDSHAKE_MS 1000
#define PROBE_FRESH_MS 250      /* a probe's connection idle longer is opened again */
#define LEAVE_MS 300
#define SRV_TARGETS_MAX 4096     /* targets taken from one SRV name */
#define RDMA_RETRY_MS 10000     /* after a failed RDMA connect, TCP for this long */

static uint64_t ms_ns(uint64_t ms)
{
	return ms * 1000000;
}

/* Wall-clock ms: only for our first incarnation (a restart must start above the last). */
static uint64_t real_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- pooled connections ---- */

/* Lock held. Takes @m's connections (MEMBER_MAX_CONNS at most), to close without the lock. */
static unsigned do_take_idle(struct member *m, struct pconn *out)
{
	unsigned n = m->nidle;
	memcpy(out, m->idle, n * sizeof(*out));
	m->nidle = 0;
	if (m->mux)
		out[n++] = (struct pconn){ .mux = m->mux };
	m->mux = NULL;
	return n;
}

static void close_conns(struct pconn *conns, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (conns[i].mux) {
			mux_shutdown(conns[i].mux);
			mux_put(conns[i].mux);
		} else {
			conns[i].ops->close(conns[i].c);
		}
	}
}

/* Lock held. Asks the heartbeat thread to resolve the names again at once. */
static void do_resolve_soon(struct peers *p)
{
	p->resolve_now = true;
	pthread_cond_broadcast(&p->wake_cond);
}

static void mark_down(struct peers *p, struct member *m, const char *why)
{
	struct pconn conns[MEMBER_MAX_CONNS];
	unsigned n = 0;
	pthread_mutex_lock(&p->lock);
	bool was_up = m->up;
	if (was_up) {
		m->up = false;
		m->gone_since_ns = mono_ns();
		n = do_take_idle(m, conns);
		do_resolve_soon(p);
	}
	pthread_mutex_unlock(&p->lock);
	if (was_up)
		log_peer_msg(LOG_WARNING, m->node_id, "peer %s (%s) is down: %s", m->node_id,
			     m->addr, why);
	close_conns(conns, n);
}

void peers_mark_down(struct peers *p, struct member *m, const char *why)
{
	mark_down(p, m, why);
}

void peers_member_left(struct peers *p, const char *node_id)
{
	struct pconn conns[4 * MEMBER_MAX_CONNS];
	unsigned n = 0, found = 0;
	uint64_t now = mono_ns();
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->members.n && found < 4; i++) {
		struct member *m = p->members.v[i];
		if (strcmp(m->node_id, node_id))
			continue;
		m->up = false;
		m->left = true;
		m->gone_since_ns = now;
		n += do_take_idle(m, conns + n);
		found++;
		if (p->gossip && member_gossiping(m) &&
		    member_gossip_apply(m, PROTO_GOSSIP_LEFT, m->g_inc, now)) {
			struct proto_gossip_event ev = { .state = PROTO_GOSSIP_LEFT, .inc = m->g_inc };
			snprintf(ev.node_id, sizeof(ev.node_id), "%s", node_id);
			gossip_queue_push(&p->gq, &ev);
		}
	}
	pthread_mutex_unlock(&p->lock);
	close_conns(conns, n);
	if (found)
		log_peer_msg(LOG_INFO, node_id, "peer %s left; dropped it from placement", node_id);
}

struct member *peers_inbound(struct peers *p, const char *node_id, const struct sockaddr *sa,
			     socklen_t len)
{
	if (!strcmp(node_id, p->node_id))
		return NULL; /* ourselves, through our own address in `peers` */
	pthread_mutex_lock(&p->lock);
	struct member *m = members_find_id(&p->members, node_id);
	if (!m && (m = members_find_addr(&p->members, sa, len)))
		member_set_id(m, node_id); /* another node answers at that address now */
	bool has_port = ((const struct sockaddr_in *)sa)->sin_port != 0; /* same offset in v6 */
	if (!m && has_port && (m = members_add(&p->members, sa, len))) {
		member_set_id(m, node_id);
		m->gone_since_ns = mono_ns(); /* reclaimed unless a probe reaches it */
		log_info("peer %s (%s) connected in; probing it as a member", node_id, m->addr);
	}
	if (m) {
		m->inbound = m->inbound || !(m->configured && m->resolved);
		member_heard_from(m);
		member_get(m);
	}
	pthread_mutex_unlock(&p->lock);
	return m;
}

/* Connects and authenticates a link to @m; checks it is still the node we knew there. */
static struct link *link_open(struct peers *p, struct member *m, struct proto_hello *them,
			      const struct deadline *dl, int *rc)
{
	struct link *l = link_connect((struct sockaddr *)&m->sa, m->salen, dl);
	*rc = l ? link_handshake(l, &p->self, AUTH_ROLE_CLIENT, them, dl) : -errno;
	if (*rc == 0 && strcmp(them->node_id, m->node_id))
		*rc = -ESTALE; /* another node answers at that address now */
	if (*rc) {
		link_free(l);
		return NULL;
	}
	return l;
}

struct link *peers_link_open(struct peers *p, struct member *m, const struct deadline *dl,
			     int *rc)
{
	struct proto_hello them;
	return link_open(p, m, &them, dl, rc);
}

/* Lock held. Closes pooled connections idle past PEER_POOL_IDLE_MS: the server ends them. */
static unsigned do_take_stale(struct member *m, uint64_t now, struct pconn *out)
{
	unsigned k = 0, keep = 0;
	for (unsigned i = 0; i < m->nidle; i++) {
		if (now - m->idle[i].idle_since_ns > ms_ns(PEER_POOL_IDLE_MS))
			out[k++] = m->idle[i];
		else
			m->idle[keep++] = m->idle[i];
	}
	m->nidle = keep;
	return k;
}

/* ---- fetching (a cache fill source) ---- */

/* Lock not held. Counts a wrong chunk from @m; returns whether that quarantines it. */
static bool charge_bad(struct peers *p, struct member *m)
{
	pthread_mutex_lock(&p->lock);
	m->bad_crc++;
	bool quarantine = m->bad_crc % PEER_BAD_LIMIT == 0;
	if (quarantine) {
		m->quarantine_until_ns = mono_ns() + ms_ns(PEER_QUARANTINE_MS);
		p->quarantines++;
	}
	pthread_mutex_unlock(&p->lock);
	return quarantine;
}

/* A chunk from @m did not match the CRC it came with: count it, quarantine repeat offenders. */
static void charge_bad_crc(struct peers *p, struct member *m, uint32_t got, uint32_t sent)
{
	bool quarantine = charge_bad(p, m);
	log_peer_msg(LOG_WARNING, m->node_id,
		     "peer %s (%s) sent a chunk with crc32 %08x, but it reads %08x; dropped it%s",
		     m->node_id, m->addr, sent, got,
		     quarantine ? "; quarantining the peer for 60 s" : "");
}

/* A chunk read by RDMA from @m did not match the digest @m sent over TLS. */
static void charge_bad_digest(struct peers *p, struct member *m)
{
	bool quarantine = charge_bad(p, m);
	log_peer_msg(LOG_WARNING, m->node_id, "peer %s (%s): a chunk read by RDMA does not match "
		     "the digest it sent over TLS; dropped it%s", m->node_id, m->addr,
		     quarantine ? "; quarantining the peer for 60 s" : "");
}

static void count_fetch(struct peers *p, struct member *m, int rc, size_t len)
{
	pthread_mutex_lock(&p->lock);
	if (rc == 0) {
		m->bytes_in += len;
		m->fetches++;
		m->last_seen_ns = mono_ns(); /* traffic is proof of life: no ping needed */
	} else if (rc != -ENOENT && rc != -EXDEV) {
		m->errors++;
		m->suspect = true; /* ping it this round */
	}
	pthread_mutex_unlock(&p->lock);
}

/* Lock held. Whether chunks from @m come by RDMA (descriptors still over its mux link). */
static bool do_want_rdma(struct peers *p, struct member *m)
{
	return p->rdma && (m->caps & PROTO_CAP_RDMA) && p->cfg->transport != TRANSPORT_TCP;
}

/* Lock held. Waits (by @dl) for room among @m's requests in flight, or a mux being made. */
static bool do_wait_room(struct peers *p, struct member *m, const struct deadline *dl)
{
	while ((m->busy >= p->cfg->peer_inflight || m->mux_connecting) && !p->stopping)
		if (deadline_cond_wait(&p->conn_cond, &p->lock, dl) == -ETIMEDOUT)
			return false;
	return !p->stopping;
}

/* A DESC that came after its asker gave up: release its lease now, not at expiry. */
static void desc_orphan(struct mux *x, const void *msg, size_t len)
{
	uint8_t rel[RDMA_MSG_MAX];
	struct deadline dl = deadline_in_ms(1000);
	ssize_t n = rdma_release_for(msg, len, rel, sizeof(rel));
	if (n > 0 && mux_send(x, PROTO_RDMA_DESC, rel, (uint32_t)n, &dl))
		log_debug("peers: cannot release a late RDMA lease; it expires on its own");
}

/* Makes @m's mux (one link for all our requests to it). Lock held; drops it meanwhile. */
static struct mux *do_mux_connect(struct peers *p, struct member *m, const struct deadline *dl)
{
	struct pconn old = { .mux = m->mux };
	struct proto_hello them;
	int rc;
	m->mux = NULL;
	m->mux_connecting = true;
	pthread_mutex_unlock(&p->lock);
	if (old.mux)
		close_conns(&old, 1);
	struct link *l = link_open(p, m, &them, dl, &rc);
	struct mux *x = l ? mux_new(l, p->max_payload, p->cfg->request_timeout_ms) : NULL;
	if (x)
		mux_set_orphan(x, desc_orphan);
	if (x && !(p->self.caps & PROTO_CAP_PIECES))
		mux_set_pieces(x, false); /* MOWS_TEST_NO_PIECES: an old node's mux */
	pthread_mutex_lock(&p->lock);
	m->mux_connecting = false;
	if (x) {
		m->mux = x;
		m->caps = them.caps;
		mux_get(x);
		if (m->transport != tcp_transport.name && !do_want_rdma(p, m))
			log_info("peer %s (%s): chunks travel by tcp", m->node_id, m->addr);
		if (!do_want_rdma(p, m))
			m->transport = tcp_transport.name;
	}
	pthread_cond_broadcast(&p->conn_cond);
	return x;
}

/* A reference to @m's mux with a request counted in flight, or NULL. */
static struct mux *mux_acquire(struct peers *p, struct member *m, const struct deadline *dl)
{
	struct mux *x = NULL;
	pthread_mutex_lock(&p->lock);
	if (do_wait_room(p, m, dl)) {
		if (m->mux && !mux_broken(m->mux)) {
			x = m->mux;
			mux_get(x);
		} else {
			x = do_mux_connect(p, m, dl);
		}
		m->busy += x != NULL;
		m->errors += x == NULL;
	}
	pthread_mutex_unlock(&p->lock);
	return x;
}

static void mux_release(struct peers *p, struct member *m, struct mux *x)
{
	pthread_mutex_lock(&p->lock);
	m->busy--;
	pthread_cond_broadcast(&p->conn_cond);
	pthread_mutex_unlock(&p->lock);
	mux_put(x);
}

/* ---- RDMA: descriptors over the member's mux link (TLS), bytes by one-sided READ ---- */

static int desc_call(void *ctx, const void *req, size_t len, void *ans, size_t cap,
		     size_t *anslen, const struct deadline *dl)
{
	return mux_call(ctx, PROTO_RDMA_DESC, req, (uint32_t)len, ans, cap, anslen, dl);
}

static int desc_send(void *ctx, const void *msg, size_t len, const struct deadline *dl)
{
	return mux_send(ctx, PROTO_RDMA_DESC, msg, (uint32_t)len, dl);
}

/* Asks @m, over its mux, for a one-use RDMA ticket. Returns 0 or -errno. */
static int ask_ticket(struct mux *x, struct proto_rdma_ticket *t, const struct deadline *dl)
{
	uint8_t buf[PROTO_RDMA_MSG_MAX];
	size_t n = 0;
	int rc = mux_call(x, PROTO_RDMA_DESC, NULL, 0, buf, sizeof(buf), &n, dl);
	if (rc == 0 && proto_rdma_ticket_decode(buf, n, t))
		rc = -EPROTO;
	if (rc == 0 && t->port == 0)
		rc = -EOPNOTSUPP;
	return rc;
}

/* Opens an RDMA connection to @m with a ticket asked for over @x. NULL when it fails (logged
 * once; no new attempt for RDMA_RETRY_MS). */
static struct transport_conn *rdma_open(struct peers *p, struct member *m, struct mux *x,
					const struct deadline *dl)
{
	struct proto_rdma_ticket t;
	int rc = ask_ticket(x, &t, dl);
	struct transport_conn *c = NULL;
	if (rc == 0) {
		struct sockaddr_storage sa = m->sa;
		if (sa.ss_family == AF_INET)
			((struct sockaddr_in *)&sa)->sin_port = htons(t.port);
		else
			((struct sockaddr_in6 *)&sa)->sin6_port = htons(t.port);
		c = rdma_ctx_connect(p->rdma, (struct sockaddr *)&sa, m->salen, t.ticket, dl);
		rc = c ? 0 : -errno;
	}
	explicit_bzero(&t, sizeof(t));
	pthread_mutex_lock(&p->lock);
	bool log = rc && !m->rdma_failed;
	m->rdma_failed = rc != 0;
	m->rdma_retry_ns = rc ? mono_ns() + ms_ns(RDMA_RETRY_MS) : 0;
	pthread_mutex_unlock(&p->lock);
	if (log)
		log_warn("peer %s (%s): no RDMA connection (%s); %s", m->node_id, m->addr,
			 strerror(-rc), p->cfg->transport == TRANSPORT_RDMA ?
			 "transport = rdma, so chunks come from the backing" : "using TCP");
	return c;
}

/* An idle RDMA connection to @m, or a new one; NULL while RDMA to it is failing. */
static struct transport_conn *rconn_take(struct peers *p, struct member *m, struct mux *x,
					 const struct deadline *dl)
{
	struct pconn stale[MEMBER_MAX_IDLE];
	pthread_mutex_lock(&p->lock);
	uint64_t now = mono_ns(); /* under the lock: no entry pooled after it (do_take_stale) */
	unsigned nstale = do_take_stale(m, now, stale);
	struct transport_conn *c = m->nidle ? m->idle[--m->nidle].c : NULL;
	bool try = !c && now >= m->rdma_retry_ns;
	pthread_mutex_unlock(&p->lock);
	close_conns(stale, nstale);
	return c ? c : try ? rdma_open(p, m, x, dl) : NULL;
}

static void rconn_put(struct peers *p, struct member *m, struct transport_conn *c, bool reuse)
{
	pthread_mutex_lock(&p->lock);
	reuse = reuse && m->up && m->listed && !p->stopping && m->nidle < MEMBER_MAX_IDLE;
	if (reuse)
		m->idle[m->nidle++] = (struct pconn){ .c = c, .ops = &rdma_transport,
						      .idle_since_ns = mono_ns() };
	pthread_mutex_unlock(&p->lock);
	if (!reuse)
		rdma_transport.close(c);
}

static void note_transport(struct peers *p, struct member *m, const char *name)
{
	pthread_mutex_lock(&p->lock);
	bool changed = m->transport != name;
	m->transport = name;
	pthread_mutex_unlock(&p->lock);
	if (changed)
		log_info("peer %s (%s): chunks travel by %s", m->node_id, m->addr, name);
}

/*
 * One request to an RDMA member: the descriptor over its mux (inside TLS), the bytes by a
 * READ on a pooled RDMA connection, checked against the digest; TCP over the same mux where
 * RDMA to it fails (unless transport = rdma).
 */
static int fetch_rdma(struct peers *p, struct member *m, const struct transport_chunk_req *req,
		      void *dst, size_t len, uint32_t *sent, char *holder,
		      struct cache_relay *relay, const struct deadline *dl,
		      const struct deadline *until)
{
	struct mux *x = mux_acquire(p, m, dl);
	if (!x)
		return -EHOSTUNREACH;
	struct transport_conn *c = rconn_take(p, m, x, dl);
	int rc;
	if (c) {
		struct rdma_desc_link ops = { .call = desc_call, .send = desc_send, .ctx = x };
		rdma_conn_set_link(c, &ops);
		rc = rdma_transport.fetch(c, req, dst, len, sent, dl);
		rconn_put(p, m, c, rc == 0 || rc == -ENOENT || rc == -EIO);
		note_transport(p, m, rdma_transport.name);
	} else if (p->cfg->transport == TRANSPORT_RDMA) {
		rc = -EOPNOTSUPP;
	} else {
		rc = mux_fetch_swarm(x, req, dst, len, sent, holder, relay, dl, until);
		note_transport(p, m, tcp_transport.name);
	}
	mux_release(p, m, x);
	return rc;
}

/* Whether a request failed because its link was gone (closed or reset by the peer). */
static bool link_gone(int rc)
{
	return rc == -ECONNRESET || rc == -EPIPE || rc == -ENOTCONN;
}

static int fetch_mux(struct peers *p, struct member *m, const struct transport_chunk_req *req,
		     void *dst, size_t len, uint32_t *sent, char *holder,
		     struct cache_relay *relay, const struct deadline *dl,
		     const struct deadline *until)
{
	struct mux *x = mux_acquire(p, m, dl);
	if (!x)
		return -EHOSTUNREACH;
	int rc = mux_fetch_swarm(x, req, dst, len, sent, holder, relay, dl, until);
	mux_release(p, m, x);
	return rc;
}

/*
 * Fetches one chunk from @m into @dst and checks its CRC. Returns 0 or -errno; -EXDEV when
 * @m answered REDIRECT (only when @holder, PROTO_NODE_ID_MAX + 1 bytes, takes its id).
 */
static int fetch_one(struct peers *p, struct member *m, const struct transport_chunk_req *req,
		     void *dst, size_t len, const struct deadline *outer, struct cache_fetch *out,
		     char *holder)
{
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	if (deadline_left_ms(outer) < deadline_left_ms(&dl))
		dl = *outer;
	uint32_t sent = 0;
	pthread_mutex_lock(&p->lock);
	bool rdma = do_want_rdma(p, m);
	pthread_mutex_unlock(&p->lock);
	/* An answer still arriving in pieces may take until @outer (mux_fetch_swarm()). A pooled
	 * link that the peer closed while it idled (it restarted: pods do, all day) fails its
	 * next request: ask once more over a new link, by either transport, before the plan
	 * moves on to another member (which may then fill the chunk from storage, or hand on a
	 * copy it took from this peer and be blamed for it). */
	int rc = -EHOSTUNREACH;
	for (int tries = 0; tries < 2; tries++) {
		rc = rdma ? fetch_rdma(p, m, req, dst, len, &sent, holder, out->relay, &dl, outer)
			  : fetch_mux(p, m, req, dst, len, &sent, holder, out->relay, &dl, outer);
		if (!link_gone(rc) || deadline_passed(&dl))
			break;
	}
	if (rc == -EHOSTUNREACH)
		return rc;
	if (rc == -EBADMSG)
		charge_bad_digest(p, m);
	if (rc == 0) {
		uint32_t got = mows_crc32(0, dst, len);
		if (got != sent) {
			charge_bad_crc(p, m, got, sent);
			return -EBADMSG;
		}
		out->crc = got;
		out->crc_known = true;
		/* A holder an owner named (WAIT) passes on what its own source sent it: if the
		 * bytes prove wrong, the node that read them from storage is charged by the node
		 * it sent them to, never a relay down the chain (origin 0: nobody to charge). */
		out->origin = req->wait ? 0 : m->uid;
	}
	count_fetch(p, m, rc, len);
	if (rc && rc != -ENOENT && rc != -EXDEV)
		log_debug("peer %s: chunk %" PRIu64 ": %s", m->node_id, req->chunk, strerror(-rc));
	return rc;
}

/* The live members with us last (index n - 1): referenced, in arrays the caller frees. */
static unsigned live_members(struct peers *p, struct member ***ms, uint64_t **hashes)
{
	pthread_mutex_lock(&p->lock);
	unsigned cap = p->members.n + 1, n = 0;
	*ms = malloc(cap * sizeof(**ms));
	*hashes = malloc(cap * sizeof(**hashes));
	if (*ms && *hashes && !p->stopping) {
		n = members_live(&p->members, mono_ns(), *ms, *hashes, cap - 1);
		(*ms)[n] = NULL;
		(*hashes)[n++] = p->node_hash;
	}
	p->nfetching++;
	pthread_mutex_unlock(&p->lock);
	return n;
}

unsigned peers_live(struct peers *p, struct member ***ms, uint64_t **hashes)
{
	return live_members(p, ms, hashes);
}

static void put_members(struct peers *p, struct member **ms, uint64_t *hashes, unsigned n);

void peers_live_put(struct peers *p, struct member **ms, uint64_t *hashes, unsigned n)
{
	put_members(p, ms, hashes, n ? n - 1 : 0);
}

static void put_members(struct peers *p, struct member **ms, uint64_t *hashes, unsigned n)
{
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < n; i++)
		member_put(ms[i]);
	p->nfetching--;
	pthread_cond_broadcast(&p->stop_cond);
	pthread_mutex_unlock(&p->lock);
	free(ms);
	free(hashes);
}

static void count_swarm(struct peers *p, uint64_t *counter)
{
	pthread_mutex_lock(&p->lock);
	(*counter)++;
	pthread_mutex_unlock(&p->lock);
}

/* The live member (of the @n - 1 in @ms) whose node id is @id, or NULL. */
static struct member *live_by_id(struct member **ms, unsigned n, const char *id)
{
	for (unsigned i = 0; i + 1 < n; i++)
		if (ms[i] && !strcmp(ms[i]->node_id, id))
			return ms[i];
	return NULL;
}

/*
 * One step of the plan. An owner asked with fill may answer REDIRECT (the swarm,
 * net/swarm.h): then we ask the holder it named with WAIT and, when that fails, the owner
 * again with NOREDIRECT, which it serves itself.
 */
static int do_run_step(struct peers *p, struct member **ms, unsigned n,
		       const struct plan_step *st, struct transport_chunk_req *req, void *dst,
		       size_t len, const struct deadline *dl, struct cache_fetch *out, char *holder)
{
	struct member *m = ms[st->member];
	pthread_mutex_lock(&p->lock);
	bool swarm = st->fill && (m->caps & PROTO_CAP_SWARM);
	pthread_mutex_unlock(&p->lock);
	*req = (struct transport_chunk_req){ .file_key = req->file_key,
		.file_size = req->file_size, .mtime_ns = req->mtime_ns, .chunk = req->chunk,
		.chunk_size = req->chunk_size, .fill = st->fill };
	int rc = fetch_one(p, m, req, dst, len, dl, out, swarm ? holder : NULL);
	if (rc != -EXDEV)
		return rc;
	count_swarm(p, &p->sw.redirected);
	struct member *h = live_by_id(ms, n, holder);
	if (h) {
		req->fill = false;
		req->wait = true;
		rc = fetch_one(p, h, req, dst, len, dl, out, NULL);
		if (rc == 0) {
			count_swarm(p, &p->sw.from_holder);
			return 0;
		}
	}
	log_debug("peer %s: chunk %" PRIu64 ": holder %s named by %s failed; asking the owner",
		  p->node_id, req->chunk, holder, m->node_id);
	count_swarm(p, &p->sw.fallbacks);
	req->wait = false;
	req->fill = true;
	req->noredirect = true;
	return fetch_one(p, m, req, dst, len, dl, out, NULL);
}

/* do_run_step(), with a debug line per step: whom it asked, who it was handed to, how long
 * it took (where a slow burst spends its time). */
static int run_step(struct peers *p, struct member **ms, unsigned n, const struct plan_step *st,
		    struct transport_chunk_req *req, void *dst, size_t len,
		    const struct deadline *dl, struct cache_fetch *out)
{
	char holder[PROTO_NODE_ID_MAX + 1] = "";
	uint64_t t0 = mono_ns();
	int rc = do_run_step(p, ms, n, st, req, dst, len, dl, out, holder);
	log_debug("peers: chunk %" PRIu64 " of file %016" PRIx64 ": asked %s%s%s%s: %s after "
		  "%" PRIu64 " ms", req->chunk, req->file_key, ms[st->member]->node_id,
		  st->fill ? " with fill" : "", holder[0] ? ", handed on to " : "", holder,
		  rc ? strerror(-rc) : "delivered", (mono_ns() - t0) / 1000000);
	return rc;
}

/* Runs the plan: 0 when a step delivered, -ENOENT to let the cache read the backing. */
static int run_plan(struct peers *p, const struct plan *pl, struct member **ms, unsigned n,
		    struct transport_chunk_req *req, void *dst, size_t len,
		    const struct deadline *dl, struct cache_fetch *out)
{
	for (unsigned s = 0; s < pl->n && !deadline_passed(dl); s++)
		if (run_step(p, ms, n, &pl->step[s], req, dst, len, dl, out) == 0)
			return 0;
	return -ENOENT;
}

/*
 * Flags in @older[0..n-1] the members that ran PEER_OLDER_MS or more before this node
 * started: besides the next-ranked member, only they can hold a chunk we own but have not
 * read yet (we joined a warm cluster), so only they are probed. In a cold burst no member is
 * older and an owner reads storage after one probe. The last entry (this node) is never
 * older.
 */
static void mark_older(struct peers *p, struct member **ms, unsigned n, bool *older)
{
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < n; i++)
		older[i] = ms[i] && ms[i]->started_ns &&
			   ms[i]->started_ns + ms_ns(PEER_OLDER_MS) <= p->start_ns;
	pthread_mutex_unlock(&p->lock);
}

/* Builds the ownership map for the members @hashes[0..n-1] (this node last) when the
 * model's files or the members changed since the current one (net/owners.h). */
static void build_owners(struct peers *p, const uint64_t *hashes, unsigned n)
{
	if (p->host.list_files && p->cfg->ownership == OWNERSHIP_BALANCED)
		owners_update(p->owners, hashes, n, p->host.list_files, p->host.ctx);
}

static int peers_fetch(void *ctx, struct cache_file *f, uint64_t chunk, void *dst, size_t len,
		       const struct deadline *dl, struct cache_fetch *out)
{
	struct peers *p = ctx;
	struct member **ms;
	uint64_t *hashes;
	unsigned n = live_members(p, &ms, &hashes);
	unsigned *order = n >= 2 ? malloc(n * sizeof(*order)) : NULL;
	bool *older = order ? malloc(n * sizeof(*older)) : NULL;
	if (older)
		mark_older(p, ms, n, older);
	struct transport_chunk_req req = {
		.file_key = cache_file_key(f),
		.file_size = cache_file_size(f),
		.mtime_ns = cache_file_mtime_ns(f),
		.chunk = chunk,
		.chunk_size = (uint32_t)cache_chunk_size(p->cache),
	};
	struct plan_input in = { .file_key = req.file_key, .chunk = chunk, .hashes = hashes,
				 .n = n, .self = n ? n - 1 : 0, .replicas = p->cfg->replicas,
				 .probe_only = out->probe_only, .ranked = order != NULL,
				 .older = older };
	struct plan pl;
	int rc = -ENOENT;
	if (order && !owners_built_for(p->owners, hashes, n))
		build_owners(p, hashes, n); /* rank as the nodes that have their map do */
	if (order)
		owners_rank(p->owners, req.file_key, chunk, hashes, n, order);
	if (order && older && plan_make(&in, order, &pl) == 0) {
		rc = run_plan(p, &pl, ms, n, &req, dst, len, dl, out);
		if (rc && !pl.self_owner) {
			log_debug("peers: chunk %" PRIu64 " of %s: none of %u peers asked "
				  "delivered; reading it from storage", chunk,
				  cache_file_relpath(f), pl.n);
			count_swarm(p, &p->sw.storage_unowned);
		}
	}
	free(older);
	free(order);
	put_members(p, ms, hashes, n ? n - 1 : 0);
	return rc; /* -ENOENT: nobody could help in time, the backing it is */
}

static struct member *first_up(struct peers *p)
{
	uint64_t now = mono_ns();
	struct member *found = NULL;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->members.n && !found; i++)
		if (member_usable(p->members.v[i], now)) {
			found = p->members.v[i];
			member_get(found);
		}
	pthread_mutex_unlock(&p->lock);
	return found;
}

bool peers_any_up(struct peers *p)
{
	struct member *m = first_up(p);
	pthread_mutex_lock(&p->lock);
	member_put(m);
	pthread_mutex_unlock(&p->lock);
	return m != NULL;
}

int peers_fetch_direct(struct peers *p, const struct transport_chunk_req *req, void *dst,
		       size_t len, const char **transport)
{
	struct member *m = first_up(p);
	struct cache_fetch out = { 0 };
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	if (!m)
		return -EHOSTUNREACH;
	int rc = fetch_one(p, m, req, dst, len, &dl, &out, NULL);
	pthread_mutex_lock(&p->lock);
	*transport = m->transport ? m->transport : "?";
	member_put(m);
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* Cache op: the chunk that peer @origin sent (CRC @sent) was wrong; the right one is @good. */
static void peers_charge(void *ctx, uint32_t origin, struct cache_file *f, uint64_t chunk,
			 uint32_t sent, uint32_t good)
{
	struct peers *p = ctx;
	pthread_mutex_lock(&p->lock);
	struct member *m = members_find_uid(&p->members, origin);
	if (m)
		member_get(m);
	pthread_mutex_unlock(&p->lock);
	if (!m)
		return; /* reclaimed since: nobody left to charge */
	log_peer_msg(LOG_WARNING, m->node_id,
		     "peer chunk %" PRIu64 " of %s was wrong: charging %s, which sent it", chunk,
		     cache_file_relpath(f), m->node_id);
	charge_bad_crc(p, m, good, sent);
	pthread_mutex_lock(&p->lock);
	member_put(m);
	pthread_mutex_unlock(&p->lock);
}

const struct cache_source_ops peers_source = {
	.name = "peers",
	.remote = true,
	.fetch = peers_fetch,
	.charge = peers_charge,
};

/* ---- resolution ---- */

struct addr_list {
	struct sockaddr_storage *v;
	socklen_t *len;
	unsigned n, cap;
	bool complete;            /* every name resolved: the list is the whole truth */
};

static void addrs_push(struct addr_list *a, const struct sockaddr *sa, socklen_t len)
{
	if (a->n == a->cap) {
		unsigned cap = a->cap ? 2 * a->cap : 64;
		struct sockaddr_storage *v = realloc(a->v, cap * sizeof(*v));
		socklen_t *l = v ? realloc(a->len, cap * sizeof(*l)) : NULL;
		if (v)
			a->v = v;
		if (!l) {
			a->complete = false;
			return;
		}
		a->len = l;
		a->cap = cap;
	}
	memcpy(&a->v[a->n], sa, len);
	a->len[a->n++] = len;
}

static void resolve_host(struct peers *p, const char *host, const char *port,
			 struct addr_list *a);

/* A name without a port: its SRV records' targets and ports (net/srv.h). */
static void resolve_srv(struct peers *p, const char *entry, size_t len, struct addr_list *a)
{
	char name[SRV_NAME_MAX], port[8];
	unsigned n = 0;
	struct srv_target *t = len < sizeof(name) ? malloc(SRV_TARGETS_MAX * sizeof(*t)) : NULL;
	int rc = t ? 0 : len < sizeof(name) ? -ENOMEM : -ENAMETOOLONG;
	if (rc == 0) {
		memcpy(name, entry, len);
		name[len] = '\0';
		rc = srv_resolve(name, t, SRV_TARGETS_MAX, &n);
	}
	if (rc)
		log_warn("peers: '%.*s' (a name without a port, so a DNS SRV name): %s; %s",
			 (int)len, entry, rc == -ENOENT ? "no SRV records" : rc == -EAGAIN ?
			 "the lookup failed" : strerror(-rc), rc == -EAGAIN ?
			 "keeping its members, trying again later" : "give HOST:PORT for a plain "
			 "name, or publish SRV records (a headless Service with a named port)");
	if (rc && rc != -ENOENT)
		a->complete = false;
	for (unsigned i = 0; i < n; i++) {
		snprintf(port, sizeof(port), "%u", t[i].port);
		resolve_host(p, t[i].target, port, a);
	}
	free(t);
}

static void resolve_entry(struct peers *p, const char *entry, size_t len, struct addr_list *a)
{
	char host[256], port[16];
	if (!memchr(entry, ':', len)) {
		resolve_srv(p, entry, len, a);
		return;
	}
	if (tcp_split_hostport(entry, len, host, sizeof(host), port, sizeof(port))) {
		log_warn("peers: '%.*s': expected HOST:PORT; skipping it", (int)len, entry);
		return;
	}
	resolve_host(p, host, port, a);
}

static void resolve_host(struct peers *p, const char *host, const char *port,
			 struct addr_list *a)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		log_warn("peers: cannot resolve '%s': %s; trying again in %u ms", host,
			 gai_strerror(rc), p->cfg->resolve_interval_ms);
		if (rc != EAI_NONAME)
			a->complete = false; /* a transient failure keeps what we had */
		return;
	}
	for (struct addrinfo *x = ai; x; x = x->ai_next)
		addrs_push(a, x->ai_addr, x->ai_addrlen);
	freeaddrinfo(ai);
}

/* Entries separated by commas, blanks or newlines; '#' starts a comment to the line end. */
static void resolve_text(struct peers *p, const char *s, struct addr_list *a)
{
	while (*s) {
		if (*s == '#') {
			s += strcspn(s, "\n");
			continue;
		}
		size_t n = strcspn(s, ", \t\r\n#");
		if (n)
			resolve_entry(p, s, n, a);
		s += n;
		s += strspn(s, ", \t\r\n");
	}
}

static void resolve_file(struct peers *p, const char *path, struct addr_list *a)
{
	FILE *fp = fopen(path, "re");
	if (!fp) {
		log_warn("peers_file '%s': %s; keeping the members it named before", path,
			 strerror(errno));
		a->complete = false;
		return;
	}
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, fp) >= 0)
		resolve_text(p, line, a);
	free(line);
	fclose(fp);
}

/* Resolves every configured name, then updates the table in one step under the lock. */
static void resolve_all(struct peers *p)
{
	struct addr_list a = { .complete = true };
	resolve_text(p, p->cfg->peers, &a);
	if (p->cfg->peers_file[0])
		resolve_file(p, p->cfg->peers_file, &a);
	pthread_mutex_lock(&p->lock);
	if (a.complete)
		members_resolve_begin(&p->members);
	for (unsigned i = 0; i < a.n; i++)
		members_resolve_seen(&p->members, (struct sockaddr *)&a.v[i], a.len[i]);
	if (a.complete)
		members_resolve_end(&p->members, mono_ns());
	pthread_mutex_unlock(&p->lock);
	free(a.v);
	free(a.len);
}

/* ---- heartbeats and probes (the heartbeat thread) ---- */

static void mark_up(struct peers *p, struct member *m)
{
	pthread_mutex_lock(&p->lock);
	m->last_seen_ns = mono_ns();
	m->probe_fails = 0;
	m->suspect = false;
	bool was_up = m->up;
	m->up = true;
	m->left = false;
	m->gone_since_ns = 0;
	pthread_mutex_unlock(&p->lock);
	if (!was_up)
		log_peer_msg(LOG_INFO, m->node_id, "peer %s (%s) is up", m->node_id, m->addr);
}

/* A link to @m answered our handshake as @them: learn who it is. Returns 0 or -EALREADY
 * (it is ourselves; the link is freed). */
static int hb_adopt(struct peers *p, struct member *m, struct link *l,
		    const struct proto_hello *them)
{
	pthread_mutex_lock(&p->lock);
	m->caps = them->caps;
	if (them->uptime_ms)
		m->started_ns = mono_ns() - them->uptime_ms * 1000000;
	if (strcmp(them->node_id, m->node_id))
		member_set_id(m, them->node_id);
	if (!strcmp(them->node_id, p->node_id) && !m->self) {
		m->self = true;
		log_debug("peer %s is this node", m->addr);
	}
	bool self = m->self;
	pthread_mutex_unlock(&p->lock);
	if (self) {
		link_free(l);
		return -EALREADY;
	}
	m->hb = l;
	return 0;
}

static int hb_ping(struct peers *p, struct member *m)
{
	uint8_t buf[PROTO_PING_MAX_LEN];
	struct proto_ping ping = { .mono_ms = mono_ns() / 1000000 }, pong;
	struct proto_gossip g;
	struct proto_hdr hdr;
	uint32_t id = ++m->hb_id;
	pthread_mutex_lock(&p->lock);
	struct deadline dl = deadline_in_ms(peers_hb_timeout_ms(p, p->gossip && member_gossiping(m)));
	uint16_t caps = m->caps;
	char node_id[PROTO_NODE_ID_MAX + 1];
	snprintf(node_id, sizeof(node_id), "%s", m->node_id);
	p->lv.pings++;
	pthread_mutex_unlock(&p->lock);
	ssize_t len = peers_ping_payload(p, node_id, caps, &ping, buf);
	if (len < 0)
		return (int)len;
	m->hb_sent_ns = mono_ns();
	int rc = link_send_frame(m->hb, PROTO_PING, id, buf, (uint32_t)len, &dl);
	if (rc == 0)
		rc = link_recv_frame(m->hb, &hdr, buf, sizeof(buf), &dl);
	if (rc == 0 && (hdr.type != PROTO_PONG || hdr.req_id != id ||
			proto_ping_gossip_decode(buf, hdr.len, &pong, &g) ||
			pong.mono_ms != ping.mono_ms))
		rc = -EPROTO;
	if (rc == 0) {
		pthread_mutex_lock(&p->lock);
		peers_do_heard_direct(p, node_id, mono_ns());
		pthread_mutex_unlock(&p->lock);
		peers_gossip_receive(p, node_id, &g);
	}
	return rc;
}

/* @m answered a heartbeat: up, unless gossip holds it dead at the incarnation it answered
 * with (it will outbid that once it hears of it: our next PING tells it). */
static void hb_answered(struct peers *p, struct member *m)
{
	m->hb_sent_ns = 0;
	pthread_mutex_lock(&p->lock);
	bool dead = p->gossip && member_gossiping(m) && m->g_state >= PROTO_GOSSIP_DEAD;
	pthread_mutex_unlock(&p->lock);
	if (!dead)
		mark_up(p, m);
}

/* No answer from @m this round: drop its links; down once silent for peer_timeout. */
static void hb_failed(struct peers *p, struct member *m, int rc)
{
	if (m->hb) {
		/* The peer may have restarted: its pooled connections lead to the old process. */
		struct pconn conns[MEMBER_MAX_CONNS];
		link_free(m->hb);
		m->hb = NULL;
		pthread_mutex_lock(&p->lock);
		unsigned n = do_take_idle(m, conns);
		pthread_mutex_unlock(&p->lock);
		close_conns(conns, n);
	}
	if (rc == -EACCES)
		log_peer_msg(LOG_WARNING, m->addr, "peer %s refused our authentication or failed "
			     "its own; check that both use the same secret_file", m->addr);
	pthread_mutex_lock(&p->lock);
	m->probe_fails++;
	uint64_t now = mono_ns();
	bool silent = now - m->last_seen_ns > ms_ns(p->cfg->peer_timeout_ms);
	bool gossiping = p->gossip && member_gossiping(m);
	uint64_t since = m->hb_sent_ns ? m->hb_sent_ns : now;
	m->hb_sent_ns = 0;
	bool ask = gossiping && m->g_state == PROTO_GOSSIP_ALIVE && rc != -EACCES;
	/* A try that failed at once (no route, refused) took no time: others must have heard
	 * @m within one PING wait of now instead. */
	uint64_t heard_after = since < now ? since : now - ms_ns(peers_hb_timeout_ms(p, true));
	pthread_mutex_unlock(&p->lock);
	if (ask && peers_ask_witnesses(p, m, heard_after))
		return; /* others hear it: the trouble is between it and us */
	pthread_mutex_lock(&p->lock);
	bool dead = gossiping && peers_do_suspect(p, m, since, mono_ns());
	pthread_mutex_unlock(&p->lock);
	if (dead)
		peers_declare_dead(p, m);
	else if (silent && !gossiping)
		mark_down(p, m, rc == -EACCES ? "authentication failed" : strerror(-rc));
}

/*
 * A heartbeat link that the peer closed (its process ended or restarted) is noticed here
 * without a message: the link is dropped and the member probed again this round.
 */
static void check_links(struct peers *p)
{
	pthread_mutex_lock(&p->lock);
	unsigned n = 0, cap = p->members.n;
	struct member **ms = malloc((cap ? cap : 1) * sizeof(*ms));
	for (unsigned i = 0; ms && i < cap; i++)
		if (p->members.v[i]->hb) {
			ms[n++] = p->members.v[i];
			member_get(p->members.v[i]);
		}
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < n; i++)
		if (ms[i]->hb && link_closed(ms[i]->hb)) /* a PING_REQ may have dropped it */
			hb_failed(p, ms[i], -ECONNRESET);
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < n; i++)
		member_put(ms[i]);
	pthread_mutex_unlock(&p->lock);
	free(ms);
}

/*
 * The probes' handshakes run one after another; a connection that waited its turn longer
 * than PROBE_FRESH_MS is replaced by a fresh one, so that the peer never holds our idle
 * connection in its small unauthenticated budget (where a cold burst's other connects
 * evict it) nor against its handshake deadline. Returns the link to handshake on or NULL.
 */
static struct link *probe_link(struct member *m, int fd, uint64_t ready_ns,
			       const struct deadline *dl, int *rc)
{
	if (mono_ns() - ready_ns <= ms_ns(PROBE_FRESH_MS)) {
		struct link *l = link_new(fd); /* closes @fd when it fails */
		*rc = l ? 0 : -ENOMEM;
		return l;
	}
	close(fd);
	struct link *l = link_connect((struct sockaddr *)&m->sa, m->salen, dl);
	*rc = l ? 0 : -errno;
	return l;
}

/* Handshakes on a probe whose connect succeeded at @ready_ns, then pings it. */
static void probe_finish(struct peers *p, struct member *m, int fd, uint64_t ready_ns)
{
	struct deadline dl = deadline_in_ms(PROBE_HANDSHAKE_MS);
	struct proto_hello them;
	int rc;
	struct link *l = probe_link(m, fd, ready_ns, &dl, &rc);
	if (l)
		rc = link_handshake(l, &p->self, AUTH_ROLE_CLIENT, &them, &dl);
	if (rc) {
		link_free(l);
		hb_failed(p, m, rc);
		return;
	}
	rc = hb_adopt(p, m, l, &them);
	if (rc == -EALREADY)
		return;
	rc = hb_ping(p, m);
	if (rc == 0)
		hb_answered(p, m);
	else
		hb_failed(p, m, rc);
}

/*
 * How long a probe batch waits for its connects: min(peer_timeout, 2 s), or the short
 * heartbeat wait when every member in it is one we gossip with and already failed (a known
 * peer on the LAN connects fast; one that does not stays suspect, and the round is not held
 * past its suspicion's end).
 */
static uint32_t probe_wait_ms(struct peers *p, struct member **ms, unsigned n)
{
	bool quick = p->gossip && n > 0;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; quick && i < n; i++)
		quick = member_gossiping(ms[i]) &&
			(ms[i]->g_state == PROTO_GOSSIP_SUSPECT || ms[i]->probe_fails > 0);
	pthread_mutex_unlock(&p->lock);
	return peers_hb_timeout_ms(p, quick);
}

/* Connects to every member of @ms at once (one poll), so dead addresses cost one timeout
 * per round, not one each. */
static void probe_batch(struct peers *p, struct member **ms, unsigned n)
{
	struct pollfd *pf = n ? calloc(n, sizeof(*pf)) : NULL;
	unsigned pending = 0;
	if (!pf)
		return;
	for (unsigned i = 0; i < n; i++) {
		pf[i].fd = tcp_connect_start((struct sockaddr *)&ms[i]->sa, ms[i]->salen);
		pf[i].events = POLLOUT;
		if (pf[i].fd < 0)
			hb_failed(p, ms[i], pf[i].fd);
		else
			pending++;
	}
	struct deadline dl = deadline_in_ms(probe_wait_ms(p, ms, n));
	uint64_t began = mono_ns();
	for (unsigned i = 0; i < n; i++)
		if (pf[i].fd >= 0)
			ms[i]->hb_sent_ns = began; /* a failure's suspicion runs from here */
	/* The handshakes below may use up the wait: a last poll without waiting still takes
	 * the connects that completed meanwhile. */
	for (int64_t left; pending && (left = deadline_left_ms(&dl)) >= 0;) {
		int k = poll(pf, n, (int)left);
		if (k <= 0 && !(k < 0 && errno == EINTR))
			break;
		uint64_t ready_ns = mono_ns();
		for (unsigned i = 0; i < n; i++) {
			if (pf[i].fd < 0 || !pf[i].revents)
				continue;
			int fd = pf[i].fd;
			int rc = tcp_connect_result(fd);
			pf[i].fd = -1;
			pending--;
			if (rc) {
				close(fd);
				hb_failed(p, ms[i], rc);
			} else {
				probe_finish(p, ms[i], fd, ready_ns);
			}
		}
	}
	for (unsigned i = 0; i < n; i++)
		if (pf[i].fd >= 0) {
			close(pf[i].fd);
			hb_failed(p, ms[i], -ETIMEDOUT);
		}
	free(pf);
}

/* Unlists departed members; their links and pooled connections close here. */
static void reclaim(struct peers *p)
{
	struct member *gone[64];
	struct pconn conns[MEMBER_MAX_CONNS];
	uint64_t linger = ms_ns(3ull * p->cfg->peer_timeout_ms);
	pthread_mutex_lock(&p->lock);
	unsigned n = members_reclaim(&p->members, mono_ns(), linger, gone, 64);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < n; i++) {
		link_free(gone[i]->hb);
		gone[i]->hb = NULL;
		pthread_mutex_lock(&p->lock);
		unsigned k = do_take_idle(gone[i], conns);
		pthread_mutex_unlock(&p->lock);
		close_conns(conns, k);
		if (gone[i]->node_id[0] && !gone[i]->self)
			log_info("peer %s (%s) departed; its entry is reclaimed", gone[i]->node_id,
				 gone[i]->addr);
		pthread_mutex_lock(&p->lock);
		member_put(gone[i]);
		pthread_mutex_unlock(&p->lock);
	}
}

static void heartbeat_round(struct peers *p)
{
	reclaim(p);
	check_links(p);
	peers_check_suspects(p);
	pthread_mutex_lock(&p->lock);
	p->lv.rounds++;
	unsigned cap = p->members.n;
	struct member **ms = malloc((cap ? cap : 1) * sizeof(*ms));
	unsigned n = ms ? members_pick_round(&p->members, mono_ns(), members_ping_budget(cap),
					     MEMBERS_PROBES, ms_ns(p->cfg->heartbeat_ms), ms, cap)
			: 0;
	pthread_mutex_unlock(&p->lock);
	unsigned nprobe = 0;
	for (unsigned i = 0; i < n; i++) {
		struct member *m = ms[i];
		if (!m->hb) {
			ms[nprobe++] = m; /* the probes gather at the front, in order */
			continue;
		}
		int rc = hb_ping(p, m);
		if (rc == 0)
			hb_answered(p, m);
		else
			hb_failed(p, m, rc);
		pthread_mutex_lock(&p->lock);
		member_put(m);
		pthread_mutex_unlock(&p->lock);
	}
	probe_batch(p, ms, nprobe);
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < nprobe; i++)
		member_put(ms[i]);
	pthread_mutex_unlock(&p->lock);
	free(ms);
}

/* Waits @ms for stop (true) or a request to resolve again (false). */
static bool wait_round(struct peers *p, unsigned ms)
{
	struct deadline dl = deadline_in_ms(ms);
	pthread_mutex_lock(&p->lock);
	while (!p->stopping && !p->resolve_now &&
	       deadline_cond_wait(&p->wake_cond, &p->lock, &dl) == 0)
		;
	bool stop = p->stopping;
	pthread_mutex_unlock(&p->lock);
	return stop;
}

/* A clean stop: LEAVE on every heartbeat link, so peers drop us now, not after a timeout. */
static void send_leaves(struct peers *p)
{
	pthread_mutex_lock(&p->lock);
	unsigned n = 0, cap = p->members.n;
	struct member **ms = malloc((cap ? cap : 1) * sizeof(*ms));
	for (unsigned i = 0; ms && i < cap; i++)
		if (p->members.v[i]->hb) {
			ms[n++] = p->members.v[i];
			member_get(p->members.v[i]);
		}
	pthread_mutex_unlock(&p->lock);
	struct deadline dl = deadline_in_ms(LEAVE_MS);
	for (unsigned i = 0; i < n; i++) {
		if (ms[i]->hb && link_send_frame(ms[i]->hb, PROTO_LEAVE, 0, NULL, 0, &dl))
			log_debug("peer %s: could not say LEAVE", ms[i]->node_id);
		link_free(ms[i]->hb);
		ms[i]->hb = NULL;
	}
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < n; i++)
		member_put(ms[i]);
	pthread_mutex_unlock(&p->lock);
	free(ms);
}

/* Rebuilds the ownership map when the live members or the model's files changed. */
static void update_owners(struct peers *p)
{
	struct member **ms;
	uint64_t *hashes;
	unsigned n = live_members(p, &ms, &hashes);
	build_owners(p, hashes, n);
	put_members(p, ms, hashes, n ? n - 1 : 0);
}

static void *heartbeat_main(void *arg)
{
	struct peers *p = arg;
	uint64_t next_resolve = 0;
	do {
		pthread_mutex_lock(&p->lock);
		bool due = p->resolve_now || mono_ns() >= next_resolve;
		p->resolve_now = false;
		pthread_mutex_unlock(&p->lock);
		if (due) {
			resolve_all(p);
			next_resolve = mono_ns() + ms_ns(p->cfg->resolve_interval_ms);
		}
		heartbeat_round(p);
		update_owners(p);
		serve_sweep(p);
	} while (!wait_round(p, p->cfg->heartbeat_ms));
	send_leaves(p);
	return NULL;
}

/* ---- lifecycle ---- */

static int default_node_id(char *buf, size_t len)
{
	if (gethostname(buf, len) < 0)
		return -errno;
	buf[len - 1] = '\0';
	return 0;
}

static uint16_t port_of(const char *hostport)
{
	const char *colon = strrchr(hostport, ':');
	return colon ? (uint16_t)atoi(colon + 1) : 0;
}

static int set_node_id(struct peers *p, char *err, size_t errlen)
{
	const struct mows_config *cfg = p->cfg;
	if (cfg->node_id[0])
		snprintf(p->node_id, sizeof(p->node_id), "%.*s", PROTO_NODE_ID_MAX, cfg->node_id);
	else
		default_node_id(p->node_id, sizeof(p->node_id));
	if (!proto_node_id_ok(p->node_id) || strlen(cfg->node_id) > PROTO_NODE_ID_MAX) {
		snprintf(err, errlen, "node_id '%s': expected 1 to %d printable characters without "
			 "spaces; set node_id", p->node_id, PROTO_NODE_ID_MAX);
		return -EINVAL;
	}
	p->node_hash = place_node_hash(p->node_id);
	return 0;
}

static int init_sync(struct peers *p, char *err, size_t errlen)
{
	pthread_mutex_init(&p->lock, NULL);
	p->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (p->stop_fd < 0 || deadline_cond_init(&p->conn_cond) ||
	    deadline_cond_init(&p->stop_cond) || deadline_cond_init(&p->wake_cond)) {
		snprintf(err, errlen, "peers: cannot create an eventfd or condition: %s",
			 strerror(errno));
		return -ENOMEM;
	}
	return 0;
}

struct peers *peers_new(const struct mows_config *cfg, struct cache *c,
			const struct peer_host_ops *host, char *err, size_t errlen)
{
	struct peers *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->cfg = cfg;
	p->cache = c;
	p->host = *host;
	p->start_ns = mono_ns();
	p->listen_fd = p->stop_fd = -1;
	p->owners = owners_new(cache_chunk_size(c), cfg->replicas);
	if (!p->owners) {
		snprintf(err, errlen, "out of memory");
		free(p);
		return NULL;
	}
	members_init(&p->members);
	p->max_payload = PROTO_DATA_FIXED_LEN + (uint32_t)cache_chunk_size(c);
	p->corrupt_sends = getenv("MOWS_TEST_CORRUPT_SENDS") &&
			   !strcmp(getenv("MOWS_TEST_CORRUPT_SENDS"), "1");
	if (set_node_id(p, err, errlen))
		goto out_free;
	if (!cfg->insecure && cfg->secret_file[0] &&
	    auth_load_secret(cfg->secret_file, &p->secret, &p->secret_len, err, errlen))
		goto out_free;
	if (tls_ctx_from_config(cfg, &p->tls, err, errlen))
		goto out_free;
	if (p->tls)
		log_info("peers: TLS 1.3 on every peer connection, authenticated by %s",
			 tls_ctx_is_cert(p->tls) ? "certificates (tls_ca)" :
			 "the shared secret (PSK)");
	if (cfg->insecure)
		log_warn("insecure = true: peers are not authenticated; anyone who reaches %s can "
			 "read cached data", cfg->listen);
	p->listen_fd = tcp_listen(cfg->listen, err, errlen);
	if (p->listen_fd < 0)
		goto out_free;
	p->listen_port = port_of(cfg->listen);
	p->gossip = cfg->gossip;
	if (getenv("MOWS_TEST_NO_GOSSIP") && !strcmp(getenv("MOWS_TEST_NO_GOSSIP"), "1")) {
		p->gossip = false; /* an old node, for mixed-version tests */
		log_warn("MOWS_TEST_NO_GOSSIP=1: this node speaks no liveness gossip (test)");
	}
	p->self_inc = gossip_first_inc(real_ms());
	gossip_queue_init(&p->gq);
	p->self = (struct link_self){ .node_id = p->node_id, .listen_port = p->listen_port,
				      .caps = PROTO_CAP_SWARM | (p->gossip ? PROTO_CAP_GOSSIP : 0) |
					      PROTO_CAP_PIECES,
				      .secret = p->secret, .secret_len = p->secret_len,
				      .insecure = cfg->insecure, .tls = p->tls,
				      .start_ns = p->start_ns };
	if (getenv("MOWS_TEST_NO_PIECES") && !strcmp(getenv("MOWS_TEST_NO_PIECES"), "1")) {
		p->self.caps &= (uint16_t)~PROTO_CAP_PIECES; /* an old node, for mixed-version tests */
		log_warn("MOWS_TEST_NO_PIECES=1: this node takes answers only as whole DATA (test)");
	}
	if (init_sync(p, err, errlen))
		goto out_free;
	if (p->corrupt_sends)
		log_warn("MOWS_TEST_CORRUPT_SENDS=1: this node corrupts every chunk it sends "
			 "(test fault)");
	return p;
out_free:
	if (p->listen_fd >= 0)
		close(p->listen_fd);
	if (p->stop_fd >= 0)
		close(p->stop_fd);
	if (p->secret)
		auth_secret_free(p->secret, p->secret_len);
	tls_ctx_free(p->tls);
	free(p);
	return NULL;
}

/* The cache is about to punch out or unmap these bytes: their memory region goes first. */
static void rdma_forget(void *ctx, const void *addr, size_t len)
{
	rdma_ctx_forget(ctx, addr, len);
}

/* RDMA, when configured and a device works; after daemonizing (verbs and fork do not mix). */
static int rdma_start(struct peers *p)
{
	char err[512], host[256], port[16];
	if (p->cfg->transport == TRANSPORT_TCP)
		return 0;
	void *base;
	size_t len;
	cache_slab_region(p->cache, &base, &len);
	struct rdma_host h = { .pin = serve_rdma_pin, .unpin = serve_rdma_unpin,
			       .ticket_ok = serve_rdma_ticket_ok, .ctx = p };
	p->rdma = rdma_ctx_new(p->cfg, base, len, &h, err, sizeof(err));
	if (p->rdma && (tcp_split_hostport(p->cfg->listen, strlen(p->cfg->listen), host,
					   sizeof(host), port, sizeof(port)) ||
			rdma_ctx_listen(p->rdma, host, p->listen_port, err, sizeof(err)))) {
		rdma_ctx_free(p->rdma);
		p->rdma = NULL;
	}
	if (p->rdma) {
		cache_set_forget(p->cache, rdma_forget, p->rdma);
		p->self.caps |= PROTO_CAP_RDMA;
		log_info("peers: RDMA on %s, port %u", rdma_ctx_device(p->rdma), p->listen_port);
		return 0;
	}
	if (p->cfg->transport == TRANSPORT_RDMA) {
		log_err("transport = rdma: %s", err);
		return -ENODEV;
	}
	log_info("peers: %s", err);
	return 0;
}

static void signal_stop(struct peers *p)
{
	uint64_t one = 1;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->stop_cond);
	pthread_cond_broadcast(&p->conn_cond);
	pthread_cond_broadcast(&p->wake_cond);
	pthread_mutex_unlock(&p->lock);
	if (write(p->stop_fd, &one, sizeof(one)) < 0)
		log_warn("peers: cannot signal stop: %s", strerror(errno));
}

int peers_start(struct peers *p)
{
	int rc = rdma_start(p);
	if (rc)
		return rc;
	rc = pf_start(p);
	if (rc)
		return rc;
	rc = serve_start(p);
	if (rc) {
		pf_stop(p);
		return rc;
	}
	rc = pthread_create(&p->heartbeat, NULL, heartbeat_main, p);
	if (rc) {
		signal_stop(p);
		serve_stop(p);
		pf_stop(p);
		return -rc;
	}
	p->started = true;
	log_info("peers: node %s listening on %s", p->node_id, p->cfg->listen);
	return 0;
}

void peers_free(struct peers *p)
{
	if (!p)
		return;
	signal_stop(p);
	if (p->started) {
		pthread_join(p->heartbeat, NULL); /* says LEAVE on its way out */
		serve_stop(p);
		pf_stop(p); /* no serving thread asks it any more */
	}
	/* Fill threads inside peers_source end by their deadlines; they use what we free. */
	pthread_mutex_lock(&p->lock);
	while (p->nfetching)
		pthread_cond_wait(&p->stop_cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->members.n; i++) {
		struct pconn conns[MEMBER_MAX_CONNS];
		close_conns(conns, do_take_idle(p->members.v[i], conns));
	}
	members_release(&p->members);
	gossip_queue_release(&p->gq);
	owners_free(p->owners);
	if (p->rdma)
		cache_set_forget(p->cache, NULL, NULL);
	rdma_ctx_free(p->rdma);
	close(p->listen_fd);
	close(p->stop_fd);
	auth_secret_free(p->secret, p->secret_len);
	tls_ctx_free(p->tls);
	free(p);
}

const char *peers_node_id(const struct peers *p)
{
	return p->node_id;
}

/* ---- status: plain data for fs/control.c to format ---- */

static const char *member_state(const struct member *m, uint64_t now)
{
	if (m->self)
		return "self";
	if (m->left)
		return "left";
	if (!member_wanted(m))
		return "gone";
	if (m->quarantine_until_ns > now)
		return "quarantined";
	return m->up ? "up" : "down";
}

static void copy_info(const struct member *m, uint64_t now, struct peer_info *o)
{
	snprintf(o->node_id, sizeof(o->node_id), "%s", m->node_id[0] ? m->node_id : "?");
	snprintf(o->addr, sizeof(o->addr), "%s", m->addr);
	o->state = member_state(m, now);
	o->transport = m->transport ? m->transport : "-";
	o->origin = m->configured && m->inbound ? "configured+inbound" :
		    m->configured ? "configured" : "inbound";
	o->bytes_in = m->bytes_in;
	o->bytes_out = m->bytes_out;
	o->fetches = m->fetches;
	o->served = m->served;
	o->errors = m->errors;
	o->bad_crc = m->bad_crc;
	o->quarantined = m->quarantine_until_ns > now;
	o->suspect = m->g_state == PROTO_GOSSIP_SUSPECT;
}

int peers_snapshot(struct peers *p, struct peers_snapshot *s)
{
	uint64_t now = mono_ns();
	memset(s, 0, sizeof(*s));
	snprintf(s->node_id, sizeof(s->node_id), "%s", p->node_id);
	s->listen = p->cfg->listen;
	pthread_mutex_lock(&p->lock);
	s->peers = calloc(p->members.n ? p->members.n : 1, sizeof(*s->peers));
	for (unsigned i = 0; s->peers && i < p->members.n; i++)
		if (!p->members.v[i]->self)
			copy_info(p->members.v[i], now, &s->peers[s->n++]);
	s->digest = members_digest(&p->members, p->node_id, now, &s->members);
	s->entries_added = p->members.added;
	s->entries_reclaimed = p->members.reclaimed;
	s->refused_unauth = p->refused_unauth;
	s->refused_auth = p->refused_auth;
	s->accept_errors = p->accept_errors;
	s->quarantines = p->quarantines;
	s->swarm = p->sw;
	s->liveness = p->lv;
	s->liveness.gossip = p->gossip;
	s->liveness.incarnation = p->self_inc;
	s->liveness.suspects = members_suspects(&p->members);
	pthread_mutex_unlock(&p->lock);
	owners_digest(p->owners, &s->ownership_digest, &s->ownership_members);
	if (p->rdma) {
		s->has_rdma = true;
		snprintf(s->rdma_device, sizeof(s->rdma_device), "%s", rdma_ctx_device(p->rdma));
		rdma_stats(p->rdma, &s->rdma);
	}
	return s->peers ? 0 : -ENOMEM;
}

void peers_snapshot_release(struct peers_snapshot *s)
{
	free(s->peers);
	s->peers = NULL;
	s->n = 0;
}
