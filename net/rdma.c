#include "net/rdma.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "common/log.h"

#define MSG_RECVS	8		/* receive buffers per connection */
#define MSG_SENDS	2		/* send slots: none used since descriptors left for TLS */
#define SLOT_MSGS	(MSG_RECVS + MSG_SENDS)
#define MAX_SLOTS	512		/* connections, in and out, a context can ever hold */
#define READ_WR_MAX	(1u << 20)	/* bytes per RDMA READ work request */
#define READ_DEPTH	8		/* READs in flight per fetch */
#define LEASES_MAX	1024
#define OWNER_LEASES_MAX 64		/* per link: at most peer_inflight in flight */
#define MEMO_SLOTS	512		/* SHA-256 digests of cached chunks kept */
#define LEASE_MIN_MS	10000
#define ESTABLISH_MS	10000		/* an accepted connection must be up by then */
#define TICK_MS		1000
#define STOP_EXTRA_MS	5000
#define REGION_BUCKETS	1024		/* hash buckets of the chunk regions (files mode) */
#define REGIONS_SPARE	64		/* device MRs left for the message buffers and slack */

/* wr_id: what completed (top byte) and a buffer index or a READ's length. */
#define WR_RECV		1ull
#define WR_SEND		2ull
#define WR_READ		3ull
#define WRID(kind, v)	((kind) << 56 | (uint64_t)(v))

#define COUNT(r, field, v) __atomic_fetch_add(&(r)->n.field, (v), __ATOMIC_RELAXED)

/* ---- wire layout (big-endian) ---- */

struct rdma_wire_hdr {
	uint8_t version;
	uint8_t type;
	uint16_t reserved;
	uint32_t req_id;
} __attribute__((packed));
_Static_assert(sizeof(struct rdma_wire_hdr) == RDMA_HDR_LEN, "header is 8 bytes");

struct rdma_wire_desc {
	int32_t status;
	uint32_t crc32;
	uint32_t length;
	uint32_t rkey;
	uint64_t addr;
	uint64_t lease;
} __attribute__((packed));
struct rdma_wire_digest {
	uint8_t kind;
	uint8_t len;
	uint16_t zero;
	uint8_t bytes[DIGEST_MAX];
} __attribute__((packed));
_Static_assert(RDMA_HDR_LEN + sizeof(struct rdma_wire_desc) + sizeof(struct rdma_wire_digest) ==
	       RDMA_DESC_LEN && RDMA_DESC_LEN <= RDMA_MSG_MAX, "DESC is 76 bytes");

struct rdma_wire_release {
	uint64_t lease;
} __attribute__((packed));
_Static_assert(RDMA_HDR_LEN + sizeof(struct rdma_wire_release) == RDMA_RELEASE_LEN,
	       "RELEASE is 16 bytes");
_Static_assert(RDMA_DESC_REQ_LEN == 52 && RDMA_DESC_REQ_LEN <= RDMA_MSG_MAX,
	       "DESC_REQ is 52 bytes");

struct rdma_wire_connect {
	uint32_t magic;
	uint8_t version;
	uint8_t zero[3];
	uint8_t ticket[RDMA_TICKET_LEN];
} __attribute__((packed));
/* rdma_cm leaves 56 bytes of a connect request's private data to the user on RoCE and IB. */
_Static_assert(sizeof(struct rdma_wire_connect) == RDMA_CONNECT_PRIV_LEN &&
	       RDMA_CONNECT_PRIV_LEN <= 56, "connect private data is 40 bytes");

struct rdma_wire_accept {
	uint32_t magic;
	uint8_t version;
	uint8_t reason;
	uint16_t zero;
} __attribute__((packed));
_Static_assert(sizeof(struct rdma_wire_accept) == RDMA_ACCEPT_PRIV_LEN, "accept is 8 bytes");

/* ---- messages ---- */

static bool kind_ok(uint8_t kind)
{
	return kind == DIGEST_SHA256 || kind == DIGEST_CRC32;
}

static bool desc_ok(const struct rdma_desc *d)
{
	static const uint8_t zero[DIGEST_MAX];
	if (d->status < 0 || d->status >= 4096)
		return false;
	if (d->status)
		return !d->crc32 && !d->length && !d->rkey && !d->addr && !d->lease &&
		       !d->digest.kind && !d->digest.len;
	if (!kind_ok(d->digest.kind) || d->digest.len != digest_len(d->digest.kind) ||
	    memcmp(d->digest.bytes + d->digest.len, zero, DIGEST_MAX - d->digest.len))
		return false;
	return d->length && d->lease && d->addr + d->length > d->addr;
}

static void desc_encode(uint8_t *p, const struct rdma_desc *d)
{
	struct rdma_wire_desc w = {
		.status = (int32_t)htobe32((uint32_t)d->status),
		.crc32 = htobe32(d->crc32), .length = htobe32(d->length),
		.rkey = htobe32(d->rkey), .addr = htobe64(d->addr),
		.lease = htobe64(d->lease),
	};
	struct rdma_wire_digest g = { .kind = d->digest.kind, .len = d->digest.len };
	memcpy(g.bytes, d->digest.bytes, d->digest.len <= DIGEST_MAX ? d->digest.len : 0);
	memcpy(p, &w, sizeof(w));
	memcpy(p + sizeof(w), &g, sizeof(g));
}

static int desc_decode(const uint8_t *p, struct rdma_desc *d)
{
	struct rdma_wire_desc w;
	struct rdma_wire_digest g;
	memcpy(&w, p, sizeof(w));
	memcpy(&g, p + sizeof(w), sizeof(g));
	*d = (struct rdma_desc){
		.status = (int32_t)be32toh((uint32_t)w.status),
		.crc32 = be32toh(w.crc32), .length = be32toh(w.length),
		.rkey = be32toh(w.rkey), .addr = be64toh(w.addr), .lease = be64toh(w.lease),
		.digest = { .kind = g.kind, .len = g.len },
	};
	if (g.zero || g.len > DIGEST_MAX)
		return -EPROTO;
	memcpy(d->digest.bytes, g.bytes, DIGEST_MAX);
	return desc_ok(d) ? 0 : -EPROTO;
}

ssize_t rdma_msg_encode(void *buf, size_t buflen, const struct rdma_msg *m)
{
	uint8_t tmp[RDMA_MSG_MAX];
	struct rdma_wire_hdr h = { .version = RDMA_PROTO_VERSION, .type = m->type,
				   .req_id = htobe32(m->req_id) };
	size_t len;
	struct proto_get check;

	switch (m->type) {
	case RDMA_MSG_DESC_REQ:
		len = RDMA_DESC_REQ_LEN;
		proto_get_encode(tmp + RDMA_HDR_LEN, &m->u.get);
		if (proto_get_decode(tmp + RDMA_HDR_LEN, PROTO_GET_LEN, &check) ||
		    !kind_ok(m->digest_kind))
			return -EINVAL;
		memset(tmp + RDMA_HDR_LEN + PROTO_GET_LEN, 0, 4);
		tmp[RDMA_HDR_LEN + PROTO_GET_LEN] = m->digest_kind;
		break;
	case RDMA_MSG_DESC:
		if (!desc_ok(&m->u.desc))
			return -EINVAL;
		len = RDMA_DESC_LEN;
		desc_encode(tmp + RDMA_HDR_LEN, &m->u.desc);
		break;
	case RDMA_MSG_RELEASE: {
		struct rdma_wire_release w = { .lease = htobe64(m->u.lease) };
		if (!m->u.lease || m->req_id)
			return -EINVAL;
		len = RDMA_RELEASE_LEN;
		memcpy(tmp + RDMA_HDR_LEN, &w, sizeof(w));
		break;
	}
	default:
		return -EINVAL;
	}
	if (buflen < len)
		return -ENOSPC;
	memcpy(tmp, &h, sizeof(h));
	memcpy(buf, tmp, len);
	return (ssize_t)len;
}

int rdma_msg_decode(const void *buf, size_t len, struct rdma_msg *out)
{
	const uint8_t *p = buf;
	struct rdma_wire_hdr h;

	if (len < RDMA_HDR_LEN)
		return -EPROTO;
	memcpy(&h, p, sizeof(h));
	if (h.version != RDMA_PROTO_VERSION || h.reserved)
		return -EPROTO;
	memset(out, 0, sizeof(*out));
	out->type = h.type;
	out->req_id = be32toh(h.req_id);
	switch (h.type) {
	case RDMA_MSG_DESC_REQ: {
		const uint8_t *k = p + RDMA_HDR_LEN + PROTO_GET_LEN;
		if (len != RDMA_DESC_REQ_LEN || !kind_ok(k[0]) || k[1] || k[2] || k[3])
			return -EPROTO;
		out->digest_kind = k[0];
		return proto_get_decode(p + RDMA_HDR_LEN, PROTO_GET_LEN, &out->u.get) ? -EPROTO : 0;
	}
	case RDMA_MSG_DESC:
		if (len != RDMA_DESC_LEN)
			return -EPROTO;
		return desc_decode(p + RDMA_HDR_LEN, &out->u.desc);
	case RDMA_MSG_RELEASE: {
		struct rdma_wire_release w;
		if (len != RDMA_RELEASE_LEN || out->req_id)
			return -EPROTO;
		memcpy(&w, p + RDMA_HDR_LEN, sizeof(w));
		out->u.lease = be64toh(w.lease);
		return out->u.lease ? 0 : -EPROTO;
	}
	default:
		return -EPROTO;
	}
}

void rdma_connect_priv_encode(void *buf, const uint8_t ticket[RDMA_TICKET_LEN])
{
	struct rdma_wire_connect w = { .magic = htobe32(RDMA_MAGIC),
				       .version = RDMA_PROTO_VERSION };
	memcpy(w.ticket, ticket, RDMA_TICKET_LEN);
	memcpy(buf, &w, sizeof(w));
}

int rdma_connect_priv_decode(const void *buf, size_t len, uint8_t ticket[RDMA_TICKET_LEN])
{
	struct rdma_wire_connect w;
	if (!buf || len < sizeof(w))
		return -EPROTO;
	memcpy(&w, buf, sizeof(w));
	if (be32toh(w.magic) != RDMA_MAGIC || w.version != RDMA_PROTO_VERSION || w.zero[0] ||
	    w.zero[1] || w.zero[2])
		return -EPROTO;
	memcpy(ticket, w.ticket, RDMA_TICKET_LEN);
	return 0;
}

void rdma_accept_priv_encode(void *buf, enum rdma_refusal reason)
{
	struct rdma_wire_accept w = { .magic = htobe32(RDMA_MAGIC),
				      .version = RDMA_PROTO_VERSION, .reason = (uint8_t)reason };
	memcpy(buf, &w, sizeof(w));
}

int rdma_accept_priv_decode(const void *buf, size_t len)
{
	struct rdma_wire_accept w;
	if (!buf || len < sizeof(w))
		return -EPROTO;
	memcpy(&w, buf, sizeof(w));
	if (be32toh(w.magic) != RDMA_MAGIC || w.version != RDMA_PROTO_VERSION || w.zero ||
	    w.reason > RDMA_REFUSE_DEVICE)
		return -EPROTO;
	return w.reason;
}

bool rdma_range_inside(const void *base, size_t len, const void *p, size_t n)
{
	uintptr_t b = (uintptr_t)base, a = (uintptr_t)p;
	return n && a >= b && a + n > a && a + n <= b + len && b + len >= b;
}

/* ---- leases ---- */

int rdma_leases_init(struct rdma_leases *t, uint32_t cap)
{
	memset(t, 0, sizeof(*t));
	t->v = calloc(cap, sizeof(*t->v));
	t->gen = calloc(cap, sizeof(*t->gen));
	if (!t->v || !t->gen) {
		rdma_leases_release(t);
		return -ENOMEM;
	}
	t->cap = cap;
	return 0;
}

void rdma_leases_release(struct rdma_leases *t)
{
	free(t->v);
	free(t->gen);
	memset(t, 0, sizeof(*t));
}

int rdma_leases_add(struct rdma_leases *t, const void *owner, const struct cache_span *span,
		    uint64_t expires_ns, uint64_t *id)
{
	uint32_t i = 0;
	if (t->active >= t->cap)
		return -ENOSPC;
	for (uint32_t k = 0; k < t->cap; k++) {
		i = (t->hint + k) % t->cap;
		if (!t->v[i].id)
			break;
	}
	if (++t->gen[i] == 0)
		t->gen[i] = 1;
	t->v[i] = (struct rdma_lease){ .id = (uint64_t)t->gen[i] << 32 | i,
				       .expires_ns = expires_ns, .owner = owner, .span = *span };
	t->active++;
	t->hint = (i + 1) % t->cap;
	*id = t->v[i].id;
	return 0;
}

static void lease_end(struct rdma_leases *t, uint32_t i, struct cache_span *out)
{
	*out = t->v[i].span;
	memset(&t->v[i], 0, sizeof(t->v[i]));
	t->active--;
}

int rdma_leases_take(struct rdma_leases *t, uint64_t id, const void *owner,
		     struct cache_span *out)
{
	uint32_t i = (uint32_t)id;
	if (!id || i >= t->cap || t->v[i].id != id || t->v[i].owner != owner)
		return -ENOENT;
	lease_end(t, i, out);
	return 0;
}

unsigned rdma_leases_take_expired(struct rdma_leases *t, uint64_t now_ns,
				  struct cache_span *out, unsigned max)
{
	unsigned n = 0;
	for (uint32_t i = 0; i < t->cap && n < max; i++)
		if (t->v[i].id && t->v[i].expires_ns <= now_ns)
			lease_end(t, i, &out[n++]);
	return n;
}

unsigned rdma_leases_take_owner(struct rdma_leases *t, const void *owner,
				struct cache_span *out, unsigned max)
{
	unsigned n = 0;
	for (uint32_t i = 0; i < t->cap && n < max; i++)
		if (t->v[i].id && (!owner || t->v[i].owner == owner))
			lease_end(t, i, &out[n++]);
	return n;
}

unsigned rdma_leases_count(const struct rdma_leases *t, const void *owner)
{
	unsigned n = 0;
	for (uint32_t i = 0; i < t->cap; i++)
		n += t->v[i].id && t->v[i].owner == owner;
	return n;
}

/* ---- the context and its connections ---- */

/*
 * Files mode: one memory region per chunk's bytes, registered the first time the chunk is
 * served or filled by RDMA and deregistered by rdma_ctx_forget() before those bytes are
 * punched out or unmapped. Keyed by the chunk's first byte.
 */
struct chunk_region {
	const uint8_t *addr;
	size_t len;
	struct ibv_mr *mr;
	struct chunk_region *next;       /* bucket chain */
};

/* A SHA-256 the holder computed for the bytes of one cached chunk in one slab place. */
struct digest_memo {
	uint64_t file_key, chunk;
	const void *data;
	size_t len;
	uint32_t crc;
	struct digest d;                 /* kind 0: an empty slot */
};

struct rdma_ctx {
	/* Set once by rdma_ctx_new() / rdma_ctx_listen(). */
	const struct mows_config *cfg;
	struct rdma_host host;
	struct ibv_context *verbs;       /* opened and owned by librdmacm */
	struct ibv_pd *pd;
	struct ibv_mr *mr;               /* the slab; NULL in files mode */
	uint8_t *slab;                   /* NULL in files mode: chunk regions instead */
	size_t slab_len;
	uint32_t regions_max;            /* files mode: chunk regions the device allows us */
	uint8_t *msgs;                   /* MAX_SLOTS * SLOT_MSGS buffers of RDMA_MSG_MAX */
	struct ibv_mr *msg_mr;
	char device[64];
	uint32_t read_wr_max;
	uint8_t init_depth, resp_res;
	unsigned lease_ms;               /* atomic: the test hook changes it */
	struct rdma_event_channel *cm_ch;
	struct rdma_cm_id *listen_id;
	int stop_fd;
	pthread_t cm_thread;
	bool listening;
	bool corrupt_reads;              /* test-only fault: MOWS_TEST_RDMA_CORRUPT=1 */
	bool region_failed_told;         /* atomic: a failed chunk registration was logged */

	/* Atomic (COUNT), except leases_granted, leases_expired, bytes_leased and the region_
	 * ones: protected by lock. leases_active is leases.active. */
	struct rdma_counters n;

	pthread_mutex_t lock;
	pthread_cond_t cond;             /* a serving thread ended */
	struct rdma_leases leases;       /* protected by lock */
	struct digest_memo memo[MEMO_SLOTS]; /* protected by lock */
	bool slot_used[MAX_SLOTS];       /* protected by lock */
	struct transport_conn *serving;  /* protected by lock */
	struct chunk_region *regions[REGION_BUCKETS]; /* files mode, protected by lock */
	unsigned nserving;               /* protected by lock */
	bool stopping;                   /* protected by lock */
};

struct transport_conn {
	struct rdma_ctx *r;
	struct rdma_cm_id *id;
	struct rdma_event_channel *cm_ch;  /* a client's own; NULL on the server (the ctx's) */
	struct ibv_comp_channel *comp;
	struct ibv_cq *cq;
	bool has_qp;
	int slot;
	uint8_t *bufs;                     /* this slot's SLOT_MSGS message buffers */
	bool armed;                        /* completion notification requested */
	bool send_busy[MSG_SENDS];
	unsigned in_idx[MSG_RECVS];        /* received buffers not yet handled, in order */
	uint32_t in_len[MSG_RECVS];
	unsigned in_head, in_count;
	unsigned want_send;                /* for ready_send() */
	size_t read_off, read_len;
	unsigned reads_out, read_depth;
	int err;                           /* first error; 0 while usable */
	uint32_t next_id;
	bool keep_leases;                  /* test hook */
	struct rdma_desc_link link;        /* where fetch() asks for descriptors */
	bool has_link;
	/* Server side. */
	int stop_fd;                       /* written by the CM thread and rdma_ctx_free() */
	bool established;                  /* protected by r->lock */
	uint64_t accepted_ns;
	char peer[INET6_ADDRSTRLEN + 8];
	struct transport_conn *next;       /* r->serving, protected by r->lock */
};

/* Verbs return a positive errno, rdma_cm -1 with errno set, ibv_poll_cq a negative value. */
static int verbs_rc(int rc)
{
	if (rc > 0)
		return -rc;
	if (rc < 0)
		return errno > 0 ? -errno : -EIO;
	return 0;
}

static unsigned lease_ms(struct rdma_ctx *r)
{
	return __atomic_load_n(&r->lease_ms, __ATOMIC_RELAXED);
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- memory regions: the slab's, or one per chunk (files mode) ---- */

static const char *memlock_limit(char *buf, size_t len);

#define REGION_GRANULE_SHIFT 21	/* chunk regions are hashed by the 2 MiB unit they start in */

static struct chunk_region **region_bucket(struct rdma_ctx *r, uintptr_t addr)
{
	uint64_t h = (uint64_t)(addr >> REGION_GRANULE_SHIFT) * 0x9e3779b97f4a7c15ull;
	return &r->regions[(h >> 32) % REGION_BUCKETS];
}

/* The region registered for [@addr, + @len), or NULL. Lock held. */
static struct ibv_mr *do_region_find(struct rdma_ctx *r, const void *addr, size_t len)
{
	for (struct chunk_region *e = *region_bucket(r, (uintptr_t)addr); e; e = e->next)
		if (e->addr == addr && e->len >= len)
			return e->mr;
	return NULL;
}

static void region_free(struct chunk_region *e)
{
	if (ibv_dereg_mr(e->mr))
		log_warn("rdma: cannot deregister a chunk's memory region: %s", strerror(errno));
	free(e);
}

static void do_region_count(struct rdma_ctx *r, const struct chunk_region *e, uint64_t ns)
{
	r->n.regions_active++;
	r->n.region_bytes += e->len;
	r->n.regions_registered++;
	r->n.region_reg_ns += ns;
	if (ns > r->n.region_reg_max_ns)
		r->n.region_reg_max_ns = ns;
}

/* Registers [@p, + @len) as a chunk region, or finds the one another thread just did. */
static int region_register(struct rdma_ctx *r, const void *p, size_t len, struct ibv_mr **out)
{
	char lim[32];
	struct chunk_region *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	uint64_t t0 = mono_ns();
	e->mr = ibv_reg_mr(r->pd, (void *)(uintptr_t)p, len,
			   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ);
	uint64_t ns = mono_ns() - t0;
	if (!e->mr) {
		int rc = -(errno ? errno : ENOMEM);
		free(e);
		if (!__atomic_exchange_n(&r->region_failed_told, true, __ATOMIC_RELAXED))
			log_warn("rdma: cannot register a chunk of %zu bytes with %s: %s%s%s; that "
				 "chunk comes from another source", len, r->device, strerror(-rc),
				 rc == -ENOMEM || rc == -EPERM ? "; the memlock limit must be "
				 "unlimited, it is " : "", rc == -ENOMEM || rc == -EPERM ?
				 memlock_limit(lim, sizeof(lim)) : "");
		return rc;
	}
	e->addr = p;
	e->len = len;
	pthread_mutex_lock(&r->lock);
	struct ibv_mr *won = do_region_find(r, p, len);
	if (!won) {
		struct chunk_region **b = region_bucket(r, (uintptr_t)p);
		e->next = *b;
		*b = e;
		do_region_count(r, e, ns);
	}
	pthread_mutex_unlock(&r->lock);
	if (won) {
		region_free(e);
		*out = won;
		return 0;
	}
	*out = e->mr;
	return 0;
}

/*
 * The keys under which [@p, + @len) can be read and written: the slab's (-EINVAL when it is
 * not inside), or its chunk region's, registered now if it has none (-ENOSPC when the
 * device allows no more). The caller has the chunk pinned or owns its fill, so the region
 * cannot be forgotten while it uses the keys.
 */
static int region_keys(struct rdma_ctx *r, const void *p, size_t len, uint32_t *lkey,
		       uint32_t *rkey)
{
	if (!len || len > UINT32_MAX)
		return -EINVAL;
	if (r->slab) {
		if (!rdma_range_inside(r->slab, r->slab_len, p, len))
			return -EINVAL;
		*lkey = r->mr->lkey;
		*rkey = r->mr->rkey;
		return 0;
	}
	pthread_mutex_lock(&r->lock);
	struct ibv_mr *mr = do_region_find(r, p, len);
	bool room = r->n.regions_active < r->regions_max;
	pthread_mutex_unlock(&r->lock);
	if (!mr && !room)
		return -ENOSPC;
	if (!mr) {
		int rc = region_register(r, p, len, &mr);
		if (rc)
			return rc;
	}
	*lkey = mr->lkey;
	*rkey = mr->rkey;
	return 0;
}

void rdma_ctx_forget(struct rdma_ctx *r, const void *addr, size_t len)
{
	if (!r || r->slab || !len)
		return;
	uintptr_t a = (uintptr_t)addr, b = a + len;
	struct chunk_region *gone = NULL;
	pthread_mutex_lock(&r->lock);
	/* Chunks do not overlap, so a region overlapping the range starts inside it. */
	for (uintptr_t g = a >> REGION_GRANULE_SHIFT;
	     g <= (b - 1) >> REGION_GRANULE_SHIFT && r->n.regions_active; g++) {
		struct chunk_region **pp = region_bucket(r, g << REGION_GRANULE_SHIFT);
		while (*pp) {
			struct chunk_region *e = *pp;
			if ((uintptr_t)e->addr < a || (uintptr_t)e->addr >= b) {
				pp = &e->next;
				continue;
			}
			*pp = e->next;
			e->next = gone;
			gone = e;
			r->n.regions_active--;
			r->n.region_bytes -= e->len;
			r->n.regions_forgotten++;
		}
	}
	pthread_mutex_unlock(&r->lock);
	while (gone) {
		struct chunk_region *e = gone;
		gone = e->next;
		region_free(e);
	}
}

/* Deregisters every chunk region (the context is going). */
static void forget_all_regions(struct rdma_ctx *r)
{
	for (unsigned i = 0; i < REGION_BUCKETS; i++)
		while (r->regions[i]) {
			struct chunk_region *e = r->regions[i];
			r->regions[i] = e->next;
			region_free(e);
		}
	r->n.regions_active = r->n.region_bytes = 0;
}

static uint8_t *msg_buf(struct transport_conn *c, unsigned i)
{
	return c->bufs + (size_t)i * RDMA_MSG_MAX;
}

static struct transport_conn *conn_alloc(struct rdma_ctx *r)
{
	struct transport_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->r = r;
	c->slot = -1;
	c->stop_fd = -1;
	pthread_mutex_lock(&r->lock);
	for (int i = 0; i < MAX_SLOTS && c->slot < 0; i++)
		if (!r->slot_used[i]) {
			r->slot_used[i] = true;
			c->slot = i;
		}
	pthread_mutex_unlock(&r->lock);
	if (c->slot < 0) {
		free(c);
		errno = ENOBUFS;
		return NULL;
	}
	c->bufs = r->msgs + (size_t)c->slot * SLOT_MSGS * RDMA_MSG_MAX;
	c->read_depth = READ_DEPTH < r->init_depth ? READ_DEPTH : r->init_depth;
	if (!c->read_depth)
		c->read_depth = 1;
	return c;
}

static void conn_fail(struct transport_conn *c, int rc)
{
	if (!c->err)
		c->err = rc;
}

static int post_recv(struct transport_conn *c, unsigned i)
{
	struct ibv_sge sge = { .addr = (uintptr_t)msg_buf(c, i), .length = RDMA_MSG_MAX,
			       .lkey = c->r->msg_mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = WRID(WR_RECV, i), .sg_list = &sge, .num_sge = 1 };
	struct ibv_recv_wr *bad;
	int rc = verbs_rc(ibv_post_recv(c->id->qp, &wr, &bad));
	if (rc)
		conn_fail(c, rc);
	return rc;
}

/* Completion channel, CQ and QP on @c->id, with every receive buffer posted. */
static int conn_setup_qp(struct transport_conn *c)
{
	struct rdma_ctx *r = c->r;
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = READ_DEPTH + MSG_SENDS, .max_recv_wr = MSG_RECVS,
			 .max_send_sge = 1, .max_recv_sge = 1 },
	};
	c->comp = ibv_create_comp_channel(r->verbs);
	if (!c->comp)
		return -(errno ? errno : ENOMEM);
	set_nonblock(c->comp->fd);
	c->cq = ibv_create_cq(r->verbs, READ_DEPTH + MSG_SENDS + MSG_RECVS, c, c->comp, 0);
	if (!c->cq)
		return -(errno ? errno : ENOMEM);
	qa.send_cq = qa.recv_cq = c->cq;
	int rc = verbs_rc(rdma_create_qp(c->id, r->pd, &qa));
	if (rc)
		return rc;
	c->has_qp = true;
	for (unsigned i = 0; i < MSG_RECVS && rc == 0; i++)
		rc = post_recv(c, i);
	return rc;
}

/* Moves the QP to the error state and destroys it, so nothing more is read or written. */
static void conn_kill_qp(struct transport_conn *c)
{
	if (!c->has_qp)
		return;
	struct ibv_qp_attr attr = { .qp_state = IBV_QPS_ERR };
	ibv_modify_qp(c->id->qp, &attr, IBV_QP_STATE);
	rdma_destroy_qp(c->id);
	c->has_qp = false;
}

static void conn_break(struct transport_conn *c, int rc)
{
	conn_fail(c, rc);
	if (c->has_qp)
		rdma_disconnect(c->id);
	conn_kill_qp(c);
}

/* Undoes conn_setup_qp() and frees the message slot; the cm_id is the caller's. */
static void conn_release_verbs(struct transport_conn *c)
{
	struct rdma_ctx *r = c->r;
	conn_kill_qp(c);
	if (c->cq && ibv_destroy_cq(c->cq))
		log_warn("rdma: cannot destroy a completion queue: %s", strerror(errno));
	c->cq = NULL;
	if (c->comp && ibv_destroy_comp_channel(c->comp))
		log_warn("rdma: cannot destroy a completion channel: %s", strerror(errno));
	c->comp = NULL;
	if (c->slot >= 0) {
		pthread_mutex_lock(&r->lock);
		r->slot_used[c->slot] = false;
		pthread_mutex_unlock(&r->lock);
		c->slot = -1;
	}
}

/* ---- completions ---- */

static void complete(struct transport_conn *c, const struct ibv_wc *wc)
{
	uint64_t kind = wc->wr_id >> 56;
	uint32_t v = (uint32_t)wc->wr_id;

	if (kind == WR_SEND && v < MSG_SENDS)
		c->send_busy[v] = false;
	if (kind == WR_READ && c->reads_out)
		c->reads_out--;
	if (wc->status != IBV_WC_SUCCESS) {
		if (wc->status == IBV_WC_WR_FLUSH_ERR) {
			conn_fail(c, -ECONNRESET);
			return;
		}
		COUNT(c->r, completion_errors, 1);
		log_debug("rdma: %s work request failed: %s (vendor error 0x%x)",
			  kind == WR_READ ? "READ" : kind == WR_SEND ? "SEND" : "RECV",
			  ibv_wc_status_str(wc->status), wc->vendor_err);
		conn_fail(c, -EIO);
		return;
	}
	if (kind == WR_READ)
		COUNT(c->r, bytes_read, v);
	if (kind == WR_RECV && v < MSG_RECVS && c->in_count < MSG_RECVS) {
		unsigned k = (c->in_head + c->in_count++) % MSG_RECVS;
		c->in_idx[k] = v;
		c->in_len[k] = wc->byte_len;
	}
}

static int conn_drain(struct transport_conn *c)
{
	struct ibv_wc wc[16];
	int n;
	while ((n = ibv_poll_cq(c->cq, 16, wc)) > 0)
		for (int i = 0; i < n; i++)
			complete(c, &wc[i]);
	if (n < 0)
		conn_fail(c, -EIO);
	return c->err;
}

/* A client's rdma_cm event after the connection is up: anything but noise ends it. */
static void conn_cm_event(struct transport_conn *c)
{
	struct rdma_cm_event *ev;
	while (rdma_get_cm_event(c->cm_ch, &ev) == 0) {
		enum rdma_cm_event_type t = ev->event;
		rdma_ack_cm_event(ev);
		if (t == RDMA_CM_EVENT_DISCONNECTED || t == RDMA_CM_EVENT_DEVICE_REMOVAL ||
		    t == RDMA_CM_EVENT_TIMEWAIT_EXIT) {
			log_debug("rdma: connection lost: %s", rdma_event_str(t));
			conn_fail(c, -ECONNRESET);
		}
	}
}

/* Sleeps until a completion event, a CM event (client) or stop (server), at most to @dl. */
static int conn_sleep(struct transport_conn *c, const struct deadline *dl)
{
	struct pollfd pf[2] = {
		{ .fd = c->comp->fd, .events = POLLIN },
		{ .fd = c->cm_ch ? c->cm_ch->fd : c->stop_fd, .events = POLLIN },
	};
	int64_t ms = deadline_left_ms(dl);
	if (ms == 0)
		return -ETIMEDOUT;
	int n = poll(pf, 2, ms > TICK_MS ? TICK_MS : (int)ms);
	if (n < 0 && errno != EINTR)
		conn_fail(c, -errno);
	if (n > 0 && pf[0].revents) {
		struct ibv_cq *cq;
		void *ctx;
		if (ibv_get_cq_event(c->comp, &cq, &ctx) == 0) {
			ibv_ack_cq_events(cq, 1);
			c->armed = false;
		} else if (errno != EAGAIN) {
			conn_fail(c, -EIO);
		}
	}
	if (n > 0 && pf[1].revents) {
		if (c->cm_ch)
			conn_cm_event(c);
		else
			conn_fail(c, -ECONNRESET);
	}
	return c->err;
}

/* Processes completions until @ready says so, the connection fails, or @dl passes. */
static int conn_wait(struct transport_conn *c, bool (*ready)(const struct transport_conn *),
		     const struct deadline *dl)
{
	for (;;) {
		int rc = conn_drain(c);
		if (rc)
			return rc;
		if (ready(c))
			return 0;
		if (!c->armed) {
			/* Poll once more after arming: a completion may have come in between. */
			rc = verbs_rc(ibv_req_notify_cq(c->cq, 0));
			if (rc) {
				conn_fail(c, rc);
				return rc;
			}
			c->armed = true;
			continue;
		}
		rc = conn_sleep(c, dl);
		if (rc)
			return rc;
	}
}

static bool ready_inbox(const struct transport_conn *c)
{
	return c->in_count > 0;
}

static bool ready_reads(const struct transport_conn *c)
{
	return c->reads_out == 0 || (c->read_off < c->read_len && c->reads_out < c->read_depth);
}

/* ---- serving (the chunk's holder) ---- */

static void unpin_all(struct rdma_ctx *r, const struct cache_span *spans, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct cache_span s = spans[i];
		r->host.unpin(r->host.ctx, &s);
	}
}

/* Ends every lease of @owner (NULL: all). */
static void drop_leases(struct rdma_ctx *r, const void *owner)
{
	struct cache_span spans[32];
	unsigned n;
	do {
		pthread_mutex_lock(&r->lock);
		n = rdma_leases_take_owner(&r->leases, owner, spans, 32);
		pthread_mutex_unlock(&r->lock);
		unpin_all(r, spans, n);
	} while (n == 32);
}

static void expire_leases(struct rdma_ctx *r)
{
	struct cache_span spans[32];
	unsigned n;
	do {
		pthread_mutex_lock(&r->lock);
		n = rdma_leases_take_expired(&r->leases, mono_ns(), spans, 32);
		r->n.leases_expired += n;
		pthread_mutex_unlock(&r->lock);
		if (n)
			log_debug("rdma: %u leases expired unreleased", n);
		unpin_all(r, spans, n);
	} while (n == 32);
}

/* The memo slot for a chunk. */
static struct digest_memo *memo_slot(struct rdma_ctx *r, const struct proto_get *g)
{
	uint64_t h = (g->file_key ^ (g->chunk * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
	return &r->memo[(h >> 32) % MEMO_SLOTS];
}

static bool memo_matches(const struct digest_memo *e, const struct proto_get *g,
			 const struct cache_span *span, uint32_t crc)
{
	return e->d.kind == DIGEST_SHA256 && e->file_key == g->file_key && e->chunk == g->chunk &&
	       e->data == span->data && e->len == span->len && e->crc == crc;
}

/*
 * The digest of the pinned chunk @g names, as @kind: the CRC-32 the cache holds for it, or
 * its SHA-256, computed once per cached chunk (the memo) and without the lock.
 */
static int chunk_digest(struct rdma_ctx *r, const struct proto_get *g,
			const struct cache_span *span, uint32_t crc, uint8_t kind,
			struct digest *out)
{
	if (kind == DIGEST_CRC32) {
		*out = (struct digest){ .kind = DIGEST_CRC32, .len = 4,
					.bytes = { crc >> 24, crc >> 16, crc >> 8, crc } };
		return 0;
	}
	struct digest_memo *e = memo_slot(r, g);
	pthread_mutex_lock(&r->lock);
	bool hit = memo_matches(e, g, span, crc);
	if (hit)
		*out = e->d;
	pthread_mutex_unlock(&r->lock);
	if (hit)
		return 0;
	int rc = digest_compute(DIGEST_SHA256, span->data, span->len, out);
	if (rc)
		return rc;
	COUNT(r, digests_computed, 1);
	pthread_mutex_lock(&r->lock);
	*e = (struct digest_memo){ .file_key = g->file_key, .chunk = g->chunk,
				   .data = span->data, .len = span->len, .crc = crc, .d = *out };
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int32_t status_of(int rc)
{
	return rc == -ENOENT ? ENOENT : rc < 0 && rc > -4096 ? -rc : EIO;
}

/* Pins the chunk, digests it and leases it to @owner; fills @d. */
static void grant(struct rdma_ctx *r, const void *owner, const struct proto_get *g,
		  uint8_t kind, struct rdma_desc *d)
{
	struct cache_span span;
	uint32_t crc = 0;
	uint64_t lease;

	pthread_mutex_lock(&r->lock);
	unsigned held = rdma_leases_count(&r->leases, owner);
	pthread_mutex_unlock(&r->lock);
	if (held >= OWNER_LEASES_MAX) {
		d->status = EBUSY;
		return;
	}
	uint32_t lkey, rkey;
	int rc = r->host.pin(r->host.ctx, g, &span, &crc);
	if (rc) {
		d->status = status_of(rc);
		return;
	}
	rc = region_keys(r, span.data, span.len, &lkey, &rkey);
	if (rc) {
		if (rc == -EINVAL)
			log_err("rdma: host pinned a span outside the registered slab (%p, %zu "
				"bytes)", span.data, span.len);
		r->host.unpin(r->host.ctx, &span);
		d->status = rc == -ENOSPC || rc == -ENOMEM ? EBUSY : EIO;
		return;
	}
	rc = chunk_digest(r, g, &span, crc, kind, &d->digest);
	pthread_mutex_lock(&r->lock);
	if (rc == 0)
		rc = rdma_leases_add(&r->leases, owner, &span,
				     mono_ns() + (uint64_t)lease_ms(r) * 1000000, &lease);
	if (rc == 0) {
		r->n.leases_granted++;
		r->n.bytes_leased += span.len;
	}
	pthread_mutex_unlock(&r->lock);
	if (rc) {
		r->host.unpin(r->host.ctx, &span);
		*d = (struct rdma_desc){ .status = rc == -ENOSPC ? EBUSY : EIO };
		return;
	}
	d->crc32 = crc;
	d->length = (uint32_t)span.len;
	d->rkey = rkey;
	d->addr = (uintptr_t)span.data;
	d->lease = lease;
}

ssize_t rdma_ctx_answer(struct rdma_ctx *r, const void *owner, const void *msg, size_t len,
			void *ans, size_t cap)
{
	struct rdma_msg m, a = { .type = RDMA_MSG_DESC };
	struct cache_span span;
	if (cap < RDMA_MSG_MAX)
		return -ENOSPC;
	if (rdma_msg_decode(msg, len, &m))
		return -EPROTO;
	if (m.type == RDMA_MSG_RELEASE) {
		if (!r)
			return 0;
		pthread_mutex_lock(&r->lock);
		int rc = rdma_leases_take(&r->leases, m.u.lease, owner, &span);
		pthread_mutex_unlock(&r->lock);
		if (rc == 0)
			r->host.unpin(r->host.ctx, &span);
		return 0; /* an unknown lease has expired already */
	}
	if (m.type != RDMA_MSG_DESC_REQ)
		return -EPROTO;
	a.req_id = m.req_id;
	if (r)
		grant(r, owner, &m.u.get, m.digest_kind, &a.u.desc);
	else
		a.u.desc.status = EOPNOTSUPP;
	return rdma_msg_encode(ans, cap, &a);
}

ssize_t rdma_release_for(const void *desc, size_t len, void *out, size_t cap)
{
	struct rdma_msg d, m = { .type = RDMA_MSG_RELEASE };
	if (rdma_msg_decode(desc, len, &d) || d.type != RDMA_MSG_DESC)
		return -EPROTO;
	if (d.u.desc.status)
		return 0;
	m.u.lease = d.u.desc.lease;
	return rdma_msg_encode(out, cap, &m);
}

void rdma_ctx_drop_owner(struct rdma_ctx *r, const void *owner)
{
	if (r && owner)
		drop_leases(r, owner);
}

/* A message on an RDMA connection: mows never sends one (descriptors travel inside TLS). */
static int serve_msg(struct transport_conn *c)
{
	struct rdma_ctx *r = c->r;
	c->in_head = (c->in_head + 1) % MSG_RECVS;
	c->in_count--;
	COUNT(r, msgs_refused, 1);
	log_warn("rdma: %s sent a message over its RDMA connection, where mows sends none "
		 "(descriptors travel over the TLS link); closing that connection", c->peer);
	return -EPROTO;
}

static bool stale_unestablished(struct transport_conn *c)
{
	pthread_mutex_lock(&c->r->lock);
	bool up = c->established;
	pthread_mutex_unlock(&c->r->lock);
	return !up && mono_ns() - c->accepted_ns > (uint64_t)ESTABLISH_MS * 1000000;
}

/* Tears down an accepted connection: its verbs objects, leases, cm_id and list entry. */
static void serve_end(struct transport_conn *c)
{
	struct rdma_ctx *r = c->r;
	if (c->has_qp)
		rdma_disconnect(c->id);
	conn_release_verbs(c);
	drop_leases(r, c);
	pthread_mutex_lock(&r->lock);
	for (struct transport_conn **pp = &r->serving; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	pthread_mutex_unlock(&r->lock);
	/* Waits until the CM thread has acknowledged every event of this id. */
	rdma_destroy_id(c->id);
	if (c->stop_fd >= 0)
		close(c->stop_fd);
	free(c);
}

static void *serve_main(void *arg)
{
	struct transport_conn *c = arg;
	struct rdma_ctx *r = c->r;
	int rc;
	for (;;) {
		struct deadline tick = deadline_in_ms(TICK_MS);
		rc = conn_wait(c, ready_inbox, &tick);
		if (rc == -ETIMEDOUT) {
			if (stale_unestablished(c))
				break;
			continue;
		}
		if (rc == 0)
			rc = serve_msg(c);
		if (rc)
			break;
	}
	if (rc && rc != -ECONNRESET)
		log_debug("rdma: connection from %s closed: %s", c->peer, strerror(-rc));
	serve_end(c);
	pthread_mutex_lock(&r->lock);
	r->nserving--;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static void refuse(struct rdma_ctx *r, struct rdma_cm_id *id, enum rdma_refusal why)
{
	uint8_t priv[RDMA_ACCEPT_PRIV_LEN];
	rdma_accept_priv_encode(priv, why);
	COUNT(r, conns_refused, 1); /* before the peer can learn of it */
	if (rdma_reject(id, priv, sizeof(priv)))
		log_debug("rdma: rdma_reject: %s", strerror(errno));
	rdma_destroy_id(id);
}

static void peer_name(struct rdma_cm_id *id, char *buf, size_t len)
{
	struct sockaddr *sa = rdma_get_peer_addr(id);
	socklen_t salen = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
			  sizeof(struct sockaddr_in);
	if (getnameinfo(sa, salen, buf, (socklen_t)len, NULL, 0, NI_NUMERICHOST))
		snprintf(buf, len, "?");
}

/* Checks the ticket and room; returns why not, or RDMA_REFUSE_NONE with a place reserved. */
static enum rdma_refusal admit(struct rdma_ctx *r, struct rdma_cm_id *id, int priv_rc,
			       const uint8_t ticket[RDMA_TICKET_LEN], const char *peer)
{
	if (priv_rc || !r->host.ticket_ok || !r->host.ticket_ok(r->host.ctx, ticket)) {
		log_warn("rdma: refused a connection from %s: %s", peer,
			 priv_rc ? "not a mows request" : "no valid ticket");
		return RDMA_REFUSE_TICKET;
	}
	if (id->verbs != r->verbs) {
		log_warn("rdma: refused a connection from %s: it came in on device %s, but the "
			 "slab is registered with %s", peer, ibv_get_device_name(id->verbs->device),
			 r->device);
		return RDMA_REFUSE_DEVICE;
	}
	pthread_mutex_lock(&r->lock);
	bool room = !r->stopping && r->nserving < r->cfg->max_connections;
	if (room)
		r->nserving++;
	pthread_mutex_unlock(&r->lock);
	if (!room) {
		log_warn("rdma: refused a connection from %s: %u connections already "
			 "(max_connections)", peer, r->cfg->max_connections);
		return RDMA_REFUSE_BUSY;
	}
	return RDMA_REFUSE_NONE;
}

static void unreserve(struct rdma_ctx *r)
{
	pthread_mutex_lock(&r->lock);
	r->nserving--;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/*
 * Sets up, accepts and hands to a serving thread a connection admit() let in. On failure
 * the id is refused or torn down and the reservation undone; returns 0 or -errno.
 */
static int accept_conn(struct rdma_ctx *r, struct rdma_cm_id *id, uint8_t their_depth,
		       const char *peer)
{
	uint8_t priv[RDMA_ACCEPT_PRIV_LEN];
	struct rdma_conn_param cp = { .private_data = priv, .private_data_len = sizeof(priv),
				      .initiator_depth = 1, .rnr_retry_count = 7 };
	cp.responder_resources = their_depth < r->resp_res ? their_depth : r->resp_res;
	rdma_accept_priv_encode(priv, RDMA_REFUSE_NONE);
	struct transport_conn *c = conn_alloc(r);
	int rc = c ? 0 : -errno;
	if (rc)
		goto out_refuse;
	c->id = id;
	c->accepted_ns = mono_ns();
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rc = c->stop_fd < 0 ? -errno : conn_setup_qp(c);
	if (rc)
		goto out_release;
	id->context = c;
	pthread_mutex_lock(&r->lock);
	c->next = r->serving;
	r->serving = c;
	pthread_mutex_unlock(&r->lock);
	rc = verbs_rc(rdma_accept(id, &cp));
	if (rc == 0) {
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		rc = -pthread_create(&t, &attr, serve_main, c);
		pthread_attr_destroy(&attr);
	}
	if (rc == 0) {
		COUNT(r, conns_in, 1);
		return 0;
	}
	/* The peer may have seen the accept: end it as a serving thread would. */
	serve_end(c);
	unreserve(r);
	return rc;
out_release:
	conn_release_verbs(c);
	if (c->stop_fd >= 0)
		close(c->stop_fd);
	free(c);
out_refuse:
	refuse(r, id, RDMA_REFUSE_BUSY);
	unreserve(r);
	return rc;
}

static void on_connect_request(struct rdma_ctx *r, struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;
	uint8_t ticket[RDMA_TICKET_LEN];
	char peer[INET6_ADDRSTRLEN + 8];
	int priv_rc = rdma_connect_priv_decode(ev->param.conn.private_data,
					       ev->param.conn.private_data_len, ticket);
	uint8_t depth = ev->param.conn.initiator_depth;
	/* Acknowledge first: destroying the id waits for its events to be acknowledged. */
	rdma_ack_cm_event(ev);
	id->context = NULL;
	peer_name(id, peer, sizeof(peer));
	enum rdma_refusal why = admit(r, id, priv_rc, ticket, peer);
	explicit_bzero(ticket, sizeof(ticket));
	if (why != RDMA_REFUSE_NONE) {
		refuse(r, id, why);
		return;
	}
	int rc = accept_conn(r, id, depth, peer);
	if (rc)
		log_warn("rdma: cannot accept a connection from %s: %s", peer, strerror(-rc));
}

static void on_cm_event(struct rdma_ctx *r, struct rdma_cm_event *ev)
{
	struct transport_conn *c = ev->id == r->listen_id ? NULL : ev->id->context;
	enum rdma_cm_event_type t = ev->event;
	uint64_t one = 1;

	if (t == RDMA_CM_EVENT_CONNECT_REQUEST) {
		on_connect_request(r, ev);
		return;
	}
	if (c && t == RDMA_CM_EVENT_ESTABLISHED) {
		pthread_mutex_lock(&r->lock);
		c->established = true;
		pthread_mutex_unlock(&r->lock);
	} else if (c && (t == RDMA_CM_EVENT_DISCONNECTED || t == RDMA_CM_EVENT_CONNECT_ERROR ||
			 t == RDMA_CM_EVENT_UNREACHABLE || t == RDMA_CM_EVENT_REJECTED ||
			 t == RDMA_CM_EVENT_DEVICE_REMOVAL || t == RDMA_CM_EVENT_TIMEWAIT_EXIT)) {
		/* The serving thread sees this, tears down, and then destroys the id, which
		 * waits for the acknowledgement below: c is valid until then. */
		if (write(c->stop_fd, &one, sizeof(one)) < 0)
			log_debug("rdma: cannot signal a serving thread: %s", strerror(errno));
	} else if (!c && t == RDMA_CM_EVENT_DEVICE_REMOVAL) {
		log_err("rdma: device %s removed: no more RDMA connections are accepted",
			r->device);
	}
	rdma_ack_cm_event(ev);
}

static void *cm_main(void *arg)
{
	struct rdma_ctx *r = arg;
	struct pollfd pf[2] = { { .fd = r->cm_ch->fd, .events = POLLIN },
				{ .fd = r->stop_fd, .events = POLLIN } };
	for (;;) {
		unsigned tick = lease_ms(r) / 2 < TICK_MS ? lease_ms(r) / 2 : TICK_MS;
		int n = poll(pf, 2, tick ? (int)tick : 1);
		if (n < 0 && errno != EINTR) {
			log_err("rdma: CM thread: poll: %s", strerror(errno));
			break;
		}
		if (n > 0 && pf[1].revents)
			break;
		expire_leases(r);
		struct rdma_cm_event *ev;
		while (n > 0 && pf[0].revents && rdma_get_cm_event(r->cm_ch, &ev) == 0)
			on_cm_event(r, ev);
	}
	return NULL;
}

int rdma_ctx_listen(struct rdma_ctx *r, const char *addr, uint16_t port, char *err,
		    size_t errlen)
{
	char ports[8];
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM }, *ai;
	int rc;

	if (r->listening) {
		snprintf(err, errlen, "rdma: already listening");
		return -EALREADY;
	}
	snprintf(ports, sizeof(ports), "%u", port);
	rc = getaddrinfo(addr, ports, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "rdma listen '%s:%u': %s", addr, port, gai_strerror(rc));
		return -EINVAL;
	}
	r->cm_ch = rdma_create_event_channel();
	if (!r->cm_ch) {
		rc = -(errno ? errno : ENODEV);
		goto out_free_ai;
	}
	set_nonblock(r->cm_ch->fd);
	rc = verbs_rc(rdma_create_id(r->cm_ch, &r->listen_id, NULL, RDMA_PS_TCP));
	if (rc)
		goto out_destroy_channel;
	rc = verbs_rc(rdma_bind_addr(r->listen_id, ai->ai_addr));
	if (rc == 0)
		rc = verbs_rc(rdma_listen(r->listen_id, 128));
	if (rc)
		goto out_destroy_id;
	rc = -pthread_create(&r->cm_thread, NULL, cm_main, r);
	if (rc)
		goto out_destroy_id;
	r->listening = true;
	freeaddrinfo(ai);
	log_info("rdma: listening on %s:%u (device %s)", addr, port, r->device);
	return 0;
out_destroy_id:
	rdma_destroy_id(r->listen_id);
	r->listen_id = NULL;
out_destroy_channel:
	rdma_destroy_event_channel(r->cm_ch);
	r->cm_ch = NULL;
out_free_ai:
	freeaddrinfo(ai);
	snprintf(err, errlen, "rdma listen '%s:%u': %s; choose an address of this node on an "
		 "RDMA device and a free port", addr, port, strerror(-rc));
	return rc;
}

/* ---- fetching (the requester) ---- */

/* Maps a refusal, or another unwanted rdma_cm event, to -errno. */
static int cm_event_error(const struct rdma_cm_event *ev)
{
	switch (ev->event) {
	case RDMA_CM_EVENT_REJECTED:
		switch (rdma_accept_priv_decode(ev->param.conn.private_data,
						ev->param.conn.private_data_len)) {
		case RDMA_REFUSE_TICKET:
			return -EACCES;
		case RDMA_REFUSE_BUSY:
			return -EBUSY;
		case RDMA_REFUSE_DEVICE:
			return -ENODEV;
		default:
			return -ECONNREFUSED;
		}
	case RDMA_CM_EVENT_ADDR_ERROR:
		return ev->status < 0 ? ev->status : -EHOSTUNREACH;
	case RDMA_CM_EVENT_ROUTE_ERROR:
		return ev->status < 0 ? ev->status : -ENETUNREACH;
	case RDMA_CM_EVENT_UNREACHABLE:
		return ev->status == -ETIMEDOUT ? -ETIMEDOUT : -EHOSTUNREACH;
	case RDMA_CM_EVENT_CONNECT_ERROR:
		return ev->status < 0 ? ev->status : -ECONNREFUSED;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return -ENODEV;
	default:
		return -ECONNRESET;
	}
}

/* Waits on a client's own channel for @want; copies the accept's private data to @priv. */
static int cm_wait(struct transport_conn *c, enum rdma_cm_event_type want, void *priv,
		   const struct deadline *dl)
{
	for (;;) {
		struct rdma_cm_event *ev;
		if (rdma_get_cm_event(c->cm_ch, &ev) == 0) {
			int rc = 0;
			if (ev->event == want && priv)
				rc = rdma_accept_priv_decode(ev->param.conn.private_data,
							     ev->param.conn.private_data_len) ==
				     RDMA_REFUSE_NONE ? 0 : -EPROTO;
			else if (ev->event != want && ev->event != RDMA_CM_EVENT_ADDR_CHANGE)
				rc = cm_event_error(ev);
			bool done = ev->event == want || rc;
			rdma_ack_cm_event(ev);
			if (done)
				return rc;
			continue;
		}
		if (errno != EAGAIN)
			return -(errno ? errno : EIO);
		int64_t ms = deadline_left_ms(dl);
		if (ms == 0)
			return -ETIMEDOUT;
		struct pollfd pf = { .fd = c->cm_ch->fd, .events = POLLIN };
		if (poll(&pf, 1, ms > TICK_MS ? TICK_MS : (int)ms) < 0 && errno != EINTR)
			return -errno;
	}
}

static int cm_ms(const struct deadline *dl)
{
	int64_t ms = deadline_left_ms(dl);
	return ms > 60000 ? 60000 : ms < 1 ? 1 : (int)ms;
}

static void conn_destroy(struct transport_conn *c)
{
	conn_release_verbs(c);
	if (c->id)
		rdma_destroy_id(c->id);
	if (c->cm_ch)
		rdma_destroy_event_channel(c->cm_ch);
	free(c);
}

static int client_setup(struct transport_conn *c, const struct sockaddr *sa,
			const uint8_t ticket[RDMA_TICKET_LEN], const struct deadline *dl)
{
	struct rdma_ctx *r = c->r;
	uint8_t priv[RDMA_CONNECT_PRIV_LEN];
	struct rdma_conn_param cp = { .private_data = priv, .private_data_len = sizeof(priv),
				      .responder_resources = 1, .initiator_depth = r->init_depth,
				      .retry_count = 7, .rnr_retry_count = 7 };
	int rc = verbs_rc(rdma_resolve_addr(c->id, NULL, (struct sockaddr *)sa, cm_ms(dl)));
	if (rc == 0)
		rc = cm_wait(c, RDMA_CM_EVENT_ADDR_RESOLVED, NULL, dl);
	if (rc == 0)
		rc = verbs_rc(rdma_resolve_route(c->id, cm_ms(dl)));
	if (rc == 0)
		rc = cm_wait(c, RDMA_CM_EVENT_ROUTE_RESOLVED, NULL, dl);
	if (rc)
		return rc;
	if (c->id->verbs != r->verbs) {
		log_debug("rdma: the route leaves by device %s, not %s",
			  ibv_get_device_name(c->id->verbs->device), r->device);
		return -ENODEV;
	}
	rc = conn_setup_qp(c);
	if (rc)
		return rc;
	rdma_connect_priv_encode(priv, ticket);
	rc = verbs_rc(rdma_connect(c->id, &cp));
	explicit_bzero(priv, sizeof(priv));
	if (rc == 0)
		rc = cm_wait(c, RDMA_CM_EVENT_ESTABLISHED, priv, dl);
	return rc;
}

struct transport_conn *rdma_ctx_connect(struct rdma_ctx *r, const struct sockaddr *sa,
					socklen_t salen, const uint8_t ticket[RDMA_TICKET_LEN],
					const struct deadline *dl)
{
	int rc;
	if (salen < sizeof(struct sockaddr_in) ||
	    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
		errno = EAFNOSUPPORT;
		return NULL;
	}
	struct transport_conn *c = conn_alloc(r);
	if (!c)
		return NULL;
	c->cm_ch = rdma_create_event_channel();
	if (!c->cm_ch) {
		rc = -(errno ? errno : ENODEV);
		goto out_destroy;
	}
	set_nonblock(c->cm_ch->fd);
	rc = verbs_rc(rdma_create_id(c->cm_ch, &c->id, c, RDMA_PS_TCP));
	if (rc) {
		c->id = NULL;
		goto out_destroy;
	}
	rc = client_setup(c, sa, ticket, dl);
	if (rc)
		goto out_destroy;
	COUNT(r, conns_out, 1);
	return c;
out_destroy:
	conn_destroy(c);
	errno = -rc;
	return NULL;
}

static int conn_read(struct transport_conn *c, uint8_t *dst, uint32_t lkey, size_t len,
		     uint64_t addr, uint32_t rkey, const struct deadline *dl)
{
	struct rdma_ctx *r = c->r;
	c->read_off = 0;
	c->read_len = len;
	while (c->read_off < len || c->reads_out) {
		while (c->read_off < len && c->reads_out < c->read_depth) {
			/* Some providers (rxe) do the work inside ibv_post_send(), so a chunk
			 * of many READs may never sleep in conn_wait(): check here too. */
			if (deadline_passed(dl))
				return -ETIMEDOUT;
			size_t n = len - c->read_off < r->read_wr_max ? len - c->read_off :
				   r->read_wr_max;
			struct ibv_sge sge = { .addr = (uintptr_t)(dst + c->read_off),
					       .length = (uint32_t)n, .lkey = lkey };
			struct ibv_send_wr wr = {
				.wr_id = WRID(WR_READ, n), .sg_list = &sge, .num_sge = 1,
				.opcode = IBV_WR_RDMA_READ, .send_flags = IBV_SEND_SIGNALED,
				.wr.rdma = { .remote_addr = addr + c->read_off, .rkey = rkey },
			};
			struct ibv_send_wr *bad;
			int rc = verbs_rc(ibv_post_send(c->id->qp, &wr, &bad));
			if (rc) {
				conn_fail(c, rc);
				return rc;
			}
			COUNT(r, reads_posted, 1);
			c->reads_out++;
			c->read_off += n;
		}
		int rc = conn_wait(c, ready_reads, dl);
		if (rc)
			return rc;
	}
	return 0;
}

void rdma_conn_set_link(struct transport_conn *c, const struct rdma_desc_link *l)
{
	c->link = *l;
	c->has_link = true;
}

/* Asks the holder, over the link, for the descriptor of @req. */
static int ask_desc(struct transport_conn *c, const struct transport_chunk_req *req,
		    struct rdma_desc *d, const struct deadline *dl)
{
	uint8_t buf[RDMA_MSG_MAX], ans[RDMA_MSG_MAX];
	size_t alen = 0;
	struct rdma_msg a, m = {
		.type = RDMA_MSG_DESC_REQ, .req_id = ++c->next_id,
		.digest_kind = (uint8_t)digest_kind_of(c->r->cfg->rdma_verify),
		.u.get = { .file_key = req->file_key, .file_size = req->file_size,
			   .mtime_ns = req->mtime_ns, .chunk = req->chunk,
			   .chunk_size = req->chunk_size, .flags = req->fill ? PROTO_GET_FILL : 0 },
	};
	ssize_t len = rdma_msg_encode(buf, sizeof(buf), &m);
	if (len < 0)
		return (int)len;
	int rc = c->link.call(c->link.ctx, buf, (size_t)len, ans, sizeof(ans), &alen, dl);
	if (rc)
		return rc;
	COUNT(c->r, descs, 1);
	if (rdma_msg_decode(ans, alen, &a) || a.type != RDMA_MSG_DESC || a.req_id != m.req_id)
		return -EPROTO;
	if (!a.u.desc.status && a.u.desc.digest.kind != m.digest_kind)
		return -EPROTO; /* never a weaker check than ours */
	*d = a.u.desc;
	return 0;
}

static void release(struct transport_conn *c, uint64_t lease, const struct deadline *dl)
{
	uint8_t buf[RDMA_MSG_MAX];
	struct rdma_msg m = { .type = RDMA_MSG_RELEASE, .u.lease = lease };
	ssize_t len = rdma_msg_encode(buf, sizeof(buf), &m);
	/* A lost RELEASE costs a pinned chunk until the link closes or the lease expires. */
	if (!c->keep_leases && len > 0 && c->link.send(c->link.ctx, buf, (size_t)len, dl))
		log_debug("rdma: cannot send RELEASE over the link");
}

/* Checks the bytes the READ brought against the descriptor's digest. */
static int verify(struct transport_conn *c, uint8_t *dst, size_t len, const struct rdma_desc *d)
{
	if (c->r->corrupt_reads)
		dst[len / 2] ^= 0x5a;
	int rc = digest_check(dst, len, &d->digest);
	if (rc == 0) {
		COUNT(c->r, digests_checked, 1);
		return 0;
	}
	COUNT(c->r, digest_mismatches, 1);
	log_warn("rdma: a chunk read by RDMA does not match its %s digest; refused it (the "
		 "fabric or the peer altered it)", d->digest.kind == DIGEST_SHA256 ? "SHA-256" :
		 "CRC-32");
	return -EBADMSG;
}

static int rdma_fetch(struct transport_conn *c, const struct transport_chunk_req *req,
		      void *dst, size_t len, uint32_t *crc, const struct deadline *dl)
{
	struct rdma_ctx *r = c->r;
	struct rdma_desc d;
	int rc;

	conn_cm_event(c); /* a peer that went away between fetches fails fast */
	if (c->err)
		return c->err;
	if (!c->has_link)
		return -ENOTCONN;
	uint32_t lkey, rkey;
	rc = region_keys(r, dst, len, &lkey, &rkey);
	if (rc)
		return rc;
	rc = ask_desc(c, req, &d, dl);
	if (rc)
		goto out_break;
	if (d.status) {
		COUNT(r, fetch_errors, d.status != ENOENT);
		return d.status == ENOENT ? -ENOENT : -EIO;
	}
	if (d.length != len) {
		release(c, d.lease, dl);
		rc = -EPROTO;
		goto out_break;
	}
	rc = conn_read(c, dst, lkey, len, d.addr, d.rkey, dl);
	if (rc == 0)
		rc = verify(c, dst, len, &d);
	release(c, d.lease, dl);
	if (rc)
		goto out_break;
	*crc = d.crc32;
	COUNT(r, fetches, 1);
	return 0;
out_break:
	COUNT(r, fetch_errors, 1);
	conn_break(c, rc);
	return rc;
}

static void rdma_close(struct transport_conn *c)
{
	if (!c)
		return;
	if (c->has_qp)
		rdma_disconnect(c->id);
	conn_destroy(c);
}

const struct transport_ops rdma_transport = {
	.name = "rdma",
	.fetch = rdma_fetch,
	.close = rdma_close,
};

/* ---- the context ---- */

static const char *memlock_limit(char *buf, size_t len)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return "unlimited";
	return config_format_size(rl.rlim_cur, buf, len);
}

/* Picks the device; fills r->verbs and r->device or returns -ENODEV with a message. */
static int pick_device(struct rdma_ctx *r, char *err, size_t errlen)
{
	const struct mows_config *cfg = r->cfg;
	char seen[256] = "";
	size_t used = 0;
	int n = 0, rc = -ENODEV;
	struct ibv_context **list = rdma_get_devices(&n);
	bool named_found = false;

	for (int i = 0; list && i < n && !r->verbs; i++) {
		const char *name = ibv_get_device_name(list[i]->device);
		struct ibv_port_attr pa;
		if (used < sizeof(seen))
			used += (size_t)snprintf(seen + used, sizeof(seen) - used, "%s%s",
						 used ? ", " : "", name);
		if (cfg->rdma_device[0] && strcmp(cfg->rdma_device, name))
			continue;
		named_found = true;
		if (ibv_query_port(list[i], (uint8_t)cfg->rdma_port, &pa) ||
		    pa.state != IBV_PORT_ACTIVE)
			continue;
		r->verbs = list[i];
		r->read_wr_max = pa.max_msg_sz && pa.max_msg_sz < READ_WR_MAX ? pa.max_msg_sz :
				 READ_WR_MAX;
		snprintf(r->device, sizeof(r->device), "%s", name);
		rc = 0;
	}
	if (list)
		rdma_free_devices(list);
	if (rc == 0)
		return 0;
	if (!n)
		snprintf(err, errlen, "rdma: no RDMA device on this node; peers use TCP");
	else if (cfg->rdma_device[0] && !named_found)
		snprintf(err, errlen, "rdma_device '%s': no such RDMA device (there are: %s); "
			 "set rdma_device, or transport = tcp", cfg->rdma_device, seen);
	else
		snprintf(err, errlen, "rdma: no RDMA device %s has port %u ACTIVE (devices: %s); "
			 "check the link (rdma link show) or set rdma_device and rdma_port",
			 cfg->rdma_device[0] ? cfg->rdma_device : "", cfg->rdma_port, seen);
	return -ENODEV;
}

static int register_memory(struct rdma_ctx *r, char *err, size_t errlen)
{
	char lim[32], size[32];
	struct ibv_device_attr da;
	int rc = verbs_rc(ibv_query_device(r->verbs, &da));
	if (rc) {
		snprintf(err, errlen, "rdma: %s: cannot query the device: %s", r->device,
			 strerror(-rc));
		return rc;
	}
	r->init_depth = (uint8_t)(da.max_qp_init_rd_atom > READ_DEPTH ? READ_DEPTH :
				  da.max_qp_init_rd_atom > 0 ? da.max_qp_init_rd_atom : 1);
	r->resp_res = (uint8_t)(da.max_qp_rd_atom > 16 ? 16 :
				da.max_qp_rd_atom > 0 ? da.max_qp_rd_atom : 1);
	r->pd = ibv_alloc_pd(r->verbs);
	if (!r->pd) {
		rc = -(errno ? errno : ENOMEM);
		snprintf(err, errlen, "rdma: %s: cannot allocate a protection domain: %s",
			 r->device, strerror(-rc));
		return rc;
	}
	r->regions_max = da.max_mr > REGIONS_SPARE ? (uint32_t)(da.max_mr - REGIONS_SPARE) : 1;
	if (r->slab)
		r->mr = ibv_reg_mr(r->pd, r->slab, r->slab_len,
				   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ);
	if (r->mr || !r->slab)
		r->msg_mr = ibv_reg_mr(r->pd, r->msgs, (size_t)MAX_SLOTS * SLOT_MSGS * RDMA_MSG_MAX,
				       IBV_ACCESS_LOCAL_WRITE);
	if ((r->mr || !r->slab) && r->msg_mr)
		return 0;
	rc = -(errno ? errno : ENOMEM);
	if (rc == -ENOMEM || rc == -EPERM)
		snprintf(err, errlen, "rdma: cannot register the %s slab with %s: %s; the memlock "
			 "limit is %s and must be unlimited: ulimit -l unlimited, or "
			 "LimitMEMLOCK=infinity in the systemd unit", config_format_size(r->slab_len,
			 size, sizeof(size)), r->device, strerror(-rc), memlock_limit(lim,
			 sizeof(lim)));
	else
		snprintf(err, errlen, "rdma: cannot register the slab with %s: %s", r->device,
			 strerror(-rc));
	return rc;
}

static void release_memory(struct rdma_ctx *r)
{
	forget_all_regions(r);
	if (r->msg_mr && ibv_dereg_mr(r->msg_mr))
		log_warn("rdma: cannot deregister the message buffers: %s", strerror(errno));
	if (r->mr && ibv_dereg_mr(r->mr))
		log_warn("rdma: cannot deregister the slab: %s", strerror(errno));
	if (r->pd && ibv_dealloc_pd(r->pd))
		log_warn("rdma: cannot free the protection domain: %s", strerror(errno));
	r->msg_mr = r->mr = NULL;
	r->pd = NULL;
}

struct rdma_ctx *rdma_ctx_new(const struct mows_config *cfg, void *slab_base, size_t slab_len,
			      const struct rdma_host *host, char *err, size_t errlen)
{
	struct rdma_ctx *r = calloc(1, sizeof(*r));
	int rc = -ENOMEM;
	if (!r) {
		snprintf(err, errlen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	r->cfg = cfg;
	r->host = *host;
	r->slab = slab_base;
	r->slab_len = slab_len;
	r->stop_fd = -1;
	r->lease_ms = cfg->request_timeout_ms > LEASE_MIN_MS ? cfg->request_timeout_ms :
		      LEASE_MIN_MS;
	const char *fault = getenv("MOWS_TEST_RDMA_CORRUPT");
	r->corrupt_reads = fault && !strcmp(fault, "1");
	if (r->corrupt_reads)
		log_warn("rdma: MOWS_TEST_RDMA_CORRUPT=1: flipping a byte of every RDMA READ "
			 "(a test fault; the digest check must refuse every such chunk)");
	pthread_mutex_init(&r->lock, NULL);
	if (deadline_cond_init(&r->cond) || rdma_leases_init(&r->leases, LEASES_MAX) ||
	    !(r->msgs = aligned_alloc(4096, (size_t)MAX_SLOTS * SLOT_MSGS * RDMA_MSG_MAX))) {
		snprintf(err, errlen, "rdma: out of memory");
		goto out_free;
	}
	r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->stop_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "rdma: eventfd: %s", strerror(errno));
		goto out_free;
	}
	if (!slab_base || !slab_len) {
		r->slab = NULL; /* files mode */
		r->slab_len = 0;
	}
	rc = pick_device(r, err, errlen);
	if (rc == 0)
		rc = register_memory(r, err, errlen);
	if (rc)
		goto out_release_memory;
	if (r->slab)
		log_info("rdma: device %s port %u, %zu bytes of slab registered", r->device,
			 cfg->rdma_port, slab_len);
	else
		log_info("rdma: device %s port %u; the cache is in files: one memory region per "
			 "chunk, registered when RDMA first serves or fills it (at most %u)",
			 r->device, cfg->rdma_port, r->regions_max);
	return r;
out_release_memory:
	release_memory(r);
out_free:
	if (r->stop_fd >= 0)
		close(r->stop_fd);
	rdma_leases_release(&r->leases);
	free(r->msgs);
	free(r);
	errno = -rc;
	return NULL;
}

/* Stops the serving threads; returns whether all ended in time. */
static bool stop_serving(struct rdma_ctx *r)
{
	uint64_t one = 1;
	struct deadline dl = deadline_in_ms((int64_t)r->cfg->request_timeout_ms + STOP_EXTRA_MS);
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	for (struct transport_conn *c = r->serving; c; c = c->next)
		if (write(c->stop_fd, &one, sizeof(one)) < 0)
			log_warn("rdma: cannot signal a serving thread: %s", strerror(errno));
	while (r->nserving && deadline_cond_wait(&r->cond, &r->lock, &dl) == 0)
		;
	bool done = r->nserving == 0;
	pthread_mutex_unlock(&r->lock);
	return done;
}

void rdma_ctx_free(struct rdma_ctx *r)
{
	uint64_t one = 1;
	if (!r)
		return;
	bool stopped = stop_serving(r);
	if (r->listening) {
		if (write(r->stop_fd, &one, sizeof(one)) < 0)
			log_warn("rdma: cannot stop the CM thread: %s", strerror(errno));
		pthread_join(r->cm_thread, NULL);
	}
	if (!stopped) {
		log_err("rdma: a serving thread did not stop; leaving the RDMA context allocated");
		return;
	}
	drop_leases(r, NULL);
	if (r->listen_id)
		rdma_destroy_id(r->listen_id);
	if (r->cm_ch)
		rdma_destroy_event_channel(r->cm_ch);
	release_memory(r);
	close(r->stop_fd);
	rdma_leases_release(&r->leases);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r->msgs);
	free(r);
}

const char *rdma_ctx_device(const struct rdma_ctx *r)
{
	return r->device;
}

static uint64_t load(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

void rdma_stats(struct rdma_ctx *r, struct rdma_counters *out)
{
	*out = (struct rdma_counters){
		.reads_posted = load(&r->n.reads_posted),
		.bytes_read = load(&r->n.bytes_read),
		.fetches = load(&r->n.fetches),
		.fetch_errors = load(&r->n.fetch_errors),
		.completion_errors = load(&r->n.completion_errors),
		.conns_out = load(&r->n.conns_out),
		.conns_in = load(&r->n.conns_in),
		.conns_refused = load(&r->n.conns_refused),
		.descs = load(&r->n.descs),
		.digests_checked = load(&r->n.digests_checked),
		.digest_mismatches = load(&r->n.digest_mismatches),
		.digests_computed = load(&r->n.digests_computed),
		.msgs_refused = load(&r->n.msgs_refused),
	};
	pthread_mutex_lock(&r->lock);
	out->leases_active = r->leases.active;
	out->leases_granted = r->n.leases_granted;
	out->leases_expired = r->n.leases_expired;
	out->bytes_leased = r->n.bytes_leased;
	out->regions_active = r->n.regions_active;
	out->region_bytes = r->n.region_bytes;
	out->regions_registered = r->n.regions_registered;
	out->regions_forgotten = r->n.regions_forgotten;
	out->region_reg_ns = r->n.region_reg_ns;
	out->region_reg_max_ns = r->n.region_reg_max_ns;
	pthread_mutex_unlock(&r->lock);
}

void rdma_ctx_test_lease_ms(struct rdma_ctx *r, unsigned ms)
{
	__atomic_store_n(&r->lease_ms, ms, __ATOMIC_RELAXED);
}

void rdma_conn_test_keep_leases(struct transport_conn *c)
{
	c->keep_leases = true;
}

int rdma_ctx_test_register(struct rdma_ctx *r, const void *p, size_t len)
{
	uint32_t lkey, rkey;
	return region_keys(r, p, len, &lkey, &rkey);
}
