/* TLS sessions on peer sockets: handshake, I/O with deadlines, errors (net/tls.h). */
#include "net/tls_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/x509.h>

/*
 * c->lock serializes every call into the SSL object (OpenSSL's are not safe from two threads
 * at once), so one reader and one writer can share a conn. It is held for one non-blocking
 * call, never across a wait. Fields below it are protected by it.
 */
struct tls_conn {
	pthread_mutex_t lock;
	int fd;			/* read-only */
	bool psk;		/* read-only */
	SSL *ssl;
	bool broken;		/* an error happened: no close_notify, keep the first message */
	uint64_t rekey_bytes;	/* send a KeyUpdate after this many bytes */
	uint64_t since_rekey;	/* bytes sent under the current key */
	unsigned key_updates;
	bool batch;		/* records queue in wq instead of a send() each */
	uint8_t *wq;		/* records written but not yet sent (TLS_WQ_CAP bytes) */
	size_t wq_off, wq_len;	/* wq[wq_off..wq_len) waits for the socket */
	char peer[128];		/* written once by the finished handshake */
	char err[TLS_ERR_MAX];
};

/* OpenSSL's words for SSL-library @reason; never NULL. */
static const char *reason_text(int reason)
{
	const char *s = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, reason));

	return s ? s : "unknown reason";
}

/* ---- a socket BIO that never raises SIGPIPE and can batch records ---- */

/*
 * Records queued while c->batch is set go out together, up to this many bytes a send():
 * OpenSSL hands the BIO one 16 KiB record at a time, and a send() each is ~60,000 system
 * calls per GB. A copy of a record that is still in cache costs less than its syscall.
 */
#define TLS_WQ_CAP (256 * 1024)

/* Sends what wq holds. c->lock held. 0 when all is sent, -EAGAIN, or -errno. */
static int wq_flush(struct tls_conn *c)
{
	while (c->wq_off < c->wq_len) {
		ssize_t n = send(c->fd, c->wq + c->wq_off, c->wq_len - c->wq_off, MSG_NOSIGNAL);

		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
		c->wq_off += (size_t)n;
	}
	c->wq_off = c->wq_len = 0;
	return 0;
}

static int bio_sock_write(BIO *b, const char *buf, size_t len, size_t *done)
{
	struct tls_conn *c = BIO_get_data(b);
	ssize_t n;
	int rc;

	BIO_clear_retry_flags(b);
	/* Room for this record, or (outside a batch) the queue gone before it. */
	if (c->wq_len && (!c->batch || c->wq_len + len > TLS_WQ_CAP) &&
	    (rc = wq_flush(c)) && rc != -EAGAIN) {
		errno = -rc;
		return 0;
	}
	if (c->batch && c->wq_len + len <= TLS_WQ_CAP) {
		memcpy(c->wq + c->wq_len, buf, len);
		c->wq_len += len;
		*done = len;
		return 1;
	}
	if (c->wq_len) {	/* order: what is queued goes first */
		BIO_set_retry_write(b);
		errno = EAGAIN;
		return 0;
	}
	n = send(c->fd, buf, len, MSG_NOSIGNAL);
	if (n >= 0) {
		*done = (size_t)n;
		return 1;
	}
	if (errno == EAGAIN || errno == EINTR)
		BIO_set_retry_write(b);
	return 0;
}

static int bio_sock_read(BIO *b, char *buf, size_t len, size_t *done)
{
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = recv(((struct tls_conn *)BIO_get_data(b))->fd, buf, len, 0);
	if (n > 0) {
		*done = (size_t)n;
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		BIO_set_retry_read(b);
	if (n == 0)
		errno = 0;	/* EOF: SSL_ERROR_SYSCALL with errno 0 */
	return 0;
}

static long bio_sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b, (void)num, (void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_sock_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *bio_sock_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mows socket");

	if (m && (!BIO_meth_set_write_ex(m, bio_sock_write) ||
		  !BIO_meth_set_read_ex(m, bio_sock_read) || !BIO_meth_set_ctrl(m, bio_sock_ctrl) ||
		  !BIO_meth_set_create(m, bio_sock_create))) {
		BIO_meth_free(m);
		return NULL;
	}
	return m;
}

/* Made once; BIO_METHODs are read-only after set-up, so every thread may share it. */
static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
	bio_method = bio_sock_method();
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, bool server)
{
	struct tls_conn *c;
	SSL_CTX *sslctx;
	BIO *bio;
	int fl;

	pthread_once(&bio_once, bio_method_init);
	if (!bio_method) {
		errno = ENOMEM;
		return NULL;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	c->fd = fd;
	c->psk = !tls_ctx_is_cert(ctx);
	c->rekey_bytes = TLS_REKEY_BYTES;
	sslctx = tls_ctx_ssl(ctx);
	c->ssl = SSL_new(sslctx);
	SSL_CTX_free(sslctx);	/* the SSL holds its own reference */
	bio = c->ssl ? BIO_new(bio_method) : NULL;
	if (!bio) {
		SSL_free(c->ssl);
		pthread_mutex_destroy(&c->lock);
		free(c);
		ERR_clear_error();
		errno = ENOMEM;
		return NULL;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);	/* the SSL owns the BIO (one reference for both) */
	if (server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	return c;
}

__attribute__((format(printf, 3, 4)))
static int conn_fail(struct tls_conn *c, int rc, const char *fmt, ...)
{
	va_list ap;

	/* The first failure is the cause; what the other direction sees next is its echo. */
	if (!c->broken) {
		va_start(ap, fmt);
		vsnprintf(c->err, sizeof(c->err), fmt, ap);
		va_end(ap);
	}
	c->broken = true;
	ERR_clear_error();
	return rc;
}

/* conn_fail() for wait_fd(), which does not hold c->lock: a timeout or poll's @rc. */
static int locked_fail(struct tls_conn *c, int rc, const char *op)
{
	pthread_mutex_lock(&c->lock);
	if (rc == -ETIMEDOUT)
		conn_fail(c, rc, "%s timed out (peer silent%s)", op,
			  SSL_is_init_finished(c->ssl) ? "" : ", or not speaking TLS");
	else
		conn_fail(c, rc, "%s: poll: %s", op, strerror(-rc));
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int wait_fd(struct tls_conn *c, short events, const struct deadline *dl, const char *op)
{
	for (;;) {
		int64_t ms = deadline_left_ms(dl);
		struct pollfd p = { .fd = c->fd, .events = events };
		int n;

		if (ms == 0)
			return locked_fail(c, -ETIMEDOUT, op);
		n = poll(&p, 1, ms > 1000 ? 1000 : (int)ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return locked_fail(c, -errno, op);
	}
}

/* Authentication failures: what went wrong, in the words an operator can act on. */
static int fail_auth(struct tls_conn *c, int reason, const char *op)
{
	long v = SSL_get_verify_result(c->ssl);

	if (reason == SSL_R_BINDER_DOES_NOT_VERIFY ||
	    (c->psk && (reason == SSL_R_TLSV1_ALERT_DECRYPT_ERROR ||
			reason == SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER)))
		return conn_fail(c, -EACCES, "%s: wrong PSK: the peer's secret_file differs from "
				 "ours; give every node the same secret", op);
	if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && v == X509_V_ERR_APPLICATION_VERIFICATION)
		return conn_fail(c, -EACCES, "%s: the peer showed a certificate instead of our PSK; "
				 "give every node the same TLS mode (secret_file or tls_cert)", op);
	if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK)
		return conn_fail(c, -EACCES, "%s: peer certificate refused: %s; the peer needs a "
				 "certificate signed by our tls_ca", op,
				 X509_verify_cert_error_string(v));
	if (c->psk)
		return conn_fail(c, -EACCES, "%s: no PSK handshake (%s): the peer has another "
				 "secret_file or uses certificates; give every node the same "
				 "secret_file and TLS mode", op, reason_text(reason));
	return conn_fail(c, -EACCES, "%s: certificate refused (%s); every node needs a "
			 "certificate signed by the tls_ca of the others", op,
			 reason_text(reason));
}

/* Sorts an SSL_ERROR_SSL by OpenSSL's reason into the errors tls.h lists. */
static int fail_ssl(struct tls_conn *c, const char *op)
{
	unsigned long e = ERR_peek_error();
	int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
	char why[160];

	switch (reason) {
	case SSL_R_BINDER_DOES_NOT_VERIFY:
	case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
	case SSL_R_TLSV1_ALERT_INTERNAL_ERROR:
	case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
		return fail_auth(c, reason, op);
	case SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER:
		/* What a server answers to a PSK binder that does not verify. */
		if (c->psk && !SSL_is_init_finished(c->ssl))
			return fail_auth(c, reason, op);
		break;
	case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
		return conn_fail(c, -EBADMSG, "%s: a TLS record failed its integrity check (%s): "
				 "bytes were altered in flight; connection dropped", op,
				 tls_ssl_reason(why, sizeof(why)));
	case SSL_R_SSLV3_ALERT_BAD_RECORD_MAC:
		return conn_fail(c, -EBADMSG, "%s: the peer got a TLS record that failed its "
				 "integrity check (bytes altered in flight); connection dropped", op);
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
		if (!SSL_is_init_finished(c->ssl))
			return conn_fail(c, -EPROTO, "%s: the peer does not speak TLS 1.3 (%s); is "
					 "it running with tls = off or an older mows? give every "
					 "node the same tls setting", op,
					 tls_ssl_reason(why, sizeof(why)));
		break;
	default:
		break;
	}
	return conn_fail(c, -EPROTO, "%s: TLS protocol error: %s", op,
			 tls_ssl_reason(why, sizeof(why)));
}

/*
 * After an SSL call returned @ret (@saved_errno: errno right after it): -EAGAIN with *@want
 * set to POLLIN or POLLOUT when OpenSSL waits for the socket (0: just call again), else the
 * error, sorted and described.
 */
static int io_want(struct tls_conn *c, int ret, int saved_errno, short *want, const char *op)
{
	*want = 0;
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		*want = POLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*want = POLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return conn_fail(c, -ECONNRESET, "%s: the peer closed the TLS session", op);
	case SSL_ERROR_SYSCALL:
		if (saved_errno == EINTR)
			return -EAGAIN;
		if (saved_errno)
			return conn_fail(c, -saved_errno, "%s: %s", op, strerror(saved_errno));
		if (ERR_peek_error())
			return fail_ssl(c, op);
		return conn_fail(c, -ECONNRESET, "%s: the peer hung up%s", op,
				 SSL_is_init_finished(c->ssl) ? "" : " during the handshake (wrong "
				 "secret or certificate on its side, or it does not speak TLS?)");
	case SSL_ERROR_SSL:
		return fail_ssl(c, op);
	default:
		return conn_fail(c, -EPROTO, "%s: unexpected OpenSSL state", op);
	}
}

static void note_peer(struct tls_conn *c)
{
	X509 *cert;
	X509_NAME *name;

	if (c->psk) {
		snprintf(c->peer, sizeof(c->peer), "psk:%s", TLS_PSK_IDENTITY);
		return;
	}
	cert = SSL_get1_peer_certificate(c->ssl);
	name = cert ? X509_get_subject_name(cert) : NULL;
	if (!name || X509_NAME_get_text_by_NID(name, NID_commonName, c->peer,
					       sizeof(c->peer)) < 0) {
		if (name)
			X509_NAME_oneline(name, c->peer, sizeof(c->peer));
	}
	X509_free(cert);
}

/*
 * Counts @n bytes sent; past rekey_bytes, asks for new keys (sent before the next record).
 * RFC 8446 5.5: an AES-GCM key is good for about 2^24.5 full records (~380 GB); a link
 * between two nodes can carry that in days, and OpenSSL does not count for us.
 */
static void note_sent(struct tls_conn *c, size_t n)
{
	c->since_rekey += n;
	if (c->since_rekey < c->rekey_bytes)
		return;
	if (SSL_key_update(c->ssl, SSL_KEY_UPDATE_NOT_REQUESTED) == 1)
		c->key_updates++;
	ERR_clear_error();
	c->since_rekey = 0;
}

void tls_conn_set_rekey_bytes(struct tls_conn *c, uint64_t bytes)
{
	pthread_mutex_lock(&c->lock);
	c->rekey_bytes = bytes;
	pthread_mutex_unlock(&c->lock);
}

unsigned tls_conn_key_updates(struct tls_conn *c)
{
	pthread_mutex_lock(&c->lock);
	unsigned n = c->key_updates;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* After SSL_do_handshake() succeeded: the checks and notes of a finished handshake. */
static int handshake_done(struct tls_conn *c)
{
	/* Belt and braces: in PSK mode nothing but a PSK handshake authenticates the peer. */
	if (c->psk && !SSL_session_reused(c->ssl))
		return conn_fail(c, -EACCES, "TLS handshake: the peer did not use our PSK; give "
				 "every node the same secret_file and TLS mode");
	note_peer(c);
	return 0;
}

enum step_op { STEP_HANDSHAKE, STEP_READ, STEP_WRITE };

static const char *const step_name[] = {
	[STEP_HANDSHAKE] = "TLS handshake", [STEP_READ] = "TLS read", [STEP_WRITE] = "TLS write",
};

/*
 * One non-blocking call into OpenSSL, with its outcome sorted, under c->lock (so that one
 * reader and one writer may share the conn): the bytes moved (0 for a finished handshake),
 * -EAGAIN with *@want, or -errno. The caller has cleared this thread's error queue.
 */
static ssize_t step(struct tls_conn *c, enum step_op op, void *buf, size_t len, short *want)
{
	size_t n = 0;
	ssize_t rc;
	int ret, e;

	pthread_mutex_lock(&c->lock);
	errno = 0;
	if (op == STEP_HANDSHAKE)
		ret = SSL_do_handshake(c->ssl);
	else if (op == STEP_READ)
		ret = SSL_read_ex(c->ssl, buf, len, &n);
	else
		ret = SSL_write_ex(c->ssl, buf, len, &n);
	e = errno;
	*want = 0;
	if (ret != 1)
		rc = io_want(c, ret, e, want, step_name[op]);
	else if (op == STEP_HANDSHAKE)
		rc = handshake_done(c);
	else
		rc = (ssize_t)n;
	if (ret == 1 && op == STEP_WRITE)
		note_sent(c, n);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* step() until it moves something (or fails), waiting by @dl for what it wants. */
static ssize_t step_wait(struct tls_conn *c, enum step_op op, void *buf, size_t len,
			 const struct deadline *dl)
{
	for (;;) {
		short want;
		ssize_t rc = step(c, op, buf, len, &want);

		if (rc != -EAGAIN)
			return rc;
		if (want && (rc = wait_fd(c, want, dl, step_name[op])))
			return rc;
	}
}

int tls_handshake_step(struct tls_conn *c, short *want)
{
	ERR_clear_error();
	return (int)step(c, STEP_HANDSHAKE, NULL, 0, want);
}

int tls_handshake(struct tls_conn *c, const struct deadline *dl)
{
	ERR_clear_error();
	return (int)step_wait(c, STEP_HANDSHAKE, NULL, 0, dl);
}

ssize_t tls_read_some(struct tls_conn *c, void *buf, size_t len, short *want)
{
	ERR_clear_error();
	return step(c, STEP_READ, buf, len, want);
}

ssize_t tls_write_some(struct tls_conn *c, const void *buf, size_t len, short *want)
{
	ERR_clear_error();
	return step(c, STEP_WRITE, (void *)buf, len, want);
}

int tls_recv_all(struct tls_conn *c, void *buf, size_t len, const struct deadline *dl)
{
	size_t got = 0;

	/* Once: a call that succeeds or wants I/O leaves nothing queued. */
	ERR_clear_error();
	while (got < len) {
		ssize_t n = step_wait(c, STEP_READ, (char *)buf + got, len - got, dl);

		if (n < 0)
			return (int)n;
		got += (size_t)n;
	}
	return 0;
}

/*
 * A write found the peer gone. If it said why first (an alert: it refused our certificate
 * or PSK), that alert is waiting to be read: report it rather than the broken pipe.
 */
static int why_hung_up(struct tls_conn *c, int rc)
{
	char byte;
	size_t n;

	pthread_mutex_lock(&c->lock);
	ERR_clear_error();
	c->broken = false;	/* let the alert's message replace the broken pipe's */
	if (SSL_read_ex(c->ssl, &byte, 1, &n) != 1 &&
	    SSL_get_error(c->ssl, 0) == SSL_ERROR_SSL)
		rc = fail_ssl(c, "TLS write");
	c->broken = true;
	ERR_clear_error();
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int tls_send_all(struct tls_conn *c, const void *buf, size_t len, const struct deadline *dl)
{
	size_t done = 0;

	ERR_clear_error();
	while (done < len) {
		ssize_t n = step_wait(c, STEP_WRITE, (char *)buf + done, len - done, dl);

		if (n == -EPIPE || n == -ECONNRESET)
			return why_hung_up(c, (int)n);
		if (n < 0)
			return (int)n;
		done += (size_t)n;
	}
	return 0;
}

/* Frames at least this long go out in batches of records. */
#define TLS_BATCH_MIN (64 * 1024)

/* Starts (@on) or ends a batch of records; c->wq is made at the first. 0 or -ENOMEM. */
static int batch_set(struct tls_conn *c, bool on)
{
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	if (on && !c->wq && !(c->wq = malloc(TLS_WQ_CAP)))
		rc = -ENOMEM;
	c->batch = on && !rc;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Sends what the batch left queued, by @dl. */
static int batch_flush(struct tls_conn *c, const struct deadline *dl)
{
	for (;;) {
		pthread_mutex_lock(&c->lock);
		int rc = wq_flush(c);
		if (rc && rc != -EAGAIN)
			conn_fail(c, rc, "TLS write: %s", strerror(-rc));
		pthread_mutex_unlock(&c->lock);
		if (rc == -EPIPE || rc == -ECONNRESET)
			return why_hung_up(c, rc);
		if (rc != -EAGAIN)
			return rc;
		if ((rc = wait_fd(c, POLLOUT, dl, "TLS write")))
			return rc;
	}
}

int tls_sendv(struct tls_conn *c, const struct iovec *iov, int iovcnt, const struct deadline *dl)
{
	uint8_t head[TLS_SENDV_COALESCE];
	size_t k = 0, big = 0;
	int i = 0, rc = 0;

	/* A frame header alone would be a record and a send() of its own. */
	for (; i < iovcnt && k + iov[i].iov_len <= sizeof(head); i++) {
		memcpy(head + k, iov[i].iov_base, iov[i].iov_len);
		k += iov[i].iov_len;
	}
	for (int j = i; j < iovcnt; j++)
		big += iov[j].iov_len;
	/* A chunk is 256 records of 16 KiB: batched, they leave in a few large send()s. */
	if (big >= TLS_BATCH_MIN)
		rc = batch_set(c, true);
	if (k && !rc)
		rc = tls_send_all(c, head, k, dl);
	for (; i < iovcnt && !rc; i++)
		rc = tls_send_all(c, iov[i].iov_base, iov[i].iov_len, dl);
	if (big >= TLS_BATCH_MIN) {
		batch_set(c, false);
		if (!rc)
			rc = batch_flush(c, dl);
	}
	return rc;
}

bool tls_conn_pending(struct tls_conn *c)
{
	pthread_mutex_lock(&c->lock);
	bool pending = SSL_has_pending(c->ssl) == 1;
	pthread_mutex_unlock(&c->lock);
	return pending;
}

int tls_conn_export(struct tls_conn *c, const char *label, uint8_t *out, size_t len)
{
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	if (!SSL_is_init_finished(c->ssl) ||
	    SSL_export_keying_material(c->ssl, out, len, label, strlen(label), NULL, 0, 0) != 1) {
		ERR_clear_error();
		rc = -EINVAL;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

const char *tls_conn_peer_name(const struct tls_conn *c)
{
	return c->peer;
}

const char *tls_conn_cipher(struct tls_conn *c)
{
	pthread_mutex_lock(&c->lock);
	const char *name = SSL_is_init_finished(c->ssl) ? SSL_get_cipher_name(c->ssl) : "";
	pthread_mutex_unlock(&c->lock);
	return name;
}

const char *tls_conn_strerror(const struct tls_conn *c)
{
	return c->err;
}

void tls_conn_free(struct tls_conn *c)
{
	struct pollfd p;

	if (!c)
		return;
	p = (struct pollfd){ .fd = c->fd, .events = POLLOUT };
	/* close_notify only when it cannot block: a writable socket takes 24 bytes. */
	if (!c->broken && SSL_is_init_finished(c->ssl) && poll(&p, 1, 0) == 1 &&
	    (p.revents & POLLOUT))
		SSL_shutdown(c->ssl);
	SSL_free(c->ssl);
	ERR_clear_error();
	pthread_mutex_destroy(&c->lock);
	free(c->wq);
	free(c);
}
