/*
 * The RDMA transport: chunks move by one-sided RDMA READ from the serving node's slab
 * straight into the requester's slot, with rdma_cm (RC queue pairs) and libibverbs.
 *
 * Memory. With the cache in the slab (cache_store = slab), rdma_ctx_new() registers the
 * whole slab once, as one memory region with local write and remote read access. With the
 * cache in files (cache_store = files, the default) there is no slab: each chunk's bytes, a
 * range of its version's file mapping (cache/store.h), get a memory region of their own
 * (local write, remote read), registered the first time that chunk is served (grant()) or
 * filled (fetch() into it) by RDMA, and kept while the chunk stays cached. A region pins the
 * pages it was registered with: a hole punched and refilled gets new pages that the NIC would
 * never see, and an unmapped range may be mapped again by another file. So the cache calls
 * rdma_ctx_forget() (through cache_set_forget(), under its lock) before it punches a chunk
 * out or unmaps a file, and the region goes first. The cache never does that to a chunk that
 * is pinned, and a lease pins its chunk (host->pin) and a fill owns its slot, so a region is
 * never forgotten under a READ that a live lease or fill covers; one forgotten under an
 * expired lease's READ makes that READ fail (remote access error), it never reads other bytes.
 * Costs, measured (README "RDMA"): one region per chunk held that RDMA touched, so at most
 * max_memory / chunk_size regions, whatever the number of files; each registration takes
 * time in proportion to its size, once per chunk cached, never per READ.
 * Both modes: one small region for the receive buffers of every connection the context will
 * ever have. Nothing is registered per connection or per I/O.
 * A remote key is only ever sent over a peer's authenticated link (TLS), to a
 * peer whose RDMA connection the server accepted because its connect request carried a
 * ticket handed out over that same kind of link (host->ticket_ok). A peer that holds the
 * slab's key can read the whole slab for as long as it stays connected; one that holds a
 * chunk region's key, that chunk while it stays cached; peers are trusted with cached
 * chunks anyway.
 *
 * Descriptors travel inside TLS, never over the RDMA connection. The requester sends
 * DESC_REQ (which chunk of which file version, as a TCP GET names it, and the digest it
 * wants) over its authenticated link to the holder, in a PROTO_RDMA_DESC frame (net/mux.c);
 * the holder pins the chunk (host->pin), records a lease owned by that link and answers DESC
 * (status, address, remote key, length, CRC-32, lease id, digest) in a PROTO_RDMA_DESC frame
 * on the same link (rdma_ctx_answer(), called by net/serve.c). The requester RDMA-READs the
 * bytes into its slot over its RDMA connection, checks them against the digest, and sends
 * RELEASE (lease id) over the link; the holder unpins. A lease also ends when its link
 * closes (rdma_ctx_drop_owner()), and it expires lease_ms (at least 10 s, at least
 * request_timeout) after it was granted, so a requester that vanishes cannot keep a chunk
 * pinned. A chunk whose lease expired may be reused while a slow reader still reads it: the
 * reader's digest check then rejects the bytes. The RDMA connection carries one-sided READs
 * only: a message (SEND) arriving on one is counted (msgs_refused) and ends it.
 *
 * The digest (rdma_verify). Whoever can write RDMA payloads on the fabric can rewrite the
 * bytes of a READ; a CRC-32 cannot stop them (it is linear), so by default the DESC carries
 * the chunk's SHA-256, which arrives authenticated by TLS: forging bytes means finding a
 * second preimage. The holder computes it once per cached chunk, not per read: a small memo
 * in the context keyed by (file key, chunk, slab address, length, CRC-32), the CRC being the
 * cache's own for the bytes now in that slot, so a slot refilled with other bytes misses.
 * SHA-256 runs ~1.4 GB/s per core here (~0.7 CPU s/GB, SHA-NI); the reader pays that once
 * per chunk read, the holder once per chunk cached. AES-GMAC under a key exported from the
 * link's TLS session would be ~8x cheaper, but it is a MAC per (link, read): the holder would
 * pay it on every read instead of once, and its nonce discipline is one more thing to get
 * wrong; SHA-256 keeps the expensive part on the reader, where it scales with the readers.
 * rdma_verify = crc32 sends the cache's CRC-32 only, for a fabric the operator trusts.
 * The reader asks for the kind its own rdma_verify names and refuses any other.
 *
 * The messages are fixed-width and big-endian (rdma.c), of at most RDMA_MSG_MAX bytes:
 *   header     u8 version (2) | u8 type | u16 reserved (0) | u32 request id
 *   DESC_REQ   header | the 40-byte GET payload of net/proto.h | u8 digest kind | 3 zero
 *   DESC       header | i32 status | u32 crc32 | u32 length | u32 rkey | u64 addr | u64 lease
 *              | u8 digest kind | u8 digest length | u16 zero | 32 bytes of digest (zero-padded)
 *   RELEASE    header | u64 lease                     (request id 0; no answer)
 * The connect request's private data is u32 magic "MWRD" | u8 version | 3 zero bytes |
 * 32-byte ticket; the accept's (and a reject's) is u32 magic | u8 version | u8 reason.
 *
 * Threads. The context owns, once rdma_ctx_listen() ran: the CM thread (accepts and
 * rejects connections, sees disconnects, expires leases) and one serving thread per
 * accepted connection (watches it; it carries no messages). rdma_ctx_answer() runs on the
 * caller's thread (net/serve.c's workers) and calls host->pin and host->unpin there.
 * Client connections have no thread: fetch() runs on its caller's thread, and each
 * connection is used by one thread at a time. Lock: ctx->lock (the lease table, the digest
 * memo, the list of serving connections, the slots); no lock is held across a verbs or
 * rdma_cm call that can block, nor across a host callback, nor while hashing.
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
#include "net/digest.h"
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
	 * (request_timeout). Called on the threads that call rdma_ctx_answer().
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
	uint64_t descs;              /* descriptors received over a peer link (TLS) */
	uint64_t digests_checked;    /* chunks whose digest matched after the READ */
	uint64_t digest_mismatches;  /* chunks refused: the READ's bytes did not match */
	/* As the server. */
	uint64_t conns_in;           /* connections accepted */
	uint64_t conns_refused;      /* refused: bad ticket, wrong device, no room */
	uint64_t leases_active;      /* chunks pinned for readers right now */
	uint64_t leases_granted;
	uint64_t leases_expired;     /* ended by lease_ms rather than RELEASE or disconnect */
	uint64_t bytes_leased;       /* bytes offered in granted leases */
	uint64_t digests_computed;   /* SHA-256 digests computed (the memo missed) */
	uint64_t msgs_refused;       /* messages that came over an RDMA connection (never
					sent by mows; each ended its connection) */
	/* Files mode (the cache in files): one memory region per chunk served or filled. */
	uint64_t regions_active;     /* chunk regions registered now */
	uint64_t region_bytes;       /* bytes they cover */
	uint64_t regions_registered; /* ibv_reg_mr calls for chunks, ever */
	uint64_t regions_forgotten;  /* deregistered because the cache gave the bytes back */
	uint64_t region_reg_ns;      /* time spent in those registrations, in total */
	uint64_t region_reg_max_ns;  /* the longest one */
};

/*
 * Opens the RDMA device cfg->rdma_device (or, when "", the first one whose port
 * cfg->rdma_port is ACTIVE), allocates a protection domain and registers [@slab_base,
 * + @slab_len) once as one memory region, with the message buffers. @host is copied.
 * A NULL @slab_base (length 0) is files mode: chunk regions are registered as chunks are
 * served and filled, and the cache must be told to call rdma_ctx_forget().
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
 * How a requester reaches the holder's descriptor service: over its authenticated link to
 * that peer (net/peer.c passes its mux). Both return 0 or -errno and never wait past @dl.
 */
struct rdma_desc_link {
	/* Sends the @len-byte message @req and receives the answer (at most @cap bytes) into
	 * @ans, its length in *@anslen. */
	int (*call)(void *ctx, const void *req, size_t len, void *ans, size_t cap,
		    size_t *anslen, const struct deadline *dl);
	/* Sends the @len-byte message @msg, which has no answer (RELEASE). */
	int (*send)(void *ctx, const void *msg, size_t len, const struct deadline *dl);
	void *ctx;
};

/* Sets the link @c's next fetch() asks for its descriptor (copied; @l->ctx must outlive
 * that fetch). A fetch without one returns -ENOTCONN. */
void rdma_conn_set_link(struct transport_conn *c, const struct rdma_desc_link *l);

/*
 * The RDMA transport (net/transport.h). fetch() gets the descriptor over the link set with
 * rdma_conn_set_link(), READs the chunk, checks it against the digest rdma_verify asks for
 * (-EBADMSG when it does not match: the bytes in @dst must not be used) and releases the
 * lease over the link. It additionally returns -EINVAL, having sent nothing, when [dst, dst +
 * len) is not inside the context's slab (slab mode), or -ENOSPC/-ENOMEM when a region for
 * it cannot be registered (files mode; the connection stays usable), and the link's own
 * errors (-ETIMEDOUT, -EPIPE...). After -ECONNRESET (peer gone), -EIO from a failed
 * completion, -ETIMEDOUT, -EPROTO, -EBADMSG or any error but -ENOENT, -EIO from the
 * server's status and -EINVAL the connection is broken: its queue pair is already
 * destroyed, so no RDMA READ can still write into @dst once fetch() has returned; close it.
 * close() tears everything down.
 */
extern const struct transport_ops rdma_transport;

/*
 * The holder's side of the descriptor exchange. Answers the @len-byte message @msg that
 * came over the authenticated link @owner (any pointer that identifies it until
 * rdma_ctx_drop_owner()): a DESC_REQ pins the chunk (host->pin: may fill, up to
 * request_timeout), leases it to @owner and writes the DESC (or a DESC with an error
 * status) into @ans; a RELEASE ends the lease if @owner holds it. Returns the answer's
 * length (0: no answer to send), or -EPROTO for a message that does not decode (close the
 * link), -ENOSPC when @cap < RDMA_MSG_MAX. @r may be NULL (no RDMA here): every DESC_REQ is
 * answered EOPNOTSUPP. Any thread; blocks in host->pin without a lock.
 */
ssize_t rdma_ctx_answer(struct rdma_ctx *r, const void *owner, const void *msg, size_t len,
			void *ans, size_t cap);

/*
 * For a requester that gave up on a DESC before it came (its deadline passed): writes into
 * @out the RELEASE that ends the lease the @len-byte DESC @desc granted. Returns its length,
 * 0 when @desc granted none (an error status), or -EPROTO when @desc is not a DESC. Pure.
 */
ssize_t rdma_release_for(const void *desc, size_t len, void *out, size_t cap);

/* Ends every lease @owner holds (its link closed). NULL @r is ignored. Any thread. */
void rdma_ctx_drop_owner(struct rdma_ctx *r, const void *owner);

/*
 * Files mode: deregisters every chunk region that overlaps [@addr, + @len) (the cache is
 * about to punch those bytes out or unmap them). Any thread, any locks held but the
 * context's own (the cache calls it under cache->lock: lock order cache->lock, then the
 * context's lock); a verbs call, no waiting on the network. No-op for NULL @r or slab mode.
 */
void rdma_ctx_forget(struct rdma_ctx *r, const void *addr, size_t len);

/* Copies the node-wide counters. Any thread. */
void rdma_stats(struct rdma_ctx *r, struct rdma_counters *out);

/* ---- for tests: the pure logic, usable without a device ---- */

#define RDMA_PROTO_VERSION	2
#define RDMA_MAGIC		0x4d575244u	/* "MWRD" */
#define RDMA_MSG_MAX		96
#define RDMA_HDR_LEN		8
#define RDMA_DESC_REQ_LEN	(RDMA_HDR_LEN + PROTO_GET_LEN + 4)
#define RDMA_DESC_LEN		(RDMA_HDR_LEN + 32 + 4 + DIGEST_MAX)
#define RDMA_RELEASE_LEN	(RDMA_HDR_LEN + 8)
#define RDMA_CONNECT_PRIV_LEN	(8 + RDMA_TICKET_LEN)
#define RDMA_ACCEPT_PRIV_LEN	8

_Static_assert(RDMA_MSG_MAX <= PROTO_RDMA_MSG_MAX, "an RDMA message fits a RDMA_DESC frame");

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
 * field is 0. With status 0, length is 1.., addr + length does not wrap, and the digest is
 * a DIGEST_SHA256 or DIGEST_CRC32 of its own length (digest_len()).
 */
struct rdma_desc {
	int32_t status;
	uint32_t crc32;
	uint32_t length;
	uint32_t rkey;
	uint64_t addr;
	uint64_t lease;
	struct digest digest;
};

struct rdma_msg {
	uint8_t type;            /* enum rdma_msg_type */
	uint32_t req_id;
	uint8_t digest_kind;     /* DESC_REQ: the enum digest_kind wanted (SHA256 or CRC32) */
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
 * keep its leases (never send RELEASE), to see them expire. And a fault for the VM tests:
 * with MOWS_TEST_RDMA_CORRUPT=1 in the environment when rdma_ctx_new() runs, every RDMA READ
 * has one byte flipped on arrival, as a fabric that rewrites payloads would (the digest check
 * must refuse each such chunk).
 */
void rdma_ctx_test_lease_ms(struct rdma_ctx *r, unsigned ms);
void rdma_conn_test_keep_leases(struct transport_conn *c);
/* Files mode, for timing registrations (rdma_pair regbench): registers [@p, + @len) as a
 * chunk region would be (rdma_ctx_forget() ends it). 0 or -errno. */
int rdma_ctx_test_register(struct rdma_ctx *r, const void *p, size_t len);

#endif
