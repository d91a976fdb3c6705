/*
 * Pins common/crc.h to the zlib CRC-32. Expected values were computed with Python's
 * zlib.crc32, and a bit-at-a-time CRC written here checks every short length and alignment.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc.h"

#define MIB (1u << 20)

/* Bytes of a 32-bit xorshift, seeded; Python can produce the same bytes. */
static void fill_xorshift(unsigned char *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (unsigned char)x;
	}
}

static unsigned char *xorshift_buf(size_t len, uint32_t seed)
{
	unsigned char *buf = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(buf);
	fill_xorshift(buf, len, seed);
	return buf;
}

/* The reflected CRC-32, polynomial 0xEDB88320, one bit at a time: slow and obviously right. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
	}
	return ~crc;
}

START_TEST(test_known_answers)
{
	const char *fox = "The quick brown fox jumps over the lazy dog";

	ck_assert_uint_eq(mows_crc32(0, "123456789", 9), 0xcbf43926u);
	ck_assert_uint_eq(mows_crc32(0, "", 0), 0);
	ck_assert_uint_eq(mows_crc32(0, NULL, 0), 0);
	ck_assert_uint_eq(mows_crc32(0, "a", 1), 0xe8b7be43u);
	ck_assert_uint_eq(mows_crc32(0, fox, strlen(fox)), 0x414fa339u);
}
END_TEST

START_TEST(test_zeros_1mib)
{
	unsigned char *zeros = calloc(1, MIB);

	ck_assert_ptr_nonnull(zeros);
	ck_assert_uint_eq(mows_crc32(0, zeros, MIB), 0xa738ea1cu);
	free(zeros);
}
END_TEST

START_TEST(test_xorshift_large)
{
	size_t len = 5 * MIB + 3;
	unsigned char *buf = xorshift_buf(len, 0x12345678);

	ck_assert_uint_eq(mows_crc32(0, buf, 1000), 0x1d85ce70u);
	ck_assert_uint_eq(mows_crc32(0, buf, len), 0xf9d7ce24u);
	free(buf);
}
END_TEST

/* ISA-L takes different paths by length and alignment; all must agree with the definition. */
START_TEST(test_short_lengths_and_alignments)
{
	unsigned char *buf = xorshift_buf(1100, 7);

	for (size_t off = 0; off < 16; off++)
		for (size_t len = 0; len <= 1024; len++)
			ck_assert_msg(mows_crc32(0, buf + off, len) == crc_bitwise(0, buf + off, len),
				      "offset %zu length %zu", off, len);
	free(buf);
}
END_TEST

START_TEST(test_incremental_equals_whole)
{
	size_t len = 3 * MIB + 17;
	unsigned char *buf = xorshift_buf(len, 99);
	uint32_t whole = mows_crc32(0, buf, len);

	srand(1);
	for (int round = 0; round < 50; round++) {
		uint32_t crc = 0;
		size_t off = 0;

		while (off < len) {
			size_t n = (size_t)rand() % (round < 25 ? 300 : 2 * MIB);
			if (n > len - off)
				n = len - off;
			crc = mows_crc32(crc, buf + off, n);
			off += n;
		}
		ck_assert_uint_eq(crc, whole);
	}
	free(buf);
}
END_TEST

static void check_split(const unsigned char *buf, size_t len, size_t split)
{
	uint32_t a = mows_crc32(0, buf, split);
	uint32_t b = mows_crc32(0, buf + split, len - split);

	ck_assert_msg(mows_crc32_combine(a, b, len - split) == mows_crc32(0, buf, len),
		      "length %zu split at %zu", len, split);
}

START_TEST(test_combine_edges)
{
	unsigned char *buf = xorshift_buf(4096, 5);

	for (size_t len = 0; len <= 70; len++)
		for (size_t split = 0; split <= len; split++)
			check_split(buf, len, split);
	/* Appending nothing leaves the CRC alone; a CRC of nothing is 0. */
	ck_assert_uint_eq(mows_crc32_combine(0xdeadbeefu, 0, 0), 0xdeadbeefu);
	ck_assert_uint_eq(mows_crc32_combine(0, mows_crc32(0, buf, 4096), 4096),
			  mows_crc32(0, buf, 4096));
	free(buf);
}
END_TEST

START_TEST(test_combine_random_splits)
{
	size_t max = 2 * MIB + 1;
	unsigned char *buf = xorshift_buf(max, 11);

	srand(2);
	for (int i = 0; i < 300; i++) {
		size_t len = i < 100 ? (size_t)rand() % 4097 : (size_t)rand() % (max + 1);
		check_split(buf, len, len ? (size_t)rand() % (len + 1) : 0);
	}
	free(buf);
}
END_TEST

/* As the daemon verifies a file: CRC each chunk alone, then fold the chunks in order. */
START_TEST(test_combine_4mib_chunks)
{
	const size_t chunk = 4 * MIB;
	size_t len = 4 * chunk + 12345; /* a short last chunk */
	unsigned char *buf = xorshift_buf(len, 0x12345678);
	uint32_t crc = 0;

	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		crc = mows_crc32_combine(crc, mows_crc32(0, buf + off, n), n);
	}
	ck_assert_uint_eq(crc, mows_crc32(0, buf, len));
	/* The first 5 MiB + 3 are the bytes of test_xorshift_large. */
	crc = mows_crc32_combine(mows_crc32(0, buf, chunk),
				 mows_crc32(0, buf + chunk, MIB + 3), MIB + 3);
	ck_assert_uint_eq(crc, 0xf9d7ce24u);
	free(buf);
}
END_TEST

/* Lengths beyond any buffer and beyond 32 bits: the combine length is 64-bit. */
START_TEST(test_combine_huge_zero_runs)
{
	unsigned char *zeros = calloc(1, MIB);
	uint32_t a = mows_crc32(0, "a", 1), zeros_64mib = 0;

	ck_assert_ptr_nonnull(zeros);
	for (int i = 0; i < 64; i++)
		zeros_64mib = mows_crc32_combine(zeros_64mib, mows_crc32(0, zeros, MIB), MIB);
	ck_assert_uint_eq(zeros_64mib, 0xb2eb30edu);
	ck_assert_uint_eq(mows_crc32_combine(a, zeros_64mib, 64ull * MIB), 0x146055f9u);
	/* "a" then 5 GiB of zeros, as 80 pieces of 64 MiB. */
	uint32_t crc = a;
	for (int i = 0; i < 80; i++)
		crc = mows_crc32_combine(crc, zeros_64mib, 64ull * MIB);
	ck_assert_uint_eq(crc, 0x22f75126u);
	/* The same with the 5 GiB folded first and appended in one step. */
	uint32_t zeros_5gib = 0;
	for (int i = 0; i < 80; i++)
		zeros_5gib = mows_crc32_combine(zeros_5gib, zeros_64mib, 64ull * MIB);
	ck_assert_uint_eq(mows_crc32_combine(a, zeros_5gib, 80ull * 64 * MIB), 0x22f75126u);
	free(zeros);
}
END_TEST

static Suite *crc_suite(void)
{
	Suite *s = suite_create("crc");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_known_answers);
	tcase_add_test(tc, test_zeros_1mib);
	tcase_add_test(tc, test_xorshift_large);
	tcase_add_test(tc, test_short_lengths_and_alignments);
	tcase_add_test(tc, test_incremental_equals_whole);
	tcase_add_test(tc, test_combine_edges);
	tcase_add_test(tc, test_combine_random_splits);
	tcase_add_test(tc, test_combine_4mib_chunks);
	tcase_add_test(tc, test_combine_huge_zero_runs);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(crc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
