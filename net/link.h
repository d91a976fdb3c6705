/*
 * A link: one authenticated byte stream to a peer. Every byte a peer connection sends or
 * receives, in either direction, goes through this API, so that a protection layer (TLS,
 * net/tls.c) can be put in at exactly this seam: callers never touch the descriptor.
 *
 * A link is made from a connected (or accepted) TCP socket by link_new(), then runs the
 * mutual HELLO/AUTH handshake (link_handshake()) before anything else is said. Frames are
 * sent and received with deadlines; link_sendv() takes an iovec so a chunk can be sent
 * straight from the pinned slab, and link_recv() reads straight into a caller's slot.
 *
 * Threads: a link is used by one thread at a time (the one that holds it); distinct links
 * are independent. No function here takes a lock. See THREADS.md.
 */
#ifndef MOWS_NET_LINK_H
#define MOWS_NET_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "common/deadline.h"
#include "net/proto.h"
#include "net/tls.h"

struct link;

/* What this node says about itself in a handshake. Borrowed, must outlive the call. */
struct link_self {
	const char *node_id;
	uint16_t listen_port;
	uint16_t caps;               /* PROTO_CAP_* */
	const uint8_t *secret;       /* NULL with insecure */
	size_t secret_len;
	bool insecure;
	struct tls_ctx *tls;         /* TLS 1.3 (net/tls.h); NULL: tls = off, HMAC handshake */
	uint64_t start_ns;           /* mono_ns() when this node started (HELLO's uptime) */
};

/* Wraps a connected non-blocking socket; the link owns @fd afterwards (closed on failure
 * too). Returns NULL with errno set. */
struct link *link_new(int fd);

/* Connects to @sa by @dl. Returns a link or NULL with errno set. */
struct link *link_connect(const struct sockaddr *sa, socklen_t salen, const struct deadline *dl);

/* Closes the stream and frees the link. NULL is fine. */
void link_free(struct link *l);

/* Why the last call on @l failed, in words ("" when there is nothing to add). */
const char *link_strerror(const struct link *l);

/*
 * Runs the mutual handshake as @role (AUTH_ROLE_CLIENT or AUTH_ROLE_SERVER) by @dl and
 * fills *@them with the peer's HELLO. Returns 0, -EACCES when authentication failed (either
 * way), or another -errno (the link must then be freed).
 */
int link_handshake(struct link *l, const struct link_self *me, char role,
		   struct proto_hello *them, const struct deadline *dl);

/* Sends one frame: header then @len bytes of @payload. Returns 0 or -errno. */
int link_send_frame(struct link *l, uint8_t type, uint32_t id, const void *payload,
		    uint32_t len, const struct deadline *dl);

/* Receives one frame of at most @cap payload bytes into @buf. Returns 0 or -errno
 * (-ECONNRESET at EOF, -ETIMEDOUT, -EPROTO/-EMSGSIZE for a bad header). */
int link_recv_frame(struct link *l, struct proto_hdr *hdr, void *buf, uint32_t cap,
		    const struct deadline *dl);

/* Sends all of @iov (modified) by @dl, without copying. Returns 0 or -errno. */
int link_sendv(struct link *l, struct iovec *iov, int iovcnt, const struct deadline *dl);

/* Receives exactly @len bytes into @buf by @dl. Returns 0 or -errno. */
int link_recv(struct link *l, void *buf, size_t len, const struct deadline *dl);

/*
 * Waits until the link has bytes to read (1), @stop_fd is readable (0), or @timeout_ms
 * passes (-ETIMEDOUT). Returns -errno if polling fails.
 */
int link_wait_readable(struct link *l, int stop_fd, int timeout_ms);

/*
 * For an event loop (net/serve_io.c): the descriptor to watch with epoll, never to read or
 * write (every byte still goes through this API). link_buffered(): TLS holds bytes already
 * taken off the socket, so the socket may not show readable although a frame waits.
 * link_readable_now(): a read would find bytes (or the end of the stream) without waiting.
 */
int link_poll_fd(const struct link *l);
bool link_buffered(struct link *l);
bool link_readable_now(struct link *l);

/* Whether the peer closed the stream (or it failed), without waiting or sending. A link
 * that has bytes waiting counts as open. */
bool link_closed(struct link *l);

/* Shuts the stream down so a thread blocked on it returns at once; the link stays
 * allocated for its owner to free. Safe from another thread. */
void link_shutdown(struct link *l);

#endif
