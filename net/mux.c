#include "net/mux.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "net/link.h"
#include "net/proto.h"

#define RELAY_PIECE (256u * 1024) /* progress is reported every this many bytes */
/* Askers that left before their answer ended, remembered so that its later DATA_PIECEs are
 * read away; past this many, the oldest is forgotten (a piece for it then breaks the mux). */
#define MUX_GONE_MAX 256

/* Where an answer sent in DATA_PIECEs (net/proto.h) has got to. */
struct mux_pieces {
	bool started;             /* its first piece came: length and crc are set */
	uint32_t got;             /* bytes received so far, in order */
	uint32_t length, crc;
};

/* An asker that left before its answer ended: the rest of that answer is read away. */
struct mux_gone {
	uint32_t id;
	struct mux_pieces pc;
	struct mux_gone *next;
};

struct mux_req {
	uint32_t id;
	uint8_t type;             /* the answer's frame type: PROTO_DATA or PROTO_RDMA_DESC */
	void *dst;                /* DATA: the slot; RDMA_DESC: the answer buffer */
	size_t len;               /* DATA: the chunk's length; RDMA_DESC: dst's capacity */
	size_t anslen;            /* RDMA_DESC: the answer's length */
	char *holder;             /* DATA: where a REDIRECT's node id goes (NULL: none taken) */
	struct cache_relay *relay; /* DATA: progress for relayers, or NULL */
	bool done;                /* answered: rc and crc are set */
	bool filling;             /* a reader is writing into dst */
	struct mux_pieces pc;     /* DATA: an answer in pieces, so far */
	uint64_t progress_ns;     /* DATA: when its last piece landed (0: none yet) */
	int rc;
	uint32_t crc;
	struct mux_req *next;
};

struct mux {
	struct link *link;
	uint32_t max_payload, frame_ms;
	mux_orphan_fn orphan;     /* set before the mux is shared */
	bool no_pieces;           /* set before the mux is shared */
	atomic_int refs;
	atomic_int err;           /* 0, or why the mux is broken */
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* a turn was handed on, or a request answered */
	bool sending, receiving;  /* protected by lock */
	uint32_t next_id;         /* protected by lock */
	struct mux_req *reqs;     /* protected by lock */
	struct mux_gone *gone;    /* newest first, protected by lock */
	unsigned ngone;           /* protected by lock */
};

struct mux *mux_new(struct link *l, uint32_t max_payload, uint32_t frame_ms)
{
	struct mux *x = calloc(1, sizeof(*x));
	if (!x || deadline_cond_init(&x->cond)) {
		free(x);
		link_free(l);
		errno = ENOMEM;
		return NULL;
	}
	x->link = l;
	x->max_payload = max_payload;
	x->frame_ms = frame_ms;
	atomic_init(&x->refs, 1);
	pthread_mutex_init(&x->lock, NULL);
	return x;
}

void mux_set_orphan(struct mux *x, mux_orphan_fn fn)
{
	x->orphan = fn;
}

void mux_set_pieces(struct mux *x, bool take)
{
	x->no_pieces = !take;
}

bool mux_broken(struct mux *x)
{
	return atomic_load(&x->err) != 0;
}

void mux_get(struct mux *x)
{
	atomic_fetch_add(&x->refs, 1);
}

void mux_put(struct mux *x)
{
	if (!x || atomic_fetch_sub(&x->refs, 1) != 1)
		return;
	link_free(x->link);
	while (x->gone) {
		struct mux_gone *g = x->gone;
		x->gone = g->next;
		free(g);
	}
	pthread_mutex_destroy(&x->lock);
	pthread_cond_destroy(&x->cond);
	free(x);
}

/* Lock held. The stream is unusable from now on: wake everyone. */
static void do_break(struct mux *x, int err)
{
	int zero = 0;
	if (atomic_compare_exchange_strong(&x->err, &zero, err ? err : -EPIPE))
		link_shutdown(x->link); /* a syscall that never blocks */
	pthread_cond_broadcast(&x->cond);
}

void mux_shutdown(struct mux *x)
{
	pthread_mutex_lock(&x->lock);
	do_break(x, -ECONNABORTED);
	pthread_mutex_unlock(&x->lock);
}

static struct mux_req *do_find(struct mux *x, uint32_t id)
{
	for (struct mux_req *r = x->reqs; r; r = r->next)
		if (r->id == id)
			return r;
	return NULL;
}

static void do_unlink(struct mux *x, struct mux_req *r)
{
	for (struct mux_req **pp = &x->reqs; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			return;
		}
}

static struct mux_gone **do_find_gone(struct mux *x, uint32_t id)
{
	for (struct mux_gone **pp = &x->gone; *pp; pp = &(*pp)->next)
		if ((*pp)->id == id)
			return pp;
	return NULL;
}

/* Lock held. Forgets the gone asker of request @id, if it is remembered. */
static void do_forget_gone(struct mux *x, uint32_t id)
{
	struct mux_gone **pp = do_find_gone(x, id);
	if (pp) {
		struct mux_gone *g = *pp;
		*pp = g->next;
		x->ngone--;
		free(g);
	}
}

/* Lock held. @r leaves unanswered: remember it, so that the rest of its answer, which may
 * come in pieces, is read away. Past MUX_GONE_MAX the oldest is forgotten. */
static void do_remember_gone(struct mux *x, const struct mux_req *r)
{
	struct mux_gone *g = malloc(sizeof(*g));
	if (!g)
		return; /* a piece of its answer will break the mux: nothing wrong is taken */
	*g = (struct mux_gone){ .id = r->id, .pc = r->pc, .next = x->gone };
	x->gone = g;
	if (++x->ngone > MUX_GONE_MAX) {
		struct mux_gone **pp = &x->gone;
		while ((*pp)->next)
			pp = &(*pp)->next;
		free(*pp);
		*pp = NULL;
		x->ngone--;
	}
}

static int send_frame(struct mux *x, uint8_t type, const void *payload, uint32_t len,
		      uint32_t id, const struct deadline *dl)
{
	uint8_t hdr[PROTO_HDR_LEN];
	proto_hdr_encode(hdr, type, 0, len, id);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, len } };
	return link_sendv(x->link, iov, len ? 2 : 1, dl);
}

/* Lock held. Takes the sender's turn (by @dl), sends one frame, hands the turn on. */
static int do_send_turn(struct mux *x, uint8_t type, const void *payload, uint32_t len,
			uint32_t id, const struct deadline *dl)
{
	while (x->sending && !mux_broken(x))
		if (deadline_cond_wait(&x->cond, &x->lock, dl) == -ETIMEDOUT)
			return -ETIMEDOUT;
	if (mux_broken(x))
		return atomic_load(&x->err);
	x->sending = true;
	pthread_mutex_unlock(&x->lock);
	int rc = send_frame(x, type, payload, len, id, dl);
	pthread_mutex_lock(&x->lock);
	x->sending = false;
	pthread_cond_broadcast(&x->cond);
	if (rc)
		do_break(x, rc); /* part of a frame may have gone out */
	return rc;
}

/* Reads @len bytes away (an answer nobody waits for any more). */
static int drain(struct mux *x, uint32_t len, const struct deadline *dl)
{
	char buf[16384];
	while (len) {
		uint32_t n = len < sizeof(buf) ? len : (uint32_t)sizeof(buf);
		int rc = link_recv(x->link, buf, n, dl);
		if (rc)
			return rc;
		len -= n;
	}
	return 0;
}

/* Lock held. Answers request @r (may be NULL) with @rc. */
static void do_answer(struct mux *x, struct mux_req *r, int rc, uint32_t crc)
{
	if (r) {
		r->done = true;
		r->rc = rc;
		r->crc = crc;
	}
	pthread_cond_broadcast(&x->cond);
}

/* A small RDMA_DESC answer (whole frame in hand): copied to its asker. */
static int read_small(struct mux *x, const struct proto_hdr *hdr, const struct deadline *fdl)
{
	uint8_t buf[PROTO_RDMA_MSG_MAX];
	if (hdr->len > sizeof(buf))
		return -EPROTO;
	int rc = link_recv(x->link, buf, hdr->len, fdl);
	if (rc)
		return -EPROTO;
	pthread_mutex_lock(&x->lock);
	struct mux_req *r = do_find(x, hdr->req_id);
	if (r && r->type == PROTO_RDMA_DESC && hdr->len <= r->len) {
		memcpy(r->dst, buf, hdr->len);
		r->anslen = hdr->len;
		do_answer(x, r, 0, 0);
	} else if (r) {
		do_answer(x, r, -EPROTO, 0);
	}
	pthread_mutex_unlock(&x->lock);
	if (!r && x->orphan)
		x->orphan(x, buf, hdr->len); /* its asker left: undo what it got */
	return 0;
}

/* Receives the bytes [@from, @to) of an answer into @dst + @from, telling relayers how far
 * it got every RELAY_PIECE bytes. */
static int recv_relayed(struct mux *x, uint8_t *dst, uint32_t from, uint32_t to,
			struct cache_relay *relay, const struct deadline *fdl)
{
	int rc = 0;
	for (uint32_t got = from; got < to && rc == 0;) {
		uint32_t n = to - got < RELAY_PIECE ? to - got : RELAY_PIECE;
		rc = link_recv(x->link, dst + got, n, fdl);
		got += rc == 0 ? n : 0;
		cache_relay_progress(relay, got);
	}
	return rc;
}

/* Receives bytes [@from, @to) of an answer into its slot @dst (with @relay, or NULL). */
static int recv_into(struct mux *x, uint8_t *dst, uint32_t from, uint32_t to,
		     struct cache_relay *relay, const struct deadline *fdl)
{
	if (relay)
		return recv_relayed(x, dst, from, to, relay, fdl);
	return link_recv(x->link, dst + from, to - from, fdl);
}

/* A REDIRECT answer to a GET: the holder's id goes to its asker, which gets -EXDEV. */
static int read_redirect(struct mux *x, const struct proto_hdr *hdr, const struct deadline *fdl)
{
	uint8_t buf[PROTO_REDIRECT_MAX_LEN];
	struct proto_redirect rd;
	if (hdr->len > sizeof(buf) || link_recv(x->link, buf, hdr->len, fdl) ||
	    proto_redirect_decode(buf, hdr->len, &rd))
		return -EPROTO;
	pthread_mutex_lock(&x->lock);
	struct mux_req *r = do_find(x, hdr->req_id);
	if (!r)
		do_forget_gone(x, hdr->req_id);
	if (r && r->type == PROTO_DATA && r->holder) {
		memcpy(r->holder, rd.node_id, sizeof(rd.node_id));
		do_answer(x, r, -EXDEV, 0);
	} else if (r) {
		do_answer(x, r, -EPROTO, 0); /* a REDIRECT we could not have asked for */
	}
	pthread_mutex_unlock(&x->lock);
	return 0;
}

/* Lock held. Whether piece @c may come next in the answer that @pc tracks (request @r, or
 * NULL for a gone asker); if so, a first piece sets what the rest must repeat. */
static bool do_piece_ok(const struct mux_req *r, struct mux_pieces *pc,
			const struct proto_piece *c)
{
	if (r && (r->type != PROTO_DATA || r->done || c->length != r->len))
		return false;
	if (c->offset != pc->got || (pc->started && c->length != pc->length) ||
	    (pc->started && c->status == 0 && c->crc32 != pc->crc))
		return false;
	if (!pc->started && c->status == 0)
		*pc = (struct mux_pieces){ .started = true, .length = c->length, .crc = c->crc32 };
	return true;
}

/* Lock held. Piece @c of request @id's answer has arrived (@rc: its bytes did not): the
 * answer ends when it was the last, or a failure. */
static void do_piece_landed(struct mux *x, struct mux_req *r, uint32_t id,
			    const struct proto_piece *c, int rc)
{
	struct mux_gone **gp = r ? NULL : do_find_gone(x, id);
	struct mux_pieces *pc = r ? &r->pc : gp ? &(*gp)->pc : NULL;
	if (rc == 0 && pc)
		pc->got += c->n;
	if (rc == 0 && r && c->n)
		r->progress_ns = mono_ns();
	bool end = rc || c->status || (pc && pc->got == c->length);
	if (r && end)
		do_answer(x, r, rc ? -EIO : c->status == ENOENT ? -ENOENT : c->status ? -EIO : 0,
			  c->crc32);
	else if (gp && end)
		do_forget_gone(x, id);
	pthread_cond_broadcast(&x->cond);
}

/*
 * A DATA_PIECE: its bytes go straight into its asker's slot at their offset (or are read
 * away when the asker left). A piece nobody asked for, or out of order, loses the stream.
 */
static int read_piece(struct mux *x, const struct proto_hdr *hdr, const struct deadline *fdl)
{
	uint8_t fixed[PROTO_PIECE_FIXED_LEN];
	struct proto_piece c;
	if (hdr->len < sizeof(fixed) || link_recv(x->link, fixed, sizeof(fixed), fdl) ||
	    proto_piece_decode_fixed(fixed, hdr->len, &c))
		return -EPROTO;
	pthread_mutex_lock(&x->lock);
	struct mux_req *r = do_find(x, hdr->req_id);
	struct mux_gone **gp = r ? NULL : do_find_gone(x, hdr->req_id);
	bool ok = (r || gp) && do_piece_ok(r, r ? &r->pc : &(*gp)->pc, &c);
	uint8_t *dst = NULL;
	struct cache_relay *relay = NULL;
	if (ok && r && c.n) {
		r->filling = true;
		dst = r->dst;
		relay = r->relay;
	}
	pthread_mutex_unlock(&x->lock);
	if (!ok)
		return -EPROTO;
	if (relay && c.offset == 0 && c.n)
		cache_relay_announce(relay, c.crc32);
	int rc = !c.n ? 0 : dst ? recv_into(x, dst, c.offset, c.offset + c.n, relay, fdl)
		 : drain(x, c.n, fdl);
	pthread_mutex_lock(&x->lock);
	if (dst)
		r->filling = false;
	do_piece_landed(x, dst ? r : do_find(x, hdr->req_id), hdr->req_id, &c, rc);
	pthread_mutex_unlock(&x->lock);
	return rc ? -EPROTO : 0;
}

/* The reader's role, lock not held: one whole frame; DATA goes into the slot it answers. */
static int read_one(struct mux *x, const struct deadline *dl)
{
	int64_t left = deadline_left_ms(dl);
	int rc = link_wait_readable(x->link, -1, left > 0 ? (int)left : 0);
	if (rc <= 0)
		return rc == 0 ? -EPIPE : rc;
	struct deadline fdl = deadline_in_ms(x->frame_ms);
	uint8_t hbuf[PROTO_HDR_LEN], fixed[PROTO_DATA_FIXED_LEN];
	struct proto_hdr hdr;
	struct proto_data data;
	rc = link_recv(x->link, hbuf, sizeof(hbuf), &fdl);
	if (rc == 0) /* a DATA_PIECE of a whole chunk has 4 bytes more than its DATA */
		rc = proto_hdr_decode(hbuf, sizeof(hbuf), &hdr,
				      x->max_payload + PROTO_PIECE_FIXED_LEN - PROTO_DATA_FIXED_LEN);
	if (rc == 0 && hdr.type == PROTO_DATA_PIECE)
		return x->no_pieces ? -EPROTO : read_piece(x, &hdr, &fdl);
	if (rc == 0 && hdr.type == PROTO_RDMA_DESC)
		return read_small(x, &hdr, &fdl);
	if (rc == 0 && hdr.type == PROTO_REDIRECT)
		return read_redirect(x, &hdr, &fdl);
	if (rc == 0 && hdr.type != PROTO_DATA)
		rc = -EPROTO;
	if (rc == 0 && hdr.len > x->max_payload)
		rc = -EMSGSIZE;
	if (rc == 0)
		rc = link_recv(x->link, fixed, sizeof(fixed), &fdl);
	if (rc == 0)
		rc = proto_data_decode_fixed(fixed, hdr.len, &data);
	if (rc)
		return rc == -ETIMEDOUT ? -EPROTO : rc; /* mid-frame: the stream is lost */
	pthread_mutex_lock(&x->lock);
	struct mux_req *r = do_find(x, hdr.req_id);
	void *dst = NULL;
	struct cache_relay *relay = NULL;
	if (!r)
		do_forget_gone(x, hdr.req_id);
	if (r && r->pc.started) {
		do_answer(x, r, -EPROTO, 0); /* a whole DATA after pieces of the same answer */
	} else if (r && data.status) {
		do_answer(x, r, data.status == ENOENT ? -ENOENT : -EIO, 0);
	} else if (r && (data.length != r->len || r->type != PROTO_DATA)) {
		do_answer(x, r, -EPROTO, 0);
	} else if (r) {
		r->filling = true;
		dst = r->dst;
		relay = r->relay;
	}
	pthread_mutex_unlock(&x->lock);
	if (data.status)
		return 0;
	/* Straight into the asker's slot: no copy in between. */
	if (dst && relay && data.length)
		cache_relay_announce(relay, data.crc32);
	rc = dst ? recv_into(x, dst, 0, data.length, relay, &fdl) : drain(x, data.length, &fdl);
	if (dst) {
		pthread_mutex_lock(&x->lock);
		r->filling = false;
		do_answer(x, r, rc ? -EIO : 0, data.crc32);
		pthread_mutex_unlock(&x->lock);
	}
	return rc ? -EPROTO : 0;
}

/* Lock held. Waits for @r's answer, reading frames while nobody else does. */
static int do_wait_answer(struct mux *x, struct mux_req *r, const struct deadline *dl)
{
	while (!r->done) {
		if (mux_broken(x))
			return atomic_load(&x->err);
		if (!x->receiving) {
			x->receiving = true;
			pthread_mutex_unlock(&x->lock);
			int rc = read_one(x, dl);
			pthread_mutex_lock(&x->lock);
			x->receiving = false;
			pthread_cond_broadcast(&x->cond);
			if (rc && rc != -ETIMEDOUT)
				do_break(x, rc);
			if (rc == -ETIMEDOUT && !r->done)
				return rc;
			continue;
		}
		if (deadline_cond_wait(&x->cond, &x->lock, dl) == -ETIMEDOUT && !r->done)
			return -ETIMEDOUT;
	}
	return 0;
}

/*
 * Lock held. @r's wait timed out at *@d: while its answer keeps arriving in pieces, moves
 * *@d to frame_ms after the last piece, but never past @until. Whether it did.
 */
static bool do_extend(const struct mux *x, const struct mux_req *r, const struct deadline *until,
		      struct deadline *d)
{
	uint64_t now = mono_ns(), next = r->progress_ns + (uint64_t)x->frame_ms * 1000000;
	if (!r->progress_ns || next <= now || deadline_passed(until))
		return false;
	*d = deadline_in_ms((int64_t)((next - now + 999999) / 1000000));
	if (deadline_left_ms(until) < deadline_left_ms(d))
		*d = *until;
	return true;
}

/* Sends one request frame and waits for its answer, which read_one() files in @r, until @dl,
 * or while the answer keeps coming in pieces, until @until (mux_fetch_swarm()). */
static int request(struct mux *x, struct mux_req *r, const void *payload, uint32_t len,
		   uint8_t type, const struct deadline *dl, const struct deadline *until)
{
	pthread_mutex_lock(&x->lock);
	if (mux_broken(x)) {
		pthread_mutex_unlock(&x->lock);
		return atomic_load(&x->err);
	}
	r->id = ++x->next_id;
	r->next = x->reqs;
	x->reqs = r;
	int rc = do_send_turn(x, type, payload, len, r->id, dl);
	bool sent = rc == 0;
	struct deadline d = *dl;
	while (sent) {
		rc = do_wait_answer(x, r, &d);
		if (rc != -ETIMEDOUT || !do_extend(x, r, until, &d))
			break;
	}
	/* Never leave while a reader writes into our slot. */
	while (r->filling)
		pthread_cond_wait(&x->cond, &x->lock);
	do_unlink(x, r);
	if (sent && !r->done && r->type == PROTO_DATA && !mux_broken(x))
		do_remember_gone(x, r);
	if (r->done)
		rc = r->rc;
	pthread_mutex_unlock(&x->lock);
	return rc;
}

int mux_fetch(struct mux *x, const struct transport_chunk_req *req, void *dst, size_t len,
	      uint32_t *crc, const struct deadline *dl)
{
	return mux_fetch_swarm(x, req, dst, len, crc, NULL, NULL, dl, dl);
}

int mux_fetch_swarm(struct mux *x, const struct transport_chunk_req *req, void *dst,
		    size_t len, uint32_t *crc, char *holder, struct cache_relay *relay,
		    const struct deadline *dl, const struct deadline *until)
{
	struct mux_req r = { .type = PROTO_DATA, .dst = dst, .len = len, .holder = holder,
			     .relay = relay };
	uint8_t buf[PROTO_GET_LEN];
	struct proto_get get = transport_req_get(req);
	proto_get_encode(buf, &get);
	int rc = request(x, &r, buf, sizeof(buf), PROTO_GET, dl, until);
	if (r.done)
		*crc = r.crc;
	return rc;
}

int mux_call(struct mux *x, uint8_t type, const void *payload, uint32_t len, void *ans,
	     size_t cap, size_t *anslen, const struct deadline *dl)
{
	struct mux_req r = { .type = type, .dst = ans, .len = cap };
	if (type != PROTO_RDMA_DESC)
		return -EINVAL;
	int rc = request(x, &r, payload, len, type, dl, dl);
	*anslen = rc == 0 ? r.anslen : 0;
	return rc;
}

int mux_send(struct mux *x, uint8_t type, const void *payload, uint32_t len,
	     const struct deadline *dl)
{
	pthread_mutex_lock(&x->lock);
	int rc = mux_broken(x) ? atomic_load(&x->err) : do_send_turn(x, type, payload, len, 0, dl);
	pthread_mutex_unlock(&x->lock);
	return rc;
}
