/*
 * The RDMA transport: chunks move by one-sided RDMA READ from the serving node's slab
 * straight into the requester's slot, with rdma_cm (RC queue pairs) and libibverbs.
 *
 * Memory. rdma_ctx_new() registers the whole slab once, as one memory region with local
 * write and remote read access, plus one small region for the request messages of every
 * connection the context will ever have. Nothing is registered per connection or per I/O.
 * The remote key of the slab is only ever sent on a connection the server accepted, and it
 * accepts one only when the connect request carries a ticket that the peer layer handed
 * out over an authenticated TCP connection (host->ticket_ok). A peer that holds the key
 * can read the whole slab for as long as it stays connected; peers are trusted with cached
 * chunks anyway, and a slab holds nothing but cached chunks.
 *
 * Requests. Over a connection the requester sends DESC_REQ (which chunk of which file
 * version, as a TCP GET names it); the server pins the chunk (host->pin), records a lease
 * and answers DESC (status, address, remote key, length, CRC-32, lease id). The requester
 * RDMA-READs the bytes into its slot and sends RELEASE (lease id); the server unpins. A
 * lease also ends when its connection goes, and it expires lease_ms (at least 10 s, at
 * least request_timeout) after it was granted, so a requester that vanishes cannot keep a
 * chunk pinned. A chunk whose lease expired may be reused while a slow reader still reads
 * it: the reader's CRC check (net/peer.c) then rejects the bytes.
 *
 * The messages are fixed-width and big-endian (rdma.c), of at most RDMA_MSG_MAX bytes:
 *   header     u8 version (1) | u8 type | u16 reserved (0) | u32 request id
 *   DESC_REQ   header | the 40-byte GET payload of net/proto.h (proto_get_encode)
 *   DESC       header | i32 status | u32 crc32 | u32 length | u32 rkey | u64 addr | u64 lease
 *   RELEASE    header | u64 lease                     (request id 0; no answer)
 * The connect request's private data is u32 magic "MWRD" | u8 version | 3 zero bytes |
 * 32-byte ticket; the accept's (and a reject's) is u32 magic | u8 version | u8 reason.
 *
 * Threads. The context owns, once rdma_ctx_listen() ran: the CM thread (accepts and
 * rejects connections, sees disconnects, expires leases) and one serving thread per
 * accepted connection (answers its DESC_REQ and RELEASE; calls host->pin and host->unpin).
 * Client connections have no thread: fetch() runs on its caller's thread, and each
 * connection is used by one thread at a time. Lock: ctx->lock (the lease table, the list of
 * serving connections, the message slots); no lock is held across a verbs or rdma_cm call
 * that can block, nor across a host callback. The host callbacks may be called from the
 * CM thread (ticket_ok, unpin) and from every serving thread (pin, unpin) at once.
 */
#ifndef MOWS_NET_RDMA_H
#define MOWS_NET_RDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "cache/cache.h"
#include "common/config.h"
#include "common/deadline.h"
#include "net/proto.h"
#include "net/transport.h"

#define RDMA_TICKET_LEN 32

struct rdma_ctx;

/* What the peer layer lends the transport; rdma.c never looks at files itself. pin and unpin
 * are required. */
struct rdma_host {
	/*
	 * Pins the chunk @g names (the server side of a DESC_REQ: the fields are decoded and
	 * checked as proto_get_decode() checks a GET; fill as PROTO_GET_FILL says) and
	 * returns 0 with its bytes in @span, inside the slab given to rdma_ctx_new(), and
	 * its CRC-32 in *@crc; or -ENOENT (not held, not asked to fill), -EIO, or another
	 * -errno, which the requester sees as -EIO. Must give up by a deadline of its own
	 * (request_timeout): the connection waits for it. Called on serving threads.
	 */
	int (*pin)(void *ctx, const struct proto_get *g, struct cache_span *span, uint32_t *crc);
	/* Unpins a span pin() returned. Called once per successful pin(), on any thread. */
	void (*unpin)(void *ctx, struct cache_span *span);
	/*
	 * Whether @ticket was handed out (over an authenticated TCP connection) and is still
	 * valid; the host makes a ticket single-use and short-lived (10 s). Called on the CM
	 * thread for each connect request. May be NULL: every connection is refused then.
	 */
	bool (*ticket_ok)(void *ctx, const uint8_t ticket[RDMA_TICKET_LEN]);
	void *ctx;
};

/* Node-wide counters (rdma_stats()). */
struct rdma_counters {
	/* As the requester. */
	uint64_t reads_posted;       /* RDMA READ work requests posted */
	uint64_t bytes_read;         /* bytes of those that completed successfully */
	uint64_t fetches;            /* chunks fetched completely */
	uint64_t fetch_errors;       /* fetches that failed, -ENOENT excepted */
	uint64_t completion_errors;  /* work completions with an error other than a flush */
	uint64_t conns_out;          /* connections made */
	/* As the server. */
	uint64_t conns_in;           /* connections accepted */
	uint64_t conns_refused;      /* refused: bad ticket, wrong device, no room */
	uint64_t leases_active;      /* chunks pinned for readers right now */
	uint64_t leases_granted;
	uint64_t leases_expired;     /* ended by lease_ms rather than RELEASE or disconnect */
	uint64_t bytes_leased;       /* bytes offered in granted leases */
};

/*
 * Opens the RDMA device cfg->rdma_device (or, when "", the first one whose port
 * cfg->rdma_port is ACTIVE), allocates a protection domain and registers [@slab_base,
 * + @slab_len) once as one memory region, with the message buffers. @host is copied.
 * Returns the context, or NULL with errno set and a message in @err:
 *   ENODEV  no such device, or no usable one (no RDMA here): the caller runs TCP only.
 *   ENOMEM/EPERM  registration failed; the message says the memlock limit must be
 *           unlimited (ulimit -l unlimited, or LimitMEMLOCK=infinity for a service).
 * Call after the process has daemonized (registered memory and fork() do not mix).
 */
struct rdma_ctx *rdma_ctx_new(const struct mows_config *cfg, void *slab_base, size_t slab_len,
			      const struct rdma_host *host, char *err, size_t errlen);

/*
 * Stops the CM and serving threads (waiting at most request_timeout + 5 s for a serving
 * thread stuck in host->pin), unpins every lease, deregisters the memory and frees the
 * context. Client connections must all be closed before. NULL is ignored. If a serving
 * thread does not stop in time the context is left allocated (logged) rather than freed
 * under it.
 */
void rdma_ctx_free(struct rdma_ctx *r);

/* The device's name ("rxe0", "mlx5_0"). */
const char *rdma_ctx_device(const struct rdma_ctx *r);

/*
 * Listens for RDMA connections on @addr (a numeric address or a name; "0.0.0.0" for all)
 * and @port, and starts the CM thread. The port is in rdma_cm's own TCP port space, so it
 * may equal the TCP listener's port. Call once. Returns 0 or -errno with a message in @err.
 * (Named so because librdmacm already has rdma_listen() and rdma_connect().)
 */
int rdma_ctx_listen(struct rdma_ctx *r, const char *addr, uint16_t port, char *err,
		    size_t errlen);

/*
 * Connects to the RDMA listener at @sa, presenting @ticket, by @dl. Returns a connection
 * for rdma_transport, or NULL with errno set: EACCES (the server refused the ticket),
 * EBUSY (the server has no room), ECONNREFUSED (no listener), ENODEV (the route leaves by
 * another device than the context's), ETIMEDOUT, EPROTO (not a mows server), ENOBUFS (the
 * context already holds 512 connections, in and out: their message buffers are registered
 * up front), or another errno. Any thread; the connection is then used by one thread at a
 * time.
 */
struct transport_conn *rdma_ctx_connect(struct rdma_ctx *r, const struct sockaddr *sa,
					socklen_t salen, const uint8_t ticket[RDMA_TICKET_LEN],
					const struct deadline *dl);

/*
 * The RDMA transport (net/transport.h). fetch() additionally returns -EINVAL, having sent
 * nothing, when [dst, dst + len) is not inside the context's slab (the connection stays
 * usable). After -ECONNRESET (peer gone), -EIO from a failed completion, -ETIMEDOUT,
 * -EPROTO or any error but -ENOENT, -EIO from the server's status and -EINVAL the
 * connection is broken: its queue pair is already destroyed, so no RDMA READ can still
 * write into @dst once fetch() has returned; close it. close() tears everything down.
 */
extern const struct transport_ops rdma_transport;

/* Copies the node-wide counters. Any thread. */
void rdma_stats(struct rdma_ctx *r, struct rdma_counters *out);

/* ---- for tests: the pure logic, usable without a device ---- */

#define RDMA_PROTO_VERSION	1
#define RDMA_MAGIC		0x4d575244u	/* "MWRD" */
#define RDMA_MSG_MAX		64
#define RDMA_HDR_LEN		8
#define RDMA_DESC_REQ_LEN	(RDMA_HDR_LEN + PROTO_GET_LEN)
#define RDMA_DESC_LEN		(RDMA_HDR_LEN + 32)
#define RDMA_RELEASE_LEN	(RDMA_HDR_LEN + 8)
#define RDMA_CONNECT_PRIV_LEN	(8 + RDMA_TICKET_LEN)
#define RDMA_ACCEPT_PRIV_LEN	8

enum rdma_msg_type {
	RDMA_MSG_DESC_REQ = 1,
	RDMA_MSG_DESC = 2,
	RDMA_MSG_RELEASE = 3,
};

/* Why a server refused a connection (reject private data). */
enum rdma_refusal {
	RDMA_REFUSE_NONE = 0,
	RDMA_REFUSE_TICKET = 1,  /* -> EACCES */
	RDMA_REFUSE_BUSY = 2,    /* -> EBUSY */
	RDMA_REFUSE_DEVICE = 3,  /* the request came in on another device -> ENODEV */
};

/*
 * DESC. status is 0 or a positive errno below 4096; with a non-zero status every other
 * field is 0. With status 0, length is 1.. and addr + length does not wrap.
 */
struct rdma_desc {
	int32_t status;
	uint32_t crc32;
	uint32_t length;
	uint32_t rkey;
	uint64_t addr;
	uint64_t lease;
};

struct rdma_msg {
	uint8_t type;            /* enum rdma_msg_type */
	uint32_t req_id;
	union {
		struct proto_get get;    /* DESC_REQ */
		struct rdma_desc desc;   /* DESC */
		uint64_t lease;          /* RELEASE: non-zero */
	} u;
};

/* Encodes @m into @buf. Returns its length, -EINVAL for a message that breaks the rules
 * above (unknown type, bad status, lease 0, a GET that proto_get_decode would refuse), or
 * -ENOSPC when @buflen is too small. */
ssize_t rdma_msg_encode(void *buf, size_t buflen, const struct rdma_msg *m);

/* Decodes exactly @len bytes. Returns 0 or -EPROTO (short, long, bad version, reserved bits,
 * unknown type, a field out of range). Never reads outside [buf, buf + len). */
int rdma_msg_decode(const void *buf, size_t len, struct rdma_msg *out);

/* Connect private data: writes RDMA_CONNECT_PRIV_LEN bytes. Decoding accepts longer
 * input (rdma_cm pads it) and returns 0 or -EPROTO. */
void rdma_connect_priv_encode(void *buf, const uint8_t ticket[RDMA_TICKET_LEN]);
int rdma_connect_priv_decode(const void *buf, size_t len, uint8_t ticket[RDMA_TICKET_LEN]);

/* Accept/reject private data: writes RDMA_ACCEPT_PRIV_LEN bytes. Decoding returns the
 * reason (RDMA_REFUSE_NONE for an accept) or -EPROTO when it is not a mows server's. */
void rdma_accept_priv_encode(void *buf, enum rdma_refusal reason);
int rdma_accept_priv_decode(const void *buf, size_t len);

/* Whether [p, p + n) lies inside [base, base + len) (n >= 1, no wrap). */
bool rdma_range_inside(const void *base, size_t len, const void *p, size_t n);

/*
 * The lease table: chunks pinned for remote readers. Ids are never 0 and never repeat for
 * a slot (a generation in the high 32 bits), so a late RELEASE cannot end someone else's
 * lease. Not thread-safe: the context holds ctx->lock around every call.
 */
struct rdma_lease {
	uint64_t id;             /* 0: free slot */
	uint64_t expires_ns;     /* CLOCK_MONOTONIC */
	const void *owner;       /* the connection it was granted on */
	struct cache_span span;
};

struct rdma_leases {
	struct rdma_lease *v;
	uint32_t cap;
	uint32_t active;
	uint32_t hint;           /* where to look for a free slot first */
	uint32_t *gen;           /* per slot */
};

/* Returns 0 or -ENOMEM. */
int rdma_leases_init(struct rdma_leases *t, uint32_t cap);
/* Frees the table (the caller has taken every lease). Safe on a zeroed table. */
void rdma_leases_release(struct rdma_leases *t);
/* Records a lease. Returns 0 with *@id set, or -ENOSPC when the table is full. */
int rdma_leases_add(struct rdma_leases *t, const void *owner, const struct cache_span *span,
		    uint64_t expires_ns, uint64_t *id);
/* Ends lease @id if @owner holds it, with its span in *@out. Returns 0 or -ENOENT. */
int rdma_leases_take(struct rdma_leases *t, uint64_t id, const void *owner,
		     struct cache_span *out);
/* Ends up to @max leases that expired at @now_ns (or, for the next two, belong to @owner;
 * NULL = every lease) and stores their spans in @out. Returns how many: call again while
 * it returns @max. */
unsigned rdma_leases_take_expired(struct rdma_leases *t, uint64_t now_ns,
				  struct cache_span *out, unsigned max);
unsigned rdma_leases_take_owner(struct rdma_leases *t, const void *owner,
				struct cache_span *out, unsigned max);
/* Leases @owner holds. */
unsigned rdma_leases_count(const struct rdma_leases *t, const void *owner);

/*
 * Test hooks, for test/rdma/rdma_pair.c only: make leases last @ms, and make a connection
 * keep its leases (never send RELEASE), to see them expire.
 */
void rdma_ctx_test_lease_ms(struct rdma_ctx *r, unsigned ms);
void rdma_conn_test_keep_leases(struct transport_conn *c);

#endif
