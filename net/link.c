#include "net/link.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/auth.h"
#include "net/tcp.h"

struct link {
	int fd;
	struct tls_conn *tls;	/* after a TLS handshake began; NULL: plaintext */
};

struct link *link_new(int fd)
{
	struct link *l = malloc(sizeof(*l));
	if (!l) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	l->fd = fd;
	l->tls = NULL;
	return l;
}

struct link *link_connect(const struct sockaddr *sa, socklen_t salen, const struct deadline *dl)
{
	int fd = tcp_connect(sa, salen, dl);
	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	return link_new(fd);
}

void link_free(struct link *l)
{
	if (!l)
		return;
	tls_conn_free(l->tls);
	close(l->fd);
	free(l);
}

bool link_closed(struct link *l)
{
	char c;
	ssize_t n = recv(l->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

int link_poll_fd(const struct link *l)
{
	return l->fd;
}

bool link_buffered(struct link *l)
{
	return l->tls && tls_conn_pending(l->tls);
}

bool link_readable_now(struct link *l)
{
	struct pollfd pf = { .fd = l->fd, .events = POLLIN };
	return link_buffered(l) || poll(&pf, 1, 0) > 0;
}

void link_shutdown(struct link *l)
{
	shutdown(l->fd, SHUT_RDWR);
}

int link_sendv(struct link *l, struct iovec *iov, int iovcnt, const struct deadline *dl)
{
	if (l->tls)
		return tls_sendv(l->tls, iov, iovcnt, dl);
	return tcp_send_all(l->fd, iov, iovcnt, dl);
}

int link_recv(struct link *l, void *buf, size_t len, const struct deadline *dl)
{
	if (l->tls)
		return tls_recv_all(l->tls, buf, len, dl);
	return tcp_recv_all(l->fd, buf, len, dl);
}

int link_send_frame(struct link *l, uint8_t type, uint32_t id, const void *payload,
		    uint32_t len, const struct deadline *dl)
{
	uint8_t hdr[PROTO_HDR_LEN];
	proto_hdr_encode(hdr, type, 0, len, id);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, len } };
	return link_sendv(l, iov, len ? 2 : 1, dl);
}

int link_recv_frame(struct link *l, struct proto_hdr *hdr, void *buf, uint32_t cap,
		    const struct deadline *dl)
{
	uint8_t h[PROTO_HDR_LEN];
	int rc = link_recv(l, h, sizeof(h), dl);
	if (rc == 0)
		rc = proto_hdr_decode(h, sizeof(h), hdr, cap);
	if (rc == 0 && hdr->len)
		rc = link_recv(l, buf, hdr->len, dl);
	return rc;
}

int link_wait_readable(struct link *l, int stop_fd, int timeout_ms)
{
	struct pollfd p[2] = { { .fd = l->fd, .events = POLLIN },
			       { .fd = stop_fd, .events = POLLIN } };
	struct deadline dl = deadline_in_ms((uint64_t)timeout_ms);
	/* Bytes TLS already decrypted do not make the socket readable. */
	if (l->tls && tls_conn_pending(l->tls))
		return 1;
	for (;;) {
		int64_t ms = deadline_left_ms(&dl);
		if (ms == 0)
			return -ETIMEDOUT;
		int n = poll(p, stop_fd >= 0 ? 2 : 1, (int)ms);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0 && stop_fd >= 0 && p[1].revents)
			return 0;
		if (n > 0 && p[0].revents)
			return 1;
	}
}

/* ---- handshake ---- */

static int send_hello(struct link *l, const struct link_self *me,
		      uint8_t nonce[PROTO_NONCE_LEN], const struct deadline *dl)
{
	struct proto_hello h = { .version = PROTO_VERSION, .listen_port = me->listen_port,
				 .caps = me->caps };
	uint8_t buf[PROTO_HELLO_MAX_LEN];
	int rc = auth_nonce(nonce);
	if (rc)
		return rc;
	memcpy(h.nonce, nonce, PROTO_NONCE_LEN);
	snprintf(h.node_id, sizeof(h.node_id), "%s", me->node_id);
	h.uptime_ms = me->start_ns ? (mono_ns() - me->start_ns) / 1000000 : 0;
	ssize_t n = proto_hello_encode(buf, sizeof(buf), &h);
	if (n < 0)
		return (int)n;
	return link_send_frame(l, PROTO_HELLO, 0, buf, (uint32_t)n, dl);
}

/* Checks the peer's AUTH: a MAC over our nonce, or both sides explicitly insecure. */
static bool auth_ok(const struct link_self *me, const struct proto_auth *a, char their_role,
		    const uint8_t my_nonce[PROTO_NONCE_LEN], const struct proto_hello *them)
{
	if (me->insecure || a->insecure)
		return me->insecure && a->insecure;
	return auth_check(me->secret, me->secret_len, their_role, my_nonce, them->nonce,
			  them->node_id, me->node_id, a->mac);
}

/* HELLO both ways. */
static int hello_exchange(struct link *l, const struct link_self *me,
			  uint8_t nonce[PROTO_NONCE_LEN], struct proto_hello *them,
			  const struct deadline *dl)
{
	uint8_t buf[PROTO_HELLO_MAX_LEN];
	struct proto_hdr hdr;
	int rc = send_hello(l, me, nonce, dl);
	if (rc == 0)
		rc = link_recv_frame(l, &hdr, buf, PROTO_PREAUTH_MAX_PAYLOAD, dl);
	if (rc == 0 && hdr.type != PROTO_HELLO)
		rc = -EPROTO;
	if (rc == 0)
		rc = proto_hello_decode(buf, hdr.len, them);
	return rc;
}

const char *link_strerror(const struct link *l)
{
	return l->tls ? tls_conn_strerror(l->tls) : "";
}

/*
 * TLS authenticates the peer (PSK binder and Finished, or certificates), so the HMAC
 * exchange would prove nothing more: only HELLO follows, inside TLS.
 */
static int tls_handshake_hello(struct link *l, const struct link_self *me, char role,
			       struct proto_hello *them, const struct deadline *dl)
{
	uint8_t nonce[PROTO_NONCE_LEN];
	int rc;

	l->tls = tls_conn_new(me->tls, l->fd, role == AUTH_ROLE_SERVER);
	if (!l->tls)
		return -errno;
	rc = tls_handshake(l->tls, dl);
	if (rc == 0)
		rc = hello_exchange(l, me, nonce, them, dl);
	return rc;
}

/* tls = off: HELLO, then the HMAC challenge-response of net/auth.h. */
static int hmac_handshake(struct link *l, const struct link_self *me, char role,
			  struct proto_hello *them, const struct deadline *dl)
{
	uint8_t nonce[PROTO_NONCE_LEN], buf[PROTO_HELLO_MAX_LEN];
	struct proto_hdr hdr;
	struct proto_auth mine = { .insecure = me->insecure }, theirs;
	int rc = hello_exchange(l, me, nonce, them, dl);
	if (rc)
		return rc;
	if (!me->insecure)
		auth_mac(me->secret, me->secret_len, role, them->nonce, nonce, me->node_id,
			 them->node_id, mine.mac);
	proto_auth_encode(buf, &mine);
	rc = link_send_frame(l, PROTO_AUTH, 0, buf, PROTO_AUTH_LEN, dl);
	if (rc == 0)
		rc = link_recv_frame(l, &hdr, buf, PROTO_PREAUTH_MAX_PAYLOAD, dl);
	if (rc == 0 && (hdr.type != PROTO_AUTH || proto_auth_decode(buf, hdr.len, &theirs)))
		rc = -EPROTO;
	if (rc)
		return rc;
	char their_role = role == AUTH_ROLE_CLIENT ? AUTH_ROLE_SERVER : AUTH_ROLE_CLIENT;
	bool ok = auth_ok(me, &theirs, their_role, nonce, them);
	rc = link_send_frame(l, ok ? PROTO_AUTH_OK : PROTO_AUTH_FAIL, 0, NULL, 0, dl);
	if (!ok)
		return -EACCES;
	if (rc == 0)
		rc = link_recv_frame(l, &hdr, buf, PROTO_PREAUTH_MAX_PAYLOAD, dl);
	if (rc == 0 && hdr.type != PROTO_AUTH_OK)
		rc = hdr.type == PROTO_AUTH_FAIL ? -EACCES : -EPROTO;
	return rc;
}

int link_handshake(struct link *l, const struct link_self *me, char role,
		   struct proto_hello *them, const struct deadline *dl)
{
	if (me->tls)
		return tls_handshake_hello(l, me, role, them, dl);
	return hmac_handshake(l, me, role, them, dl);
}
