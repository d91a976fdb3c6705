/*
 * The multiplexed TCP transport: one authenticated link per peer carries many chunk
 * requests at once, and the RDMA descriptor requests of net/rdma.h (mux_call, mux_send), so
 * that every descriptor travels inside TLS. Each GET has its own request id; DATA answers may come back in any order.
 * There is no I/O thread: the requesters take turns (leader/follower). One sends at a time;
 * one reads at a time, and the reader receives each DATA frame straight into the slot of the
 * request it answers, whoever asked, then hands the reader's role on. A peer that we told
 * PROTO_CAP_PIECES may answer in DATA_PIECEs (net/proto.h) that interleave with other
 * answers: each piece goes straight into its asker's slot at its offset (relayers hear of its
 * progress), and the answer is done with its last piece; every piece is one frame read under
 * @frame_ms. A requester whose deadline passes leaves; an answer, or the rest of one, that
 * comes for it later is read away. A piece for no request, out of order or that does not
 * match its answer's first piece breaks the mux (-EPROTO).
 *
 * A stream error, a short send or a bad frame breaks the mux: every waiter gets the error
 * and the caller makes a new one. Threads: any number of threads may call mux_fetch() at
 * once. mux.lock is a leaf lock (THREADS.md), never held across I/O.
 */
#ifndef MOWS_NET_MUX_H
#define MOWS_NET_MUX_H

#include <stdbool.h>
#include <stdint.h>

#include "net/transport.h"

struct cache_relay;
struct link;
struct mux;

/*
 * A mux over the authenticated link @l (owned by the mux from now on, even on failure).
 * @max_payload bounds a DATA frame; @frame_ms bounds reading one frame once it began.
 * Returns NULL with errno set. The caller holds the one reference.
 */
struct mux *mux_new(struct link *l, uint32_t max_payload, uint32_t frame_ms);

/* As transport_ops.fetch. Returns 0, -ENOENT, -EIO (the peer failed), -ETIMEDOUT, or
 * another -errno when the mux is broken. */
int mux_fetch(struct mux *x, const struct transport_chunk_req *req, void *dst, size_t len,
	      uint32_t *crc, const struct deadline *dl);

/*
 * As mux_fetch(); a REDIRECT answer (the swarm: the owner names an earlier requester to ask
 * with WAIT) puts the holder's node id in @holder (PROTO_NODE_ID_MAX + 1 bytes, or NULL when
 * the caller cannot take one: a REDIRECT is then -EPROTO) and returns -EXDEV. With @relay
 * (cache/cache.h), the DATA's CRC is announced there before its bytes land and their
 * progress reported as they do, for nodes that relay the chunk while it arrives.
 * Gives up at @dl unless the answer is arriving in pieces: then it waits while pieces keep
 * coming, each at most frame_ms (mux_new()) after the one before, up to @until, so that a
 * chunk relayed at the pace of a slow source (a shared storage link) is not abandoned, and
 * read again, when it is nearly here, while a stalled one still fails in frame_ms.
 */
int mux_fetch_swarm(struct mux *x, const struct transport_chunk_req *req, void *dst,
		    size_t len, uint32_t *crc, char *holder, struct cache_relay *relay,
		    const struct deadline *dl, const struct deadline *until);

/*
 * A small request of frame type @type (PROTO_RDMA_DESC only) whose answer, a frame of the
 * same type with the same request id and at most @cap bytes, is copied into @ans (its length
 * in *@anslen). Returns 0, -ETIMEDOUT, -EPROTO (the answer was not what was asked for), or
 * -errno when the mux is broken. Any thread, with mux_fetch() calls at once.
 */
int mux_call(struct mux *x, uint8_t type, const void *payload, uint32_t len, void *ans,
	     size_t cap, size_t *anslen, const struct deadline *dl);

/* Sends one frame that has no answer (request id 0), when the sender's turn comes. Returns
 * 0 or -errno (a failed send breaks the mux). */
int mux_send(struct mux *x, uint8_t type, const void *payload, uint32_t len,
	     const struct deadline *dl);

/*
 * Called with an RDMA_DESC answer (@len bytes) whose asker is gone (its deadline passed), on
 * the thread that read it, without the mux's lock, so that the asker's layer can undo what
 * the answer granted (net/peer.c releases the lease). It may call mux_send().
 */
typedef void (*mux_orphan_fn)(struct mux *x, const void *msg, size_t len);

/* Sets the orphan handler; call once, right after mux_new(), before the mux is shared. */
void mux_set_orphan(struct mux *x, mux_orphan_fn fn);

/* Whether this node said PROTO_CAP_PIECES in its HELLO on the link (true unless set
 * otherwise). When not, a DATA_PIECE breaks the mux, as it would an older node's, which has
 * no such frame. Call once, right after mux_new(), before the mux is shared. */
void mux_set_pieces(struct mux *x, bool take);

/* Whether the mux is broken (then it only fails). Lock-free. */
bool mux_broken(struct mux *x);

/* Breaks the mux now (the peer went away): every waiter fails at once. */
void mux_shutdown(struct mux *x);

/* References; the last mux_put() closes the link and frees the mux. Lock-free. */
void mux_get(struct mux *x);
void mux_put(struct mux *x);

#endif
