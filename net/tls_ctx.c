/* TLS contexts: the PSK, the certificate files and their reloads (net/tls.h). */
#include "net/tls_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
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

/* OpenSSL's reason for the oldest queued error, for messages; clears the queue. */
const char *tls_ssl_reason(char *buf, size_t len)
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
		tls_ssl_reason(why, sizeof(why)));
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
			"to this node's certificate", cert, tls_ssl_reason(why, sizeof(why)));
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
			"to the key of tls_cert", key, tls_ssl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(c) != 1) {
		set_err(err, errlen, "tls_key '%s': does not match tls_cert '%s' (%s); give the "
			"key that belongs to the certificate", key, cert,
			tls_ssl_reason(why, sizeof(why)));
		return -EINVAL;
	}
	if (SSL_CTX_load_verify_locations(c, ca, NULL) != 1) {
		set_err(err, errlen, "tls_ca '%s': no usable PEM CA certificate (%s); set tls_ca "
			"to the certificate of the CA that signs the peers' certificates", ca,
			tls_ssl_reason(why, sizeof(why)));
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

SSL_CTX *tls_ctx_ssl(struct tls_ctx *t)
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
