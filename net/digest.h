/*
 * Digests of chunks read by one-sided RDMA.
 *
 * An RDMA READ moves bytes without the holder's CPU and outside TLS: whoever can inject or
 * rewrite RDMA payloads on the fabric can change the chunk, and a CRC-32 does not stop that
 * (it is linear: any wanted CRC can be made by changing four bytes). So the holder sends the
 * chunk's digest in its descriptor reply, which travels inside TLS with the address, key and
 * length, and the reader checks the bytes it read against it. The DESC travels over the
 * peer's TLS link, never over the RDMA connection (net/rdma.h), so the digest cannot be
 * rewritten along with the bytes.
 *
 *   DIGEST_SHA256 (rdma_verify = sha256, default): SHA-256 of the chunk. Unkeyed is enough:
 *     the expected value arrives authenticated over TLS, so a forger must find a second
 *     preimage of SHA-256. ~1.4 GB/s per core with SHA-NI (see mows-tlsbench).
 *   DIGEST_CRC32 (rdma_verify = crc32): the zlib CRC-32 mows computes anyway; catches
 *     accidents, not attackers. Only for a fabric the operator trusts.
 *
 * A holder computes a chunk's SHA-256 once while the chunk stays cached (net/rdma.c keeps a
 * memo) and sends it to every reader.
 *
 *   DIGEST_GMAC (not yet a rdma_verify value): AES-128-GMAC, a MAC under a key the fabric
 *     never sees, ~8x cheaper than SHA-256 here (mows-tlsbench: ~0.1 vs ~0.8 CPU s/GB), for
 *     NICs faster than SHA-256 can follow. Both ends derive the key from their TLS session
 *     (tls_conn_export(conn, DIGEST_GMAC_LABEL, key, 16)); the holder MACs the chunk per read
 *     with a nonce it never repeats on that connection (a request counter) and sends nonce
 *     and tag inside TLS. A repeated (key, nonce) pair would let the fabric forge tags: the
 *     nonce contract is the caller's.
 *
 * Its own module, not part of net/tls.c: it needs only libcrypto, no session, and cache or
 * RDMA code can call it without linking a TLS context.
 *
 * Pure functions; every thread may call them at once.
 */
#ifndef MOWS_NET_DIGEST_H
#define MOWS_NET_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

#define DIGEST_MAX	32

enum digest_kind {
	DIGEST_SHA256 = 1,	/* 32 bytes */
	DIGEST_CRC32 = 2,	/* 4 bytes, big-endian */
	DIGEST_GMAC = 3,	/* 16 bytes; keyed: digest_gmac() */
};

#define DIGEST_GMAC_KEY_LEN	16
#define DIGEST_GMAC_LABEL	"mows rdma gmac v1"


struct digest {
	uint8_t kind;		/* enum digest_kind */
	uint8_t len;		/* bytes used in @bytes */
	uint8_t bytes[DIGEST_MAX];
};

/* The kind rdma_verify asks for. */
enum digest_kind digest_kind_of(enum config_rdma_verify v);

/* Bytes a digest of @kind takes on the wire (32 or 4), 0 for an unknown kind. */
size_t digest_len(enum digest_kind kind);

/*
 * Computes the @kind digest of @len bytes at @buf into @out. Returns 0, -EINVAL (unknown
 * kind, or DIGEST_GMAC, which needs a key) or -EIO.
 */
int digest_compute(enum digest_kind kind, const void *buf, size_t len, struct digest *out);

/*
 * Checks @len bytes at @buf against @want (kind and bytes as received). Returns 0 when they
 * match, -EBADMSG when not (the chunk must be dropped, never served), -EINVAL for an unknown
 * kind or a length that does not fit it. Compares in constant time.
 */
int digest_check(const void *buf, size_t len, const struct digest *want);

/*
 * The AES-128-GMAC tag of @len bytes at @buf under @key with the 96-bit nonce 0^32 || @nonce
 * (big-endian), as a DIGEST_GMAC digest in @out. Returns 0 or -EIO. Any thread.
 */
int digest_gmac(const uint8_t key[DIGEST_GMAC_KEY_LEN], uint64_t nonce, const void *buf,
		size_t len, struct digest *out);

/* Checks @buf against a DIGEST_GMAC @want made with @key and @nonce: 0 or -EBADMSG/-EINVAL. */
int digest_gmac_check(const uint8_t key[DIGEST_GMAC_KEY_LEN], uint64_t nonce, const void *buf,
		      size_t len, const struct digest *want);

#endif
