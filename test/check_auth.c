/*
 * Pins net/auth.h: the MAC's exact definition (known answers computed with Python's hmac
 * module over the message layout documented in auth.h), rejection of every input that an
 * attacker could change, a whole handshake between two in-memory sides built from real
 * net/proto.h frames, and the checks on the secret file.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/auth.h"
#include "net/proto.h"

static const uint8_t secret[] = "correct horse battery staple";
#define SECRET_LEN (sizeof(secret) - 1)

static uint8_t nonce_c[PROTO_NONCE_LEN], nonce_s[PROTO_NONCE_LEN];

static void fixed_nonces(void)
{
	for (int i = 0; i < PROTO_NONCE_LEN; i++) {
		nonce_c[i] = (uint8_t)i;
		nonce_s[i] = (uint8_t)(0x40 + i);
	}
}

static void hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

/* The client's MAC, as the client computes it. */
static void client_mac(const uint8_t *s, size_t slen, uint8_t *mac)
{
	auth_mac(s, slen, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "client-1", "server-1", mac);
}

/* The server verifying a MAC claimed to be the client's. */
static bool server_checks_client(const uint8_t *mac)
{
	return auth_check(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "client-1",
			  "server-1", mac);
}

START_TEST(test_known_answers)
{
	uint8_t mac[PROTO_MAC_LEN], want[PROTO_MAC_LEN];

	fixed_nonces();
	client_mac(secret, SECRET_LEN, mac);
	hex_to_bytes("d9b6475f1a2f46e9995cb9d2e0247d033870f124057558b767e2acae1c086d66", want,
		     sizeof(want));
	ck_assert_mem_eq(mac, want, sizeof(want));
	auth_mac(secret, SECRET_LEN, AUTH_ROLE_SERVER, nonce_c, nonce_s, "server-1", "client-1",
		 mac);
	hex_to_bytes("1cc65dc327d344067101ceac217a8926b4a5be243aecca4ac09e0eb7a1c0a7a6", want,
		     sizeof(want));
	ck_assert_mem_eq(mac, want, sizeof(want));
}
END_TEST

START_TEST(test_check_accepts_right_inputs_only)
{
	static const uint8_t wrong_secret[] = "correct horse battery stapler";
	uint8_t mac[PROTO_MAC_LEN], bad[PROTO_MAC_LEN], srv[PROTO_MAC_LEN];

	fixed_nonces();
	client_mac(secret, SECRET_LEN, mac);
	ck_assert(server_checks_client(mac));
	/* Wrong secret, on either side; a secret that is a prefix of the right one. */
	client_mac(wrong_secret, sizeof(wrong_secret) - 1, bad);
	ck_assert(!server_checks_client(bad));
	client_mac(secret, SECRET_LEN - 1, bad);
	ck_assert(!server_checks_client(bad));
	ck_assert(!auth_check(wrong_secret, sizeof(wrong_secret) - 1, AUTH_ROLE_CLIENT, nonce_s,
			      nonce_c, "client-1", "server-1", mac));
	/* Swapped role. */
	ck_assert(!auth_check(secret, SECRET_LEN, AUTH_ROLE_SERVER, nonce_s, nonce_c, "client-1",
			      "server-1", mac));
	/* Reflection: the server's own MAC sent back to it as the client's. */
	auth_mac(secret, SECRET_LEN, AUTH_ROLE_SERVER, nonce_c, nonce_s, "server-1", "client-1",
		 srv);
	ck_assert(!server_checks_client(srv));
	/* Nonces swapped, or one of them replaced (a replay into a new connection). */
	ck_assert(!auth_check(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_c, nonce_s, "client-1",
			      "server-1", mac));
	ck_assert(!auth_check(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_c, nonce_c, "client-1",
			      "server-1", mac));
	nonce_s[31] ^= 1;
	ck_assert(!server_checks_client(mac));
	nonce_s[31] ^= 1;
	/* Wrong ids, swapped ids, and ids that only differ in where one ends. */
	ck_assert(!auth_check(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "client-2",
			      "server-1", mac));
	ck_assert(!auth_check(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "client-1",
			      "server-2", mac));
	ck_assert(!auth_check(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "server-1",
			      "client-1", mac));
	auth_mac(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "ab", "c", bad);
	ck_assert(!auth_check(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "a", "bc",
			      bad));
	/* Any bit of the MAC. */
	for (int i = 0; i < PROTO_MAC_LEN * 8; i++) {
		memcpy(bad, mac, sizeof(bad));
		bad[i / 8] ^= (uint8_t)(1u << (i % 8));
		ck_assert(!server_checks_client(bad));
	}
	ck_assert(server_checks_client(mac));
}
END_TEST

START_TEST(test_invalid_inputs_give_zero_mac)
{
	static const uint8_t zero[PROTO_MAC_LEN];
	uint8_t mac[PROTO_MAC_LEN];

	fixed_nonces();
	/* No secret: a zero MAC, which is never accepted, not even with an empty secret. */
	client_mac(secret, 0, mac);
	ck_assert_mem_eq(mac, zero, sizeof(zero));
	ck_assert(!auth_check(secret, 0, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "client-1",
			      "server-1", zero));
	ck_assert(!auth_check(NULL, 0, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "client-1",
			      "server-1", zero));
	ck_assert(!server_checks_client(zero));
	auth_mac(secret, SECRET_LEN, 'X', nonce_s, nonce_c, "client-1", "server-1", mac);
	ck_assert_mem_eq(mac, zero, sizeof(zero));
	ck_assert(!auth_check(secret, SECRET_LEN, 'X', nonce_s, nonce_c, "client-1", "server-1",
			      mac));
	auth_mac(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "bad id", "server-1",
		 mac);
	ck_assert_mem_eq(mac, zero, sizeof(zero));
	auth_mac(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "client-1", "", mac);
	ck_assert_mem_eq(mac, zero, sizeof(zero));
	ck_assert(!auth_check(secret, SECRET_LEN, AUTH_ROLE_CLIENT, nonce_s, nonce_c, "bad id",
			      "server-1", zero));
}
END_TEST

START_TEST(test_nonce)
{
	uint8_t a[PROTO_NONCE_LEN], b[PROTO_NONCE_LEN];

	ck_assert_int_eq(auth_nonce(a), 0);
	ck_assert_int_eq(auth_nonce(b), 0);
	ck_assert_mem_ne(a, b, sizeof(a));
}
END_TEST

/* One side of a simulated connection; frames travel through a byte buffer. */
struct side {
	const char *id;
	char role;
	const uint8_t *secret;
	size_t secret_len;
	uint8_t nonce[PROTO_NONCE_LEN];
	struct proto_hello peer;
	bool peer_ok;		/* the peer's AUTH checked out */
	bool got_ok;		/* the peer sent AUTH_OK */
};

struct wire {
	uint8_t buf[256];
	size_t len;
};

static void send_hello(struct side *s, struct wire *w)
{
	struct proto_hello h = { .version = PROTO_VERSION, .listen_port = 7070 };
	ssize_t n;

	ck_assert_int_eq(auth_nonce(s->nonce), 0);
	memcpy(h.nonce, s->nonce, sizeof(h.nonce));
	strcpy(h.node_id, s->id);
	n = proto_hello_encode(w->buf + PROTO_HDR_LEN, sizeof(w->buf) - PROTO_HDR_LEN, &h);
	ck_assert_int_gt(n, 0);
	proto_hdr_encode(w->buf, PROTO_HELLO, 0, (uint32_t)n, 0);
	w->len = PROTO_HDR_LEN + (size_t)n;
}

/* Receives one frame; returns its header and leaves the payload at w->buf + 16. */
static struct proto_hdr recv_frame(const struct wire *w, uint32_t max_payload)
{
	struct proto_hdr hdr;

	ck_assert_int_eq(proto_hdr_decode(w->buf, w->len, &hdr, max_payload), 0);
	ck_assert_uint_eq(w->len, PROTO_HDR_LEN + hdr.len);
	return hdr;
}

static void recv_hello(struct side *s, const struct wire *w)
{
	struct proto_hdr hdr = recv_frame(w, PROTO_PREAUTH_MAX_PAYLOAD);

	ck_assert_uint_eq(hdr.type, PROTO_HELLO);
	ck_assert_int_eq(proto_hello_decode(w->buf + PROTO_HDR_LEN, hdr.len, &s->peer), 0);
}

static void send_auth(const struct side *s, struct wire *w)
{
	struct proto_auth a = { .insecure = false };

	auth_mac(s->secret, s->secret_len, s->role, s->peer.nonce, s->nonce, s->id,
		 s->peer.node_id, a.mac);
	proto_hdr_encode(w->buf, PROTO_AUTH, 0, PROTO_AUTH_LEN, 0);
	proto_auth_encode(w->buf + PROTO_HDR_LEN, &a);
	w->len = PROTO_HDR_LEN + PROTO_AUTH_LEN;
}

/* Checks the peer's AUTH and answers AUTH_OK or AUTH_FAIL. */
static void recv_auth(struct side *s, const struct wire *in, struct wire *out)
{
	struct proto_hdr hdr = recv_frame(in, PROTO_PREAUTH_MAX_PAYLOAD);
	char peer_role = s->role == AUTH_ROLE_CLIENT ? AUTH_ROLE_SERVER : AUTH_ROLE_CLIENT;
	struct proto_auth a;

	ck_assert_uint_eq(hdr.type, PROTO_AUTH);
	ck_assert_int_eq(proto_auth_decode(in->buf + PROTO_HDR_LEN, hdr.len, &a), 0);
	s->peer_ok = !a.insecure &&
		     auth_check(s->secret, s->secret_len, peer_role, s->nonce, s->peer.nonce,
				s->peer.node_id, s->id, a.mac);
	proto_hdr_encode(out->buf, s->peer_ok ? PROTO_AUTH_OK : PROTO_AUTH_FAIL, 0, 0, 0);
	out->len = PROTO_HDR_LEN;
}

static void recv_verdict(struct side *s, const struct wire *w)
{
	struct proto_hdr hdr = recv_frame(w, PROTO_PREAUTH_MAX_PAYLOAD);

	ck_assert_int_eq(proto_empty_decode(w->buf + PROTO_HDR_LEN, hdr.len), 0);
	s->got_ok = hdr.type == PROTO_AUTH_OK;
}

static void handshake(struct side *c, struct side *s)
{
	struct wire c2s, s2c, c2s_ok, s2c_ok;

	send_hello(c, &c2s);
	send_hello(s, &s2c);
	recv_hello(s, &c2s);
	recv_hello(c, &s2c);
	ck_assert_str_eq(s->peer.node_id, c->id);
	ck_assert_str_eq(c->peer.node_id, s->id);
	send_auth(c, &c2s);
	send_auth(s, &s2c);
	recv_auth(s, &c2s, &s2c_ok);
	recv_auth(c, &s2c, &c2s_ok);
	recv_verdict(c, &s2c_ok);
	recv_verdict(s, &c2s_ok);
}

START_TEST(test_handshake)
{
	static const uint8_t other[] = "another secret";
	struct side c = { .id = "gpu01", .role = AUTH_ROLE_CLIENT, .secret = secret,
			  .secret_len = SECRET_LEN };
	struct side s = { .id = "gpu02", .role = AUTH_ROLE_SERVER, .secret = secret,
			  .secret_len = SECRET_LEN };
	struct side c2, s2;

	handshake(&c, &s);
	ck_assert(c.peer_ok && c.got_ok);
	ck_assert(s.peer_ok && s.got_ok);
	/* Fresh nonces each time. */
	c2 = c;
	s2 = s;
	handshake(&c2, &s2);
	ck_assert_mem_ne(c2.nonce, c.nonce, PROTO_NONCE_LEN);
	ck_assert(c2.peer_ok && s2.peer_ok);
	/* Different secrets: both sides refuse. */
	s.secret = other;
	s.secret_len = sizeof(other) - 1;
	handshake(&c, &s);
	ck_assert(!c.peer_ok && !c.got_ok);
	ck_assert(!s.peer_ok && !s.got_ok);
}
END_TEST

/* A client without the secret replays the server's MAC from one connection in another. */
START_TEST(test_handshake_replay_and_reflection)
{
	struct side c = { .id = "gpu01", .role = AUTH_ROLE_CLIENT, .secret = secret,
			  .secret_len = SECRET_LEN };
	struct side s = { .id = "gpu02", .role = AUTH_ROLE_SERVER, .secret = secret,
			  .secret_len = SECRET_LEN };
	struct wire c2s, s2c, verdict;
	uint8_t seen_c[PROTO_MAC_LEN], seen_s[PROTO_MAC_LEN];
	struct proto_auth a = { .insecure = false };

	/* A genuine connection, recorded. */
	handshake(&c, &s);
	ck_assert(s.peer_ok);
	auth_mac(secret, SECRET_LEN, AUTH_ROLE_CLIENT, s.nonce, c.nonce, c.id, s.id, seen_c);
	auth_mac(secret, SECRET_LEN, AUTH_ROLE_SERVER, c.nonce, s.nonce, s.id, c.id, seen_s);

	/* Replay: the attacker reuses the client's nonce and MAC; the server's nonce is new. */
	send_hello(&s, &s2c);
	recv_hello(&c, &s2c);
	memcpy(a.mac, seen_c, sizeof(a.mac));
	proto_hdr_encode(c2s.buf, PROTO_AUTH, 0, PROTO_AUTH_LEN, 0);
	proto_auth_encode(c2s.buf + PROTO_HDR_LEN, &a);
	c2s.len = PROTO_HDR_LEN + PROTO_AUTH_LEN;
	recv_auth(&s, &c2s, &verdict);
	ck_assert(!s.peer_ok);

	/* Reflection: the attacker echoes the server's own nonce and MAC back at it. */
	memcpy(s.peer.nonce, s.nonce, PROTO_NONCE_LEN);
	auth_mac(secret, SECRET_LEN, AUTH_ROLE_SERVER, s.peer.nonce, s.nonce, s.id,
		 s.peer.node_id, a.mac);
	proto_auth_encode(c2s.buf + PROTO_HDR_LEN, &a);
	recv_auth(&s, &c2s, &verdict);
	ck_assert(!s.peer_ok);
	ck_assert_uint_eq(verdict.buf[5], PROTO_AUTH_FAIL);
	ck_assert_mem_ne(seen_c, seen_s, PROTO_MAC_LEN);

	/* An insecure AUTH is never accepted by a side that has a secret. */
	a.insecure = true;
	memset(a.mac, 0, sizeof(a.mac));
	proto_auth_encode(c2s.buf + PROTO_HDR_LEN, &a);
	recv_auth(&s, &c2s, &verdict);
	ck_assert(!s.peer_ok);
}
END_TEST

static char tmpdir[64];

static void make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/check_auth.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static char *write_file(const char *name, const void *data, size_t len, mode_t mode)
{
	static char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

static int load(const char *path, uint8_t **s, size_t *len, char *err, size_t errlen)
{
	*s = NULL;
	*len = 0;
	return auth_load_secret(path, s, len, err, errlen);
}

START_TEST(test_load_secret_ok)
{
	char err[512], big[AUTH_SECRET_MAX + 1], link[160];
	uint8_t *s;
	size_t len;
	char *path;

	make_tmpdir();
	path = write_file("secret", "hunter2\n", 8, 0600);
	ck_assert_int_eq(load(path, &s, &len, err, sizeof(err)), 0);
	ck_assert_uint_eq(len, 7);
	ck_assert_mem_eq(s, "hunter2", 7);
	auth_secret_free(s, len);
	/* Only one trailing newline goes; inner bytes stay, binary is fine. */
	path = write_file("secret", "a\0b\n\n", 5, 0400);
	ck_assert_int_eq(load(path, &s, &len, err, sizeof(err)), 0);
	ck_assert_uint_eq(len, 4);
	ck_assert_mem_eq(s, "a\0b\n", 4);
	auth_secret_free(s, len);
	path = write_file("secret", "nonl", 4, 0600);
	ck_assert_int_eq(load(path, &s, &len, err, sizeof(err)), 0);
	ck_assert_uint_eq(len, 4);
	auth_secret_free(s, len);
	/* Exactly the maximum. */
	memset(big, 'k', sizeof(big));
	path = write_file("secret", big, AUTH_SECRET_MAX, 0600);
	ck_assert_int_eq(load(path, &s, &len, err, sizeof(err)), 0);
	ck_assert_uint_eq(len, AUTH_SECRET_MAX);
	auth_secret_free(s, len);
	/* A symlink (as Kubernetes secret volumes use) to a private file. */
	path = write_file("secret", "via-link", 8, 0600);
	snprintf(link, sizeof(link), "%s/link", tmpdir);
	ck_assert_int_eq(symlink(path, link), 0);
	ck_assert_int_eq(load(link, &s, &len, err, sizeof(err)), 0);
	ck_assert_mem_eq(s, "via-link", 8);
	auth_secret_free(s, len);
	auth_secret_free(NULL, 0);
	remove_tmpdir();
}
END_TEST

START_TEST(test_load_secret_refused)
{
	char err[512], want[256], big[AUTH_SECRET_MAX + 2], path2[128];
	static const mode_t open_modes[] = { 0644, 0640, 0604, 0660, 0601, 0610, 0666, 0777 };
	uint8_t *s;
	size_t len;
	char *path;

	make_tmpdir();
	for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
		path = write_file("secret", "hunter2\n", 8, open_modes[i]);
		ck_assert_int_eq(load(path, &s, &len, err, sizeof(err)), -EPERM);
		ck_assert_ptr_null(s);
		snprintf(want, sizeof(want), "chmod 600 %s", path);
		ck_assert_ptr_nonnull(strstr(err, want));
		snprintf(want, sizeof(want), "mode %04o", (unsigned)open_modes[i]);
		ck_assert_msg(strstr(err, want), "'%s' does not say '%s'", err, want);
	}
	path = write_file("secret", "", 0, 0600);
	ck_assert_int_eq(load(path, &s, &len, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_ptr_nonnull(strstr(err, "empty"));
	path = write_file("secret", "\n", 1, 0600);
	ck_assert_int_eq(load(path, &s, &len, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "empty"));
	memset(big, 'k', sizeof(big));
	path = write_file("secret", big, AUTH_SECRET_MAX + 1, 0600);
	ck_assert_int_eq(load(path, &s, &len, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_ptr_nonnull(strstr(err, "4096"));
	/* The limit is on the file: 4096 bytes of secret plus a newline is too long. */
	big[AUTH_SECRET_MAX] = '\n';
	path = write_file("secret", big, AUTH_SECRET_MAX + 1, 0600);
	ck_assert_int_eq(load(path, &s, &len, err, sizeof(err)), -EINVAL);
	/* Missing file. */
	snprintf(path2, sizeof(path2), "%s/missing", tmpdir);
	ck_assert_int_eq(load(path2, &s, &len, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, path2));
	/* A directory and a FIFO (which must not block the open). */
	ck_assert_int_eq(load(tmpdir, &s, &len, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "regular file"));
	snprintf(path2, sizeof(path2), "%s/fifo", tmpdir);
	ck_assert_int_eq(mkfifo(path2, 0600), 0);
	ck_assert_int_eq(load(path2, &s, &len, err, sizeof(err)), -EINVAL);
	/* Owned by someone else (only root can arrange that). */
	if (geteuid() == 0) {
		path = write_file("secret", "hunter2", 7, 0600);
		ck_assert_int_eq(chown(path, 12345, 12345), 0);
		ck_assert_int_eq(load(path, &s, &len, err, sizeof(err)), -EPERM);
		ck_assert_ptr_nonnull(strstr(err, "owned by uid 12345"));
		ck_assert_ptr_nonnull(strstr(err, path));
	}
	/* A tiny error buffer is still terminated; none at all is fine too. */
	path = write_file("secret", "hunter2", 7, 0644);
	ck_assert_int_eq(load(path, &s, &len, err, 8), -EPERM);
	ck_assert_uint_eq(strlen(err), 7);
	ck_assert_int_eq(load(path, &s, &len, NULL, 0), -EPERM);
	remove_tmpdir();
}
END_TEST

static Suite *auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_known_answers);
	tcase_add_test(tc, test_check_accepts_right_inputs_only);
	tcase_add_test(tc, test_invalid_inputs_give_zero_mac);
	tcase_add_test(tc, test_nonce);
	tcase_add_test(tc, test_handshake);
	tcase_add_test(tc, test_handshake_replay_and_reflection);
	tcase_add_test(tc, test_load_secret_ok);
	tcase_add_test(tc, test_load_secret_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(auth_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
