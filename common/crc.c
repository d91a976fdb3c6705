#include "common/crc.h"

#include <isa-l/crc.h>

uint32_t mows_crc32(uint32_t crc, const void *buf, size_t len)
{
	/* crc32_gzip_refl takes and returns the finalised value, exactly like zlib's crc32. */
	return crc32_gzip_refl(crc, buf, len);
}

/*
 * CRC combination works in GF(2): appending len_b zero bytes to A is a linear map on the
 * 32-bit register, represented by a 32x32 bit matrix; squaring the "one zero bit" operator
 * repeatedly gives operators for 2^k zero bits.
 */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;
	for (int i = 0; vec; i++, vec >>= 1)
		if (vec & 1)
			sum ^= mat[i];
	return sum;
}

static void gf2_square(uint32_t *sq, const uint32_t *mat)
{
	for (int i = 0; i < 32; i++)
		sq[i] = gf2_times(mat, mat[i]);
}

uint32_t mows_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
	uint32_t even[32], odd[32];

	if (len_b == 0)
		return crc_a;
	odd[0] = 0xedb88320u; /* operator for one zero bit */
	for (int i = 1; i < 32; i++)
		odd[i] = 1u << (i - 1);
	gf2_square(even, odd); /* two zero bits */
	gf2_square(odd, even); /* four zero bits */
	do {
		gf2_square(even, odd); /* first pass: one zero byte */
		if (len_b & 1)
			crc_a = gf2_times(even, crc_a);
		len_b >>= 1;
		if (!len_b)
			break;
		gf2_square(odd, even);
		if (len_b & 1)
			crc_a = gf2_times(odd, crc_a);
		len_b >>= 1;
	} while (len_b);
	return crc_a ^ crc_b;
}
