/*
 * What net/serve.c and net/serve_io.c share: an authenticated inbound link (struct sconn)
 * and the event loop that reads it. Not part of the contract with the rest of the daemon.
 *
 * An authenticated link has no thread of its own. It is handed around as a token: armed in
 * the epoll set (armed), taken by the loop thread when readable and queued for a reader,
 * read by one reader (frames dispatched by serve_frame()), then armed again, or left
 * stalled while it has SERVE_CONN_INFLIGHT jobs (the job that ends arms it again), or ended.
 * Whoever holds the token is the only one that reads the link. Locking: THREADS.md.
 */
#ifndef MOWS_NET_SERVE_PRIV_H
#define MOWS_NET_SERVE_PRIV_H

#include <stdatomic.h>

#include "net/link_sender.h"
#include "net/peer_priv.h"

struct sconn {
	struct peers *p;
	struct link *link;
	struct member *m;         /* referenced, or NULL */
	uint16_t caps;            /* the peer's HELLO caps, set at creation, read-only */
	char node_id[PROTO_NODE_ID_MAX + 1]; /* the peer's HELLO node id, read-only */
	atomic_int refs;          /* the event loop's registration and every job */
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* a job ended */
	struct link_sender tx;    /* the send side, shared by the workers (its own lock) */
	bool closed;              /* the link left the event loop, protected by lock */
	unsigned inflight;        /* jobs queued or running, protected by lock */
	bool armed;               /* waiting in the epoll set, protected by lock */
	bool stalled;             /* at SERVE_CONN_INFLIGHT, not armed, protected by lock */
	bool idle;                /* shut down for idleness by the sweep, protected by lock */
	uint64_t armed_ns;        /* when it was last armed, protected by lock */
	struct sconn *io_prev, *io_next;  /* every registered link, protected by io->lock */
	struct sconn *ready_next;         /* the readers' queue, protected by io->lock */
};

/* net/serve.c. Hands an authenticated link (owned from now on) and @m (a reference, or
 * NULL) to the event loop, or ends them; the authenticated count drops when the link ends.
 * Called by the handshake thread. */
void serve_conn(struct peers *p, struct link *l, struct member *m,
		const struct proto_hello *them);
/* net/serve.c. Reads one frame of @sc and answers or queues it (the caller holds the
 * token). Returns 0, 1 when the peer said LEAVE, or -errno: either way but 0 the link ends. */
int serve_frame(struct peers *p, struct sconn *sc);
/* net/serve.c. The link left the event loop: drops the authenticated count and the loop's
 * reference. */
void sconn_end(struct sconn *sc);

/*
 * net/serve_accept.c. serve_accept_start(): the listener thread. serve_accept_stop(): joins
 * it (it ends at stop_fd), shuts down the links still in their handshake and waits for their
 * threads.
 */
int serve_accept_start(struct peers *p);
void serve_accept_stop(struct peers *p);

/*
 * net/serve_io.c. serve_io_start(): the epoll loop thread and SERVE_READERS readers.
 * serve_io_add(): registers an authenticated link (the loop takes its reference); fails
 * with -ESHUTDOWN at stop, or -errno, and then the caller ends it. serve_io_arm(): the
 * token holder (a job that unstalled it) hands the link back to the loop.
 * serve_io_stop(): shuts every link down, waits until each has ended (each is bounded by
 * request_timeout), then stops the threads. Called after the handshake threads ended.
 */
int serve_io_start(struct peers *p);
int serve_io_add(struct peers *p, struct sconn *sc);
void serve_io_arm(struct peers *p, struct sconn *sc);
void serve_io_stop(struct peers *p);

#endif
