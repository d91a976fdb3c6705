/*
 * net/tls and net/digest over real sockets: handshakes (PSK, certificates made here with the
 * EVP API into a temporary directory), refusals, deadlines, a tampering relay, large
 * transfers. Each side of a connection runs in a thread of its own.
 */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/crc.h"
#include "net/digest.h"
#include "net/tls.h"

static char tmpdir[] = "/tmp/check_tls.XXXXXX";

/* ---- certificates, made once per run ---- */

static long serial = 1;

/* Runs before the suite, outside any test: a failure ends the run. */
#define need(x)                                                                    \
	do {                                                                       \
		if (!(x)) {                                                        \
			fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #x); \
			ERR_print_errors_fp(stderr);                               \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *e;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	need(e);
	need(X509_add_ext(x, e, -1) == 1);
	X509_EXTENSION_free(e);
}

/* A certificate for @key named @cn, signed by @issuer (NULL: self-signed CA). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key)
{
	X509 *x = X509_new();
	X509_NAME *n;

	need(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
	if (issuer) {
		add_ext(x, issuer, NID_basic_constraints, "CA:FALSE");
		add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
	} else {
		add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	}
	need(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

static void write_pem(const char *name, X509 *x, EVP_PKEY *key)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	need(fp);
	if (x)
		need(PEM_write_X509(fp, x) == 1);
	else
		need(PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL) == 1);
	need(fclose(fp) == 0);
}

/* ca1.pem signs node1 and node2; ca2.pem signs rogue. Keys in NAME.key, certs in NAME.pem. */
static void make_pki(void)
{
	EVP_PKEY *k_ca1 = EVP_EC_gen("P-256"), *k_ca2 = EVP_EC_gen("P-256");
	EVP_PKEY *k1 = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256"), *kr = EVP_EC_gen("P-256");
	X509 *ca1 = make_cert(k_ca1, "mows test CA 1", NULL, NULL);
	X509 *ca2 = make_cert(k_ca2, "mows test CA 2", NULL, NULL);
	X509 *n1 = make_cert(k1, "node1", ca1, k_ca1), *n2 = make_cert(k2, "node2", ca1, k_ca1);
	X509 *r = make_cert(kr, "rogue", ca2, k_ca2);

	write_pem("ca1.pem", ca1, NULL);
	write_pem("ca2.pem", ca2, NULL);
	write_pem("node1.pem", n1, NULL);
	write_pem("node1.key", NULL, k1);
	write_pem("node2.pem", n2, NULL);
	write_pem("node2.key", NULL, k2);
	write_pem("rogue.pem", r, NULL);
	write_pem("rogue.key", NULL, kr);
	X509_free(ca1), X509_free(ca2), X509_free(n1), X509_free(n2), X509_free(r);
	EVP_PKEY_free(k_ca1), EVP_PKEY_free(k_ca2), EVP_PKEY_free(k1), EVP_PKEY_free(k2);
	EVP_PKEY_free(kr);
}

static const char *tmp(const char *name)
{
	static __thread char path[4][256];
	static __thread int i;

	i = (i + 1) % 4;
	snprintf(path[i], sizeof(path[i]), "%s/%s", tmpdir, name);
	return path[i];
}

static struct tls_ctx *cert_ctx(const char *node, const char *ca)
{
	char cert[64], key[64], err[TLS_ERR_MAX];
	struct tls_ctx *ctx;

	snprintf(cert, sizeof(cert), "%s.pem", node);
	snprintf(key, sizeof(key), "%s.key", node);
	ctx = tls_ctx_new_cert(tmp(cert), tmp(key), tmp(ca), err, sizeof(err));
	ck_assert_msg(ctx != NULL, "%s", err);
	return ctx;
}

static struct tls_ctx *psk_ctx(const char *secret)
{
	char err[TLS_ERR_MAX];
	struct tls_ctx *ctx = tls_ctx_new_psk((const uint8_t *)secret, strlen(secret), err,
					      sizeof(err));

	ck_assert_msg(ctx != NULL, "%s", err);
	return ctx;
}

/* ---- sockets and sides ---- */

static void nonblock(int fd)
{
	ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

static void sockpair(int fds[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
}

/* A connected loopback TCP pair: fds[0] connected, fds[1] accepted. */
static void tcp_pair(int fds[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(l, 1), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
	fds[1] = accept(l, NULL, NULL);
	ck_assert_int_ge(fds[1], 0);
	close(l);
}

struct side {
	struct tls_ctx *ctx;
	int fd;
	bool server;
	int ms;				/* handshake deadline */
	int (*after)(struct side *s);	/* runs after a good handshake; its result in rc */
	size_t bytes;			/* for after() */
	size_t delivered;		/* bytes after() received and found right */
	uint64_t rekey;			/* tls_conn_set_rekey_bytes() before after(), 0: default */
	unsigned key_updates;		/* what tls_conn_key_updates() said after after() */
	int wrc;			/* duplex(): the writer thread's result */
	int rc;
	char err[TLS_ERR_MAX];
	char peer[128];
	char cipher[64];
	int send_ms;			/* send_until_fail(): deadline of each frame */
	bool slow;			/* recv_frames(): a pause after every piece */
	uint8_t exported[32];
	struct tls_conn *conn;
	pthread_t thread;
};

static void *side_main(void *arg)
{
	struct side *s = arg;
	struct deadline dl = deadline_in_ms(s->ms ? s->ms : 5000);

	s->conn = tls_conn_new(s->ctx, s->fd, s->server);
	if (!s->conn) {
		s->rc = -errno;
		return NULL;
	}
	s->rc = tls_handshake(s->conn, &dl);
	if (!s->rc) {
		snprintf(s->peer, sizeof(s->peer), "%s", tls_conn_peer_name(s->conn));
		snprintf(s->cipher, sizeof(s->cipher), "%s", tls_conn_cipher(s->conn));
		tls_conn_export(s->conn, "mows test", s->exported, sizeof(s->exported));
		if (s->rekey)
			tls_conn_set_rekey_bytes(s->conn, s->rekey);
		if (s->after)
			s->rc = s->after(s);
		s->key_updates = tls_conn_key_updates(s->conn);
	}
	snprintf(s->err, sizeof(s->err), "%s", tls_conn_strerror(s->conn));
	tls_conn_free(s->conn);
	/* A side that failed hangs up, so the other never waits for it. */
	shutdown(s->fd, SHUT_RDWR);
	return NULL;
}

static void start(struct side *s)
{
	ck_assert_int_eq(pthread_create(&s->thread, NULL, side_main, s), 0);
}

static void finish(struct side *s)
{
	pthread_join(s->thread, NULL);
	close(s->fd);
}

/* Handshakes a client with @cctx against a server with @sctx over a socketpair. */
static void run_pair(struct tls_ctx *cctx, struct tls_ctx *sctx, struct side *c, struct side *s)
{
	int fds[2];

	sockpair(fds);
	nonblock(fds[0]);
	nonblock(fds[1]);
	c->ctx = cctx, c->fd = fds[0], c->server = false;
	s->ctx = sctx, s->fd = fds[1], s->server = true;
	start(s);
	start(c);
	finish(c);
	finish(s);
}

/* Client: "hello" out, "olleh" back; server the other way round. */
static int say_hello(struct side *s)
{
	struct deadline dl = deadline_in_ms(5000);
	char buf[6] = "";
	int rc;

	rc = s->server ? tls_recv_all(s->conn, buf, 5, &dl) : tls_send_all(s->conn, "hello", 5, &dl);
	if (!rc)
		rc = s->server ? tls_send_all(s->conn, "olleh", 5, &dl) :
				 tls_recv_all(s->conn, buf, 5, &dl);
	if (!rc && strcmp(buf, s->server ? "hello" : "olleh"))
		rc = -EILSEQ;
	return rc;
}

/* ---- handshakes ---- */

START_TEST(test_psk_ok)
{
	struct tls_ctx *a = psk_ctx("the cluster secret"), *b = psk_ctx("the cluster secret");
	struct side c = { .after = say_hello }, s = { .after = say_hello };

	run_pair(a, b, &c, &s);
	ck_assert_msg(c.rc == 0 && s.rc == 0, "client %d '%s', server %d '%s'", c.rc, c.err, s.rc,
		      s.err);
	ck_assert_str_eq(c.peer, "psk:" TLS_PSK_IDENTITY);
	/* The fastest suite here (AES-NI): ChaCha20 would cost chunk throughput. */
	ck_assert_str_eq(c.cipher, "TLS_AES_128_GCM_SHA256");
	ck_assert_str_eq(s.cipher, "TLS_AES_128_GCM_SHA256");
	ck_assert_int_eq(memcmp(c.exported, s.exported, sizeof(c.exported)), 0);
	ck_assert(!tls_ctx_is_cert(a));
	tls_ctx_free(a);
	tls_ctx_free(b);
}
END_TEST

START_TEST(test_psk_wrong)
{
	struct tls_ctx *a = psk_ctx("secret A"), *b = psk_ctx("secret B");
	struct side c = { .after = say_hello }, s = { .after = say_hello };

	run_pair(a, b, &c, &s);
	ck_assert_msg(s.rc == -EACCES, "server %d '%s'", s.rc, s.err);
	ck_assert_msg(strstr(s.err, "wrong PSK"), "%s", s.err);
	ck_assert_msg(c.rc == -EACCES, "client %d '%s'", c.rc, c.err);
	ck_assert_msg(strstr(c.err, "secret"), "%s", c.err);
	tls_ctx_free(a);
	tls_ctx_free(b);
}
END_TEST

START_TEST(test_psk_vs_cert)
{
	struct tls_ctx *a = psk_ctx("secret A"), *b = cert_ctx("node1", "ca1.pem");
	struct side c = { .after = say_hello }, s = { .after = say_hello };

	run_pair(a, b, &c, &s);
	ck_assert_msg(c.rc == -EACCES && s.rc < 0, "client %d '%s', server %d '%s'", c.rc, c.err,
		      s.rc, s.err);
	ck_assert_msg(strstr(c.err, "TLS mode"), "%s", c.err);

	/* And the other way round: a PSK server, a certificate client. */
	memset(&c, 0, sizeof(c)), memset(&s, 0, sizeof(s));
	c.after = s.after = say_hello;
	run_pair(b, a, &c, &s);
	ck_assert_msg(c.rc < 0 && s.rc < 0, "client %d '%s', server %d '%s'", c.rc, c.err, s.rc,
		      s.err);
	tls_ctx_free(a);
	tls_ctx_free(b);
}
END_TEST

/* A TLS server anyone can run: a self-made certificate, no PSK, asks nothing of clients. */
static void *impostor_main(void *arg)
{
	int fd = *(int *)arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	SSL *ssl;
	char buf[5];

	SSL_CTX_use_certificate_file(ctx, tmp("rogue.pem"), SSL_FILETYPE_PEM);
	SSL_CTX_use_PrivateKey_file(ctx, tmp("rogue.key"), SSL_FILETYPE_PEM);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) == 1 && SSL_read(ssl, buf, 5) == 5)
		SSL_write(ssl, "olleh", 5);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	shutdown(fd, SHUT_RDWR);
	return NULL;
}

START_TEST(test_psk_client_vs_impostor)
{
	struct tls_ctx *a = psk_ctx("secret A");
	struct side c = { .after = say_hello };
	pthread_t t;
	int fds[2];

	sockpair(fds);
	c.ctx = a, c.fd = fds[0];
	pthread_create(&t, NULL, impostor_main, &fds[1]);
	start(&c);
	finish(&c);
	pthread_join(t, NULL);
	close(fds[1]);
	ck_assert_msg(c.rc == -EACCES, "client %d '%s'", c.rc, c.err);
	ck_assert_msg(strstr(c.err, "TLS mode"), "%s", c.err);
	tls_ctx_free(a);
}
END_TEST

START_TEST(test_cert_ok)
{
	struct tls_ctx *a = cert_ctx("node1", "ca1.pem"), *b = cert_ctx("node2", "ca1.pem");
	struct side c = { .after = say_hello }, s = { .after = say_hello };

	run_pair(a, b, &c, &s);
	ck_assert_msg(c.rc == 0 && s.rc == 0, "client %d '%s', server %d '%s'", c.rc, c.err, s.rc,
		      s.err);
	ck_assert_str_eq(c.peer, "node2");
	ck_assert_str_eq(s.peer, "node1");
	ck_assert_str_eq(c.cipher, "TLS_AES_128_GCM_SHA256");
	ck_assert_int_eq(memcmp(c.exported, s.exported, sizeof(c.exported)), 0);
	ck_assert(tls_ctx_is_cert(a));
	tls_ctx_free(a);
	tls_ctx_free(b);
}
END_TEST

START_TEST(test_cert_wrong_ca)
{
	struct tls_ctx *rogue = cert_ctx("rogue", "ca1.pem"), *b = cert_ctx("node2", "ca1.pem");
	struct tls_ctx *a = cert_ctx("node1", "ca2.pem");
	struct side c = { .after = say_hello }, s = { .after = say_hello };

	/* A client whose certificate another CA signed. */
	run_pair(rogue, b, &c, &s);
	ck_assert_msg(s.rc == -EACCES, "server %d '%s'", s.rc, s.err);
	ck_assert_msg(strstr(s.err, "certificate"), "%s", s.err);
	ck_assert_msg(c.rc == -EACCES, "client %d '%s'", c.rc, c.err);

	/* A client that trusts another CA than the one that signed the server. */
	memset(&c, 0, sizeof(c)), memset(&s, 0, sizeof(s));
	c.after = s.after = say_hello;
	run_pair(a, b, &c, &s);
	ck_assert_msg(c.rc == -EACCES, "client %d '%s'", c.rc, c.err);
	ck_assert_msg(strstr(c.err, "peer certificate refused"), "%s", c.err);
	ck_assert_msg(s.rc < 0, "server %d", s.rc);
	tls_ctx_free(rogue);
	tls_ctx_free(a);
	tls_ctx_free(b);
}
END_TEST

/* Copies tmpdir/@from over tmpdir/@to by rename, as a secret volume update does. */
static void replace_file(const char *from, const char *to)
{
	char src[256], dst[256], tmpname[300], buf[8192];
	FILE *in, *out;
	size_t n;

	snprintf(src, sizeof(src), "%s/%s", tmpdir, from);
	snprintf(dst, sizeof(dst), "%s/%s", tmpdir, to);
	snprintf(tmpname, sizeof(tmpname), "%s.new", dst);
	in = fopen(src, "r");
	out = fopen(tmpname, "w");
	ck_assert(in && out);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
	fclose(in);
	ck_assert_int_eq(fclose(out), 0);
	ck_assert_int_eq(rename(tmpname, dst), 0);
}

/* A client that trusts ca1 against a server on the files live.pem/live.key/ca1.pem. */
static int handshake_live(struct tls_ctx *server, struct tls_ctx *client, struct side *c)
{
	struct side s = { .after = say_hello };

	*c = (struct side){ .after = say_hello };
	run_pair(client, server, c, &s);
	return c->rc;
}

START_TEST(test_cert_reload)
{
	struct tls_ctx *client = cert_ctx("node1", "ca1.pem"), *server;
	char err[TLS_ERR_MAX];
	struct side c;

	replace_file("node2.pem", "live.pem");
	replace_file("node2.key", "live.key");
	server = tls_ctx_new_cert(tmp("live.pem"), tmp("live.key"), tmp("ca1.pem"), err,
				  sizeof(err));
	ck_assert_msg(server != NULL, "%s", err);
	tls_ctx_set_reload_ms(server, 50);
	ck_assert_msg(handshake_live(server, client, &c) == 0, "%s", c.err);
	ck_assert_str_eq(c.peer, "node2");

	/* Renewed by another CA: after the next look, the client refuses the server. */
	replace_file("rogue.pem", "live.pem");
	replace_file("rogue.key", "live.key");
	usleep(100 * 1000);
	ck_assert_int_eq(handshake_live(server, client, &c), -EACCES);

	/* Half a rotation (a certificate without its key) does not load: the old set stays. */
	usleep(100 * 1000);
	replace_file("node2.pem", "live.pem");
	usleep(100 * 1000);
	ck_assert_int_eq(handshake_live(server, client, &c), -EACCES);

	/* The key follows: node2 again. */
	replace_file("node2.key", "live.key");
	usleep(100 * 1000);
	ck_assert_msg(handshake_live(server, client, &c) == 0, "%s", c.err);
	ck_assert_str_eq(c.peer, "node2");

	/* Never looking: a change is not picked up. */
	tls_ctx_set_reload_ms(server, 0);
	replace_file("rogue.pem", "live.pem");
	replace_file("rogue.key", "live.key");
	usleep(100 * 1000);
	ck_assert_msg(handshake_live(server, client, &c) == 0, "%s", c.err);
	tls_ctx_free(server);
	tls_ctx_free(client);
}
END_TEST

START_TEST(test_cert_files)
{
	char err[TLS_ERR_MAX], garbage[300];
	FILE *fp;

	ck_assert_ptr_null(tls_ctx_new_cert(tmp("nope.pem"), tmp("node1.key"), tmp("ca1.pem"),
					    err, sizeof(err)));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_msg(strncmp(err, "tls_cert '", 10) == 0 && strstr(err, "point tls_cert at"),
		      "%s", err);

	ck_assert_ptr_null(tls_ctx_new_cert(tmp("node1.pem"), tmp("node2.key"), tmp("ca1.pem"),
					    err, sizeof(err)));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_msg(strstr(err, "tls_key '") && strstr(err, "does not match tls_cert"), "%s",
		      err);

	snprintf(garbage, sizeof(garbage), "%s", tmp("garbage.pem"));
	fp = fopen(garbage, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("not a certificate\n", fp);
	fclose(fp);
	ck_assert_ptr_null(tls_ctx_new_cert(tmp("node1.pem"), tmp("node1.key"), garbage, err,
					    sizeof(err)));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_msg(strncmp(err, "tls_ca '", 8) == 0, "%s", err);
	ck_assert_ptr_null(tls_ctx_new_cert(garbage, tmp("node1.key"), tmp("ca1.pem"), err,
					    sizeof(err)));
	ck_assert_msg(strncmp(err, "tls_cert '", 10) == 0 && strstr(err, "not a usable PEM"),
		      "%s", err);
}
END_TEST

START_TEST(test_from_config)
{
	struct mows_config cfg;
	struct tls_ctx *ctx;
	char err[TLS_ERR_MAX];

	config_defaults(&cfg);
	cfg.tls = 0;
	ck_assert_int_eq(tls_ctx_from_config(&cfg, &ctx, err, sizeof(err)), 0);
	ck_assert_ptr_null(ctx);

	cfg.tls = 1;
	ck_assert_int_eq(tls_ctx_from_config(&cfg, &ctx, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "secret_file"), "%s", err);

	snprintf(cfg.tls_cert, sizeof(cfg.tls_cert), "%s", tmp("node1.pem"));
	snprintf(cfg.tls_key, sizeof(cfg.tls_key), "%s", tmp("node1.key"));
	snprintf(cfg.tls_ca, sizeof(cfg.tls_ca), "%s", tmp("ca1.pem"));
	ck_assert_msg(tls_ctx_from_config(&cfg, &ctx, err, sizeof(err)) == 0, "%s", err);
	ck_assert(tls_ctx_is_cert(ctx));
	tls_ctx_free(ctx);
}
END_TEST

/* ---- peers that do not speak TLS, or nothing at all ---- */

/* What an old plaintext mows peer sends first: a HELLO frame header and some payload. */
static const uint8_t legacy_hello[24] = { 'M', 'O', 'W', 'S', 1, 1, 0, 0, 0, 0, 0, 39 };

START_TEST(test_plaintext_client_refused)
{
	struct tls_ctx *b = psk_ctx("k");
	struct side s = { 0 };
	int fds[2];
	char buf[64];

	sockpair(fds);
	nonblock(fds[1]);
	s.ctx = b, s.fd = fds[1], s.server = true;
	start(&s);
	ck_assert_int_eq(write(fds[0], legacy_hello, sizeof(legacy_hello)),
			 (ssize_t)sizeof(legacy_hello));
	finish(&s);
	ck_assert_msg(s.rc == -EPROTO, "server %d '%s'", s.rc, s.err);
	ck_assert_msg(strstr(s.err, "does not speak TLS"), "%s", s.err);
	/* It got nothing back but (at most) an alert, and a hang-up. */
	while (read(fds[0], buf, sizeof(buf)) > 0)
		;
	close(fds[0]);
	tls_ctx_free(b);
}
END_TEST

START_TEST(test_plaintext_server_refused)
{
	struct tls_ctx *a = psk_ctx("k");
	struct side c = { 0 };
	int fds[2];

	sockpair(fds);
	nonblock(fds[0]);
	c.ctx = a, c.fd = fds[0];
	/* The old server speaks first and waits. */
	ck_assert_int_eq(write(fds[1], legacy_hello, sizeof(legacy_hello)),
			 (ssize_t)sizeof(legacy_hello));
	start(&c);
	finish(&c);
	ck_assert_msg(c.rc == -EPROTO, "client %d '%s'", c.rc, c.err);
	close(fds[1]);
	tls_ctx_free(a);
}
END_TEST

static uint8_t pattern(size_t i);

/* A client that sends @n random bytes (or, trickling, a record header a byte per 50 ms). */
struct junk {
	int fd;
	size_t n;
	bool trickle;
};

static void *junk_main(void *arg)
{
	static const uint8_t hello_start[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01 };
	struct junk *j = arg;
	uint8_t buf[4096];

	if (j->trickle) {
		for (size_t i = 0; i < sizeof(hello_start); i++) {
			if (send(j->fd, &hello_start[i], 1, MSG_NOSIGNAL) != 1)
				break;
			usleep(50 * 1000);
		}
		return NULL;
	}
	for (size_t done = 0; done < j->n; done += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = pattern(done + i * 7);
		if (send(j->fd, buf, sizeof(buf), MSG_NOSIGNAL) < 0)
			break;
	}
	return NULL;
}

START_TEST(test_junk_clients)
{
	struct tls_ctx *a = psk_ctx("k");
	uint64_t t0;

	/* Random bytes: refused at once. A trickled record header: refused at the deadline. */
	for (int trickle = 0; trickle <= 1; trickle++) {
		struct side s = { .server = true, .ms = 300 };
		struct junk j = { .n = 1u << 20, .trickle = trickle };
		pthread_t t;
		int fds[2];

		sockpair(fds);
		j.fd = fds[0];
		s.ctx = a, s.fd = fds[1];
		t0 = mono_ns();
		pthread_create(&t, NULL, junk_main, &j);
		start(&s);
		finish(&s);
		shutdown(fds[0], SHUT_RDWR);
		pthread_join(t, NULL);
		close(fds[0]);
		if (trickle) {
			ck_assert_msg(s.rc == -ETIMEDOUT, "trickle: %d '%s'", s.rc, s.err);
			ck_assert_uint_lt(mono_ns() - t0, 1000000000ull);
		} else {
			ck_assert_msg(s.rc == -EPROTO, "junk: %d '%s'", s.rc, s.err);
			ck_assert_uint_lt(mono_ns() - t0, 250000000ull);
		}
	}
	tls_ctx_free(a);
}
END_TEST

START_TEST(test_handshake_deadline)
{
	struct tls_ctx *a = psk_ctx("k");
	struct side c = { .ms = 300 }, s = { .ms = 300, .server = true };
	int fds[2], fds2[2];
	uint64_t t0;

	/* A silent server, then a silent client: both give up at their deadline. */
	sockpair(fds);
	sockpair(fds2);
	nonblock(fds[0]);
	c.ctx = a, c.fd = fds[0];
	s.ctx = a, s.fd = fds2[1];
	t0 = mono_ns();
	start(&c);
	start(&s);
	finish(&c);
	finish(&s);
	ck_assert_msg(c.rc == -ETIMEDOUT, "client %d '%s'", c.rc, c.err);
	ck_assert_msg(s.rc == -ETIMEDOUT, "server %d '%s'", s.rc, s.err);
	ck_assert_msg(strstr(c.err, "timed out"), "%s", c.err);
	ck_assert_uint_ge(mono_ns() - t0, 290000000ull);
	ck_assert_uint_lt(mono_ns() - t0, 2000000000ull);
	close(fds[1]);
	close(fds2[0]);
	tls_ctx_free(a);
}
END_TEST

/* Server: waits 200 ms for a byte that never comes. Client: silent for 600 ms. */
static int wait_silence(struct side *s)
{
	struct deadline dl = deadline_in_ms(200);
	uint64_t t0 = mono_ns();
	char byte;
	int rc;

	if (!s->server) {
		usleep(600 * 1000);
		return 0;
	}
	rc = tls_recv_all(s->conn, &byte, 1, &dl);
	s->bytes = (size_t)((mono_ns() - t0) / 1000000);	/* ms waited */
	return rc;
}

START_TEST(test_read_deadline)
{
	struct tls_ctx *a = psk_ctx("k");
	struct side c = { .after = wait_silence }, s = { .after = wait_silence };

	run_pair(a, a, &c, &s);
	ck_assert_msg(s.rc == -ETIMEDOUT, "server %d '%s'", s.rc, s.err);
	ck_assert_msg(strstr(s.err, "TLS read timed out"), "%s", s.err);
	ck_assert_uint_ge(s.bytes, 190);
	ck_assert_uint_lt(s.bytes, 590);
	ck_assert_int_eq(c.rc, 0);
	tls_ctx_free(a);
}
END_TEST

/* ---- data ---- */

#define CHUNK	(4u << 20)
#define PIECE	(16u << 10)

/* Byte @i of the test stream: not periodic within a chunk, so shifts show. */
static uint8_t pattern(size_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull;

	return (uint8_t)(x >> 56 ^ i);
}

/* Sends s->bytes as frames: a 16-byte header with the chunk number, then the chunk. */
static int send_frames(struct side *s)
{
	struct deadline dl = deadline_in_ms(20000);
	uint8_t *chunk = malloc(CHUNK);
	int rc = 0;

	for (size_t off = 0; off < s->bytes && !rc; off += CHUNK) {
		uint8_t hdr[16] = { 'M', 'O', 'W', 'S' };
		struct iovec iov[2] = { { hdr, sizeof(hdr) }, { chunk, CHUNK } };

		memcpy(hdr + 8, &off, sizeof(off));
		for (size_t i = 0; i < CHUNK; i++)
			chunk[i] = pattern(off + i);
		rc = tls_sendv(s->conn, iov, 2, &dl);
	}
	free(chunk);
	return rc;
}

/* Receives the frames in PIECE-sized reads, checking every byte; counts good bytes. */
static int recv_frames(struct side *s)
{
	struct deadline dl = deadline_in_ms(20000);
	uint8_t *buf = malloc(PIECE);
	int rc = 0;

	for (size_t off = 0; off < s->bytes && !rc; off += CHUNK) {
		uint8_t hdr[16];
		size_t got;

		rc = tls_recv_all(s->conn, hdr, sizeof(hdr), &dl);
		if (rc)
			break;
		if (memcmp(hdr, "MOWS", 4) || memcmp(hdr + 8, &off, sizeof(off))) {
			rc = -EILSEQ;
			break;
		}
		for (got = 0; got < CHUNK && !rc; got += PIECE) {
			rc = tls_recv_all(s->conn, buf, PIECE, &dl);
			for (size_t i = 0; !rc && i < PIECE; i++)
				if (buf[i] != pattern(off + got + i))
					rc = -EILSEQ;	/* a wrong byte delivered */
			if (!rc)
				s->delivered += PIECE;
			if (s->slow)
				usleep(100);
		}
	}
	free(buf);
	return rc;
}

/* 64 MiB over loopback TCP, byte-exact, with a KeyUpdate every MiB. */
START_TEST(test_large_transfer)
{
	struct tls_ctx *a = psk_ctx("k");
	struct side c = { .after = send_frames, .bytes = 64u << 20, .rekey = 1u << 20 };
	struct side s = { .after = recv_frames, .bytes = 64u << 20, .server = true };
	int fds[2];

	/* Loopback TCP; the client blocking, the server not. */
	tcp_pair(fds);
	nonblock(fds[1]);
	c.ctx = a, c.fd = fds[0];
	s.ctx = a, s.fd = fds[1];
	start(&s);
	start(&c);
	finish(&c);
	finish(&s);
	ck_assert_msg(c.rc == 0, "client %d '%s'", c.rc, c.err);
	ck_assert_msg(s.rc == 0, "server %d '%s'", s.rc, s.err);
	ck_assert_uint_eq(s.delivered, 64u << 20);
	/* New keys every MiB on the way, and the receiver followed every one. */
	ck_assert_uint_ge(c.key_updates, 60);
	ck_assert_uint_eq(s.key_updates, 0);
	tls_ctx_free(a);
}
END_TEST

/*
 * Client: 4 MiB frames (sent as batches of records) until one fails or s->bytes went out,
 * each by a deadline of s->send_ms; the time the last one took in s->delivered (ms).
 * Server: reads nothing for s->send_ms, then hangs up.
 */
static int send_until_fail(struct side *s)
{
	uint8_t *chunk = calloc(1, CHUNK), hdr[16] = "MOWS";
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { chunk, CHUNK } };
	int rc = 0;

	if (s->server) {
		usleep((useconds_t)s->send_ms * 1000);
		free(chunk);
		return 0;
	}
	for (size_t off = 0; off < s->bytes && !rc; off += CHUNK) {
		struct deadline dl = deadline_in_ms((uint64_t)s->send_ms);
		uint64_t t0 = mono_ns();

		rc = tls_sendv(s->conn, iov, 2, &dl);
		s->delivered = (size_t)((mono_ns() - t0) / 1000000);
	}
	free(chunk);
	return rc;
}

/* Runs send_until_fail() on a loopback TCP pair: the server silent for @hold_ms. */
static void run_sender(struct side *c, struct side *s, int hold_ms, int send_ms)
{
	struct tls_ctx *a = psk_ctx("k");
	int fds[2];

	tcp_pair(fds);
	*c = (struct side){ .ctx = a, .fd = fds[0], .after = send_until_fail, .bytes = 1u << 30,
			    .send_ms = send_ms };
	*s = (struct side){ .ctx = a, .fd = fds[1], .server = true, .after = send_until_fail,
			    .send_ms = hold_ms };
	start(s);
	start(c);
	finish(s);	/* the server hangs up first */
	finish(c);
	tls_ctx_free(a);
}

/* A reader that stops reading: a batched send waits for the socket only by its deadline. */
START_TEST(test_write_deadline)
{
	struct side c, s;

	run_sender(&c, &s, 1500, 600);
	ck_assert_msg(c.rc == -ETIMEDOUT, "client %d '%s'", c.rc, c.err);
	ck_assert_msg(strstr(c.err, "TLS write timed out"), "%s", c.err);
	ck_assert_uint_ge(c.delivered, 590);
	ck_assert_uint_lt(c.delivered, 1100);
}
END_TEST

/* A reader that hangs up mid-stream: the batched sender learns it, never succeeds. */
START_TEST(test_write_peer_gone)
{
	struct side c, s;

	run_sender(&c, &s, 100, 5000);
	ck_assert_msg(c.rc == -EPIPE || c.rc == -ECONNRESET, "client %d '%s'", c.rc, c.err);
	ck_assert_msg(c.err[0], "no message for %d", c.rc);
}
END_TEST

/*
 * A reader slower than the writer: every batch ends with the socket full, and the last
 * records of each frame still have to reach the reader (nothing left queued behind).
 */
START_TEST(test_slow_reader)
{
	struct tls_ctx *a = psk_ctx("k");
	struct side c = { .after = send_frames, .bytes = 16u << 20 };
	struct side s = { .after = recv_frames, .bytes = 16u << 20, .server = true, .slow = true };
	int fds[2], small = 32 * 1024;

	tcp_pair(fds);
	/* Socket buffers smaller than a batch: its last send() waits for the reader. */
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	c.ctx = a, c.fd = fds[0];
	s.ctx = a, s.fd = fds[1];
	start(&s);
	start(&c);
	finish(&s);
	finish(&c);
	ck_assert_msg(s.rc == 0, "server %d '%s'", s.rc, s.err);
	ck_assert_msg(c.rc == 0, "client %d '%s'", c.rc, c.err);
	ck_assert_uint_eq(s.delivered, 16u << 20);
	tls_ctx_free(a);
}
END_TEST

static void *duplex_writer(void *arg)
{
	struct side *s = arg;

	s->wrc = send_frames(s);
	return NULL;
}

/* Sends and receives s->bytes at once on one conn: a writer thread and this one reading. */
static int duplex(struct side *s)
{
	pthread_t t;
	int rc;

	pthread_create(&t, NULL, duplex_writer, s);
	rc = recv_frames(s);
	pthread_join(t, NULL);
	return rc ? rc : s->wrc;
}

/* A multiplexed link's pattern: one reader and one writer on each conn, both ways at once. */
START_TEST(test_full_duplex)
{
	struct tls_ctx *a = psk_ctx("k");
	struct side c = { .after = duplex, .bytes = 32u << 20, .rekey = 1u << 20 };
	struct side s = { .after = duplex, .bytes = 32u << 20, .server = true };
	int fds[2];

	tcp_pair(fds);
	c.ctx = a, c.fd = fds[0];
	s.ctx = a, s.fd = fds[1];
	start(&s);
	start(&c);
	finish(&c);
	finish(&s);
	ck_assert_msg(c.rc == 0, "client %d '%s'", c.rc, c.err);
	ck_assert_msg(s.rc == 0, "server %d '%s'", s.rc, s.err);
	ck_assert_uint_eq(c.delivered, 32u << 20);
	ck_assert_uint_eq(s.delivered, 32u << 20);
	ck_assert_uint_ge(c.key_updates, 30);
	tls_ctx_free(a);
}
END_TEST

/* One end of test_event_loop: a conn and where its transfer stands. */
struct ev_end {
	struct tls_conn *c;
	int fd;
	bool shook;
	size_t done;
	short want;
};

/* Advances @e one step; the client writes @buf, the server reads into @buf. */
static int ev_step(struct ev_end *e, bool writer, uint8_t *buf, size_t len)
{
	ssize_t n;

	if (!e->shook) {
		int rc = tls_handshake_step(e->c, &e->want);

		if (rc == 0)
			e->shook = true;
		return rc == -EAGAIN ? 0 : rc;
	}
	if (e->done == len) {
		e->want = 0;
		return 0;
	}
	if (writer)
		n = tls_write_some(e->c, buf + e->done, len - e->done, &e->want);
	else
		n = tls_read_some(e->c, buf + e->done, len - e->done, &e->want);
	if (n > 0)
		e->done += (size_t)n;
	return n == -EAGAIN || n > 0 ? 0 : (int)n;
}

START_TEST(test_event_loop)
{
	const size_t len = 8u << 20;
	struct tls_ctx *a = psk_ctx("k");
	uint8_t *out = malloc(len), *in = calloc(1, len);
	struct ev_end ends[2];
	struct deadline dl = deadline_in_ms(20000);
	int fds[2];

	/* One thread drives both ends, as an epoll loop would, waiting only in poll(). */
	sockpair(fds);
	for (size_t i = 0; i < len; i++)
		out[i] = pattern(i);
	for (int i = 0; i < 2; i++) {
		ends[i] = (struct ev_end){ .c = tls_conn_new(a, fds[i], i == 1), .fd = fds[i] };
		ck_assert_ptr_nonnull(ends[i].c);
	}
	while (ends[1].done < len) {
		struct pollfd p[2];

		ck_assert_msg(!deadline_passed(&dl), "stuck: %zu of %zu", ends[1].done, len);
		ck_assert_int_eq(ev_step(&ends[0], true, out, len), 0);
		ck_assert_int_eq(ev_step(&ends[1], false, in, len), 0);
		/* Wait only when neither end can move; a finished writer waits for nothing. */
		if (tls_conn_pending(ends[1].c) || !ends[1].want ||
		    (!ends[0].want && ends[0].done < len))
			continue;
		for (int i = 0; i < 2; i++)
			p[i] = (struct pollfd){ .fd = ends[i].fd, .events = ends[i].want };
		ck_assert_int_ge(poll(p, 2, 1000), 0);
	}
	ck_assert_int_eq(memcmp(in, out, len), 0);
	ck_assert_int_eq(ends[0].done, len);
	for (int i = 0; i < 2; i++) {
		tls_conn_free(ends[i].c);
		close(fds[i]);
	}
	free(in);
	free(out);
	tls_ctx_free(a);
}
END_TEST

/* A man in the middle that flips one byte inside the @nth encrypted record client->server. */
struct relay {
	int from, to;		/* client side, server side (client->server direction) */
	int back_from, back_to;	/* server->client */
	int nth;
	bool tampered;
	pthread_t fwd, back;
};

static int read_full(int fd, uint8_t *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const uint8_t *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static void *relay_fwd(void *arg)
{
	struct relay *r = arg;
	uint8_t *rec = malloc(5 + 65536);
	int seen = 0;

	/* Whole records: 5-byte header (type, version, length), then the body. */
	while (read_full(r->from, rec, 5) == 0) {
		size_t len = (size_t)rec[3] << 8 | rec[4];

		if (read_full(r->from, rec + 5, len))
			break;
		if (rec[0] == 23 && ++seen == r->nth) {
			rec[5 + len / 2] ^= 0x01;
			r->tampered = true;
		}
		if (write_full(r->to, rec, 5 + len))
			break;
	}
	free(rec);
	shutdown(r->to, SHUT_RDWR);
	shutdown(r->from, SHUT_RDWR);
	return NULL;
}

static void *relay_back(void *arg)
{
	struct relay *r = arg;
	uint8_t buf[4096];
	ssize_t n;

	while ((n = read(r->back_from, buf, sizeof(buf))) > 0)
		if (write_full(r->back_to, buf, (size_t)n))
			break;
	shutdown(r->back_to, SHUT_RDWR);
	shutdown(r->back_from, SHUT_RDWR);
	return NULL;
}

START_TEST(test_tampering_relay)
{
	struct tls_ctx *a = psk_ctx("k");
	struct side c = { .after = send_frames, .bytes = 16u << 20 };
	struct side s = { .after = recv_frames, .bytes = 16u << 20, .server = true };
	struct relay r = { .nth = 100 };
	int cfd[2], sfd[2];

	sockpair(cfd);
	sockpair(sfd);
	nonblock(cfd[0]);
	nonblock(sfd[1]);
	r.from = cfd[1], r.back_to = cfd[1];
	r.to = sfd[0], r.back_from = sfd[0];
	c.ctx = a, c.fd = cfd[0];
	s.ctx = a, s.fd = sfd[1], s.server = true;
	pthread_create(&r.fwd, NULL, relay_fwd, &r);
	pthread_create(&r.back, NULL, relay_back, &r);
	start(&s);
	start(&c);
	finish(&c);
	finish(&s);
	pthread_join(r.fwd, NULL);
	pthread_join(r.back, NULL);
	close(cfd[1]);
	close(sfd[0]);
	ck_assert(r.tampered);
	ck_assert_msg(s.rc == -EBADMSG, "server %d '%s'", s.rc, s.err);
	ck_assert_msg(strstr(s.err, "integrity"), "%s", s.err);
	/* Everything before the bad record arrived, right; nothing after it. */
	ck_assert_uint_gt(s.delivered, 0);
	ck_assert_uint_lt(s.delivered, 16u << 20);
	ck_assert_msg(c.rc != 0, "the sender must see the connection die");
	tls_ctx_free(a);
}
END_TEST

/* ---- digests ---- */

START_TEST(test_digest)
{
	static const uint8_t abc_sha256[32] = {
		0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
		0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
		0xf2, 0x00, 0x15, 0xad,
	};
	struct digest d;
	uint8_t buf[4096];

	ck_assert_int_eq(digest_compute(DIGEST_SHA256, "abc", 3, &d), 0);
	ck_assert_int_eq(d.len, 32);
	ck_assert_int_eq(memcmp(d.bytes, abc_sha256, 32), 0);
	ck_assert_int_eq(digest_compute(DIGEST_CRC32, "123456789", 9, &d), 0);
	ck_assert_int_eq(d.len, 4);
	ck_assert_int_eq(memcmp(d.bytes, "\xcb\xf4\x39\x26", 4), 0);

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	for (int k = DIGEST_SHA256; k <= DIGEST_CRC32; k++) {
		ck_assert_int_eq(digest_compute((enum digest_kind)k, buf, sizeof(buf), &d), 0);
		ck_assert_int_eq(digest_check(buf, sizeof(buf), &d), 0);
		buf[1234] ^= 0x80;
		ck_assert_int_eq(digest_check(buf, sizeof(buf), &d), -EBADMSG);
		buf[1234] ^= 0x80;
	}
	d.kind = 7;
	ck_assert_int_eq(digest_check(buf, sizeof(buf), &d), -EINVAL);
	d.kind = DIGEST_SHA256, d.len = 4;
	ck_assert_int_eq(digest_check(buf, sizeof(buf), &d), -EINVAL);
	ck_assert_int_eq(digest_compute(DIGEST_GMAC, buf, sizeof(buf), &d), -EINVAL);
	ck_assert_int_eq(digest_kind_of(RDMA_VERIFY_SHA256), DIGEST_SHA256);
	ck_assert_int_eq(digest_kind_of(RDMA_VERIFY_CRC32), DIGEST_CRC32);
}
END_TEST

START_TEST(test_gmac)
{
	/* GCM spec test case 1: zero key, zero IV, nothing: the tag is known. */
	static const uint8_t zero_key[16], tag0[16] = {
		0x58, 0xe2, 0xfc, 0xce, 0xfa, 0x7e, 0x30, 0x61, 0x36, 0x7f, 0x1d, 0x57, 0xa4, 0xe7,
		0x45, 0x5a,
	};
	uint8_t key[16] = "per-connection!", buf[8192];
	struct digest d, d2;

	ck_assert_int_eq(digest_gmac(zero_key, 0, "", 0, &d), 0);
	ck_assert_int_eq(d.kind, DIGEST_GMAC);
	ck_assert_int_eq(memcmp(d.bytes, tag0, 16), 0);

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	ck_assert_int_eq(digest_gmac(key, 42, buf, sizeof(buf), &d), 0);
	ck_assert_int_eq(digest_gmac_check(key, 42, buf, sizeof(buf), &d), 0);
	buf[8000] ^= 1;
	ck_assert_int_eq(digest_gmac_check(key, 42, buf, sizeof(buf), &d), -EBADMSG);
	buf[8000] ^= 1;
	/* Another nonce or key gives another tag; the unkeyed check refuses a GMAC. */
	ck_assert_int_eq(digest_gmac_check(key, 43, buf, sizeof(buf), &d), -EBADMSG);
	key[0] ^= 1;
	ck_assert_int_eq(digest_gmac_check(key, 42, buf, sizeof(buf), &d), -EBADMSG);
	ck_assert_int_eq(digest_check(buf, sizeof(buf), &d), -EINVAL);
	ck_assert_int_eq(digest_gmac(key, 42, buf, sizeof(buf), &d2), 0);
	ck_assert_int_ne(memcmp(d.bytes, d2.bytes, 16), 0);
}
END_TEST

static Suite *tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *th = tcase_create("handshake");
	TCase *td = tcase_create("data");

	tcase_set_timeout(th, 30);
	tcase_add_test(th, test_psk_ok);
	tcase_add_test(th, test_psk_wrong);
	tcase_add_test(th, test_psk_vs_cert);
	tcase_add_test(th, test_psk_client_vs_impostor);
	tcase_add_test(th, test_cert_ok);
	tcase_add_test(th, test_cert_wrong_ca);
	tcase_add_test(th, test_cert_files);
	tcase_add_test(th, test_cert_reload);
	tcase_add_test(th, test_from_config);
	tcase_add_test(th, test_plaintext_client_refused);
	tcase_add_test(th, test_plaintext_server_refused);
	tcase_add_test(th, test_handshake_deadline);
	tcase_add_test(th, test_junk_clients);
	tcase_add_test(th, test_read_deadline);
	suite_add_tcase(s, th);

	tcase_set_timeout(td, 60);
	tcase_add_test(td, test_large_transfer);
	tcase_add_test(td, test_event_loop);
	tcase_add_test(td, test_full_duplex);
	tcase_add_test(td, test_slow_reader);
	tcase_add_test(td, test_write_deadline);
	tcase_add_test(td, test_write_peer_gone);
	tcase_add_test(td, test_tampering_relay);
	tcase_add_test(td, test_digest);
	tcase_add_test(td, test_gmac);
	suite_add_tcase(s, td);
	return s;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

int main(void)
{
	SRunner *sr;
	int failed;

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	make_pki();
	sr = srunner_create(tls_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? 1 : 0;
}
