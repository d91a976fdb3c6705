/*
 * Digests of chunks read by one-sided RDMA.
 *
 * An RDMA READ moves bytes without the holder's CPU and outside TLS: whoever can inject or
 * rewrite RDMA payloads on the fabric can change the chunk, and a CRC-32 does not stop that
 * (it is linear: any wanted CRC can be made by changing four bytes). So the holder sends the
 * chunk's digest in its descriptor reply, which travels inside TLS with the address, key and
 * length, and the reader checks the bytes it read against it:
 *
 *   DIGEST_SHA256 (rdma_verify = sha256, default): SHA-256 of the chunk. Unkeyed is enough:
 *     the expected value arrives authenticated over TLS, so a forger must find a second
 *     preimage of SHA-256. ~1.4 GB/s per core with SHA-NI (see mows-tlsbench).
 *   DIGEST_CRC32 (rdma_verify = crc32): the zlib CRC-32 mows computes anyway; catches
 *     accidents, not attackers. Only for a fabric the operator trusts.
 *
 * A keyed HMAC would add nothing over SHA-256 here and cost a per-connection key; a holder
 * can instead compute a chunk's SHA-256 once (when it fills it) and send it to every reader.
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
};

struct digest {
	uint8_t kind;		/* enum digest_kind */
	uint8_t len;		/* bytes used in @bytes */
	uint8_t bytes[DIGEST_MAX];
};

/* The kind rdma_verify asks for. */
enum digest_kind digest_kind_of(enum config_rdma_verify v);

/* Bytes a digest of @kind takes on the wire (32 or 4), 0 for an unknown kind. */
size_t digest_len(enum digest_kind kind);

/* Computes the @kind digest of @len bytes at @buf into @out. Returns 0, -EINVAL or -EIO. */
int digest_compute(enum digest_kind kind, const void *buf, size_t len, struct digest *out);

/*
 * Checks @len bytes at @buf against @want (kind and bytes as received). Returns 0 when they
 * match, -EBADMSG when not (the chunk must be dropped, never served), -EINVAL for an unknown
 * kind or a length that does not fit it. Compares in constant time.
 */
int digest_check(const void *buf, size_t len, const struct digest *want);

#endif
