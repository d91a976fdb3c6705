#include "net/tcp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/link.h"
#include "net/proto.h"

static int wait_fd(int fd, short events, const struct deadline *dl)
{
	for (;;) {
		int64_t ms = deadline_left_ms(dl);
		if (ms == 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, ms > 1000 ? 1000 : (int)ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int tcp_setup(int fd)
{
	int one = 1;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

int tcp_connect(const struct sockaddr *sa, socklen_t salen, const struct deadline *dl)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int rc = tcp_setup(fd);
	if (rc == 0 && connect(fd, sa, salen) < 0) {
		rc = errno == EINPROGRESS ? wait_fd(fd, POLLOUT, dl) : -errno;
		int soerr = 0;
		socklen_t len = sizeof(soerr);
		if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr)
			rc = -soerr;
	}
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

int tcp_connect_start(const struct sockaddr *sa, socklen_t salen)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int rc = tcp_setup(fd);
	if (rc == 0 && connect(fd, sa, salen) < 0 && errno != EINPROGRESS)
		rc = -errno;
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

int tcp_connect_result(int fd)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return -errno;
	return -soerr;
}

int tcp_split_hostport(const char *s, size_t len, char *host, size_t hostlen, char *port,
		       size_t portlen)
{
	const char *colon = NULL;
	for (size_t i = 0; i < len; i++)
		if (s[i] == ':')
			colon = s + i;
	if (!colon || colon == s || (size_t)(s + len - colon - 1) >= portlen)
		return -EINVAL;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']')
		h++, hl -= 2;
	if (hl >= hostlen)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	memcpy(port, colon + 1, (size_t)(s + len - colon - 1));
	port[s + len - colon - 1] = '\0';
	return 0;
}

int tcp_listen(const char *hostport, char *err, size_t errlen)
{
	char host[256], port[16];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai;
	if (tcp_split_hostport(hostport, strlen(hostport), host, sizeof(host), port,
			       sizeof(port))) {
		snprintf(err, errlen, "listen '%s': expected ADDR:PORT", hostport);
		return -EINVAL;
	}
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "listen '%s': %s", hostport, gai_strerror(rc));
		return -EINVAL;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1;
	rc = 0;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0)
		rc = -errno;
	freeaddrinfo(ai);
	if (rc) {
		snprintf(err, errlen, "listen '%s': %s; choose an address of this node and a free "
			 "port", hostport, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	return fd;
}

int tcp_send_all(int fd, struct iovec *iov, int iovcnt, const struct deadline *dl)
{
	while (iovcnt > 0) {
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
		ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			int rc = wait_fd(fd, POLLOUT, dl);
			if (rc)
				return rc;
			continue;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++, iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int tcp_recv_all(int fd, void *buf, size_t len, const struct deadline *dl)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, (char *)buf + got, len - got, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			int rc = wait_fd(fd, POLLIN, dl);
			if (rc)
				return rc;
			continue;
		}
		got += (size_t)n;
	}
	return 0;
}

/* ---- the TCP transport ---- */

struct transport_conn {
	struct link *link;
	uint32_t next_id;
	uint32_t max_payload;
};

struct transport_conn *tcp_conn_new(struct link *l, uint32_t max_payload)
{
	struct transport_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->link = l;
	c->max_payload = max_payload;
	return c;
}

static int tcp_send_get(struct transport_conn *c, const struct transport_chunk_req *req,
			uint32_t id, const struct deadline *dl)
{
	uint8_t buf[PROTO_HDR_LEN + PROTO_GET_LEN];
	struct proto_get get = transport_req_get(req);
	proto_hdr_encode(buf, PROTO_GET, 0, PROTO_GET_LEN, id);
	proto_get_encode(buf + PROTO_HDR_LEN, &get);
	struct iovec iov = { buf, sizeof(buf) };
	return link_sendv(c->link, &iov, 1, dl);
}

static int tcp_fetch(struct transport_conn *c, const struct transport_chunk_req *req, void *dst,
		     size_t len, uint32_t *crc, const struct deadline *dl)
{
	uint8_t hbuf[PROTO_HDR_LEN], fixed[PROTO_DATA_FIXED_LEN];
	struct proto_hdr hdr;
	struct proto_data data;
	uint32_t id = ++c->next_id;
	int rc = tcp_send_get(c, req, id, dl);
	if (rc == 0)
		rc = link_recv(c->link, hbuf, sizeof(hbuf), dl);
	if (rc == 0)
		rc = proto_hdr_decode(hbuf, sizeof(hbuf), &hdr, c->max_payload);
	if (rc == 0 && (hdr.type != PROTO_DATA || hdr.req_id != id))
		rc = -EPROTO;
	if (rc == 0)
		rc = link_recv(c->link, fixed, sizeof(fixed), dl);
	if (rc == 0)
		rc = proto_data_decode_fixed(fixed, hdr.len, &data);
	if (rc)
		return rc;
	if (data.status)
		return data.status == ENOENT ? -ENOENT : -EIO;
	if (data.length != len)
		return -EPROTO; /* the connection still holds the bytes: it must be closed */
	/* Straight into the caller's slot: no copy in between. */
	rc = link_recv(c->link, dst, len, dl);
	*crc = data.crc32;
	return rc;
}

static void tcp_close(struct transport_conn *c)
{
	if (!c)
		return;
	link_free(c->link);
	free(c);
}

const struct transport_ops tcp_transport = {
	.name = "tcp",
	.fetch = tcp_fetch,
	.close = tcp_close,
};
