/*
 * The mows peer wire protocol, version 1.
 *
 * A connection carries frames. Every frame is a 16-byte header followed by `len` bytes of
 * payload. All multi-byte integers on the wire are big-endian; signed ones are two's
 * complement. The `struct proto_wire_*` types below are the wire layout, packed, with their
 * sizes pinned by _Static_assert; only proto.c touches them. Everything else uses the
 * host-order `struct proto_*` types and the encode/decode functions.
 *
 *   header:    u32 magic 0x4d4f5753 ("MOWS") | u8 version (1) | u8 type | u16 flags (0)
 *              | u32 payload length | u32 request id
 *
 * Request ids: the sender of a request (PING, GET, PREFETCH) picks any id; the reply (PONG,
 * DATA, DATA_PIECEs or REDIRECT, PREFETCH_STATUS) echoes it. Frames that are not requests or replies (HELLO, AUTH, AUTH_OK, AUTH_FAIL) use 0.
 * No header flags are defined in version 1: senders send 0 and receivers reject anything
 * else, so a later meaning can never be silently ignored by an old peer.
 *
 * Connection setup (see net/auth.h for the MACs): both sides send HELLO at once; each checks
 * the other's HELLO and sends AUTH; each checks the other's AUTH and answers AUTH_OK, or
 * AUTH_FAIL and closes. Only then may PING/PONG and GET/DATA flow.
 *
 * Receiving: read PROTO_HDR_LEN bytes, proto_hdr_decode() them with a payload limit that
 * suits the connection's state (PROTO_PREAUTH_MAX_PAYLOAD until authenticated, so that an
 * unauthenticated peer cannot make us allocate or read a chunk-sized buffer), then read
 * exactly hdr.len bytes and call the type's decoder. Every decoder checks every length and
 * field before use and rejects short payloads, trailing bytes and out-of-range values with
 * -EPROTO; a decoder never reads outside [payload, payload + len).
 *
 * All functions here are pure: no allocation, no global state; any thread may call them.
 */
#ifndef MOWS_NET_PROTO_H
#define MOWS_NET_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROTO_MAGIC		0x4d4f5753u	/* "MOWS" */
#define PROTO_VERSION		1
#define PROTO_HDR_LEN		16
#define PROTO_NONCE_LEN		32
#define PROTO_MAC_LEN		32
#define PROTO_NODE_ID_MAX	64

/* Frame types. 0 is never valid. */
enum proto_type {
	PROTO_HELLO = 1,	/* struct proto_hello */
	PROTO_AUTH = 2,		/* struct proto_auth */
	PROTO_AUTH_OK = 3,	/* empty */
	PROTO_AUTH_FAIL = 4,	/* empty; the sender then closes */
	PROTO_PING = 5,		/* struct proto_ping [+ struct proto_gossip] */
	PROTO_PONG = 6,		/* struct proto_ping, the PING's timestamp echoed [+ gossip] */
	PROTO_GET = 7,		/* struct proto_get */
	PROTO_DATA = 8,		/* struct proto_data, then the chunk bytes */
	PROTO_RDMA_DESC = 9,	/* empty -> struct proto_rdma_ticket; or a net/rdma.h message */
	PROTO_LEAVE = 10,	/* empty: the sender stops now; drop it from placement */
	PROTO_PREFETCH = 11,	/* struct proto_prefetch: start, or poll, filling a share */
	PROTO_PREFETCH_STATUS = 12,	/* struct proto_prefetch_status, answers a PREFETCH */
	PROTO_META_GET = 13,	/* struct proto_meta_get: a piece of the metadata snapshot */
	PROTO_META = 14,	/* struct proto_meta, then the piece; answers a META_GET */
	PROTO_REDIRECT = 15,	/* struct proto_redirect: answers a GET, "ask this holder" */
	PROTO_PING_REQ = 16,	/* struct proto_ping_req: "has this node answered you lately?" */
	PROTO_PING_REQ_ACK = 17,	/* struct proto_ping_req_ack, answers a PING_REQ */
	PROTO_DATA_PIECE = 18,	/* struct proto_piece, then bytes: a piece of a GET's answer */
	PROTO_TYPE_MAX = PROTO_DATA_PIECE,
};

/* HELLO capability bits. Receivers ignore bits they do not know. */
#define PROTO_CAP_RDMA		(1u << 0)
/* The sender takes GET_WAIT and GET_NOREDIRECT and may answer a FILL with REDIRECT. A node
 * sends those flags, and REDIRECT, only to peers that said SWARM (old peers reject them). */
#define PROTO_CAP_SWARM		(1u << 1)
/* The sender takes a gossip block after a PING's or PONG's timestamp (struct proto_gossip).
 * A node appends one only for peers that said GOSSIP; old peers get 8-byte PINGs/PONGs. */
#define PROTO_CAP_GOSSIP	(1u << 2)
/* The sender takes an answer to its GETs as a sequence of DATA_PIECE frames (struct
 * proto_piece), which may interleave with the pieces of other answers on the link. A node
 * sends pieces only to peers that said PIECES; old peers get whole DATA frames. */
#define PROTO_CAP_PIECES	(1u << 3)

/*
 * GET flags; receivers reject bits they do not know. FILL: the receiver is the chunk's owner
 * and fills it from its backing if it does not hold it; an owner that already serves enough
 * requesters of the chunk may answer REDIRECT instead (the swarm, net/swarm.h), unless
 * NOREDIRECT is set. WAIT (never with FILL): the receiver was named by a REDIRECT; it
 * answers at once when it holds the chunk, when its own fill of the chunk ends if one runs
 * (ENOENT if that fails), else ENOENT at once. WAIT and NOREDIRECT go only to SWARM peers.
 */
#define PROTO_GET_FILL		(1u << 0)
#define PROTO_GET_WAIT		(1u << 1)
#define PROTO_GET_NOREDIRECT	(1u << 2)
#define PROTO_GET_FLAGS_KNOWN	(PROTO_GET_FILL | PROTO_GET_WAIT | PROTO_GET_NOREDIRECT)

/* ---- wire layout (big-endian; proto.c only) ---- */

struct proto_wire_hdr {
	uint32_t magic;
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t len;
	uint32_t req_id;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_hdr) == PROTO_HDR_LEN, "header is 16 bytes");

/* Followed by node_id_len bytes of node id, no terminator. */
struct proto_wire_hello {
	uint16_t version;
	uint16_t caps;
	uint8_t nonce[PROTO_NONCE_LEN];
	uint16_t listen_port;
	uint8_t node_id_len;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_hello) == 39, "HELLO fixed part is 39 bytes");

struct proto_wire_auth {
	uint8_t mac[PROTO_MAC_LEN];
	uint8_t insecure;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_auth) == 33, "AUTH is 33 bytes");

struct proto_wire_ping {
	uint64_t mono_ms;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_ping) == 8, "PING is 8 bytes");

struct proto_wire_get {
	uint64_t file_key;
	uint64_t file_size;
	int64_t mtime_ns;
	uint64_t chunk;
	uint32_t chunk_size;
	uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_get) == 40, "GET is 40 bytes");

/* Followed by `length` bytes of chunk data in the same frame. */
struct proto_wire_data {
	int32_t status;
	uint32_t crc32;
	uint32_t length;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_data) == 12, "DATA fixed part is 12 bytes");

/* Followed by the piece's bytes (payload length - PROTO_PIECE_FIXED_LEN) in the same frame. */
struct proto_wire_piece {
	int32_t status;
	uint32_t crc32;
	uint32_t length;
	uint32_t offset;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_piece) == 16, "DATA_PIECE fixed part is 16 bytes");

/*
 * RDMA_DESC answer: where and how to open an RDMA connection to the sender. port 0 means
 * the sender has no RDMA; otherwise ticket is a one-use secret, valid for seconds, that the
 * RDMA connect must carry (so only an authenticated peer reaches the slab's keys).
 */
struct proto_wire_rdma_ticket {
	uint16_t port;
	uint8_t ticket[32];
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_rdma_ticket) == 34, "RDMA ticket is 34 bytes");

struct proto_wire_prefetch {
	uint64_t run_id;
	uint64_t file_key;
	uint64_t file_size;
	int64_t mtime_ns;
	uint64_t placement;
	uint32_t chunk_size;
	uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_prefetch) == 48, "PREFETCH is 48 bytes");

struct proto_wire_prefetch_status {
	int32_t status;
	uint32_t flags;
	uint64_t done;
	uint64_t total;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_prefetch_status) == 24, "PREFETCH_STATUS is 24 bytes");

struct proto_wire_meta_get {
	uint64_t have_version;
	uint64_t offset;
	uint32_t flags;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_meta_get) == 24, "META_GET is 24 bytes");

/* Followed by the piece of the snapshot, up to PROTO_META_PIECE_MAX bytes, in the frame. */
struct proto_wire_meta {
	int32_t status;
	uint32_t flags;
	uint64_t version;
	uint64_t age_ms;
	uint64_t total;
	uint64_t offset;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_meta) == 40, "META fixed part is 40 bytes");

/* REDIRECT: followed by node_id_len bytes of the holder's node id, nothing else. */
struct proto_wire_redirect {
	uint8_t node_id_len;
} __attribute__((packed));
_Static_assert(sizeof(struct proto_wire_redirect) == 1, "REDIRECT fixed part is 1 byte");

#define PROTO_HELLO_FIXED_LEN	((uint32_t)sizeof(struct proto_wire_hello))
#define PROTO_HELLO_MAX_LEN	(PROTO_HELLO_FIXED_LEN + PROTO_NODE_ID_MAX + 8)
#define PROTO_AUTH_LEN		((uint32_t)sizeof(struct proto_wire_auth))
#define PROTO_PING_LEN		((uint32_t)sizeof(struct proto_wire_ping))
#define PROTO_GET_LEN		((uint32_t)sizeof(struct proto_wire_get))
#define PROTO_DATA_FIXED_LEN	((uint32_t)sizeof(struct proto_wire_data))
#define PROTO_PIECE_FIXED_LEN	((uint32_t)sizeof(struct proto_wire_piece))
/* The most chunk bytes a sender puts in one DATA_PIECE (receivers take any size up to their
 * frame limit). Small enough that a 4 MiB answer gives the link up 16 times, large enough
 * that the 32 bytes of header per piece cost nothing. */
#define PROTO_PIECE_BYTES	(256u * 1024)
#define PROTO_RDMA_TICKET_LEN	((uint32_t)sizeof(struct proto_wire_rdma_ticket))
#define PROTO_PREFETCH_LEN	((uint32_t)sizeof(struct proto_wire_prefetch))
#define PROTO_PREFETCH_STATUS_LEN	((uint32_t)sizeof(struct proto_wire_prefetch_status))
#define PROTO_META_GET_LEN	((uint32_t)sizeof(struct proto_wire_meta_get))
#define PROTO_META_FIXED_LEN	((uint32_t)sizeof(struct proto_wire_meta))
#define PROTO_META_PIECE_MAX	(1u << 20)
#define PROTO_META_TOTAL_MAX	(256u << 20)	/* = CACHE_TREE_SHARE_MAX */

/* Gossip (after a PING's or PONG's 8 bytes, to and from GOSSIP peers only):
 *   u64 sender's incarnation (nonzero) | u8 count (<= PROTO_GOSSIP_MAX)
 *   | count x ( u8 state | u64 incarnation (nonzero) | u8 node_id_len | node id ) */
#define PROTO_GOSSIP_MAX	8
#define PROTO_GOSSIP_EVENT_MAX_LEN	(1 + 8 + 1 + PROTO_NODE_ID_MAX)
#define PROTO_GOSSIP_MAX_LEN	(8 + 1 + PROTO_GOSSIP_MAX * PROTO_GOSSIP_EVENT_MAX_LEN)
#define PROTO_PING_MAX_LEN	(PROTO_PING_LEN + PROTO_GOSSIP_MAX_LEN)

#define PROTO_REDIRECT_MAX_LEN	((uint32_t)sizeof(struct proto_wire_redirect) + PROTO_NODE_ID_MAX)
/* PING_REQ: u8 node_id_len | node id (REDIRECT's layout). PING_REQ_ACK: u32 age_ms. */
#define PROTO_PING_REQ_MAX_LEN	PROTO_REDIRECT_MAX_LEN
#define PROTO_PING_REQ_ACK_LEN	4u
/* RDMA_DESC with a payload carries one net/rdma.h message (DESC_REQ, DESC, RELEASE), which
 * that module encodes: a request with a payload is one, and so is its answer. */
#define PROTO_RDMA_MSG_MAX	128

/* The largest payload any frame legitimately has before authentication (a HELLO). */
#define PROTO_PREAUTH_MAX_PAYLOAD	PROTO_HELLO_MAX_LEN

/* ---- host-order messages ---- */

struct proto_hdr {
	uint8_t version;
	uint8_t type;		/* enum proto_type */
	uint16_t flags;
	uint32_t len;		/* payload bytes that follow the header */
	uint32_t req_id;
};

struct proto_hello {
	uint16_t version;	/* highest protocol version the sender speaks, >= 1 */
	uint16_t caps;		/* PROTO_CAP_* */
	uint8_t nonce[PROTO_NONCE_LEN];	/* fresh random per connection (auth_nonce()) */
	uint16_t listen_port;	/* where the sender accepts peers; 0 when it does not listen */
	char node_id[PROTO_NODE_ID_MAX + 1];	/* NUL-terminated; see proto_node_id_ok() */
	uint64_t uptime_ms;	/* how long the sender has run; 0 unknown. On the wire: 8 bytes
				   (big-endian) after the node id, which a receiver may miss */
};

struct proto_auth {
	uint8_t mac[PROTO_MAC_LEN];	/* net/auth.h auth_mac() */
	bool insecure;		/* sender runs without a secret; mac is then all zeros */
};

/* PING and PONG: the PING sender's CLOCK_MONOTONIC in ms, echoed unchanged in the PONG. */
struct proto_ping {
	uint64_t mono_ms;
};

/*
 * Gossip piggybacked on PING and PONG (net/gossip.h has the meaning and merge rule). inc is
 * the sender's own incarnation: a message from a node is also news that it is alive at
 * that incarnation. Each event is what the sender believes about one node. Decoding
 * rejects incarnation 0, a state past LEFT, more than PROTO_GOSSIP_MAX events, invalid node
 * ids and trailing bytes. inc 0 and n 0 stand for "no block" (an 8-byte PING/PONG).
 */
enum proto_gossip_state {
	PROTO_GOSSIP_ALIVE = 0,
	PROTO_GOSSIP_SUSPECT = 1,
	PROTO_GOSSIP_DEAD = 2,
	PROTO_GOSSIP_LEFT = 3,
};

struct proto_gossip_event {
	uint8_t state;		/* enum proto_gossip_state */
	uint64_t inc;
	char node_id[PROTO_NODE_ID_MAX + 1];
};

struct proto_gossip {
	uint64_t inc;		/* the sender's incarnation; 0: the message had no block */
	unsigned n;
	struct proto_gossip_event ev[PROTO_GOSSIP_MAX];
};

/*
 * GET asks for one chunk of one version of a file. The receiver must check that file_key,
 * file_size and mtime_ns match what it holds (a different version is ENOENT, never stale
 * bytes). Decoding rejects chunk_size 0, unknown flags, and a chunk that starts at or past
 * file_size (so an empty file has no chunks).
 */
struct proto_get {
	uint64_t file_key;	/* proto_file_key() */
	uint64_t file_size;
	int64_t mtime_ns;
	uint64_t chunk;		/* index: byte offset is chunk * chunk_size */
	uint32_t chunk_size;
	uint32_t flags;		/* PROTO_GET_* */
};

/*
 * DATA answers a GET. status is 0 or a positive errno (ENOENT: not held; EIO: fill failed;
 * ...), below 4096. A reply with status != 0 has length 0 and crc32 0. Otherwise length is
 * the chunk's byte count (chunk_size, or less for a file's last chunk) and crc32 the zlib
 * CRC-32 (common/crc.h) of those bytes, which follow the 12-byte fixed part in the frame.
 */
struct proto_data {
	int32_t status;
	uint32_t crc32;
	uint32_t length;
	const uint8_t *data;	/* set by decoders (into the payload, or NULL); not encoded */
};

/*
 * DATA_PIECE: a piece of the answer to a GET, sent instead of one whole DATA frame to peers
 * that said PROTO_CAP_PIECES, so that the answers on one link interleave: the sender gives
 * the link up between pieces (a relay sends a piece only once it has its bytes). The frame's
 * request id is the GET's. Every piece repeats the answer's status, crc32 and length (as
 * in DATA) and says where its bytes go (offset); they follow the 16-byte fixed part.
 *
 *   status 0:  length (the chunk's byte count) >= 1, 1 <= n <= length - offset, where n =
 *              payload length - 16. The pieces of one answer come in order (the first at
 *              offset 0, each at the end of the one before) with the same crc32 and
 *              length; the answer is complete when offset + n == length. crc32 is the
 *              zlib CRC-32 of the whole chunk, checked by the receiver once it is complete.
 *   status != 0 (a positive errno below 4096): n 0 and crc32 0; the answer ends here,
 *              failed (a relay whose source failed), at offset (the bytes sent so far)
 *              <= length. The receiver discards the bytes it got.
 *
 * Pieces of different answers may interleave in any order. A receiver breaks the stream on
 * a piece for a request it never made, a first piece whose offset is not 0, a piece out of
 * order or whose length or crc32 differ from its answer's first piece. An answer that is
 * a failure from the start (ENOENT, ...) or a REDIRECT still goes as one DATA or REDIRECT.
 */
struct proto_piece {
	int32_t status;
	uint32_t crc32;
	uint32_t length;	/* the whole answer's byte count */
	uint32_t offset;	/* where this piece's bytes go in the answer */
	uint32_t n;		/* bytes in this piece; not encoded (the frame's length says it) */
	const uint8_t *data;	/* set by proto_piece_decode (into the payload, or NULL) */
};

struct proto_rdma_ticket {
	uint16_t port;
	uint8_t ticket[32];
};

/*
 * PREFETCH asks the receiver to fill its owned share of one version of a file (the chunks
 * it owns by the balanced ownership both ends use, net/owners.h) into its cache, reading
 * storage for them as their owner. The same request polls: the receiver keeps one job per
 * (run_id, file) and answers every PREFETCH of that pair with the job's progress, starting
 * it on the first. run_id is picked at random by the node that drives a cluster prefetch
 * (mowsctl prefetch --cluster), once per command, so that a later command starts afresh.
 * placement is the sender's placement digest (peers' own definition): a receiver that
 * ranks chunks over another member set answers EAGAIN instead of filling a different share.
 * Decoding rejects run_id 0, chunk_size 0 and any flag (none are defined).
 */
struct proto_prefetch {
	uint64_t run_id;
	uint64_t file_key;	/* proto_file_key() */
	uint64_t file_size;
	int64_t mtime_ns;
	uint64_t placement;
	uint32_t chunk_size;
	uint32_t flags;		/* 0 */
};

/*
 * PREFETCH_STATUS answers a PREFETCH. status is 0 or a positive errno below 4096:
 *   EAGAIN   the receiver places chunks over another member set: ask again later;
 *   EBUSY    the receiver runs as many jobs as it keeps: ask again later;
 *   ENOENT   the receiver has no such version of the file;
 *   EINVAL   chunk_size differs from the receiver's;
 *   EIO      (with DONE) some owned chunks could not be filled.
 * done and total are bytes of the receiver's share (done <= total); DONE is set once every
 * chunk of the share was tried. Decoding rejects unknown flags, done > total, and a status
 * outside 0..4095.
 */
#define PROTO_PREFETCH_DONE		(1u << 0)
#define PROTO_PREFETCH_FLAGS_KNOWN	PROTO_PREFETCH_DONE

struct proto_prefetch_status {
	int32_t status;
	uint32_t flags;		/* PROTO_PREFETCH_* */
	uint64_t done;
	uint64_t total;
};

/*
 * META_GET asks for the sender's metadata snapshot in its shared form (cache/tree.h), one
 * piece at a time: the piece at @offset of the snapshot whose version the answer names. A
 * requester that already holds version @have_version (0: none) gets SAME and no bytes.
 * REFRESH (only with offset 0) asks the receiver to list its backing again first (it waits
 * for that listing, at most its request_timeout). Decoding rejects unknown flags, a nonzero
 * reserved field and REFRESH with an offset.
 */
#define PROTO_META_REFRESH	(1u << 0)
#define PROTO_META_GET_FLAGS_KNOWN	PROTO_META_REFRESH

struct proto_meta_get {
	uint64_t have_version;
	uint64_t offset;
	uint32_t flags;		/* PROTO_META_REFRESH */
};

/*
 * META answers a META_GET. status is 0 or a positive errno below 4096: EAGAIN (no snapshot
 * yet: ask again), ENOENT (this node shares no snapshot). With status 0: version (nonzero)
 * and age_ms (how long ago the backing was listed for it) name the snapshot; SAME says it is
 * the requester's have_version (no bytes follow); otherwise the frame carries the bytes
 * [offset, offset + n) of its total bytes, n = payload length - PROTO_META_FIXED_LEN, at
 * most PROTO_META_PIECE_MAX, at least 1 unless total is 0. Decoding rejects unknown flags, a
 * status outside 0..4095, bytes with a status or SAME, version 0 with status 0, total over
 * PROTO_META_TOTAL_MAX, a piece past total and an empty piece before it.
 */
#define PROTO_META_SAME		(1u << 0)
#define PROTO_META_FLAGS_KNOWN	PROTO_META_SAME

struct proto_meta {
	int32_t status;
	uint32_t flags;		/* PROTO_META_SAME */
	uint64_t version;
	uint64_t age_ms;
	uint64_t total;
	uint64_t offset;
	const uint8_t *data;	/* set by the decoder (into the payload, or NULL) */
	uint32_t length;	/* bytes at data; not encoded (the frame's length says it) */
};

/*
 * REDIRECT answers a GET with FILL from a SWARM peer: the receiver (the chunk's owner) serves
 * enough requesters of this chunk already; ask @node_id, which asked before, with WAIT. The
 * id is a valid node id (proto_node_id_ok); decoding rejects anything else.
 */
struct proto_redirect {
	char node_id[PROTO_NODE_ID_MAX + 1];
};

/*
 * PING_REQ asks a GOSSIP peer whether @node_id answered it lately (SWIM's indirect probe,
 * answered from what the receiver already knows, net/peer.c): the asker's own heartbeat to
 * that node failed. PING_REQ_ACK answers with age_ms, how long ago the receiver last heard
 * from the node directly (a PONG to its heartbeat, or a PING from it);
 * PROTO_PING_REQ_NEVER when it never did or does not know it. Sent only to peers that said
 * PROTO_CAP_GOSSIP. Decoding rejects an invalid node id and any other length.
 */
#define PROTO_PING_REQ_NEVER	UINT32_MAX

struct proto_ping_req {
	char node_id[PROTO_NODE_ID_MAX + 1];
};

struct proto_ping_req_ack {
	uint32_t age_ms;
};

/* ---- functions ---- */

/* Name of a frame type for logs ("HELLO"), or "?" for an unknown one. Never NULL. */
const char *proto_type_name(uint8_t type);

/*
 * Whether @id is a valid node id: 1..PROTO_NODE_ID_MAX bytes, each printable ASCII other
 * than space (0x21..0x7e). Config parsing should use this too, so that a node never
 * announces an id its peers reject.
 */
bool proto_node_id_ok(const char *id);

/* Writes a PROTO_HDR_LEN-byte header for a version-1 frame to @buf. */
void proto_hdr_encode(void *buf, uint8_t type, uint16_t flags, uint32_t len, uint32_t req_id);

/*
 * Decodes the header at the start of @buf (@len bytes available). Returns:
 *   0          *@out is filled.
 *   -EAGAIN    fewer than PROTO_HDR_LEN bytes: read more.
 *   -EPROTO    bad magic, version, type, non-zero flags, or a payload length that the type
 *              can never have (e.g. a PING whose payload is not 8 bytes).
 *   -EMSGSIZE  payload longer than @max_payload (*@out is filled, for the log).
 * Any error but -EAGAIN means the peer is broken or hostile: close the connection.
 */
int proto_hdr_decode(const void *buf, size_t len, struct proto_hdr *out, uint32_t max_payload);

/*
 * Encodes a HELLO payload into @buf (@buflen bytes; PROTO_HELLO_MAX_LEN is always enough).
 * Returns the payload length, -EINVAL if the node id is invalid or version is 0, or -ENOSPC.
 */
ssize_t proto_hello_encode(void *buf, size_t buflen, const struct proto_hello *in);
int proto_hello_decode(const void *payload, size_t len, struct proto_hello *out);

/* Writes PROTO_AUTH_LEN bytes. */
void proto_auth_encode(void *buf, const struct proto_auth *in);
int proto_auth_decode(const void *payload, size_t len, struct proto_auth *out);

/* AUTH_OK and AUTH_FAIL have no payload: returns 0 when @len is 0, else -EPROTO. */
int proto_empty_decode(const void *payload, size_t len);

/* PING and PONG payloads. Writes PROTO_PING_LEN bytes. */
void proto_ping_encode(void *buf, const struct proto_ping *in);
int proto_ping_decode(const void *payload, size_t len, struct proto_ping *out);

/*
 * A PING or PONG with a gossip block: writes the timestamp, then @g (g->inc nonzero) into
 * @buf (PROTO_PING_MAX_LEN is always enough). Returns the payload length, -EINVAL for a bad
 * event (state, incarnation 0, node id) or more than PROTO_GOSSIP_MAX events, or -ENOSPC.
 */
ssize_t proto_ping_gossip_encode(void *buf, size_t buflen, const struct proto_ping *ping,
				 const struct proto_gossip *g);
/* Either form of PING/PONG: 8 bytes (g->inc = 0, g->n = 0) or with a gossip block. */
int proto_ping_gossip_decode(const void *payload, size_t len, struct proto_ping *ping,
			     struct proto_gossip *g);

/* Writes PROTO_GET_LEN bytes. */
void proto_get_encode(void *buf, const struct proto_get *in);
int proto_get_decode(const void *payload, size_t len, struct proto_get *out);

/*
 * Writes the PROTO_DATA_FIXED_LEN-byte fixed part of a DATA payload (status, crc32, length;
 * in->data is ignored). The sender follows it with in->length data bytes and sets the
 * header's len to PROTO_DATA_FIXED_LEN + in->length; this lets a zero-copy sender write
 * header and fixed part from one small buffer and the chunk straight from the cache.
 */
void proto_data_encode(void *buf, const struct proto_data *in);

/*
 * Decodes a whole DATA payload of @len bytes. Returns -EPROTO unless
 * len == PROTO_DATA_FIXED_LEN + length and the status rules above hold. out->data points
 * into @payload (NULL when length is 0): it lives as long as the caller's buffer.
 */
int proto_data_decode(const void *payload, size_t len, struct proto_data *out);

/*
 * For a receiver that reads the data straight into its destination: decodes only the
 * PROTO_DATA_FIXED_LEN bytes at @fixed, checking them against @payload_len, the header's
 * payload length, exactly as proto_data_decode() does. out->data is set to NULL; the caller
 * then reads out->length bytes, which it must still check against out->crc32.
 */
int proto_data_decode_fixed(const void *fixed, uint32_t payload_len, struct proto_data *out);

/*
 * DATA_PIECE: writes the PROTO_PIECE_FIXED_LEN-byte fixed part (status, crc32, length,
 * offset; n and data are ignored); the sender follows it with the piece's bytes and sets
 * the header's len to PROTO_PIECE_FIXED_LEN + n.
 */
void proto_piece_encode(void *buf, const struct proto_piece *in);

/*
 * Decodes only the fixed part at @fixed of a DATA_PIECE whose header says @payload_len,
 * for a receiver that reads the bytes straight into place: sets out->n, out->data NULL.
 * Returns -EPROTO unless the rules above hold. proto_piece_decode() decodes a whole
 * payload of @len bytes the same way and points out->data at the bytes (NULL when n is 0).
 */
int proto_piece_decode_fixed(const void *fixed, uint32_t payload_len, struct proto_piece *out);
int proto_piece_decode(const void *payload, size_t len, struct proto_piece *out);

/* RDMA_DESC answer payload. Writes PROTO_RDMA_TICKET_LEN bytes. */
void proto_rdma_ticket_encode(void *buf, const struct proto_rdma_ticket *in);
int proto_rdma_ticket_decode(const void *payload, size_t len, struct proto_rdma_ticket *out);

/* PREFETCH and PREFETCH_STATUS payloads. Write PROTO_PREFETCH_LEN and
 * PROTO_PREFETCH_STATUS_LEN bytes. */
void proto_prefetch_encode(void *buf, const struct proto_prefetch *in);
int proto_prefetch_decode(const void *payload, size_t len, struct proto_prefetch *out);
void proto_prefetch_status_encode(void *buf, const struct proto_prefetch_status *in);
int proto_prefetch_status_decode(const void *payload, size_t len,
				 struct proto_prefetch_status *out);

/* META_GET: writes PROTO_META_GET_LEN bytes. META: writes the PROTO_META_FIXED_LEN-byte
 * fixed part (data and length ignored); the sender follows it with the piece. */
void proto_meta_get_encode(void *buf, const struct proto_meta_get *in);
int proto_meta_get_decode(const void *payload, size_t len, struct proto_meta_get *out);
void proto_meta_encode(void *buf, const struct proto_meta *in);
int proto_meta_decode(const void *payload, size_t len, struct proto_meta *out);

/* REDIRECT payload. Returns its length, or -EINVAL for an invalid node id. */
ssize_t proto_redirect_encode(void *buf, size_t buflen, const struct proto_redirect *in);
int proto_redirect_decode(const void *payload, size_t len, struct proto_redirect *out);

/* PING_REQ (returns its length or -EINVAL/-ENOSPC) and PING_REQ_ACK (4 bytes). */
ssize_t proto_ping_req_encode(void *buf, size_t buflen, const struct proto_ping_req *in);
int proto_ping_req_decode(const void *payload, size_t len, struct proto_ping_req *out);
void proto_ping_req_ack_encode(void *buf, const struct proto_ping_req_ack *in);
int proto_ping_req_ack_decode(const void *payload, size_t len, struct proto_ping_req_ack *out);

/*
 * The identity of one version of a file, shared by every node; all nodes must compute the
 * same value, so this definition is part of the protocol and never changes within a version:
 *
 *   h = FNV-1a-64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over the bytes
 *       relpath || 0x00 || be64(size) || be64(mtime_ns)
 *   key = fmix64(h), MurmurHash3's 64-bit finalizer:
 *       h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 33; h *= 0xc4ceb93e1a85ec53;
 *       h ^= h >> 33
 *
 * The 0x00 separator cannot occur in a path, so path and size never run into each other.
 * @relpath is relative to the backing root without a leading "/" or "./" ("llama/x.bin"),
 * exactly as cache/manifest.h spells paths. Known answer (pinned in test/check_proto.c):
 * proto_file_key("model/weights.bin", 1048576, 1700000000123456789) == 0x1ed7c03f21faae50.
 */
uint64_t proto_file_key(const char *relpath, uint64_t size, int64_t mtime_ns);

#endif
