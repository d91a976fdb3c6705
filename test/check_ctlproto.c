#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ctlproto.h"

static size_t u8(const char *s)
{
	return ctl_utf8_len((const unsigned char *)s, strlen(s));
}

START_TEST(utf8)
{
	ck_assert_uint_eq(u8("a"), 1);
	ck_assert_uint_eq(u8("\xc3\xa9"), 2);          /* é */
	ck_assert_uint_eq(u8("\xe2\x82\xac"), 3);      /* € */
	ck_assert_uint_eq(u8("\xf0\x9f\x98\x80"), 4);  /* 😀 */
	ck_assert_uint_eq(u8("\xc0\x80"), 0);          /* overlong NUL */
	ck_assert_uint_eq(u8("\xe0\x80\xaf"), 0);      /* overlong '/' */
	ck_assert_uint_eq(u8("\xed\xa0\x80"), 0);      /* a UTF-16 surrogate */
	ck_assert_uint_eq(u8("\xf4\x90\x80\x80"), 0);  /* past U+10FFFF */
	ck_assert_uint_eq(u8("\xe2\x82"), 0);          /* cut short */
	ck_assert_uint_eq(u8("\x80"), 0);
	ck_assert_uint_eq(u8("\xff"), 0);
}
END_TEST

START_TEST(escape_and_back)
{
	static const char *const names[] = {
		"plain", "a\nb", "t\tab", "back\\slash", "quote\"", "\xff\xfe", "\x1b[31m",
		"caf\xc3\xa9", "cr\r", "lit\\n", "\x7f", "\xed\xa0\x80", "",
	};
	static const char *const want[] = {
		"plain", "a\\nb", "t\\tab", "back\\\\slash", "quote\"", "\\xff\\xfe", "\\x1b[31m",
		"caf\xc3\xa9", "cr\\r", "lit\\\\n", "\\x7f", "\\xed\\xa0\\x80", "",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		char e[64];
		ck_assert_str_eq(ctl_escape(e, sizeof(e), names[i]), want[i]);
		ck_assert_int_eq(ctl_unescape(e), 0);
		ck_assert_str_eq(e, names[i]);
	}
}
END_TEST

START_TEST(escape_cut_whole)
{
	char e[6];
	ctl_escape(e, sizeof(e), "ab\xff\xff");  /* "ab\xff" is 6 bytes with its NUL: no room */
	ck_assert_str_eq(e, "ab");
	ctl_escape(e, 1, "abc");
	ck_assert_str_eq(e, "");
}
END_TEST

START_TEST(unescape_rejects)
{
	static const char *const bad[] = { "a\\", "\\q", "\\x", "\\x4", "\\xg0", "\\x00", "a\tb",
					   "a\nb" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char s[16];
		snprintf(s, sizeof(s), "%s", bad[i]);
		ck_assert_msg(ctl_unescape(s) == -EINVAL, "accepted '%s'", bad[i]);
	}
	char ok[] = "\\x41\\X";
	ck_assert_int_eq(ctl_unescape(ok), -EINVAL);
	char hex[] = "\\x4A\\x4a";
	ck_assert_int_eq(ctl_unescape(hex), 0);
	ck_assert_str_eq(hex, "JJ");
}
END_TEST

static char *json(const char *s, bool *exact)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	ck_assert_ptr_nonnull(fp);
	*exact = ctl_json_str(fp, s);
	fclose(fp);
	return out;
}

START_TEST(json_strings)
{
	bool exact;
	char *j = json("a\"b\\c\nd\te\x01\x7f" "caf\xc3\xa9", &exact);
	ck_assert_str_eq(j, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u007fcaf\xc3\xa9\"");
	ck_assert(exact);
	free(j);
	j = json("x\xffy\xc0\x80", &exact);
	ck_assert_str_eq(j, "\"x\\ufffdy\\ufffd\\ufffd\"");
	ck_assert(!exact);
	free(j);
}
END_TEST

static int parse(const char *text, struct ctl_request *r, const char **why)
{
	static char buf[256];
	size_t n = strlen(text);
	memcpy(buf, text, n);
	return ctl_request_parse(buf, n, r, why);
}

START_TEST(requests)
{
	static struct ctl_request r;
	const char *why;
	ck_assert_int_eq(parse("status json\n", &r, &why), 0);
	ck_assert_str_eq(r.cmd, "status");
	ck_assert(r.json);
	ck_assert_uint_eq(r.nargs, 0);
	ck_assert_int_eq(parse("prefetch text\t/m/a\\nb\t/m/c\\td\n", &r, &why), 0);
	ck_assert(!r.json);
	ck_assert_uint_eq(r.nargs, 2);
	ck_assert_str_eq(r.args[0], "/m/a\nb");
	ck_assert_str_eq(r.args[1], "/m/c\td");

	static const char *const bad[] = { "status json", "status\n", "status xml\n", " json\n",
					   "status json\nmore\n", "evict text\t\\q\n", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		why = NULL;
		ck_assert_msg(parse(bad[i], &r, &why) == -EINVAL, "accepted '%s'", bad[i]);
		ck_assert(why && *why);
	}
	char nul[] = "status json\0x\n";
	ck_assert_int_eq(ctl_request_parse(nul, sizeof(nul) - 1, &r, &why), -EINVAL);
}
END_TEST

START_TEST(request_round_trip)
{
	static struct ctl_request r;
	char *args[] = { "/m/new\nline", "/m/tab\there", "/m/\xff" }, *out = NULL;
	size_t len = 0;
	const char *why;
	FILE *fp = open_memstream(&out, &len);
	ck_assert_int_eq(ctl_request_write(fp, "verify", true, args, 3), 0);
	fclose(fp);
	ck_assert_int_eq(ctl_request_parse(out, len, &r, &why), 0);
	ck_assert_uint_eq(r.nargs, 3);
	for (unsigned i = 0; i < 3; i++)
		ck_assert_str_eq(r.args[i], args[i]);
	free(out);
}
END_TEST

START_TEST(too_many_args)
{
	static struct ctl_request r;
	size_t cap = 16 + 2 * (CTL_MAX_ARGS + 1);
	char *buf = malloc(cap), *p = buf;
	const char *why;
	p += sprintf(p, "evict text");
	for (unsigned i = 0; i <= CTL_MAX_ARGS; i++)
		p += sprintf(p, "\tx");
	*p++ = '\n';
	ck_assert_int_eq(ctl_request_parse(buf, (size_t)(p - buf), &r, &why), -E2BIG);
	free(buf);
}
END_TEST

START_TEST(replies)
{
	struct ctl_reply r;
	ck_assert_int_eq(ctl_reply_parse(". hello", &r), 0);
	ck_assert_int_eq(r.tag, CTL_OUT);
	ck_assert_str_eq(r.text, "hello");
	ck_assert_int_eq(ctl_reply_parse(".", &r), 0);
	ck_assert_str_eq(r.text, "");
	ck_assert_int_eq(ctl_reply_parse("! oops", &r), 0);
	ck_assert_int_eq(r.tag, CTL_ERR);
	ck_assert_int_eq(ctl_reply_parse("% 10 20 a\\nb c", &r), 0);
	ck_assert_int_eq(r.tag, CTL_PROGRESS);
	ck_assert_uint_eq(r.done, 10);
	ck_assert_uint_eq(r.total, 20);
	ck_assert_str_eq(r.name, "a\\nb c");
	ck_assert_int_eq(ctl_reply_parse("= 7", &r), 0);
	ck_assert_int_eq(r.status, 7);
	static const char *const bad[] = { "= 256", "= -1", "= 1x", "=", "= ", "x y", "", ".x",
					   "% 1", "% a 2 f", "% 1 2x", "% 99999999999999999999 1 f" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		ck_assert_msg(ctl_reply_parse(bad[i], &r) == -EINVAL, "accepted '%s'", bad[i]);
}
END_TEST

static Suite *ctlproto_suite(void)
{
	Suite *s = suite_create("ctlproto");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, utf8);
	tcase_add_test(tc, escape_and_back);
	tcase_add_test(tc, escape_cut_whole);
	tcase_add_test(tc, unescape_rejects);
	tcase_add_test(tc, json_strings);
	tcase_add_test(tc, requests);
	tcase_add_test(tc, request_round_trip);
	tcase_add_test(tc, too_many_args);
	tcase_add_test(tc, replies);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ctlproto_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
