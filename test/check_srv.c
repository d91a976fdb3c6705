/*
 * net/srv.c's parser on a canned DNS answer (no network): the SRV targets and ports that
 * become members, the records it skips, and every way a message can be cut or broken.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/srv.h"

/*
 * An answer for _mows._tcp.svc.cluster.local SRV, built by hand:
 *   answer 1  SRV 10 50 7070 mows-0.svc.cluster.local  (target compressed into the question)
 *   answer 2  A 198.18.0.1                              (not SRV: skipped)
 *   answer 3  SRV 20 5 7071 mows-1.svc.cluster.local
 *   answer 4  SRV 0 0 0 .                               ("no service here": skipped)
 *   additional  A 198.18.0.2 for mows-0...              (not an answer: skipped)
 */
static const uint8_t answer[] = {
	0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01,
	0x05, 0x5f, 0x6d, 0x6f, 0x77, 0x73, 0x04, 0x5f, 0x74, 0x63, 0x70, 0x03,
	0x73, 0x76, 0x63, 0x07, 0x63, 0x6c, 0x75, 0x73, 0x74, 0x65, 0x72, 0x05,
	0x6c, 0x6f, 0x63, 0x61, 0x6c, 0x00, 0x00, 0x21, 0x00, 0x01, 0xc0, 0x0c,
	0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1e, 0x00, 0x0f, 0x00, 0x0a,
	0x00, 0x32, 0x1b, 0x9e, 0x06, 0x6d, 0x6f, 0x77, 0x73, 0x2d, 0x30, 0xc0,
	0x17, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1e, 0x00,
	0x04, 0xc6, 0x12, 0x00, 0x01, 0xc0, 0x0c, 0x00, 0x21, 0x00, 0x01, 0x00,
	0x00, 0x00, 0x1e, 0x00, 0x0f, 0x00, 0x14, 0x00, 0x05, 0x1b, 0x9f, 0x06,
	0x6d, 0x6f, 0x77, 0x73, 0x2d, 0x31, 0xc0, 0x17, 0xc0, 0x0c, 0x00, 0x21,
	0x00, 0x01, 0x00, 0x00, 0x00, 0x1e, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0xc0, 0x40, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00,
	0x1e, 0x00, 0x04, 0xc6, 0x12, 0x00, 0x02,
};

/* Byte offsets into answer[]. */
#define SRV1_TYPE	48
#define SRV1_CLASS	50
#define SRV1_RDLEN	57
#define SRV1_PTR	71	/* the compression pointer ending mows-0's name */
#define SRV3_TYPE	91
#define SRV4_TYPE	118

START_TEST(test_targets)
{
	struct srv_target t[8];
	unsigned n = 99;
	ck_assert_int_eq(srv_parse(answer, sizeof(answer), t, 8, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(t[0].target, "mows-0.svc.cluster.local");
	ck_assert_uint_eq(t[0].port, 7070);
	ck_assert_uint_eq(t[0].priority, 10);
	ck_assert_uint_eq(t[0].weight, 50);
	ck_assert_str_eq(t[1].target, "mows-1.svc.cluster.local");
	ck_assert_uint_eq(t[1].port, 7071);
	ck_assert_uint_eq(t[1].priority, 20);
	ck_assert_uint_eq(t[1].weight, 5);
}
END_TEST

START_TEST(test_max)
{
	struct srv_target t[1];
	unsigned n = 0;
	ck_assert_int_eq(srv_parse(answer, sizeof(answer), t, 1, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(t[0].target, "mows-0.svc.cluster.local");
}
END_TEST

/* Every shorter message is refused, and nothing is read past the length given (ASan). */
START_TEST(test_truncated)
{
	struct srv_target t[8];
	unsigned n;
	for (size_t len = 0; len < sizeof(answer); len++) {
		uint8_t *copy = malloc(len ? len : 1);
		memcpy(copy, answer, len);
		ck_assert_msg(srv_parse(copy, len, t, 8, &n) == -EBADMSG, "length %zu parsed", len);
		ck_assert_uint_eq(n, 0);
		free(copy);
	}
}
END_TEST

static int parse_patched(size_t off, uint8_t v0, uint8_t v1, unsigned *n)
{
	uint8_t m[sizeof(answer)];
	struct srv_target t[8];
	memcpy(m, answer, sizeof(m));
	m[off] = v0;
	m[off + 1] = v1;
	return srv_parse(m, sizeof(m), t, 8, n);
}

START_TEST(test_broken)
{
	unsigned n;
	/* A compression pointer to itself, and one past the end. */
	ck_assert_int_eq(parse_patched(SRV1_PTR, 0xc0, SRV1_PTR, &n), -EBADMSG);
	ck_assert_int_eq(parse_patched(SRV1_PTR, 0xc0, 0xff, &n), -EBADMSG);
	/* A SRV record too short for its fixed part and a target. */
	ck_assert_int_eq(parse_patched(SRV1_RDLEN - 1, 0x00, 0x05, &n), -EBADMSG);
	/* More answers announced than there are. */
	ck_assert_int_eq(parse_patched(6, 0x00, 0x05, &n), -EBADMSG);
}
END_TEST

START_TEST(test_skipped)
{
	uint8_t m[sizeof(answer)];
	struct srv_target t[8];
	unsigned n;
	/* Class CH instead of IN: that record is skipped, the other stays. */
	ck_assert_int_eq(parse_patched(SRV1_CLASS, 0x00, 0x03, &n), 0);
	ck_assert_uint_eq(n, 1);
	/* No SRV record at all: -ENOENT. */
	memcpy(m, answer, sizeof(m));
	m[SRV1_TYPE + 1] = m[SRV3_TYPE + 1] = m[SRV4_TYPE + 1] = 0x10; /* TXT */
	ck_assert_int_eq(srv_parse(m, sizeof(m), t, 8, &n), -ENOENT);
	ck_assert_uint_eq(n, 0);
	/* Port 0 is "no service" too. */
	ck_assert_int_eq(parse_patched(62, 0x00, 0x00, &n), 0);
	ck_assert_uint_eq(n, 1);
}
END_TEST

static Suite *srv_suite(void)
{
	Suite *s = suite_create("srv");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, test_targets);
	tcase_add_test(tc, test_max);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_broken);
	tcase_add_test(tc, test_skipped);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(srv_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
