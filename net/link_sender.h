/*
 * The send side of one link shared by several senders (the workers that answer a peer's
 * requests, net/serve.c): one frame goes out at a time, and the turn to send is handed
 * first come, first served, so senders that give it up between the pieces of their answers
 * (DATA_PIECE, net/proto.h) take turns round robin and a long or slow answer never holds
 * up the others. A sender that waits for bytes it has not got yet (a relay paced by its
 * source) does so without the turn: it takes the turn only for the piece it has.
 *
 * A failed send loses the stream (part of a frame may have gone): the link is shut down,
 * so that its reader and every later sender fail at once. Threads: any thread may call
 * these; s->lock is a leaf lock (THREADS.md), never held across a send.
 */
#ifndef MOWS_NET_LINK_SENDER_H
#define MOWS_NET_LINK_SENDER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/deadline.h"

struct link;
struct link_sender_wait;

struct link_sender {
	struct link *link;               /* borrowed: outlives the sender */
	pthread_mutex_t lock;
	pthread_cond_t cond;             /* the turn was handed on */
	bool sending;                    /* someone has the turn, protected by lock */
	struct link_sender_wait *q;      /* waiting for the turn, first first, protected by lock */
};

/* Sets up @s over @l. Returns 0 or -ENOMEM. link_sender_release() undoes it (no sender
 * may be inside any more). */
int link_sender_init(struct link_sender *s, struct link *l);
void link_sender_release(struct link_sender *s);

/* Takes the turn (by @dl): returns 0 or -ETIMEDOUT. link_sender_give() hands it to the
 * first waiter; @rc nonzero (the send failed) shuts the link down. */
int link_sender_take(struct link_sender *s, const struct deadline *dl);
void link_sender_give(struct link_sender *s, int rc);

/* Sends @iov (modified) as one turn, by @dl. Returns 0 or -errno. */
int link_sender_sendv(struct link_sender *s, struct iovec *iov, int n, const struct deadline *dl);

/*
 * Sends bytes [@from, @to) of the answer to request @id, @len bytes in all with CRC @crc, as
 * DATA_PIECEs of at most @piece bytes from @data (the whole answer's bytes; no copy), one
 * turn per piece. Each piece must go within @piece_ms of the one before: the link, not the
 * request, bounds a send, so that a long answer on a busy link is not cut off while it
 * moves. A piece that cannot go once part of the answer went (@from > 0, or an earlier
 * piece) shuts the link down: the peer would wait for the rest. Returns 0 or -errno.
 */
int link_sender_pieces(struct link_sender *s, uint32_t id, uint32_t crc, uint32_t len,
		       const uint8_t *data, uint32_t from, uint32_t to, uint32_t piece,
		       int64_t piece_ms);

/* Ends the answer to request @id (@len bytes, @sent of them sent in pieces) with @status,
 * a positive errno: the peer drops what it got; the link carries on. Returns 0 or -errno
 * (the link is then shut down). */
int link_sender_abort(struct link_sender *s, uint32_t id, int status, uint32_t len,
		      uint32_t sent, const struct deadline *dl);

#endif
