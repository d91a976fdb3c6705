/*
 * TCP: deadline-bounded socket I/O used by every peer connection, and the TCP transport.
 * All functions are thread-safe for distinct sockets; a socket is used by one thread at a
 * time. Sockets are non-blocking; every wait is a poll() bounded by a deadline.
 */
#ifndef MOWS_NET_TCP_H
#define MOWS_NET_TCP_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "common/deadline.h"
#include "net/transport.h"

/* Connects to @sa by @dl. Returns a non-blocking socket or -errno. */
int tcp_connect(const struct sockaddr *sa, socklen_t salen, const struct deadline *dl);

/*
 * Starts a connect to @sa without waiting: returns a non-blocking socket whose connect is
 * under way (poll it for POLLOUT, then ask tcp_connect_result()), or -errno. For probing
 * many addresses at once.
 */
int tcp_connect_start(const struct sockaddr *sa, socklen_t salen);

/* The outcome of a connect started by tcp_connect_start(): 0 or -errno. */
int tcp_connect_result(int fd);

/* Binds and listens on "ADDR:PORT" (ADDR may be a name, "0.0.0.0" or "[::]"). Returns the
 * socket or -errno with a message in @err. */
int tcp_listen(const char *hostport, char *err, size_t errlen);

/* Makes an accepted socket non-blocking with TCP_NODELAY. Returns 0 or -errno. */
int tcp_setup(int fd);

/* Sends all of @iov (modified) by @dl. Returns 0, -ETIMEDOUT or -errno. */
int tcp_send_all(int fd, struct iovec *iov, int iovcnt, const struct deadline *dl);

/* Receives exactly @len bytes by @dl. Returns 0, -ECONNRESET at EOF, -ETIMEDOUT or -errno. */
int tcp_recv_all(int fd, void *buf, size_t len, const struct deadline *dl);

/* Splits "HOST:PORT" or "[V6]:PORT" into @host and @port. Returns 0 or -EINVAL. */
int tcp_split_hostport(const char *s, size_t len, char *host, size_t hostlen, char *port,
		       size_t portlen);

/*
 * The TCP transport over an authenticated link (net/link.h); the returned conn owns @l on
 * success (on failure the caller still does). Returns NULL with errno set.
 */
struct link;
struct transport_conn *tcp_conn_new(struct link *l, uint32_t max_payload);
extern const struct transport_ops tcp_transport;

#endif
