/*
 * The one CRC-32 that mows uses: the zlib/gzip CRC-32 (reflected, polynomial 0xEDB88320),
 * computed with ISA-L's crc32_gzip_refl. ISA-L has several crc32 functions with different
 * conventions; nothing else in mows calls them, so the daemon, mows-crc32 and the tests always
 * agree. Known answer: mows_crc32(0, "123456789", 9) == 0xcbf43926.
 * All functions are pure and thread-safe.
 */
#ifndef MOWS_COMMON_CRC_H
#define MOWS_COMMON_CRC_H

#include <stddef.h>
#include <stdint.h>

/* Continues @crc (0 to start) over @len bytes, as zlib's crc32(crc, buf, len) does. */
uint32_t mows_crc32(uint32_t crc, const void *buf, size_t len);

/*
 * Returns the CRC of A followed by B, given crc(A), crc(B) and B's length, as zlib's
 * crc32_combine does. Runs in O(log len_b).
 */
uint32_t mows_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

#endif
