/*
 * Serving peers: the listener, inbound budgets, a handshake thread per inbound connection
 * until it authenticates, the frames of authenticated links (read by net/serve_io.c's event
 * loop and readers), and a fixed pool of workers that answer GETs in any order, in two lanes: a GET whose chunk
 * is cached (pinned when it arrives) or that asks no fill is answered by a fast worker; an
 * owner fill, which may read the backing for seconds, by a fill worker, while the answer
 * itself goes back to the fast lane to relay the bytes as they land. So answers that could
 * go at once never wait behind storage reads: probes stay probes, and an owner keeps
 * streaming the chunks it holds while it reads the next ones. To a peer that said
 * PROTO_CAP_PIECES an answer goes in DATA_PIECEs, the link's send turn (net/link_sender.h,
 * first come first served) taken for one piece at a time, so the answers on a link
 * interleave and a relay takes the turn only when bytes of its chunk have arrived; older
 * peers get whole DATA frames.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "net/auth.h"
#include "net/meta_share.h"
#include "net/peer_priv.h"
#include "net/serve_priv.h"
#include "net/swarm.h"

#define TICKET_MS 10000
/* Chunk bytes per DATA_PIECE (build with -DSERVE_PIECE_BYTES=... to measure another size). */
#ifndef SERVE_PIECE_BYTES
#define SERVE_PIECE_BYTES PROTO_PIECE_BYTES
#endif
/* Whether a chunk held here goes in pieces too (1), or as one DATA frame, so that only
 * relays interleave (0; build with -DSERVE_HELD_IN_PIECES=0 to measure). */
#ifndef SERVE_HELD_IN_PIECES
#define SERVE_HELD_IN_PIECES 1
#endif
#ifndef SERVE_FAST_WORKERS /* build with -DSERVE_FAST_WORKERS=... to measure */
#define SERVE_FAST_WORKERS 4
#endif
/* What serve_get() returns besides 0 and -errno: the job is not answered yet. */
#define SERVE_HANDED 1            /* no longer the caller's: parked, or queued again */
#define SERVE_REPARK 2            /* park it again until the fill it waits for moves */

struct serve_job {
	struct sconn *sc;
	uint32_t req_id;
	struct proto_get g;
	struct cache_file *f;     /* the version it names, or NULL (answered ENOENT) */
	bool pinned;              /* span holds the chunk, pinned when the GET arrived */
	struct cache_span span;
	uint32_t crc;
	char redirect[PROTO_NODE_ID_MAX + 1]; /* non-empty: answer REDIRECT to this holder */
	struct cache_relay *relay; /* set: span is pinned while its fill runs; relay it */
	/* A relay in DATA_PIECEs that waits for its source between pieces parks, holding no
	 * worker (relay_pieces()); what it sent so far, and when it gives up: */
	bool relaying;            /* begun: counted in p->sending until it ends */
	bool watching;            /* parked on relay->watchers (progress wakes it) */
	uint32_t relay_attempt, relay_crc, relay_sent;
	struct deadline relay_dl; /* request_timeout after the last piece that went */
	uint64_t park_until_ns;   /* a parked GET WAIT: answered by then */
	bool admitted;            /* went through swarm_admit(): swarm_done() once answered */
	bool fill_handed;         /* an owner fill runs for it on a fill worker (serve_fill()):
				     it relays that fill, or answers once it ended, never fills */
	uint32_t rdma_len;        /* > 0: an RDMA descriptor message instead of a GET */
	uint8_t rdma[RDMA_MSG_MAX];
	uint32_t meta_len;        /* > 0: a META_GET REFRESH, which may wait for a listing */
	uint8_t meta[PROTO_META_GET_LEN];
	struct serve_job *next;
};

struct serve_worker {
	struct peers *p;
	bool fast;                /* takes SERVE_FAST jobs only */
	pthread_t thread;
};

static void sconn_put(struct sconn *sc)
{
	if (atomic_fetch_sub(&sc->refs, 1) != 1)
		return;
	struct peers *p = sc->p;
	rdma_ctx_drop_owner(p->rdma, sc); /* the leases this link held */
	link_sender_release(&sc->tx);
	link_free(sc->link);
	pthread_mutex_lock(&p->lock);
	member_put(sc->m);
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_destroy(&sc->lock);
	pthread_cond_destroy(&sc->cond);
	free(sc);
}

/* Sends @iov on the connection when its turn comes (by @dl). A failed send breaks it. */
static int sconn_sendv(struct sconn *sc, struct iovec *iov, int n, const struct deadline *dl)
{
	return link_sender_sendv(&sc->tx, iov, n, dl);
}

static int sconn_send_frame(struct sconn *sc, uint8_t type, uint32_t id, const void *payload,
			    uint32_t len, const struct deadline *dl)
{
	uint8_t hdr[PROTO_HDR_LEN];
	proto_hdr_encode(hdr, type, 0, len, id);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, len } };
	return sconn_sendv(sc, iov, len ? 2 : 1, dl);
}

/* ---- requests ---- */

/* The version @g names if the cache has it open (memory only, never the backing), or NULL. */
static struct cache_file *file_cached(struct peers *p, const struct proto_get *g)
{
	struct cache_file *f = cache_file_by_key(p->cache, g->file_key);
	if (f && (cache_file_size(f) != g->file_size || cache_file_mtime_ns(f) != g->mtime_ns)) {
		cache_file_put(p->cache, f);
		f = NULL;
	}
	return f;
}

/* The version @g names, opening it beneath the backing root if need be, or NULL. */
static struct cache_file *file_for(struct peers *p, const struct proto_get *g)
{
	struct cache_file *f = file_cached(p, g);
	return f ? f : p->host.open_key(p->host.ctx, g->file_key, g->file_size, g->mtime_ns);
}

static int send_data(struct peers *p, struct sconn *sc, uint32_t id, int status, uint32_t crc,
		     const void *data, uint32_t len, const struct deadline *dl)
{
	uint8_t head[PROTO_HDR_LEN + PROTO_DATA_FIXED_LEN];
	struct proto_data d = { .status = status, .crc32 = status ? 0 : crc,
				.length = status ? 0 : len };
	proto_hdr_encode(head, PROTO_DATA, 0, PROTO_DATA_FIXED_LEN + d.length, id);
	proto_data_encode(head + PROTO_HDR_LEN, &d);
	void *bad = NULL;
	if (d.length && p->corrupt_sends && (bad = malloc(len))) {
		memcpy(bad, data, len);
		((uint8_t *)bad)[len / 2] ^= 0x5a;
		data = bad;
	}
	/* The chunk goes from the pinned slab straight to the link. */
	struct iovec iov[2] = { { head, sizeof(head) }, { (void *)data, d.length } };
	if (d.length)
		atomic_fetch_add(&p->sending, 1);
	int rc = d.length && SERVE_HELD_IN_PIECES && (sc->caps & PROTO_CAP_PIECES)
		 ? link_sender_pieces(&sc->tx, id, d.crc32, d.length, data, 0, d.length,
				      SERVE_PIECE_BYTES, p->cfg->request_timeout_ms)
		 : sconn_sendv(sc, iov, d.length ? 2 : 1, dl);
	if (d.length)
		atomic_fetch_sub(&p->sending, 1);
	free(bad);
	return rc;
}

static void count_served(struct peers *p, struct member *m, size_t len)
{
	if (!m)
		return;
	pthread_mutex_lock(&p->lock);
	m->bytes_out += len;
	m->served++;
	m->last_seen_ns = mono_ns();
	pthread_mutex_unlock(&p->lock);
}

static void count_swarm(struct peers *p, uint64_t *counter)
{
	pthread_mutex_lock(&p->lock);
	(*counter)++;
	pthread_mutex_unlock(&p->lock);
}

/* The swarm, as owner: "ask that holder" (net/swarm.h). */
static int send_redirect(struct peers *p, struct sconn *sc, struct serve_job *j,
			 const struct deadline *dl)
{
	uint8_t buf[PROTO_REDIRECT_MAX_LEN];
	struct proto_redirect rd;
	memcpy(rd.node_id, j->redirect, sizeof(rd.node_id));
	ssize_t n = proto_redirect_encode(buf, sizeof(buf), &rd);
	if (n < 0)
		return (int)n;
	count_swarm(p, &p->sw.redirects_sent);
	return sconn_send_frame(sc, PROTO_REDIRECT, j->req_id, buf, (uint32_t)n, dl);
}

/*
 * How many bytes of a relayed chunk may go now (*@have): those that landed here, all of them
 * only once the fill ended well with the CRC announced (@crc). Returns 0, or -EIO: another
 * attempt, a failed fill, other bytes: never send on.
 */
static int relay_have(struct peers *p, struct serve_job *j, uint32_t attempt, uint32_t crc,
		      uint32_t *have)
{
	const struct cache_relay *r = j->relay;
	uint32_t len = (uint32_t)j->span.len, final = 0;
	int done = cache_relay_done(p->cache, &j->span, &final);
	*have = done == 1 ? len : atomic_load(&r->arrived);
	if (atomic_load(&r->attempt) != attempt || done < 0 || (done == 1 && final != crc))
		return -EIO;
	if (done == 0 && *have >= len)
		*have = len - 1; /* held back until the fill is checked */
	return 0;
}

/* Sends the bytes of a relayed chunk from @sent on, as they arrive, in the frame whose
 * head went (the turn held). Returns 0, or -EIO: stop, break the stream. */
static int relay_bytes(struct peers *p, struct sconn *sc, struct serve_job *j, uint32_t attempt,
		       uint32_t crc, const struct deadline *dl)
{
	uint32_t len = (uint32_t)j->span.len, sent = 0, have = 0;
	struct deadline d = *dl;
	while (sent < len) {
		if (relay_have(p, j, attempt, crc, &have))
			return -EIO;
		if (have > sent) {
			struct iovec iov = { (uint8_t *)j->span.data + sent, have - sent };
			if (link_sendv(sc->link, &iov, 1, &d))
				return -EIO;
			sent = have;
			d = deadline_in_ms(p->cfg->request_timeout_ms); /* it moves: wait on */
		} else if (deadline_passed(&d)) {
			return -EIO;
		} else {
			usleep(200);
		}
	}
	return 0;
}

/* A relayed chunk as one DATA frame (peers without PIECES): the send turn is held from the
 * head to the last byte. Returns 0, -EIO (the relay stopped; the stream is shut down), or
 * another -errno. */
static int relay_whole(struct peers *p, struct sconn *sc, struct serve_job *j, uint32_t attempt,
		       uint32_t crc, const struct deadline *dl)
{
	uint8_t head[PROTO_HDR_LEN + PROTO_DATA_FIXED_LEN];
	struct proto_data d = { .crc32 = crc, .length = (uint32_t)j->span.len };
	proto_hdr_encode(head, PROTO_DATA, 0, PROTO_DATA_FIXED_LEN + d.length, j->req_id);
	proto_data_encode(head + PROTO_HDR_LEN, &d);
	struct iovec iov = { head, sizeof(head) };
	int rc = link_sender_take(&sc->tx, dl);
	if (rc)
		return rc;
	rc = link_sendv(sc->link, &iov, 1, dl);
	if (rc == 0)
		rc = relay_bytes(p, sc, j, attempt, crc, dl);
	link_sender_give(&sc->tx, rc);
	return rc;
}

/*
 * A relayed chunk in DATA_PIECEs (PIECES peers): each piece goes once its bytes landed
 * here, taking the send turn only for that piece, so that a relay paced by its source never
 * holds up the other answers on the link. When nothing new has landed the relay returns
 * -EINPROGRESS and its job parks until the source reports progress (relay->watchers, the
 * fill hook), so a relay paced by a slow source (a shared storage link, a chain of relays)
 * holds no worker while it waits. It gives up when its source stalls for request_timeout. A
 * relay that stops ends its answer with an EIO piece and the link carries on. Returns 0,
 * -EINPROGRESS, -EIO (stopped), or another -errno.
 */
static int relay_pieces(struct peers *p, struct sconn *sc, struct serve_job *j)
{
	uint32_t len = (uint32_t)j->span.len, have = 0;
	while (j->relay_sent < len) {
		if (relay_have(p, j, j->relay_attempt, j->relay_crc, &have) ||
		    (have <= j->relay_sent && deadline_passed(&j->relay_dl))) {
			struct deadline d = deadline_in_ms(p->cfg->request_timeout_ms);
			int rc = link_sender_abort(&sc->tx, j->req_id, EIO, len, j->relay_sent, &d);
			return rc ? rc : -EIO;
		}
		if (have <= j->relay_sent)
			return -EINPROGRESS;
		/* The link, not the source, bounds a send (a send that times out after the
		 * answer began shuts the whole link down). */
		int rc = link_sender_pieces(&sc->tx, j->req_id, j->relay_crc, len, j->span.data,
					    j->relay_sent, have, SERVE_PIECE_BYTES,
					    p->cfg->request_timeout_ms);
		if (rc)
			return rc;
		j->relay_sent = have;
		/* The source moves: wait on as long as it does (the asker does too: mux.h). */
		j->relay_dl = deadline_in_ms(p->cfg->request_timeout_ms);
	}
	return 0;
}

/* A parked relay runs again (or ends): it no longer watches its source's progress. */
static void relay_unwatch(struct serve_job *j)
{
	if (j->watching)
		atomic_fetch_sub(&j->relay->watchers, 1);
	j->watching = false;
}

/* The end of a relay that began (counted in p->sending): once, however it ends. */
static void relay_end(struct peers *p, struct serve_job *j)
{
	relay_unwatch(j);
	if (j->relaying)
		atomic_fetch_sub(&p->sending, 1);
	j->relaying = false;
}

/*
 * The swarm, as a holder: relays a chunk while our own fill of it receives it. The DATA
 * frame carries the CRC our source announced; a byte is sent only once it landed here, the
 * last one only once our fill checked the whole chunk against that CRC. Anything else (the
 * fill fails, starts over, or ends with other bytes) breaks the stream, so the requester
 * never takes a wrong chunk for a right one (it checks the CRC as well).
 */
static int serve_relay(struct peers *p, struct sconn *sc, struct serve_job *j,
		       const struct deadline *dl)
{
	if (!j->relaying) {
		j->relaying = true;
		j->relay_attempt = atomic_load(&j->relay->attempt);
		j->relay_crc = atomic_load(&j->relay->crc);
		j->relay_dl = *dl;
		atomic_fetch_add(&p->sending, 1);
	}
	relay_unwatch(j); /* woken: progress, the fill's end, or its deadline */
	int rc = sc->caps & PROTO_CAP_PIECES ? relay_pieces(p, sc, j)
		 : relay_whole(p, sc, j, j->relay_attempt, j->relay_crc, dl);
	if (rc == -EINPROGRESS)
		return rc; /* run_job() parks it */
	relay_end(p, j);
	if (rc == -EIO)
		count_swarm(p, &p->sw.relays_stopped);
	if (rc == 0) {
		count_served(p, sc->m, j->span.len);
		if (j->g.flags & PROTO_GET_WAIT)
			count_swarm(p, &p->sw.served_as_holder);
		else
			count_swarm(p, &p->sw.owner_relayed);
		count_swarm(p, &p->sw.relayed);
	}
	return rc;
}

/*
 * The swarm, as a holder an owner named: the chunk if we hold it now (pinned on arrival, or
 * after the fill it was parked on), relayed while it arrives here, or else ENOENT; never a
 * fill.
 */
static int wait_state(struct peers *p, struct serve_job *j);

/* Answers with the chunk @j holds pinned (span, crc) and counts it served. */
static int send_held(struct peers *p, struct sconn *sc, struct serve_job *j,
		     const struct deadline *dl)
{
	int rc = send_data(p, sc, j->req_id, 0, j->crc, j->span.data, (uint32_t)j->span.len, dl);
	if (rc == 0)
		count_served(p, sc->m, j->span.len);
	return rc;
}

static int serve_wait(struct peers *p, struct sconn *sc, struct serve_job *j,
		      const struct deadline *dl)
{
	if (!j->pinned && !j->relay)
		wait_state(p, j);
	if (j->relay)
		return serve_relay(p, sc, j, dl);
	if (!j->pinned) {
		count_swarm(p, &p->sw.holder_misses);
		return send_data(p, sc, j->req_id, ENOENT, 0, NULL, 0, dl);
	}
	int rc = send_held(p, sc, j, dl);
	if (rc == 0)
		count_swarm(p, &p->sw.served_as_holder);
	return rc;
}

static void hand_off(void *ctx);
static void park_job(struct peers *p, struct serve_job *j, bool holder);

struct handoff {
	struct peers *p;
	struct serve_job *j;
	bool done;
};

/*
 * An owner fill for a peer that takes DATA_PIECEs, on a fill worker: this thread reads the
 * chunk (holders first, then storage), and once the fill began the job goes to the fast
 * lane, parked until the source announces the bytes, so that they go on to the asker while
 * they arrive here (and from it down the swarm's chain) instead of once the whole chunk is
 * in. Returns SERVE_HANDED when the job went (it is no longer ours: we touch only our own
 * references), or answers it here as before when the chunk was cached or filled by another
 * thread meanwhile.
 */
static int serve_fill(struct peers *p, struct sconn *sc, struct serve_job *j,
		      const struct deadline *dl)
{
	struct cache_file *f = j->f;
	struct handoff h = { p, j, false };
	struct cache_begun begun = { hand_off, &h };
	struct cache_span span;
	uint32_t crc = 0;
	cache_file_get(p->cache, f);
	int rc = cache_serve_fill(p->cache, f, j->g.chunk, dl, &span, &crc, &begun);
	cache_file_put(p->cache, f);
	if (h.done) { /* @j is no longer ours */
		if (rc == 0)
			cache_read_done(p->cache, &span, 1);
		return SERVE_HANDED;
	}
	if (rc)
		return send_data(p, sc, j->req_id, rc == -ENOENT ? ENOENT : EIO, 0, NULL, 0, dl);
	j->span = span;
	j->crc = crc;
	j->pinned = true;
	return send_held(p, sc, j, dl);
}

/* The fill serve_fill() runs began: its job waits, parked, for the bytes. */
static void hand_off(void *ctx)
{
	struct handoff *h = ctx;
	h->done = true;
	h->j->fill_handed = true;
	park_job(h->p, h->j, false);
}

/*
 * A job whose owner fill runs on a fill worker (serve_fill()), on a fast worker: relays the
 * fill once its source announced the bytes, parks again while it has not, and once the fill
 * ended sends the chunk (or EIO: it failed; this job never fills).
 */
static int serve_handed(struct peers *p, struct sconn *sc, struct serve_job *j,
			const struct deadline *dl)
{
	if (j->relay) /* a relay of it that parked between pieces goes on */
		return serve_relay(p, sc, j, dl);
	int rc = cache_relay_pin(p->cache, j->f, j->g.chunk, &j->span, &j->relay);
	if (rc == 0)
		return serve_relay(p, sc, j, dl);
	j->relay = NULL;
	if (rc == -EAGAIN && mono_ns() < j->park_until_ns)
		return SERVE_REPARK;
	/* -ENOENT: the fill ended, cached or failed; -EAGAIN: overdue, never announced */
	if (rc == -ENOENT)
		rc = cache_serve_chunk(p->cache, j->f, j->g.chunk, false, dl, &j->span, &j->crc);
	if (rc)
		return send_data(p, sc, j->req_id, EIO, 0, NULL, 0, dl);
	j->pinned = true;
	return send_held(p, sc, j, dl);
}

/*
 * Answers a GET, on a worker: the chunk pinned when it arrived, or else filled (we own the
 * chunk) on this thread, reading the backing if no holder has it.
 */
static int serve_get(struct peers *p, struct sconn *sc, struct serve_job *j)
{
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	const struct proto_get *g = &j->g;
	if (j->redirect[0])
		return send_redirect(p, sc, j, &dl);
	if (g->flags & PROTO_GET_WAIT)
		return serve_wait(p, sc, j, &dl);
	if (g->chunk_size != cache_chunk_size(p->cache))
		return send_data(p, sc, j->req_id, EINVAL, 0, NULL, 0, &dl);
	if (!j->f && (g->flags & PROTO_GET_FILL))
		j->f = file_for(p, g); /* an owner fill of a file not open here yet */
	if (!j->f)
		return send_data(p, sc, j->req_id, ENOENT, 0, NULL, 0, &dl);
	if (j->fill_handed)
		return serve_handed(p, sc, j, &dl);
	int rc = 0;
	if (!j->pinned && !j->relay && (g->flags & PROTO_GET_FILL) && !p->corrupt_sends &&
	    cache_relay_wait(p->cache, j->f, g->chunk, &dl, &j->span, &j->relay))
		j->relay = NULL;
	if (j->relay) /* our own fill of it runs: send its bytes on as they arrive */
		return serve_relay(p, sc, j, &dl);
	if (!j->pinned && (g->flags & PROTO_GET_FILL) && (sc->caps & PROTO_CAP_PIECES) &&
	    !p->corrupt_sends)
		return serve_fill(p, sc, j, &dl);
	if (!j->pinned)
		rc = cache_serve_chunk(p->cache, j->f, g->chunk, g->flags & PROTO_GET_FILL, &dl,
				       &j->span, &j->crc);
	if (rc)
		return send_data(p, sc, j->req_id, rc == -ENOENT ? ENOENT : EIO, 0, NULL, 0, &dl);
	j->pinned = true;
	return send_held(p, sc, j, &dl);
}

/* Answers an RDMA descriptor message (net/rdma.h), on a worker: DESC_REQ may fill. */
static int serve_rdma_msg(struct peers *p, struct sconn *sc, const struct serve_job *j)
{
	uint8_t ans[RDMA_MSG_MAX];
	ssize_t n = rdma_ctx_answer(p->rdma, sc, j->rdma, j->rdma_len, ans, sizeof(ans));
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	if (n < 0)
		link_shutdown(sc->link); /* not a message a mows peer sends */
	if (n <= 0)
		return (int)n;
	return sconn_send_frame(sc, PROTO_RDMA_DESC, j->req_id, ans, (uint32_t)n, &dl);
}

static void job_free(struct peers *p, struct serve_job *j)
{
	relay_end(p, j);
	if (j->pinned || j->relay)
		cache_read_done(p->cache, &j->span, 1);
	if (j->f)
		cache_file_put(p->cache, j->f);
	free(j);
}

static int answer_meta(struct peers *p, struct sconn *sc, uint32_t id, const uint8_t *payload,
		       uint32_t len);

static bool park_relay(struct peers *p, struct serve_job *j);

static void run_job(struct peers *p, struct serve_job *j)
{
	struct sconn *sc = j->sc;
	pthread_mutex_lock(&sc->lock);
	bool closed = sc->closed;
	pthread_mutex_unlock(&sc->lock);
	int rc = 0;
	if (!closed && j->meta_len)
		rc = answer_meta(p, sc, j->req_id, j->meta, j->meta_len);
	else if (!closed)
		rc = j->rdma_len ? serve_rdma_msg(p, sc, j) : serve_get(p, sc, j);
	if (rc == -EINPROGRESS && park_relay(p, j))
		return; /* a relay waiting for its source: runs again when it moves */
	if (rc == SERVE_HANDED)
		return; /* a fill worker fills its chunk; it was parked, or runs again */
	if (rc == SERVE_REPARK) {
		park_job(p, j, false);
		return;
	}
	if (rc)
		log_debug("peer connection: answering a request: %s", strerror(-rc));
	if (j->admitted && sc->m)
		swarm_done(p->swarm, j->g.file_key, j->g.chunk, sc->m->uid);
	pthread_mutex_lock(&sc->lock);
	sc->inflight--;
	bool arm = sc->stalled && !sc->closed; /* its reader left it at the inflight cap */
	sc->stalled = false;
	pthread_cond_broadcast(&sc->cond);
	pthread_mutex_unlock(&sc->lock);
	if (arm)
		serve_io_arm(p, sc);
	sconn_put(sc);
	job_free(p, j);
}

/* Lock held. The next job for worker @w: fast workers take fast jobs only; fill workers
 * take fills first, then fast jobs when no fill waits. NULL when there is none. */
static struct serve_job *do_take_job(struct peers *p, const struct serve_worker *w)
{
	int lane = !w->fast && p->jobs[SERVE_FILL] ? SERVE_FILL : SERVE_FAST;
	struct serve_job *j = p->jobs[lane];
	if (j) {
		p->jobs[lane] = j->next;
		if (!p->jobs[lane])
			p->jobs_tail[lane] = &p->jobs[lane];
	}
	return j;
}

/* A serve worker: answers queued GETs until stop; at stop, drops what is left. */
static void *worker_main(void *arg)
{
	struct serve_worker *w = arg;
	struct peers *p = w->p;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct serve_job *j = do_take_job(p, w);
		if (!j && p->workers_stop)
			break;
		if (!j) {
			pthread_cond_wait(&p->job_cond, &p->lock);
			continue;
		}
		bool drop = p->workers_stop;
		pthread_mutex_unlock(&p->lock);
		if (drop) {
			pthread_mutex_lock(&j->sc->lock);
			j->sc->closed = true;
			pthread_mutex_unlock(&j->sc->lock);
		}
		run_job(p, j);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/*
 * A GET WAIT for a chunk not pinned: SERVE_FAST when it can be answered now (j->pinned: the
 * chunk is here; j->relay: our fill of it is receiving it; neither: ENOENT), SERVE_PARK when
 * our fill of it runs but has nothing yet (the fill hook wakes it). Touches memory only.
 */
static int wait_state(struct peers *p, struct serve_job *j)
{
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	if (!j->f || j->g.chunk_size != cache_chunk_size(p->cache))
		return SERVE_FAST;
	if (cache_serve_chunk(p->cache, j->f, j->g.chunk, false, &dl, &j->span, &j->crc) == 0) {
		j->pinned = true;
		return SERVE_FAST;
	}
	int rc = p->corrupt_sends ? (cache_chunk_filling(p->cache, j->f, j->g.chunk) ? -EAGAIN :
				     -ENOENT)
		 : cache_relay_pin(p->cache, j->f, j->g.chunk, &j->span, &j->relay);
	if (rc)
		j->relay = NULL;
	return rc == -EAGAIN ? SERVE_PARK : SERVE_FAST;
}

/*
 * The swarm, as owner (net/swarm.h): whether to answer this GET FILL with a REDIRECT, and
 * to whom (j->redirect). Only a SWARM peer that did not say NOREDIRECT is redirected, and
 * only to a member that is up.
 */
static bool swarm_redirect(struct peers *p, struct serve_job *j)
{
	struct sconn *sc = j->sc;
	uint32_t parent = 0;
	if (!(j->g.flags & PROTO_GET_FILL) || (j->g.flags & PROTO_GET_NOREDIRECT) ||
	    !(sc->caps & PROTO_CAP_SWARM) || !sc->m || !p->swarm || !p->cfg->swarm_fanout)
		return false;
	j->admitted = true; /* swarm_done() when its answer was sent */
	bool busy = atomic_load(&p->sending) >= SWARM_BUSY_SENDS;
	if (!swarm_admit(p->swarm, j->g.file_key, j->g.chunk, sc->m->uid, p->cfg->swarm_fanout,
			 busy, &parent))
		return false;
	pthread_mutex_lock(&p->lock);
	struct member *h = members_find_uid(&p->members, parent);
	if (h && h->up && !h->self && h->node_id[0])
		memcpy(j->redirect, h->node_id, sizeof(j->redirect));
	pthread_mutex_unlock(&p->lock);
	return j->redirect[0] != 0;
}

/* Lock held. Puts @j on lane @lane's queue. */
static void do_queue_job(struct peers *p, struct serve_job *j, int lane)
{
	j->next = NULL;
	*p->jobs_tail[lane] = j;
	p->jobs_tail[lane] = &j->next;
	pthread_cond_broadcast(&p->job_cond);
}

/* Lock held. Takes parked jobs that @match (NULL: all) onto the fast lane. */
static void do_unpark(struct peers *p, bool (*match)(const struct serve_job *, const void *),
		      const void *arg)
{
	for (struct serve_job **pp = &p->parked; *pp;) {
		struct serve_job *j = *pp;
		if (match && !match(j, arg)) {
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		p->nparked--;
		do_queue_job(p, j, SERVE_FAST);
	}
}

struct chunk_id {
	uint64_t key, chunk;
};

static bool same_chunk(const struct serve_job *j, const void *arg)
{
	const struct chunk_id *c = arg;
	return j->g.file_key == c->key && j->g.chunk == c->chunk;
}

static bool overdue(const struct serve_job *j, const void *arg)
{
	return j->park_until_ns <= *(const uint64_t *)arg;
}

static bool is_job(const struct serve_job *j, const void *arg)
{
	return j == arg;
}

/* Cache fill hook: a fill ended here; the GET WAITs parked on it are answered now. */
static void serve_fill_hook(void *ctx, uint64_t file_key, uint64_t chunk)
{
	struct peers *p = ctx;
	struct chunk_id c = { file_key, chunk };
	pthread_mutex_lock(&p->lock);
	if (p->nparked)
		do_unpark(p, same_chunk, &c);
	pthread_mutex_unlock(&p->lock);
}

void serve_sweep(struct peers *p)
{
	uint64_t now = mono_ns();
	pthread_mutex_lock(&p->lock);
	if (p->nparked)
		do_unpark(p, overdue, &now);
	pthread_mutex_unlock(&p->lock);
}

/*
 * Parks a GET WAIT until the fill of its chunk here ends (or fill_timeout), so that no worker
 * waits. The fill may have ended between classify_get() and now: look again once parked.
 */
static void park_job(struct peers *p, struct serve_job *j, bool holder)
{
	/* Once parked, @j may be woken, answered and freed by a worker at any moment: look
	 * again through what is ours (a reference to its file), never through @j. */
	struct cache_file *f = j->f;
	uint64_t chunk = j->g.chunk;
	cache_file_get(p->cache, f);
	if (!j->park_until_ns) /* parked again (SERVE_REPARK): the first deadline holds */
		j->park_until_ns = mono_ns() + (uint64_t)p->cfg->fill_timeout_ms * 1000000;
	pthread_mutex_lock(&p->lock);
	if (p->workers_stop) {
		/* serve_stop() took every parked job off already: the calling worker drops it */
		do_queue_job(p, j, SERVE_FAST);
		pthread_mutex_unlock(&p->lock);
		cache_file_put(p->cache, f);
		return;
	}
	j->next = p->parked;
	p->parked = j;
	p->nparked++;
	p->sw.holder_parked += holder;
	pthread_mutex_unlock(&p->lock);
	struct cache_span span;
	struct cache_relay *relay;
	int rc = cache_relay_pin(p->cache, f, chunk, &span, &relay);
	cache_file_put(p->cache, f);
	if (rc == 0)
		cache_read_done(p->cache, &span, 1);
	if (rc == -EAGAIN)
		return; /* the fill hook wakes it: announced, or ended */
	pthread_mutex_lock(&p->lock);
	do_unpark(p, is_job, j); /* a no-op when a worker took it meanwhile */
	pthread_mutex_unlock(&p->lock);
}

static uint64_t deadline_ns(const struct deadline *dl)
{
	return (uint64_t)dl->at.tv_sec * 1000000000u + (uint64_t)dl->at.tv_nsec;
}

/*
 * Parks a relay that waits for its source (relay_pieces() said -EINPROGRESS) until the source
 * reports progress (cache_relay_progress() calls the fill hook while relay->watchers > 0),
 * its fill ends (the fill hook) or it stalls past relay_dl (serve_sweep()). False when the
 * workers stop: then the relay ends here. Progress may have come between relay_pieces()
 * looking and the parking: look again, through copies, as park_job() does.
 */
static bool park_relay(struct peers *p, struct serve_job *j)
{
	/* Copies: once parked, @j may be run and freed by a worker at any moment. Slots (and
	 * their relay) live as long as the cache, so a look at a slot reused meanwhile only
	 * wakes a job early, or none. */
	struct cache_relay *r = j->relay;
	struct cache_span span = j->span;
	uint32_t sent = j->relay_sent, attempt = j->relay_attempt, crc = 0;
	j->park_until_ns = deadline_ns(&j->relay_dl);
	pthread_mutex_lock(&p->lock);
	bool stop = p->workers_stop;
	if (!stop) {
		j->watching = true;
		atomic_fetch_add(&r->watchers, 1);
		j->next = p->parked;
		p->parked = j;
		p->nparked++;
	}
	pthread_mutex_unlock(&p->lock);
	if (stop)
		return false;
	if (atomic_load(&r->arrived) <= sent && atomic_load(&r->attempt) == attempt &&
	    cache_relay_done(p->cache, &span, &crc) == 0)
		return true;
	pthread_mutex_lock(&p->lock);
	do_unpark(p, is_job, j); /* a no-op when a worker took it meanwhile */
	pthread_mutex_unlock(&p->lock);
	return true;
}

/*
 * Sorts a decoded GET into its lane, on the reader that holds the connection, touching memory
 * only: a cached chunk is pinned now (cache_serve_chunk without fill never waits), so it
 * goes out by a fast worker whatever the fill workers are doing; a GET without fill is
 * answered at once as well (ENOENT for a file not open here: we hold none of it); only an
 * owner fill of a chunk we do not hold goes to the fill lane.
 */
static int classify_get(struct peers *p, struct serve_job *j)
{
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	if (j->g.chunk_size != cache_chunk_size(p->cache))
		return SERVE_FAST;
	j->f = file_cached(p, &j->g);
	if (j->f && cache_serve_chunk(p->cache, j->f, j->g.chunk, false, &dl, &j->span,
				      &j->crc) == 0)
		j->pinned = true;
	if (j->g.flags & PROTO_GET_WAIT)
		return j->pinned ? SERVE_FAST : wait_state(p, j);
	if (swarm_redirect(p, j)) {
		if (j->pinned)
			cache_read_done(p->cache, &j->span, 1);
		j->pinned = false;
		return SERVE_FAST;
	}
	/* We own it and our fill of it is receiving it: relayed by a fast worker at once. */
	if (!j->pinned && j->f && (j->g.flags & PROTO_GET_FILL) && !p->corrupt_sends &&
	    cache_relay_pin(p->cache, j->f, j->g.chunk, &j->span, &j->relay))
		j->relay = NULL;
	return j->pinned || j->relay || !(j->g.flags & PROTO_GET_FILL) ? SERVE_FAST : SERVE_FILL;
}

/*
 * Queues a GET, or an RDMA descriptor message (RDMA_DESC with a payload), for the workers,
 * or a META_GET REFRESH, once the connection has fewer than SERVE_CONN_INFLIGHT. Descriptor
 * messages go to the fill lane (a DESC_REQ may fill as owner), and so does a REFRESH (it may
 * wait for a listing of the backing).
 */
static int queue_get(struct peers *p, struct sconn *sc, uint8_t type, uint32_t id,
		     const uint8_t *payload, uint32_t len)
{
	struct serve_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	int rc = 0;
	if (type == PROTO_GET)
		rc = proto_get_decode(payload, len, &j->g);
	else if (type == PROTO_META_GET && len <= sizeof(j->meta))
		memcpy(j->meta, payload, j->meta_len = len);
	else if (type == PROTO_RDMA_DESC && len <= sizeof(j->rdma))
		memcpy(j->rdma, payload, j->rdma_len = len);
	else
		rc = -EPROTO;
	struct deadline dl = deadline_in_ms(2ull * p->cfg->request_timeout_ms);
	pthread_mutex_lock(&sc->lock);
	while (rc == 0 && sc->inflight >= SERVE_CONN_INFLIGHT)
		rc = deadline_cond_wait(&sc->cond, &sc->lock, &dl);
	if (rc == 0)
		sc->inflight++;
	pthread_mutex_unlock(&sc->lock);
	if (rc) {
		free(j);
		return rc;
	}
	j->sc = sc;
	j->req_id = id;
	atomic_fetch_add(&sc->refs, 1);
	int lane = j->rdma_len || j->meta_len ? SERVE_FILL : classify_get(p, j);
	if (lane == SERVE_PARK) {
		park_job(p, j, true);
		return 0;
	}
	pthread_mutex_lock(&p->lock);
	do_queue_job(p, j, lane);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* Answers RDMA_DESC: a fresh one-use ticket for an RDMA connect, or port 0 without RDMA. */
static int send_ticket(struct peers *p, struct sconn *sc, uint32_t id, const struct deadline *dl)
{
	struct proto_rdma_ticket t = { 0 };
	uint8_t buf[PROTO_RDMA_TICKET_LEN];
	uint64_t now = mono_ns();
	if (p->rdma && auth_nonce(t.ticket) == 0) {
		pthread_mutex_lock(&p->lock);
		for (unsigned i = 0; i < SERVE_MAX_TICKETS; i++)
			if (p->tickets[i].expires_ns <= now) {
				memcpy(p->tickets[i].bytes, t.ticket, RDMA_TICKET_LEN);
				p->tickets[i].expires_ns = now + (uint64_t)TICKET_MS * 1000000;
				t.port = p->listen_port;
				break;
			}
		pthread_mutex_unlock(&p->lock);
	}
	if (!t.port)
		memset(t.ticket, 0, sizeof(t.ticket));
	proto_rdma_ticket_encode(buf, &t);
	return sconn_send_frame(sc, PROTO_RDMA_DESC, id, buf, sizeof(buf), dl);
}

/* Answers PREFETCH on the reader: starting or polling a job takes no fill. */
static int answer_prefetch(struct peers *p, struct sconn *sc, uint32_t id, const uint8_t *payload,
			   uint32_t len, const struct deadline *dl)
{
	struct proto_prefetch rq;
	struct proto_prefetch_status st;
	uint8_t buf[PROTO_PREFETCH_STATUS_LEN];
	int rc = proto_prefetch_decode(payload, len, &rq);
	if (rc)
		return rc;
	pf_request(p, &rq, &st);
	proto_prefetch_status_encode(buf, &st);
	return sconn_send_frame(sc, PROTO_PREFETCH_STATUS, id, buf, sizeof(buf), dl);
}

/* Answers META_GET (net/meta_share.h): memory on the reader, or a REFRESH's wait on a
 * worker. */
static int answer_meta(struct peers *p, struct sconn *sc, uint32_t id, const uint8_t *payload,
		       uint32_t len)
{
	uint8_t *ans;
	uint32_t anslen;
	int rc = meta_share_answer(p->meta, payload, len, &ans, &anslen);
	if (rc == 0) { /* the send's own deadline: a REFRESH may have waited for a listing */
		struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
		rc = sconn_send_frame(sc, PROTO_META, id, ans, anslen, &dl);
		free(ans);
	}
	return rc;
}

/* ---- RDMA host callbacks (called on the RDMA transport's threads) ---- */

bool serve_rdma_ticket_ok(void *ctx, const uint8_t ticket[RDMA_TICKET_LEN])
{
	struct peers *p = ctx;
	uint64_t now = mono_ns();
	bool ok = false;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < SERVE_MAX_TICKETS && !ok; i++)
		if (p->tickets[i].expires_ns > now &&
		    CRYPTO_memcmp(p->tickets[i].bytes, ticket, RDMA_TICKET_LEN) == 0) {
			p->tickets[i].expires_ns = 0; /* one use */
			ok = true;
		}
	pthread_mutex_unlock(&p->lock);
	return ok;
}

int serve_rdma_pin(void *ctx, const struct proto_get *g, struct cache_span *span, uint32_t *crc)
{
	struct peers *p = ctx;
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	if (g->chunk_size != cache_chunk_size(p->cache))
		return -EINVAL;
	struct cache_file *f = file_for(p, g);
	if (!f)
		return -ENOENT;
	int rc = cache_serve_chunk(p->cache, f, g->chunk, g->flags & PROTO_GET_FILL, &dl, span,
				   crc);
	cache_file_put(p->cache, f);
	return rc == -ENOENT ? rc : rc ? -EIO : 0;
}

void serve_rdma_unpin(void *ctx, struct cache_span *span)
{
	struct peers *p = ctx;
	cache_read_done(p->cache, span, 1);
}

/* ---- a connection ---- */

static bool meta_get_refresh(const uint8_t *payload, uint32_t len)
{
	struct proto_meta_get rq;
	return proto_meta_get_decode(payload, len, &rq) == 0 && (rq.flags & PROTO_META_REFRESH);
}

/* Reads one request and answers it here (PING, RDMA tickets, PREFETCH, META_GET) or queues
 * it for the workers (GET, RDMA descriptor messages). */
int serve_frame(struct peers *p, struct sconn *sc)
{
	uint8_t buf[PROTO_PING_MAX_LEN]; /* the largest request read here (>= RDMA, PREFETCH) */
	_Static_assert(PROTO_PING_MAX_LEN >= PROTO_RDMA_MSG_MAX &&
		       PROTO_PING_MAX_LEN >= PROTO_PREFETCH_LEN, "serve_frame's buffer");
	struct proto_hdr hdr;
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	int rc = link_recv_frame(sc->link, &hdr, buf, sizeof(buf), &dl);
	if (rc)
		return rc;
	switch (hdr.type) {
	case PROTO_PING: {
		uint8_t pong[PROTO_PING_MAX_LEN];
		ssize_t n = peers_pong(p, sc->node_id, sc->caps, buf, hdr.len, pong);
		if (n < 0)
			return (int)n;
		return sconn_send_frame(sc, PROTO_PONG, hdr.req_id, pong, (uint32_t)n, &dl);
	}
	case PROTO_GET:
		return queue_get(p, sc, hdr.type, hdr.req_id, buf, hdr.len);
	case PROTO_RDMA_DESC:
		if (hdr.len == 0)
			return send_ticket(p, sc, hdr.req_id, &dl);
		return queue_get(p, sc, hdr.type, hdr.req_id, buf, hdr.len);
	case PROTO_PREFETCH:
		return answer_prefetch(p, sc, hdr.req_id, buf, hdr.len, &dl);
	case PROTO_META_GET: /* a REFRESH may wait for a listing: on a worker, not the reader */
		if (meta_get_refresh(buf, hdr.len))
			return queue_get(p, sc, hdr.type, hdr.req_id, buf, hdr.len);
		return answer_meta(p, sc, hdr.req_id, buf, hdr.len);
	case PROTO_PING_REQ: {
		uint8_t ack[PROTO_PING_REQ_ACK_LEN];
		ssize_t n = peers_ping_req_answer(p, buf, hdr.len, ack);
		if (n < 0)
			return (int)n;
		return sconn_send_frame(sc, PROTO_PING_REQ_ACK, hdr.req_id, ack, (uint32_t)n, &dl);
	}
	case PROTO_LEAVE:
		peers_member_left(p, sc->node_id);
		return 1;
	default:
		return -EPROTO;
	}
}

static struct sconn *sconn_new(struct peers *p, struct link *l, struct member *m,
			       const struct proto_hello *them)
{
	struct sconn *sc = calloc(1, sizeof(*sc));
	if (!sc || deadline_cond_init(&sc->cond)) {
		free(sc);
		return NULL;
	}
	if (link_sender_init(&sc->tx, l)) {
		pthread_cond_destroy(&sc->cond);
		free(sc);
		return NULL;
	}
	sc->p = p;
	sc->link = l;
	sc->m = m;
	sc->caps = them->caps;
	snprintf(sc->node_id, sizeof(sc->node_id), "%s", them->node_id);
	atomic_init(&sc->refs, 1);
	pthread_mutex_init(&sc->lock, NULL);
	return sc;
}

void sconn_end(struct sconn *sc)
{
	struct peers *p = sc->p;
	pthread_mutex_lock(&sc->lock);
	sc->closed = true;
	pthread_mutex_unlock(&sc->lock);
	pthread_mutex_lock(&p->lock);
	p->nauth--;
	pthread_mutex_unlock(&p->lock);
	sconn_put(sc);
}

void serve_conn(struct peers *p, struct link *l, struct member *m,
		const struct proto_hello *them)
{
	struct sconn *sc = sconn_new(p, l, m, them);
	if (!sc) {
		link_free(l);
		pthread_mutex_lock(&p->lock);
		member_put(m);
		p->nauth--;
		pthread_mutex_unlock(&p->lock);
		return;
	}
	int rc = serve_io_add(p, sc);
	if (rc) {
		if (rc != -ESHUTDOWN)
			log_warn("peer %s: cannot serve its connection: %s", sc->node_id,
				 strerror(-rc));
		sconn_end(sc);
	}
}

static void stop_workers(struct peers *p)
{
	pthread_mutex_lock(&p->lock);
	p->workers_stop = true;
	pthread_cond_broadcast(&p->job_cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nworkers; i++)
		pthread_join(p->workers[i].thread, NULL);
	free(p->workers);
	p->workers = NULL;
	p->nworkers = 0;
}

int serve_start(struct peers *p)
{
	unsigned fill = p->cfg->fill_threads > 4 ? p->cfg->fill_threads : 4;
	unsigned want = fill + SERVE_FAST_WORKERS;
	for (int lane = SERVE_FAST; lane <= SERVE_FILL; lane++)
		p->jobs_tail[lane] = &p->jobs[lane];
	if (deadline_cond_init(&p->job_cond))
		return -ENOMEM;
	p->swarm = swarm_new();
	if (!p->swarm)
		return -ENOMEM;
	p->workers = calloc(want, sizeof(*p->workers));
	if (!p->workers)
		return -ENOMEM;
	int rc = 0;
	for (; p->nworkers < want && rc == 0; p->nworkers += rc == 0) {
		struct serve_worker *w = &p->workers[p->nworkers];
		*w = (struct serve_worker){ .p = p, .fast = p->nworkers < SERVE_FAST_WORKERS };
		rc = -pthread_create(&w->thread, NULL, worker_main, w);
	}
	if (rc == 0)
		rc = serve_io_start(p);
	if (rc == 0 && (rc = serve_accept_start(p)))
		serve_io_stop(p);
	if (rc) {
		stop_workers(p);
		swarm_free(p->swarm);
		p->swarm = NULL;
		return rc;
	}
	cache_set_fill_hook(p->cache, serve_fill_hook, p);
	return 0;
}

void serve_stop(struct peers *p)
{
	serve_accept_stop(p); /* the listener, then every handshake thread */
	serve_io_stop(p); /* the authenticated links, each bounded by request_timeout */
	cache_set_fill_hook(p->cache, NULL, NULL); /* waits for hook calls still running */
	pthread_mutex_lock(&p->lock);
	do_unpark(p, NULL, NULL); /* dropped with the queue below */
	pthread_mutex_unlock(&p->lock);
	stop_workers(p); /* each job ends by request_timeout; those still queued are dropped */
	swarm_free(p->swarm);
	p->swarm = NULL;
}
