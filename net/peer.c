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
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/crc.h"
#include "common/log.h"
#include "net/auth.h"
#include "net/place.h"
#include "net/proto.h"
#include "net/rdma.h"
#include "net/tcp.h"

#define MAX_PEERS 256
#define MAX_IDLE 16
#define HANDSHAKE_MS 5000
#define QUARANTINE_MS 60000
#define MAX_TICKETS 64
#define TICKET_MS 10000

/* A pooled connection and the transport it speaks. */
struct pconn {
	struct transport_conn *c;
	const struct transport_ops *ops;
};

struct ticket {
	uint8_t bytes[RDMA_TICKET_LEN];
	uint64_t expires_ns;      /* 0: free */
};

struct peer {
	/* Set once when the entry is made. */
	char addr[INET6_ADDRSTRLEN + 16];
	struct sockaddr_storage sa;
	socklen_t salen;
	bool configured;          /* from `peers`; false: met only as an inbound client */
	/* Protected by peers->lock. */
	bool resolved;            /* in the latest resolution of `peers` */
	bool self, up;
	bool merged;              /* an inbound entry folded into a configured one */
	char node_id[PROTO_NODE_ID_MAX + 1];
	uint64_t node_hash;
	uint64_t last_seen_ns, quarantine_until_ns;
	uint64_t bytes_in, bytes_out, fetches, served, errors, bad_crc;
	uint16_t caps;            /* from its HELLO */
	const char *transport;    /* of its last new connection: "tcp" or "rdma" */
	bool rdma_failed;         /* logged that RDMA to it failed */
	struct pconn idle[MAX_IDLE];
	unsigned nidle, busy;
	/* Owned by the heartbeat thread. */
	int hb_fd;
	uint32_t hb_id;
};

struct peers {
	const struct mows_config *cfg;
	struct cache *cache;
	struct peer_host_ops host;
	uint8_t *secret;
	size_t secret_len;
	char node_id[PROTO_NODE_ID_MAX + 1];
	uint64_t node_hash;
	uint16_t listen_port;
	uint32_t max_payload;     /* largest frame we accept once authenticated */
	bool corrupt_sends;       /* test-only fault: MOWS_TEST_CORRUPT_SENDS=1 */
	int listen_fd, stop_fd;
	struct rdma_ctx *rdma;     /* NULL: TCP only */
	pthread_t listener, heartbeat;
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t conn_cond;  /* a pooled connection came back, or stop */
	pthread_cond_t stop_cond;  /* stop, or a serving thread ended */
	struct peer peers[MAX_PEERS]; /* entries are never removed, only marked */
	unsigned npeers;              /* protected by lock */
	unsigned nserving;            /* protected by lock */
	struct ticket tickets[MAX_TICKETS]; /* RDMA connect tickets, protected by lock */
	bool stopping;                /* protected by lock */
};

/* ---- frames ---- */

static int send_frame(int fd, uint8_t type, uint32_t id, const void *payload, uint32_t len,
		      const struct deadline *dl)
{
	uint8_t hdr[PROTO_HDR_LEN];
	proto_hdr_encode(hdr, type, 0, len, id);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, len } };
	return tcp_send_all(fd, iov, len ? 2 : 1, dl);
}

/* Receives one frame of at most @cap payload bytes into @buf. */
static int recv_frame(int fd, struct proto_hdr *hdr, void *buf, uint32_t cap,
		      const struct deadline *dl)
{
	uint8_t h[PROTO_HDR_LEN];
	int rc = tcp_recv_all(fd, h, sizeof(h), dl);
	if (rc == 0)
		rc = proto_hdr_decode(h, sizeof(h), hdr, cap);
	if (rc == 0 && hdr->len)
		rc = tcp_recv_all(fd, buf, hdr->len, dl);
	return rc;
}

/* ---- authentication ---- */

static int send_hello(struct peers *p, int fd, uint8_t nonce[PROTO_NONCE_LEN],
		      const struct deadline *dl)
{
	struct proto_hello h = { .version = PROTO_VERSION, .listen_port = p->listen_port,
				 .caps = p->rdma ? PROTO_CAP_RDMA : 0 };
	uint8_t buf[PROTO_HELLO_MAX_LEN];
	int rc = auth_nonce(nonce);
	if (rc)
		return rc;
	memcpy(h.nonce, nonce, PROTO_NONCE_LEN);
	snprintf(h.node_id, sizeof(h.node_id), "%s", p->node_id);
	ssize_t n = proto_hello_encode(buf, sizeof(buf), &h);
	if (n < 0)
		return (int)n;
	return send_frame(fd, PROTO_HELLO, 0, buf, (uint32_t)n, dl);
}

/* Checks the peer's AUTH: a MAC over our nonce, or both sides explicitly insecure. */
static bool auth_ok(struct peers *p, const struct proto_auth *a, char their_role,
		    const uint8_t my_nonce[PROTO_NONCE_LEN], const struct proto_hello *them)
{
	if (p->cfg->insecure || a->insecure)
		return p->cfg->insecure && a->insecure;
	return auth_check(p->secret, p->secret_len, their_role, my_nonce, them->nonce,
			  them->node_id, p->node_id, a->mac);
}

/*
 * Runs the mutual handshake on @fd as @role; fills *@them with the peer's HELLO. Returns 0,
 * -EACCES when authentication failed, or another -errno.
 */
static int handshake(struct peers *p, int fd, char role, struct proto_hello *them)
{
	struct deadline dl = deadline_in_ms(HANDSHAKE_MS);
	uint8_t nonce[PROTO_NONCE_LEN], buf[PROTO_HELLO_MAX_LEN];
	struct proto_hdr hdr;
	struct proto_auth mine = { .insecure = p->cfg->insecure }, theirs;
	int rc = send_hello(p, fd, nonce, &dl);
	if (rc == 0)
		rc = recv_frame(fd, &hdr, buf, PROTO_PREAUTH_MAX_PAYLOAD, &dl);
	if (rc == 0 && hdr.type != PROTO_HELLO)
		rc = -EPROTO;
	if (rc == 0)
		rc = proto_hello_decode(buf, hdr.len, them);
	if (rc)
		return rc;
	if (!p->cfg->insecure)
		auth_mac(p->secret, p->secret_len, role, them->nonce, nonce, p->node_id,
			 them->node_id, mine.mac);
	proto_auth_encode(buf, &mine);
	rc = send_frame(fd, PROTO_AUTH, 0, buf, PROTO_AUTH_LEN, &dl);
	if (rc == 0)
		rc = recv_frame(fd, &hdr, buf, PROTO_PREAUTH_MAX_PAYLOAD, &dl);
	if (rc == 0 && (hdr.type != PROTO_AUTH || proto_auth_decode(buf, hdr.len, &theirs)))
		rc = -EPROTO;
	if (rc)
		return rc;
	char their_role = role == AUTH_ROLE_CLIENT ? AUTH_ROLE_SERVER : AUTH_ROLE_CLIENT;
	bool ok = auth_ok(p, &theirs, their_role, nonce, them);
	rc = send_frame(fd, ok ? PROTO_AUTH_OK : PROTO_AUTH_FAIL, 0, NULL, 0, &dl);
	if (!ok)
		return -EACCES;
	if (rc == 0)
		rc = recv_frame(fd, &hdr, buf, PROTO_PREAUTH_MAX_PAYLOAD, &dl);
	if (rc == 0 && hdr.type != PROTO_AUTH_OK)
		rc = hdr.type == PROTO_AUTH_FAIL ? -EACCES : -EPROTO;
	return rc;
}

/* ---- peer table (lock held) ---- */

/* The entry for @node_id, preferring a configured one over an inbound one. */
static struct peer *do_find_id(struct peers *p, const char *node_id)
{
	struct peer *inbound = NULL;
	for (unsigned i = 0; i < p->npeers; i++) {
		struct peer *pe = &p->peers[i];
		if (strcmp(pe->node_id, node_id) || pe->merged)
			continue;
		if (pe->configured)
			return pe;
		inbound = pe;
	}
	return inbound;
}

/* A configured peer learnt its id: fold an inbound entry of the same node into it. */
static void do_merge_inbound(struct peers *p, struct peer *into)
{
	for (unsigned i = 0; i < p->npeers; i++) {
		struct peer *pe = &p->peers[i];
		if (pe == into || pe->configured || pe->merged || strcmp(pe->node_id, into->node_id))
			continue;
		into->bytes_out += pe->bytes_out;
		into->served += pe->served;
		pe->merged = true;
	}
}

static struct peer *do_add_peer(struct peers *p, const struct sockaddr *sa, socklen_t salen,
				bool configured)
{
	if (p->npeers == MAX_PEERS)
		return NULL;
	struct peer *pe = &p->peers[p->npeers++];
	memset(pe, 0, sizeof(*pe));
	pe->hb_fd = -1;
	pe->configured = configured;
	pe->resolved = configured;
	if (sa) {
		memcpy(&pe->sa, sa, salen);
		pe->salen = salen;
		char host[INET6_ADDRSTRLEN], port[8];
		getnameinfo(sa, salen, host, sizeof(host), port, sizeof(port),
			    NI_NUMERICHOST | NI_NUMERICSERV);
		snprintf(pe->addr, sizeof(pe->addr), "%s%s%s:%.7s", sa->sa_family == AF_INET6 ?
			 "[" : "", host, sa->sa_family == AF_INET6 ? "]" : "", port);
	} else {
		snprintf(pe->addr, sizeof(pe->addr), "inbound");
	}
	return pe;
}

static bool do_usable(struct peers *p, const struct peer *pe, uint64_t now)
{
	(void)p;
	return pe->configured && pe->resolved && pe->up && !pe->self && pe->node_id[0] &&
	       pe->quarantine_until_ns <= now;
}

/* Takes the pooled connections of a peer that went away, to close without the lock. */
static unsigned do_take_idle(struct peer *pe, struct pconn *out)
{
	unsigned n = pe->nidle;
	memcpy(out, pe->idle, n * sizeof(*out));
	pe->nidle = 0;
	return n;
}

static void close_conns(struct pconn *conns, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		conns[i].ops->close(conns[i].c);
}

/* ---- resolution ---- */

static void resolve_entry(struct peers *p, const char *entry, size_t len, bool *seen)
{
	char host[256], port[16];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai, *a;
	if (tcp_split_hostport(entry, len, host, sizeof(host), port, sizeof(port)))
		return;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		log_warn("peers: cannot resolve '%s': %s; trying again in %u ms", host,
			 gai_strerror(rc), p->cfg->resolve_interval_ms);
		return;
	}
	pthread_mutex_lock(&p->lock);
	for (a = ai; a; a = a->ai_next) {
		unsigned i;
		for (i = 0; i < p->npeers; i++)
			if (p->peers[i].configured && p->peers[i].salen == a->ai_addrlen &&
			    !memcmp(&p->peers[i].sa, a->ai_addr, a->ai_addrlen))
				break;
		if (i == p->npeers && !do_add_peer(p, a->ai_addr, a->ai_addrlen, true))
			continue;
		p->peers[i].resolved = true;
		seen[i] = true;
	}
	pthread_mutex_unlock(&p->lock);
	freeaddrinfo(ai);
}

static void resolve_all(struct peers *p)
{
	bool seen[MAX_PEERS] = { 0 };
	for (const char *s = p->cfg->peers; *s;) {
		size_t n = strcspn(s, ", \t");
		if (n)
			resolve_entry(p, s, n, seen);
		s += n;
		s += strspn(s, ", \t");
	}
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->npeers; i++)
		if (p->peers[i].configured && !seen[i] && p->peers[i].resolved) {
			log_info("peer %s no longer resolves from peers; dropping it",
				 p->peers[i].addr);
			p->peers[i].resolved = false;
		}
	pthread_mutex_unlock(&p->lock);
}

/* ---- heartbeats ---- */

static void mark_down(struct peers *p, struct peer *pe, const char *why)
{
	struct pconn conns[MAX_IDLE];
	pthread_mutex_lock(&p->lock);
	unsigned n = 0;
	if (pe->up) {
		pe->up = false;
		log_warn("peer %s (%s) is down: %s", pe->node_id, pe->addr, why);
		n = do_take_idle(pe, conns);
	}
	pthread_mutex_unlock(&p->lock);
	close_conns(conns, n);
}

/* Connects the heartbeat connection of @pe. Returns 0 or -errno. */
static int hb_connect(struct peers *p, struct peer *pe)
{
	struct deadline dl = deadline_in_ms(p->cfg->heartbeat_ms < 2000 ? 2000 :
					    p->cfg->heartbeat_ms);
	struct proto_hello them;
	int fd = tcp_connect((struct sockaddr *)&pe->sa, pe->salen, &dl);
	if (fd < 0)
		return fd;
	int rc = handshake(p, fd, AUTH_ROLE_CLIENT, &them);
	if (rc) {
		close(fd);
		if (rc == -EACCES)
			log_warn("peer %s refused our authentication or failed its own; check that "
				 "both use the same secret_file", pe->addr);
		return rc;
	}
	pthread_mutex_lock(&p->lock);
	pe->caps = them.caps;
	if (strcmp(them.node_id, pe->node_id)) {
		snprintf(pe->node_id, sizeof(pe->node_id), "%s", them.node_id);
		pe->node_hash = place_node_hash(them.node_id);
		do_merge_inbound(p, pe);
	}
	if (!strcmp(them.node_id, p->node_id)) {
		pe->self = true;
		log_debug("peer %s is this node", pe->addr);
	}
	bool self = pe->self;
	pthread_mutex_unlock(&p->lock);
	if (self) {
		close(fd);
		return -EALREADY;
	}
	pe->hb_fd = fd;
	return 0;
}

static int hb_ping(struct peers *p, struct peer *pe)
{
	uint32_t timeout = p->cfg->peer_timeout_ms < 2000 ? p->cfg->peer_timeout_ms : 2000;
	struct deadline dl = deadline_in_ms(timeout);
	uint8_t buf[PROTO_PING_LEN];
	struct proto_ping ping = { .mono_ms = mono_ns() / 1000000 }, pong;
	struct proto_hdr hdr;
	uint32_t id = ++pe->hb_id;
	proto_ping_encode(buf, &ping);
	int rc = send_frame(pe->hb_fd, PROTO_PING, id, buf, sizeof(buf), &dl);
	if (rc == 0)
		rc = recv_frame(pe->hb_fd, &hdr, buf, sizeof(buf), &dl);
	if (rc == 0 && (hdr.type != PROTO_PONG || hdr.req_id != id ||
			proto_ping_decode(buf, hdr.len, &pong) || pong.mono_ms != ping.mono_ms))
		rc = -EPROTO;
	return rc;
}

static void heartbeat_one(struct peers *p, struct peer *pe)
{
	int rc = pe->hb_fd >= 0 ? 0 : hb_connect(p, pe);
	if (rc == -EALREADY)
		return;
	if (rc == 0)
		rc = hb_ping(p, pe);
	uint64_t now = mono_ns();
	if (rc == 0) {
		pthread_mutex_lock(&p->lock);
		pe->last_seen_ns = now;
		bool was_up = pe->up;
		pe->up = true;
		pthread_mutex_unlock(&p->lock);
		if (!was_up)
			log_info("peer %s (%s) is up", pe->node_id, pe->addr);
		return;
	}
	if (pe->hb_fd >= 0) {
		/* The peer may have restarted: its pooled connections lead to the old process. */
		struct pconn conns[MAX_IDLE];
		close(pe->hb_fd);
		pe->hb_fd = -1;
		pthread_mutex_lock(&p->lock);
		unsigned n = do_take_idle(pe, conns);
		pthread_mutex_unlock(&p->lock);
		close_conns(conns, n);
	}
	if (now - pe->last_seen_ns > (uint64_t)p->cfg->peer_timeout_ms * 1000000)
		mark_down(p, pe, rc == -EACCES ? "authentication failed" : strerror(-rc));
}

static bool wait_stop(struct peers *p, unsigned ms)
{
	struct deadline dl = deadline_in_ms(ms);
	pthread_mutex_lock(&p->lock);
	while (!p->stopping && deadline_cond_wait(&p->stop_cond, &p->lock, &dl) == 0)
		;
	bool stop = p->stopping;
	pthread_mutex_unlock(&p->lock);
	return stop;
}

static void *heartbeat_main(void *arg)
{
	struct peers *p = arg;
	uint64_t next_resolve = 0;
	do {
		if (mono_ns() >= next_resolve) {
			resolve_all(p);
			next_resolve = mono_ns() + (uint64_t)p->cfg->resolve_interval_ms * 1000000;
		}
		pthread_mutex_lock(&p->lock);
		unsigned n = p->npeers;
		pthread_mutex_unlock(&p->lock);
		for (unsigned i = 0; i < n; i++) {
			struct peer *pe = &p->peers[i];
			pthread_mutex_lock(&p->lock);
			bool ping = pe->configured && pe->resolved && !pe->self && !p->stopping;
			pthread_mutex_unlock(&p->lock);
			if (ping)
				heartbeat_one(p, pe);
		}
	} while (!wait_stop(p, p->cfg->heartbeat_ms));
	for (unsigned i = 0; i < p->npeers; i++)
		if (p->peers[i].hb_fd >= 0)
			close(p->peers[i].hb_fd);
	return NULL;
}

/* ---- fetching (a cache fill source) ---- */

/* Asks an authenticated TCP connection for an RDMA ticket. Returns 0 or -errno. */
static int ask_ticket(int fd, struct proto_rdma_ticket *t, const struct deadline *dl)
{
	uint8_t buf[PROTO_RDMA_TICKET_LEN];
	struct proto_hdr hdr;
	int rc = send_frame(fd, PROTO_RDMA_DESC, 1, NULL, 0, dl);
	if (rc == 0)
		rc = recv_frame(fd, &hdr, buf, sizeof(buf), dl);
	if (rc == 0 && (hdr.type != PROTO_RDMA_DESC || proto_rdma_ticket_decode(buf, hdr.len, t)))
		rc = -EPROTO;
	if (rc == 0 && t->port == 0)
		rc = -EOPNOTSUPP;
	return rc;
}

/* Opens an RDMA connection to @pe over the authenticated TCP connection @fd. */
static struct transport_conn *rdma_open(struct peers *p, struct peer *pe, int fd,
					const struct deadline *dl)
{
	struct proto_rdma_ticket t;
	int rc = ask_ticket(fd, &t, dl);
	struct transport_conn *c = NULL;
	if (rc == 0) {
		struct sockaddr_storage sa = pe->sa;
		if (sa.ss_family == AF_INET)
			((struct sockaddr_in *)&sa)->sin_port = htons(t.port);
		else
			((struct sockaddr_in6 *)&sa)->sin6_port = htons(t.port);
		c = rdma_ctx_connect(p->rdma, (struct sockaddr *)&sa, pe->salen, t.ticket, dl);
		rc = c ? 0 : -errno;
	}
	pthread_mutex_lock(&p->lock);
	bool log = rc && !pe->rdma_failed;
	pe->rdma_failed = pe->rdma_failed || rc;
	pthread_mutex_unlock(&p->lock);
	if (log)
		log_warn("peer %s (%s): no RDMA connection (%s); %s", pe->node_id, pe->addr,
			 strerror(-rc), p->cfg->transport == TRANSPORT_RDMA ?
			 "transport = rdma, so chunks come from the backing" : "using TCP");
	return c;
}

/* Connects and authenticates a new connection to @pe, RDMA when both ends can. */
static int conn_open(struct peers *p, struct peer *pe, const struct deadline *dl,
		     struct pconn *out)
{
	struct proto_hello them;
	int fd = tcp_connect((struct sockaddr *)&pe->sa, pe->salen, dl);
	int rc = fd < 0 ? fd : handshake(p, fd, AUTH_ROLE_CLIENT, &them);
	if (rc == 0 && strcmp(them.node_id, pe->node_id))
		rc = -ESTALE; /* another node answers at that address now */
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	bool want_rdma = p->rdma && (them.caps & PROTO_CAP_RDMA) &&
			 p->cfg->transport != TRANSPORT_TCP;
	out->c = want_rdma ? rdma_open(p, pe, fd, dl) : NULL;
	if (out->c) {
		close(fd); /* the RDMA connection stands on its own */
		out->ops = &rdma_transport;
	} else if (p->cfg->transport == TRANSPORT_RDMA) {
		close(fd);
		return -EOPNOTSUPP;
	} else {
		out->c = tcp_conn_new(fd, p->max_payload);
		out->ops = &tcp_transport;
		if (!out->c) {
			close(fd);
			return -ENOMEM;
		}
	}
	pthread_mutex_lock(&p->lock);
	if (pe->transport != out->ops->name)
		log_info("peer %s (%s): chunks travel by %s", pe->node_id, pe->addr,
			 out->ops->name);
	pe->transport = out->ops->name;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static bool conn_get(struct peers *p, struct peer *pe, const struct deadline *dl,
		     struct pconn *out)
{
	pthread_mutex_lock(&p->lock);
	while (!pe->nidle && pe->busy >= p->cfg->peer_inflight && !p->stopping)
		if (deadline_cond_wait(&p->conn_cond, &p->lock, dl) == -ETIMEDOUT)
			break;
	bool got = false, connect_new = false;
	if (!p->stopping && pe->nidle) {
		*out = pe->idle[--pe->nidle];
		pe->busy++;
		got = true;
	} else if (!p->stopping && pe->busy < p->cfg->peer_inflight) {
		pe->busy++;
		connect_new = true;
	}
	pthread_mutex_unlock(&p->lock);
	if (!connect_new)
		return got;
	if (conn_open(p, pe, dl, out) == 0)
		return true;
	pthread_mutex_lock(&p->lock);
	pe->busy--;
	pe->errors++;
	pthread_cond_broadcast(&p->conn_cond);
	pthread_mutex_unlock(&p->lock);
	return false;
}

static void conn_put(struct peers *p, struct peer *pe, struct pconn *c, bool reuse)
{
	pthread_mutex_lock(&p->lock);
	pe->busy--;
	if (reuse && pe->up && pe->nidle < MAX_IDLE) {
		pe->idle[pe->nidle++] = *c;
		reuse = true;
	} else {
		reuse = false;
	}
	pthread_cond_broadcast(&p->conn_cond);
	pthread_mutex_unlock(&p->lock);
	if (!reuse)
		c->ops->close(c->c);
}

static void charge_bad_crc(struct peers *p, struct peer *pe, uint32_t got, uint32_t sent)
{
	pthread_mutex_lock(&p->lock);
	pe->bad_crc++;
	bool quarantine = pe->bad_crc % PEER_BAD_LIMIT == 0;
	if (quarantine)
		pe->quarantine_until_ns = mono_ns() + (uint64_t)QUARANTINE_MS * 1000000;
	pthread_mutex_unlock(&p->lock);
	log_warn("peer %s (%s) sent a chunk with crc32 %08x, but it reads %08x; dropped it%s",
		 pe->node_id, pe->addr, sent, got,
		 quarantine ? "; quarantining the peer for 60 s" : "");
}

/* Fetches one chunk from @pe into @dst and checks its CRC. Returns 0 or -errno. */
static int fetch_one(struct peers *p, struct peer *pe, const struct transport_chunk_req *req,
		     void *dst, size_t len, const struct deadline *outer, struct cache_fetch *out)
{
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	if (deadline_left_ms(outer) < deadline_left_ms(&dl))
		dl = *outer;
	struct pconn c;
	if (!conn_get(p, pe, &dl, &c))
		return -EHOSTUNREACH;
	uint32_t sent = 0;
	int rc = c.ops->fetch(c.c, req, dst, len, &sent, &dl);
	conn_put(p, pe, &c, rc == 0 || rc == -ENOENT || rc == -EIO);
	if (rc == 0) {
		uint32_t got = mows_crc32(0, dst, len);
		if (got != sent) {
			charge_bad_crc(p, pe, got, sent);
			return -EBADMSG;
		}
		out->crc = got;
		out->crc_known = true;
		out->origin = (uint32_t)(pe - p->peers) + 1; /* entries are never removed */
	}
	pthread_mutex_lock(&p->lock);
	if (rc == 0) {
		pe->bytes_in += len;
		pe->fetches++;
	} else if (rc != -ENOENT) {
		pe->errors++;
	}
	pthread_mutex_unlock(&p->lock);
	if (rc && rc != -ENOENT)
		log_debug("peer %s: chunk %" PRIu64 ": %s", pe->node_id, req->chunk, strerror(-rc));
	return rc;
}

/* Live members for placement: usable peers plus ourselves (index -1), one per node id. */
static unsigned members(struct peers *p, uint64_t *hashes, int *idx)
{
	uint64_t now = mono_ns();
	unsigned n = 0;
	hashes[n] = p->node_hash;
	idx[n++] = -1;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->npeers && n < MAX_PEERS; i++) {
		struct peer *pe = &p->peers[i];
		bool dup = false;
		if (!do_usable(p, pe, now))
			continue;
		for (unsigned k = 0; k < n && !dup; k++)
			dup = hashes[k] == pe->node_hash;
		if (dup)
			continue;
		hashes[n] = pe->node_hash;
		idx[n++] = (int)i;
	}
	pthread_mutex_unlock(&p->lock);
	return n;
}

static int peers_fetch(void *ctx, struct cache_file *f, uint64_t chunk, void *dst, size_t len,
		       const struct deadline *dl, struct cache_fetch *out)
{
	struct peers *p = ctx;
	uint64_t hashes[MAX_PEERS];
	int idx[MAX_PEERS];
	unsigned order[MAX_PEERS];
	unsigned n = members(p, hashes, idx);
	if (n < 2)
		return -ENOENT;
	struct transport_chunk_req req = {
		.file_key = cache_file_key(f),
		.file_size = cache_file_size(f),
		.mtime_ns = cache_file_mtime_ns(f),
		.chunk = chunk,
		.chunk_size = (uint32_t)cache_chunk_size(p->cache),
	};
	place_rank(req.file_key, chunk, hashes, n, order);
	unsigned owners = p->cfg->replicas, failed = 0;
	for (unsigned pos = 0; pos < n && !deadline_passed(dl); pos++) {
		int i = idx[order[pos]];
		if (i < 0) {
			if (pos < owners + failed) {
				/* Ours: the next in rank held it before we joined, if anyone. */
				for (unsigned k = pos + 1; k < n; k++) {
					req.fill = false;
					int j = idx[order[k]];
					if (j >= 0)
						return fetch_one(p, &p->peers[j], &req, dst, len, dl,
								 out) ? -ENOENT : 0;
				}
				return -ENOENT;
			}
			continue;
		}
		req.fill = pos < owners + failed;
		int rc = fetch_one(p, &p->peers[i], &req, dst, len, dl, out);
		if (rc == 0)
			return 0;
		failed++;
		if (failed > owners + 2)
			break;
	}
	return -ENOENT; /* nobody could help in time: the backing it is */
}

static struct peer *first_up(struct peers *p)
{
	uint64_t now = mono_ns();
	struct peer *found = NULL;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->npeers && !found; i++)
		if (do_usable(p, &p->peers[i], now))
			found = &p->peers[i];
	pthread_mutex_unlock(&p->lock);
	return found;
}

bool peers_any_up(struct peers *p)
{
	return first_up(p) != NULL;
}

int peers_fetch_direct(struct peers *p, const struct transport_chunk_req *req, void *dst,
		       size_t len, const char **transport)
{
	struct peer *pe = first_up(p);
	struct cache_fetch out;
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	if (!pe)
		return -EHOSTUNREACH;
	int rc = fetch_one(p, pe, req, dst, len, &dl, &out);
	pthread_mutex_lock(&p->lock);
	*transport = pe->transport ? pe->transport : "?";
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* Cache op: the chunk that peer @origin sent (CRC @sent) was wrong; the right one is @good. */
static void peers_charge(void *ctx, uint32_t origin, struct cache_file *f, uint64_t chunk,
			 uint32_t sent, uint32_t good)
{
	struct peers *p = ctx;
	if (origin == 0 || origin > MAX_PEERS)
		return;
	log_warn("peer chunk %" PRIu64 " of %s was wrong: charging the peer that sent it",
		 chunk, cache_file_relpath(f));
	charge_bad_crc(p, &p->peers[origin - 1], good, sent);
}

const struct cache_source_ops peers_source = {
	.name = "peers",
	.remote = true,
	.fetch = peers_fetch,
	.charge = peers_charge,
};

/* ---- serving ---- */

struct serve_arg {
	struct peers *p;
	int fd;
	char addr[INET6_ADDRSTRLEN + 8];
};

static struct cache_file *file_for(struct peers *p, const struct proto_get *g)
{
	struct cache_file *f = cache_file_by_key(p->cache, g->file_key);
	if (f && (cache_file_size(f) != g->file_size || cache_file_mtime_ns(f) != g->mtime_ns)) {
		cache_file_put(p->cache, f);
		f = NULL;
	}
	if (!f)
		f = p->host.open_key(p->host.ctx, g->file_key, g->file_size, g->mtime_ns);
	return f;
}

static int send_data(struct peers *p, int fd, uint32_t id, int status, uint32_t crc,
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
	/* The chunk goes from the pinned slab straight to the socket. */
	struct iovec iov[2] = { { head, sizeof(head) }, { (void *)data, d.length } };
	int rc = tcp_send_all(fd, iov, d.length ? 2 : 1, dl);
	free(bad);
	return rc;
}

static int serve_get(struct peers *p, struct peer *pe, int fd, const struct proto_hdr *hdr,
		     const uint8_t *payload)
{
	struct proto_get g;
	struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
	int rc = proto_get_decode(payload, hdr->len, &g);
	if (rc)
		return rc;
	if (g.chunk_size != cache_chunk_size(p->cache))
		return send_data(p, fd, hdr->req_id, EINVAL, 0, NULL, 0, &dl);
	struct cache_file *f = file_for(p, &g);
	if (!f)
		return send_data(p, fd, hdr->req_id, ENOENT, 0, NULL, 0, &dl);
	struct cache_span span;
	uint32_t crc;
	rc = cache_serve_chunk(p->cache, f, g.chunk, g.flags & PROTO_GET_FILL, &dl, &span, &crc);
	if (rc) {
		cache_file_put(p->cache, f);
		return send_data(p, fd, hdr->req_id, rc == -ENOENT ? ENOENT : EIO, 0, NULL, 0,
				 &dl);
	}
	rc = send_data(p, fd, hdr->req_id, 0, crc, span.data, (uint32_t)span.len, &dl);
	cache_read_done(p->cache, &span, 1);
	cache_file_put(p->cache, f);
	if (rc == 0 && pe) {
		pthread_mutex_lock(&p->lock);
		struct peer *best = do_find_id(p, pe->node_id);
		pe = best ? best : pe;
		pe->bytes_out += span.len;
		pe->served++;
		pthread_mutex_unlock(&p->lock);
	}
	return rc;
}

/* Answers RDMA_DESC: a fresh one-use ticket for an RDMA connect, or port 0 without RDMA. */
static int send_ticket(struct peers *p, int fd, uint32_t id, const struct deadline *dl)
{
	struct proto_rdma_ticket t = { 0 };
	uint8_t buf[PROTO_RDMA_TICKET_LEN];
	uint64_t now = mono_ns();
	if (p->rdma && auth_nonce(t.ticket) == 0) {
		pthread_mutex_lock(&p->lock);
		for (unsigned i = 0; i < MAX_TICKETS; i++)
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
	return send_frame(fd, PROTO_RDMA_DESC, id, buf, sizeof(buf), dl);
}

/* ---- RDMA host callbacks (called on the RDMA transport's threads) ---- */

static bool rdma_ticket_ok(void *ctx, const uint8_t ticket[RDMA_TICKET_LEN])
{
	struct peers *p = ctx;
	uint64_t now = mono_ns();
	bool ok = false;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < MAX_TICKETS && !ok; i++)
		if (p->tickets[i].expires_ns > now &&
		    CRYPTO_memcmp(p->tickets[i].bytes, ticket, RDMA_TICKET_LEN) == 0) {
			p->tickets[i].expires_ns = 0; /* one use */
			ok = true;
		}
	pthread_mutex_unlock(&p->lock);
	return ok;
}

static int rdma_pin(void *ctx, const struct proto_get *g, struct cache_span *span, uint32_t *crc)
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

static void rdma_unpin(void *ctx, struct cache_span *span)
{
	struct peers *p = ctx;
	cache_read_done(p->cache, span, 1);
}

static struct peer *inbound_peer(struct peers *p, const char *node_id)
{
	if (!strcmp(node_id, p->node_id))
		return NULL; /* ourselves, through our own address in `peers` */
	pthread_mutex_lock(&p->lock);
	struct peer *pe = do_find_id(p, node_id);
	if (!pe && (pe = do_add_peer(p, NULL, 0, false))) {
		snprintf(pe->node_id, sizeof(pe->node_id), "%s", node_id);
		pe->node_hash = place_node_hash(node_id);
	}
	pthread_mutex_unlock(&p->lock);
	return pe;
}

static void serve_loop(struct peers *p, struct peer *pe, int fd)
{
	uint8_t buf[PROTO_GET_LEN];
	struct proto_hdr hdr;
	while (wait_readable_or_stop(fd, p->stop_fd) > 0) {
		struct deadline dl = deadline_in_ms(p->cfg->request_timeout_ms);
		int rc = recv_frame(fd, &hdr, buf, sizeof(buf), &dl);
		if (rc == 0 && (hdr.type == PROTO_PING || hdr.type == PROTO_PONG)) {
			rc = hdr.type == PROTO_PING ? send_frame(fd, PROTO_PONG, hdr.req_id, buf,
								 hdr.len, &dl) : -EPROTO;
		} else if (rc == 0 && hdr.type == PROTO_GET) {
			rc = serve_get(p, pe, fd, &hdr, buf);
		} else if (rc == 0 && hdr.type == PROTO_RDMA_DESC && hdr.len == 0) {
			rc = send_ticket(p, fd, hdr.req_id, &dl);
		} else if (rc == 0) {
			rc = -EPROTO;
		}
		if (rc) {
			if (rc != -ECONNRESET)
				log_debug("peer connection closed: %s", strerror(-rc));
			return;
		}
	}
}

static void *serve_main(void *arg)
{
	struct serve_arg *sa = arg;
	struct peers *p = sa->p;
	struct proto_hello them;
	int rc = handshake(p, sa->fd, AUTH_ROLE_SERVER, &them);
	if (rc == -EACCES)
		log_warn("peer connection from %s failed authentication; it got nothing", sa->addr);
	else if (rc)
		log_debug("peer connection from %s: handshake: %s", sa->addr, strerror(-rc));
	else
		serve_loop(p, inbound_peer(p, them.node_id), sa->fd);
	close(sa->fd);
	free(sa);
	pthread_mutex_lock(&p->lock);
	p->nserving--;
	pthread_cond_broadcast(&p->stop_cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void spawn_server(struct peers *p, int fd, const struct sockaddr_storage *ss,
			 socklen_t sslen)
{
	struct serve_arg *sa = calloc(1, sizeof(*sa));
	pthread_mutex_lock(&p->lock);
	bool room = sa && p->nserving < p->cfg->max_connections && !p->stopping;
	if (room)
		p->nserving++;
	pthread_mutex_unlock(&p->lock);
	if (!room || tcp_setup(fd)) {
		if (sa)
			log_warn("peers: refusing a connection: %u connections already "
				 "(max_connections)", p->cfg->max_connections);
		goto out_undo;
	}
	sa->p = p;
	sa->fd = fd;
	char host[INET6_ADDRSTRLEN] = "?";
	getnameinfo((const struct sockaddr *)ss, sslen, host, sizeof(host), NULL, 0,
		    NI_NUMERICHOST);
	snprintf(sa->addr, sizeof(sa->addr), "%s", host);
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &attr, serve_main, sa);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return;
out_undo:
	close(fd);
	free(sa);
	if (room) {
		pthread_mutex_lock(&p->lock);
		p->nserving--;
		pthread_mutex_unlock(&p->lock);
	}
}

static void *listener_main(void *arg)
{
	struct peers *p = arg;
	while (wait_readable_or_stop(p->listen_fd, p->stop_fd) > 0) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(p->listen_fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
		if (fd >= 0)
			spawn_server(p, fd, &ss, len);
	}
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
	p->listen_fd = p->stop_fd = -1;
	p->max_payload = PROTO_DATA_FIXED_LEN + (uint32_t)cache_chunk_size(c);
	p->corrupt_sends = getenv("MOWS_TEST_CORRUPT_SENDS") &&
			   !strcmp(getenv("MOWS_TEST_CORRUPT_SENDS"), "1");
	if (cfg->node_id[0])
		snprintf(p->node_id, sizeof(p->node_id), "%.*s", PROTO_NODE_ID_MAX, cfg->node_id);
	else
		default_node_id(p->node_id, sizeof(p->node_id));
	if (!proto_node_id_ok(p->node_id) || strlen(cfg->node_id) > PROTO_NODE_ID_MAX) {
		snprintf(err, errlen, "node_id '%s': expected 1 to %d printable characters without "
			 "spaces; set node_id", p->node_id, PROTO_NODE_ID_MAX);
		goto out_free;
	}
	p->node_hash = place_node_hash(p->node_id);
	if (!cfg->insecure &&
	    auth_load_secret(cfg->secret_file, &p->secret, &p->secret_len, err, errlen))
		goto out_free;
	if (cfg->insecure)
		log_warn("insecure = true: peers are not authenticated; anyone who reaches %s can "
			 "read cached data", cfg->listen);
	p->listen_fd = tcp_listen(cfg->listen, err, errlen);
	if (p->listen_fd < 0)
		goto out_free;
	p->listen_port = port_of(cfg->listen);
	p->stop_fd = eventfd(0, EFD_CLOEXEC);
	pthread_mutex_init(&p->lock, NULL);
	if (p->stop_fd < 0 || deadline_cond_init(&p->conn_cond) ||
	    deadline_cond_init(&p->stop_cond)) {
		snprintf(err, errlen, "peers: cannot create an eventfd or condition: %s",
			 strerror(errno));
		goto out_free;
	}
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
	free(p);
	return NULL;
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
	struct rdma_host h = { .pin = rdma_pin, .unpin = rdma_unpin,
			       .ticket_ok = rdma_ticket_ok, .ctx = p };
	p->rdma = rdma_ctx_new(p->cfg, base, len, &h, err, sizeof(err));
	if (p->rdma && (tcp_split_hostport(p->cfg->listen, strlen(p->cfg->listen), host,
					   sizeof(host), port, sizeof(port)) ||
			rdma_ctx_listen(p->rdma, host, p->listen_port, err, sizeof(err)))) {
		rdma_ctx_free(p->rdma);
		p->rdma = NULL;
	}
	if (p->rdma) {
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

int peers_start(struct peers *p)
{
	int rc = rdma_start(p);
	if (rc)
		return rc;
	rc = pthread_create(&p->listener, NULL, listener_main, p);
	if (rc)
		return -rc;
	rc = pthread_create(&p->heartbeat, NULL, heartbeat_main, p);
	if (rc) {
		uint64_t one = 1;
		if (write(p->stop_fd, &one, sizeof(one)) < 0)
			log_warn("peers: cannot stop the listener: %s", strerror(errno));
		pthread_join(p->listener, NULL);
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
	uint64_t one = 1;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->stop_cond);
	pthread_cond_broadcast(&p->conn_cond);
	pthread_mutex_unlock(&p->lock);
	if (write(p->stop_fd, &one, sizeof(one)) < 0)
		log_warn("peers: cannot signal stop: %s", strerror(errno));
	if (p->started) {
		pthread_join(p->listener, NULL);
		pthread_join(p->heartbeat, NULL);
	}
	struct deadline dl = deadline_in_ms(5000);
	pthread_mutex_lock(&p->lock);
	while (p->nserving && deadline_cond_wait(&p->stop_cond, &p->lock, &dl) == 0)
		;
	bool idle = p->nserving == 0;
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->npeers; i++)
		close_conns(p->peers[i].idle, p->peers[i].nidle);
	rdma_ctx_free(p->rdma);
	close(p->listen_fd);
	if (!idle) /* a serving thread is stuck in a send: leave it the struct */
		return;
	close(p->stop_fd);
	auth_secret_free(p->secret, p->secret_len);
	free(p);
}

const char *peers_node_id(const struct peers *p)
{
	return p->node_id;
}

/* ---- status ---- */

static const char *peer_state(const struct peer *pe, uint64_t now)
{
	if (pe->self)
		return "self";
	if (!pe->configured)
		return "inbound";
	if (!pe->resolved)
		return "gone";
	if (pe->quarantine_until_ns > now)
		return "quarantined";
	return pe->up ? "up" : "down";
}

/* The RDMA counters as one flat JSON member (mowsctl peers --json). */
static void report_rdma(struct peers *p, FILE *out)
{
	if (!p->rdma) {
		fputs("\"rdma\":null,", out);
		return;
	}
	struct rdma_counters rc;
	rdma_stats(p->rdma, &rc);
	fprintf(out, "\"rdma\":{\"device\":\"%s\",\"reads_posted\":%" PRIu64
		",\"bytes_read\":%" PRIu64 ",\"fetches\":%" PRIu64 ",\"fetch_errors\":%" PRIu64
		",\"completion_errors\":%" PRIu64 ",\"conns_out\":%" PRIu64 ",\"conns_in\":%"
		PRIu64 ",\"conns_refused\":%" PRIu64 ",\"leases_active\":%" PRIu64
		",\"leases_granted\":%" PRIu64 ",\"leases_expired\":%" PRIu64 "},",
		rdma_ctx_device(p->rdma), (uint64_t)rc.reads_posted, (uint64_t)rc.bytes_read,
		(uint64_t)rc.fetches, (uint64_t)rc.fetch_errors, (uint64_t)rc.completion_errors,
		(uint64_t)rc.conns_out, (uint64_t)rc.conns_in, (uint64_t)rc.conns_refused,
		(uint64_t)rc.leases_active, (uint64_t)rc.leases_granted,
		(uint64_t)rc.leases_expired);
}

void peers_report(struct peers *p, FILE *out, bool json)
{
	uint64_t now = mono_ns();
	pthread_mutex_lock(&p->lock);
	if (json) {
		fprintf(out, ". {\"node_id\":\"%s\",\"listen\":\"%s\",", p->node_id,
			p->cfg->listen);
		report_rdma(p, out);
		fputs("\"peers\":[", out);
	}
	else
		fprintf(out, ". node %s on %s\n. %-16s %-22s %-11s %-9s %10s %10s %8s %6s %6s\n",
			p->node_id, p->cfg->listen, "NODE", "ADDRESS", "STATE", "TRANSPORT",
			"BYTES_IN", "BYTES_OUT", "FETCHES", "ERRORS", "BADCRC");
	for (unsigned i = 0, shown = 0; i < p->npeers; i++) {
		const struct peer *pe = &p->peers[i];
		const char *st = peer_state(pe, now);
		if (pe->merged || pe->self)
			continue;
		if (json)
			fprintf(out, "%s{\"node_id\":\"%s\",\"address\":\"%s\",\"state\":\"%s\","
				"\"transport\":\"%s\",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%"
				PRIu64 ",\"fetches\":%" PRIu64 ",\"served\":%" PRIu64
				",\"errors\":%" PRIu64 ",\"bad_crc\":%" PRIu64 ",\"quarantined\":%s}",
				shown++ ? "," : "", pe->node_id, pe->addr, st,
				pe->transport ? pe->transport : "-", pe->bytes_in, pe->bytes_out,
				pe->fetches, pe->served, pe->errors, pe->bad_crc,
				pe->quarantine_until_ns > now ? "true" : "false");
		else
			fprintf(out, ". %-16s %-22s %-11s %-9s %10" PRIu64 " %10" PRIu64 " %8" PRIu64
				" %6" PRIu64 " %6" PRIu64 "\n", pe->node_id[0] ? pe->node_id : "?",
				pe->addr, st, pe->transport ? pe->transport : "-", pe->bytes_in,
				pe->bytes_out, pe->fetches,
				pe->errors, pe->bad_crc);
	}
	if (json)
		fputs("]}\n", out);
	pthread_mutex_unlock(&p->lock);
}
