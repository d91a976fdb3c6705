/*
 * The 64-bit hashes that placement and file identity are built from. Both are part of the
 * peer protocol (every node must compute the same values), so they never change.
 *   FNV-1a-64: offset basis 0xcbf29ce484222325, prime 0x100000001b3.
 *   fmix64: MurmurHash3's 64-bit finalizer.
 */
#ifndef MOWS_COMMON_HASH_H
#define MOWS_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define FNV64_BASIS 0xcbf29ce484222325ull
#define FNV64_PRIME 0x100000001b3ull

/* Continues FNV-1a-64 from @h (FNV64_BASIS to start) over @len bytes. */
static inline uint64_t fnv1a64(uint64_t h, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= FNV64_PRIME;
	}
	return h;
}

static inline uint64_t fmix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb93e1a85ec53ull;
	h ^= h >> 33;
	return h;
}

#endif
