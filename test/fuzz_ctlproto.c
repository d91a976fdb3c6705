/*
 * libFuzzer target for common/ctlproto.h, the control protocol: the request and reply
 * parsers must never read outside the input, whatever they accept must survive a re-encode
 * unchanged, escaping must give a line-safe UTF-8 string that unescapes to the input, and
 * a JSON string must hold no raw control byte and no byte that is not UTF-8.
 * Build and run with test/fuzz.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/* Whether @s (@n bytes) is UTF-8 with no control byte. */
static bool clean_utf8(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	while (n) {
		size_t k = ctl_utf8_len(p, n);
		if (k == 0 || *p < 0x20 || *p == 0x7f)
			return false;
		p += k, n -= k;
	}
	return true;
}

static void fuzz_request(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1), *again = NULL;
	struct ctl_request *r = malloc(sizeof(*r)), *r2 = malloc(sizeof(*r2));
	const char *err;
	size_t alen = 0;
	CHECK(buf && r && r2);
	memcpy(buf, data, size);
	if (ctl_request_parse(buf, size, r, &err) == 0) {
		FILE *out = open_memstream(&again, &alen);
		CHECK(out && ctl_request_write(out, r->cmd, r->json, r->args, r->nargs) == 0);
		fclose(out);
		CHECK(ctl_request_parse(again, alen, r2, &err) == 0);
		CHECK(!strcmp(r->cmd, r2->cmd) && r->json == r2->json && r->nargs == r2->nargs);
		for (unsigned i = 0; i < r->nargs; i++)
			CHECK(!strcmp(r->args[i], r2->args[i]));
	} else {
		CHECK(err && *err);
	}
	free(again);
	free(buf);
	free(r);
	free(r2);
}

static void fuzz_reply(const char *line)
{
	struct ctl_reply r;
	if (ctl_reply_parse(line, &r))
		return;
	CHECK(r.tag == CTL_OUT || r.tag == CTL_ERR || r.tag == CTL_PROGRESS || r.tag == CTL_END);
	CHECK(r.text && r.name && r.status >= 0 && r.status <= 255);
}

static void fuzz_escape(const char *s)
{
	size_t n = strlen(s), cap = CTL_ESC_SIZE(n);
	char *e = malloc(cap), *small = malloc(8);
	CHECK(e && small);
	ctl_escape(e, cap, s);
	CHECK(clean_utf8(e, strlen(e)));
	CHECK(ctl_unescape(e) == 0 && !strcmp(e, s));
	ctl_escape(small, 8, s); /* a cut escape stays whole and parses */
	CHECK(strlen(small) < 8 && ctl_unescape(small) == 0);
	free(e);
	free(small);
}

static void fuzz_unescape(const char *s)
{
	char *u = strdup(s);
	CHECK(u);
	if (ctl_unescape(u) == 0) {
		size_t cap = CTL_ESC_SIZE(strlen(u));
		char *e = malloc(cap);
		CHECK(e);
		ctl_escape(e, cap, u);
		CHECK(ctl_unescape(e) == 0 && !strcmp(e, u));
		free(e);
	}
	free(u);
}

static void fuzz_json(const char *s)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	CHECK(fp);
	bool exact = ctl_json_str(fp, s);
	fclose(fp);
	CHECK(len >= 2 && out[0] == '"' && out[len - 1] == '"' && clean_utf8(out, len));
	bool lossy = false;
	for (size_t i = 1; i + 1 < len; i++) {
		if (out[i] == '\\') {
			CHECK(strchr("\"\\ntu", out[i + 1]));
			lossy |= !strncmp(out + i, "\\ufffd", 6);
			i++;
		} else {
			CHECK(out[i] != '"');
		}
	}
	CHECK(exact || lossy);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_request(data, size);
	char *s = malloc(size + 1);
	CHECK(s);
	memcpy(s, data, size);
	s[size] = '\0';
	fuzz_reply(s);
	fuzz_escape(s);
	fuzz_unescape(s);
	fuzz_json(s);
	free(s);
	return 0;
}
