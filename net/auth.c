/* Peer authentication: see auth.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "net/auth.h"

static const char auth_label[] = "mows-auth-v1";

#define AUTH_LABEL_LEN	(sizeof(auth_label) - 1)
#define AUTH_MSG_MAX	(AUTH_LABEL_LEN + 1 + 2 * PROTO_NONCE_LEN + 2 * (1 + PROTO_NODE_ID_MAX))

int auth_nonce(uint8_t out[PROTO_NONCE_LEN])
{
	size_t got = 0;

	while (got < PROTO_NONCE_LEN) {
		ssize_t n = getrandom(out + got, PROTO_NONCE_LEN - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	return 0;
}

static size_t put_id(uint8_t *p, const char *id)
{
	size_t len = strlen(id);

	p[0] = (uint8_t)len;
	memcpy(p + 1, id, len);
	return 1 + len;
}

/* Computes the MAC; returns false (and leaves @out undefined) when it cannot. */
static bool compute_mac(const uint8_t *secret, size_t secret_len, char role,
			const uint8_t *their_nonce, const uint8_t *my_nonce, const char *my_id,
			const char *their_id, uint8_t *out)
{
	uint8_t msg[AUTH_MSG_MAX];
	unsigned int outlen = 0;
	size_t n = 0;

	if (!secret || secret_len == 0 || secret_len > INT_MAX)
		return false;
	if (role != AUTH_ROLE_CLIENT && role != AUTH_ROLE_SERVER)
		return false;
	if (!proto_node_id_ok(my_id) || !proto_node_id_ok(their_id))
		return false;
	memcpy(msg, auth_label, AUTH_LABEL_LEN);
	n += AUTH_LABEL_LEN;
	msg[n++] = (uint8_t)role;
	memcpy(msg + n, their_nonce, PROTO_NONCE_LEN);
	n += PROTO_NONCE_LEN;
	memcpy(msg + n, my_nonce, PROTO_NONCE_LEN);
	n += PROTO_NONCE_LEN;
	n += put_id(msg + n, my_id);
	n += put_id(msg + n, their_id);
	if (!HMAC(EVP_sha256(), secret, (int)secret_len, msg, n, out, &outlen))
		return false;
	return outlen == PROTO_MAC_LEN;
}

void auth_mac(const uint8_t *secret, size_t secret_len, char role,
	      const uint8_t their_nonce[PROTO_NONCE_LEN], const uint8_t my_nonce[PROTO_NONCE_LEN],
	      const char *my_id, const char *their_id, uint8_t out[PROTO_MAC_LEN])
{
	uint8_t mac[EVP_MAX_MD_SIZE];

	if (compute_mac(secret, secret_len, role, their_nonce, my_nonce, my_id, their_id, mac))
		memcpy(out, mac, PROTO_MAC_LEN);
	else
		memset(out, 0, PROTO_MAC_LEN);
}

bool auth_check(const uint8_t *secret, size_t secret_len, char role,
		const uint8_t their_nonce[PROTO_NONCE_LEN],
		const uint8_t my_nonce[PROTO_NONCE_LEN], const char *my_id, const char *their_id,
		const uint8_t mac[PROTO_MAC_LEN])
{
	uint8_t want[EVP_MAX_MD_SIZE];

	if (!compute_mac(secret, secret_len, role, their_nonce, my_nonce, my_id, their_id, want))
		return false;
	return CRYPTO_memcmp(want, mac, PROTO_MAC_LEN) == 0;
}

void auth_secret_free(uint8_t *secret, size_t len)
{
	if (!secret)
		return;
	OPENSSL_cleanse(secret, len);
	free(secret);
}

/* Checks what fstat() says about the secret file; returns 0 or -errno with @err set. */
static int check_secret_stat(const char *path, const struct stat *st, char *err, size_t errlen)
{
	if (!S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "secret file %s: not a regular file; name a file", path);
		return -EINVAL;
	}
	if (st->st_uid != geteuid()) {
		snprintf(err, errlen, "secret file %s: owned by uid %u, not by uid %u that "
			 "runs mows; run chown %u %s", path, (unsigned)st->st_uid, (unsigned)geteuid(),
			 (unsigned)geteuid(), path);
		return -EPERM;
	}
	if (st->st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen, "secret file %s: mode %04o allows group/other access; "
			 "run chmod 600 %s", path, (unsigned)(st->st_mode & 07777), path);
		return -EPERM;
	}
	if (st->st_size > AUTH_SECRET_MAX) {
		snprintf(err, errlen, "secret file %s: %lld bytes, more than %d; use a shorter "
			 "secret (32 random bytes are plenty)", path, (long long)st->st_size,
			 AUTH_SECRET_MAX);
		return -EINVAL;
	}
	return 0;
}

/* Reads up to AUTH_SECRET_MAX + 1 bytes of @fd into @buf; returns the count or -errno. */
static ssize_t read_secret(int fd, uint8_t *buf)
{
	size_t got = 0;

	while (got < AUTH_SECRET_MAX + 1) {
		ssize_t n = read(fd, buf + got, AUTH_SECRET_MAX + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int auth_load_secret(const char *path, uint8_t **secret, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	uint8_t *buf;
	ssize_t n;
	int fd, rc;

	if (errlen)
		err[0] = '\0';
	/* O_NONBLOCK: a FIFO planted at the path must not hang us before the S_ISREG check. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "secret file %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "secret file %s: %s", path, strerror(-rc));
		goto out_close;
	}
	rc = check_secret_stat(path, &st, err, errlen);
	if (rc)
		goto out_close;
	buf = malloc(AUTH_SECRET_MAX + 1);
	if (!buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "secret file %s: out of memory", path);
		goto out_close;
	}
	n = read_secret(fd, buf);
	if (n < 0) {
		rc = (int)n;
		snprintf(err, errlen, "secret file %s: %s", path, strerror(-rc));
		goto out_free;
	}
	if (n > AUTH_SECRET_MAX) {
		rc = -EINVAL;
		snprintf(err, errlen, "secret file %s: more than %d bytes; use a shorter secret "
			 "(32 random bytes are plenty)", path, AUTH_SECRET_MAX);
		goto out_free;
	}
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n == 0) {
		rc = -EINVAL;
		snprintf(err, errlen, "secret file %s: empty; write the shared secret into it, "
			 "e.g. openssl rand -base64 32 > %s", path, path);
		goto out_free;
	}
	close(fd);
	*secret = buf;
	*len = (size_t)n;
	return 0;

out_free:
	auth_secret_free(buf, AUTH_SECRET_MAX + 1);
out_close:
	close(fd);
	return rc;
}
