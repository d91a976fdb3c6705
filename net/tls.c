#include "net/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "net/auth.h"

#define PSK_LEN		32
#define PSK_SALT	"mows-tls-psk-v1"
#define PSK_INFO	"mows peer TLS 1.3 external PSK"
/* Both hash with SHA-256, the PSK's hash; AES-GCM first (AES-NI), ChaCha for CPUs without. */
#define CIPHERS		"TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"

/* Certificate mode: tls_cert, tls_key, tls_ca, in that order. */
#define NFILES 3

struct tls_ctx {
	pthread_mutex_t lock;
	SSL_CTX *ssl;		/* protected by lock; replaced when the certificate files change
				   (every SSL holds a reference of its own) */
	SSL_SESSION *psk;	/* PSK mode: the external PSK as a session; NULL: certificates */
	char *files[NFILES];	/* certificate mode: the PEM files; read-only */
	struct stat seen[NFILES]; /* protected by lock: the files as last loaded */
	uint64_t reload_ns;	/* how often to look at the files, 0: never; read-only once used */
	uint64_t next_check_ns;	/* protected by lock */
	bool reloading;		/* protected by lock: one thread looks at a time */
};

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
	char peer[128];		/* written once by the finished handshake */
	char err[TLS_ERR_MAX];
};

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* OpenSSL's words for SSL-library @reason; never NULL. */
static const char *reason_text(int reason)
{
	const char *s = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, reason));

	return s ? s : "unknown reason";
}

/* OpenSSL's reason for the oldest queued error, for messages; clears the queue. */
static const char *ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	const char *s = e ? ERR_reason_error_string(e) : "no detail";

	if (s)
		snprintf(buf, len, "%s", s);
	else
		snprintf(buf, len, "OpenSSL error %lu", e);
	ERR_clear_error();
	return buf;
}

/* ---- a socket BIO that never raises SIGPIPE ---- */

static int bio_sock_write(BIO *b, const char *buf, size_t len, size_t *done)
{
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = send((int)(intptr_t)BIO_get_data(b), buf, len, MSG_NOSIGNAL);
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
	n = recv((int)(intptr_t)BIO_get_data(b), buf, len, 0);
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

/* ---- contexts ---- */

static SSL_CTX *base_ctx(char *err, size_t errlen)
{
	char why[160];
	SSL_CTX *c = SSL_CTX_new(TLS_method());

	if (c && SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) &&
	    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) &&
	    SSL_CTX_set_ciphersuites(c, CIPHERS) && SSL_CTX_set_num_tickets(c, 0)) {
		SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
		SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
		/* OpenSSL wants one with SSL_VERIFY_PEER on a server, cache or not. */
		SSL_CTX_set_session_id_context(c, (const unsigned char *)"mows", 4);
		SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE |
				 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		/* Fewer, larger recv() calls: a 4 MiB chunk is 256 records. */
		SSL_CTX_set_read_ahead(c, 1);
		SSL_CTX_set_default_read_buffer_len(c, 64 * 1024);
		return c;
	}
	set_err(err, errlen, "TLS: cannot set up a TLS 1.3 context: %s",
		ssl_reason(why, sizeof(why)));
	SSL_CTX_free(c);
	errno = ENOMEM;
	return NULL;
}

static int derive_psk(const uint8_t *secret, size_t len, uint8_t out[PSK_LEN])
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)PSK_SALT,
						  strlen(PSK_SALT)),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)PSK_INFO,
						  strlen(PSK_INFO)),
		OSSL_PARAM_construct_end(),
	};
	int ok = kctx && EVP_KDF_derive(kctx, out, PSK_LEN, params) == 1;

	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return ok ? 0 : -EIO;
}

/* The PSK as the session OpenSSL's TLS 1.3 PSK callbacks want. NULL on failure. */
static SSL_SESSION *psk_session(SSL_CTX *c, const uint8_t key[PSK_LEN])
{
	static const unsigned char aes128gcm[2] = { 0x13, 0x01 };
	SSL *tmp = SSL_new(c);
	const SSL_CIPHER *cipher = tmp ? SSL_CIPHER_find(tmp, aes128gcm) : NULL;
	SSL_SESSION *s = cipher ? SSL_SESSION_new() : NULL;

	if (s && (!SSL_SESSION_set1_master_key(s, key, PSK_LEN) ||
		  !SSL_SESSION_set_cipher(s, cipher) ||
		  !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) ||
		  !SSL_SESSION_set1_id_context(s, (const unsigned char *)"mows", 4))) {
		SSL_SESSION_free(s);
		s = NULL;
	}
	SSL_free(tmp);
	return s;
}

static struct tls_ctx *ctx_of(SSL *ssl)
{
	return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

/* Client: offers the PSK (unless a HelloRetryRequest picked a suite with another hash). */
static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
		      SSL_SESSION **sess)
{
	struct tls_ctx *t = ctx_of(ssl);
	const EVP_MD *ours = SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(t->psk));

	*sess = NULL;
	if (md && EVP_MD_get_type(md) != EVP_MD_get_type(ours))
		return 1;
	SSL_SESSION_up_ref(t->psk);
	*sess = t->psk;
	*id = (const unsigned char *)TLS_PSK_IDENTITY;
	*idlen = strlen(TLS_PSK_IDENTITY);
	return 1;
}

/* Server: knows one identity. An unknown one gets no PSK, and so no handshake. */
static int psk_find_cb(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	struct tls_ctx *t = ctx_of(ssl);

	*sess = NULL;
	if (idlen == strlen(TLS_PSK_IDENTITY) && memcmp(id, TLS_PSK_IDENTITY, idlen) == 0) {
		SSL_SESSION_up_ref(t->psk);
		*sess = t->psk;
	}
	return 1;
}

static int refuse_cert_cb(int ok, X509_STORE_CTX *store)
{
	(void)ok;
	X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

struct tls_ctx *tls_ctx_new_psk(const uint8_t *secret, size_t len, char *err, size_t errlen)
{
	uint8_t key[PSK_LEN];
	struct tls_ctx *t;

	if (!secret || len == 0 || len > AUTH_SECRET_MAX) {
		set_err(err, errlen, "TLS: the shared secret must be 1 to %d bytes",
			AUTH_SECRET_MAX);
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	t->ssl = base_ctx(err, errlen);
	if (!t->ssl)
		goto out_free;
	if (derive_psk(secret, len, key) || !(t->psk = psk_session(t->ssl, key))) {
		set_err(err, errlen, "TLS: cannot derive the PSK from the shared secret");
		goto out_wipe;
	}
	OPENSSL_cleanse(key, sizeof(key));
	SSL_CTX_set_app_data(t->ssl, t);
	/* A server that shows a certificate instead of using the PSK is nobody we know. */
	SSL_CTX_set_verify(t->ssl, SSL_VERIFY_PEER, refuse_cert_cb);
	SSL_CTX_set_psk_use_session_callback(t->ssl, psk_use_cb);
	SSL_CTX_set_psk_find_session_callback(t->ssl, psk_find_cb);
	return t;

out_wipe:
	OPENSSL_cleanse(key, sizeof(key));
	SSL_CTX_free(t->ssl);
out_free:
	pthread_mutex_destroy(&t->lock);
	free(t);
	errno = ENOMEM;
	return NULL;
}

/* -errno if @path of key @name cannot be opened, with a message naming the fix. */
static int check_readable(const char *name, const char *path, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "re");
	int rc;

	if (fp) {
		fclose(fp);
		return 0;
	}
	rc = -errno;
	set_err(err, errlen, "%s '%s': %s; point %s at a readable PEM file", name, path,
		strerror(-rc), name);
	return rc;
}

/* Loads the three files into @c. Returns 0 or -errno with a message in @err. */
static int load_cert_files(SSL_CTX *c, const char *cert, const char *key, const char *ca,
			   char *err, size_t errlen)
{
	char why[160];
	int rc;

	if ((rc = check_readable("tls_cert", cert, err, errlen)) ||
	    (rc = check_readable("tls_key", key, err, errlen)) ||
	    (rc = check_readable("tls_ca", ca, err, errlen)))
		return rc;
	if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
		set_err(err, errlen, "tls_cert '%s': not a usable PEM certificate (%s); set tls_cert "
			"to this node's certificate", cert, ssl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1 &&
	    ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
		ERR_clear_error();
		set_err(err, errlen, "tls_key '%s': does not match tls_cert '%s'; give the key "
			"that belongs to the certificate", key, cert);
		return -EINVAL;
	}
	if (ERR_peek_error()) {
		set_err(err, errlen, "tls_key '%s': not a usable PEM private key (%s); set tls_key "
			"to the key of tls_cert", key, ssl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(c) != 1) {
		set_err(err, errlen, "tls_key '%s': does not match tls_cert '%s' (%s); give the "
			"key that belongs to the certificate", key, cert,
			ssl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	if (SSL_CTX_load_verify_locations(c, ca, NULL) != 1) {
		set_err(err, errlen, "tls_ca '%s': no usable PEM CA certificate (%s); set tls_ca "
			"to the certificate of the CA that signs the peers' certificates", ca,
			ssl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return 0;
}

/* A fresh certificate-mode SSL_CTX from the files. NULL with a message in @err, errno set. */
static SSL_CTX *cert_ssl_ctx(struct tls_ctx *t, char *err, size_t errlen)
{
	SSL_CTX *c = base_ctx(err, errlen);
	int rc;

	if (!c)
		return NULL;
	rc = load_cert_files(c, t->files[0], t->files[1], t->files[2], err, errlen);
	if (rc) {
		SSL_CTX_free(c);
		errno = -rc;
		return NULL;
	}
	SSL_CTX_set_app_data(c, t);
	return c;
}

/* stat() of every file (through symlinks: a Kubernetes secret volume swaps a link). */
static int stat_files(const struct tls_ctx *t, struct stat st[NFILES])
{
	for (int i = 0; i < NFILES; i++)
		if (stat(t->files[i], &st[i]) < 0)
			return -errno;
	return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

struct tls_ctx *tls_ctx_new_cert(const char *cert, const char *key, const char *ca, char *err,
				 size_t errlen)
{
	struct tls_ctx *t = calloc(1, sizeof(*t));
	const char *paths[NFILES] = { cert, key, ca };
	int rc;

	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	t->reload_ns = (uint64_t)TLS_RELOAD_MS * 1000000;
	for (int i = 0; i < NFILES; i++)
		if (!(t->files[i] = strdup(paths[i])))
			goto out_free;
	/* Seen before loading: a change while we load is noticed at the next look. */
	stat_files(t, t->seen);
	t->ssl = cert_ssl_ctx(t, err, errlen);
	if (!t->ssl)
		goto out_free;
	t->next_check_ns = mono_ns() + t->reload_ns;
	return t;

out_free:
	rc = errno;
	tls_ctx_free(t);
	errno = rc;
	return NULL;
}

void tls_ctx_set_reload_ms(struct tls_ctx *ctx, unsigned ms)
{
	pthread_mutex_lock(&ctx->lock);
	ctx->reload_ns = (uint64_t)ms * 1000000;
	ctx->next_check_ns = mono_ns() + ctx->reload_ns;
	pthread_mutex_unlock(&ctx->lock);
}

/*
 * Loads the certificate files again if they changed since they were last loaded (e.g.
 * cert-manager renewed them). Called by the one thread that set t->reloading; reads files
 * without holding the lock and swaps the context under it. A set of files that does not
 * load (a rotation half done) keeps the old context and is tried again when it changes.
 */
static void reload_if_changed(struct tls_ctx *t)
{
	struct stat now[NFILES], seen[NFILES];
	char err[TLS_ERR_MAX] = "";
	SSL_CTX *fresh = NULL, *old = NULL;
	bool changed = false;

	pthread_mutex_lock(&t->lock);
	memcpy(seen, t->seen, sizeof(seen));
	pthread_mutex_unlock(&t->lock);
	if (stat_files(t, now) == 0)
		for (int i = 0; i < NFILES; i++)
			changed |= !same_file(&now[i], &seen[i]);
	if (changed)
		fresh = cert_ssl_ctx(t, err, sizeof(err));
	pthread_mutex_lock(&t->lock);
	if (changed)
		memcpy(t->seen, now, sizeof(now));
	if (fresh) {
		old = t->ssl;
		t->ssl = fresh;
	}
	t->reloading = false;
	pthread_mutex_unlock(&t->lock);
	SSL_CTX_free(old);
	if (fresh)
		log_info("tls: certificate files changed; new connections use them (%s)",
			 t->files[0]);
	else if (changed)
		log_warn("tls: certificate files changed but do not load, keeping the old ones: %s",
			 err);
}

/* The context for a new connection, with a reference for the caller to drop. */
static SSL_CTX *current_ssl(struct tls_ctx *t)
{
	uint64_t now = mono_ns();
	bool look = false;
	SSL_CTX *c;

	pthread_mutex_lock(&t->lock);
	if (!t->psk && t->reload_ns && !t->reloading && now >= t->next_check_ns) {
		t->reloading = look = true;
		t->next_check_ns = now + t->reload_ns;
	}
	pthread_mutex_unlock(&t->lock);
	if (look)
		reload_if_changed(t);
	pthread_mutex_lock(&t->lock);
	c = t->ssl;
	SSL_CTX_up_ref(c);
	pthread_mutex_unlock(&t->lock);
	return c;
}

int tls_ctx_from_config(const struct mows_config *cfg, struct tls_ctx **out, char *err,
			size_t errlen)
{
	uint8_t *secret;
	size_t len;
	int rc;

	*out = NULL;
	if (!cfg->tls) {
		log_warn("tls = off (insecure = true): peer traffic, chunks included, is plaintext; "
			 "anyone on the path can read and alter it");
		return 0;
	}
	if (cfg->tls_cert[0]) {
		*out = tls_ctx_new_cert(cfg->tls_cert, cfg->tls_key, cfg->tls_ca, err, errlen);
		return *out ? 0 : -errno;
	}
	if (!cfg->secret_file[0]) {
		set_err(err, errlen, "tls is on but neither secret_file nor tls_cert is set; set "
			"secret_file (shared-secret TLS) or tls_cert, tls_key and tls_ca");
		return -EINVAL;
	}
	rc = auth_load_secret(cfg->secret_file, &secret, &len, err, errlen);
	if (rc)
		return rc;
	*out = tls_ctx_new_psk(secret, len, err, errlen);
	rc = *out ? 0 : -errno;
	auth_secret_free(secret, len);
	return rc;
}

bool tls_ctx_is_cert(const struct tls_ctx *ctx)
{
	return !ctx->psk;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_SESSION_free(ctx->psk);	/* SSL_SESSION_free wipes the master key */
	SSL_CTX_free(ctx->ssl);
	for (int i = 0; i < NFILES; i++)
		free(ctx->files[i]);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

/* ---- sessions ---- */

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
	c->psk = ctx->psk != NULL;
	c->rekey_bytes = TLS_REKEY_BYTES;
	sslctx = current_ssl(ctx);
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
	BIO_set_data(bio, (void *)(intptr_t)fd);
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
				 ssl_reason(why, sizeof(why)));
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
					 ssl_reason(why, sizeof(why)));
		break;
	default:
		break;
	}
	return conn_fail(c, -EPROTO, "%s: TLS protocol error: %s", op,
			 ssl_reason(why, sizeof(why)));
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

/* Frames at least this long go out corked. */
#define TLS_CORK_MIN (64 * 1024)

/* TCP_CORK on or off; off sends what is held. Not TCP (a socketpair in tests): no-op. */
static void cork(int fd, int on)
{
	setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
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
	/*
	 * A chunk is 16 KiB records, each its own send(): corked, the kernel sends them as
	 * full-size segments instead of one (loopback: one receive path run) per record.
	 */
	if (big >= TLS_CORK_MIN)
		cork(c->fd, 1);
	if (k)
		rc = tls_send_all(c, head, k, dl);
	for (; i < iovcnt && !rc; i++)
		rc = tls_send_all(c, iov[i].iov_base, iov[i].iov_len, dl);
	if (big >= TLS_CORK_MIN)
		cork(c->fd, 0);
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
	free(c);
}
