/* The control protocol's pure parts; see ctlproto.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/ctlproto.h"

size_t ctl_utf8_len(const unsigned char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	size_t len;
	uint32_t cp, min;
	if ((p[0] & 0xe0) == 0xc0)
		len = 2, cp = p[0] & 0x1f, min = 0x80;
	else if ((p[0] & 0xf0) == 0xe0)
		len = 3, cp = p[0] & 0x0f, min = 0x800;
	else if ((p[0] & 0xf8) == 0xf0)
		len = 4, cp = p[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* overlong forms, UTF-16 surrogates and code points past Unicode are not UTF-8 */
	if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/* The escape for the byte @c (when it needs one) into @e; returns its length, 0 if none. */
static size_t escape_byte(unsigned char c, char e[5])
{
	static const char hex[] = "0123456789abcdef";
	switch (c) {
	case '\\': memcpy(e, "\\\\", 2); return 2;
	case '\t': memcpy(e, "\\t", 2); return 2;
	case '\n': memcpy(e, "\\n", 2); return 2;
	case '\r': memcpy(e, "\\r", 2); return 2;
	}
	e[0] = '\\', e[1] = 'x', e[2] = hex[c >> 4], e[3] = hex[c & 15];
	return 4;
}

const char *ctl_escape(char *dst, size_t cap, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), o = 0;
	if (cap == 0)
		return dst;
	while (n) {
		char e[5];
		size_t k = p[0] >= 0x20 && p[0] != 0x7f && p[0] != '\\' ? ctl_utf8_len(p, n) : 0;
		size_t elen = k ? k : escape_byte(p[0], e);
		if (o + elen >= cap)
			break;
		memcpy(dst + o, k ? (const char *)p : e, elen);
		o += elen;
		k = k ? k : 1;
		p += k, n -= k;
	}
	dst[o] = '\0';
	return dst;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int ctl_unescape(char *s)
{
	char *o = s;
	for (const char *p = s; *p; p++) {
		if (*p == '\t' || *p == '\n')
			return -EINVAL;
		if (*p != '\\') {
			*o++ = *p;
			continue;
		}
		switch (*++p) {
		case '\\': *o++ = '\\'; break;
		case 't': *o++ = '\t'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 'x': {
			int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
			if (lo < 0 || (hi | lo) == 0)
				return -EINVAL;
			*o++ = (char)(hi << 4 | lo);
			p += 2;
			break;
		}
		default: /* includes the NUL after a trailing backslash */
			return -EINVAL;
		}
	}
	*o = '\0';
	return 0;
}

bool ctl_json_str(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	bool exact = true;
	fputc('"', out);
	while (n) {
		size_t k = 1;
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", out);
		else if (*p == '\t')
			fputs("\\t", out);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\u%04x", *p);
		else if ((k = ctl_utf8_len(p, n)) > 0)
			fwrite(p, 1, k, out);
		else {
			fputs("\\ufffd", out);
			exact = false;
			k = 1;
		}
		p += k, n -= k;
	}
	fputc('"', out);
	return exact;
}

int ctl_request_parse(char *buf, size_t len, struct ctl_request *req, const char **err)
{
	memset(req, 0, sizeof(*req));
	*err = "";
	if (len == 0 || buf[len - 1] != '\n' || memchr(buf, '\n', len) != buf + len - 1 ||
	    memchr(buf, '\0', len)) {
		*err = "a request is one line ending in a newline, without NUL bytes";
		return -EINVAL;
	}
	buf[len - 1] = '\0';
	char *save = NULL, *w = strtok_r(buf, "\t", &save);
	char *fmt = w ? strchr(w, ' ') : NULL;
	if (!fmt || !*w || fmt == w) {
		*err = "a request starts with 'COMMAND FORMAT'";
		return -EINVAL;
	}
	*fmt++ = '\0';
	if (strcmp(fmt, "json") && strcmp(fmt, "text")) {
		*err = "the format is 'json' or 'text'";
		return -EINVAL;
	}
	req->cmd = w;
	req->json = fmt[0] == 'j';
	while ((w = strtok_r(NULL, "\t", &save))) {
		if (req->nargs == CTL_MAX_ARGS) {
			*err = "too many arguments";
			return -E2BIG;
		}
		if (ctl_unescape(w)) {
			*err = "an argument holds a malformed escape";
			return -EINVAL;
		}
		req->args[req->nargs++] = w;
	}
	return 0;
}

int ctl_request_write(FILE *out, const char *cmd, bool json, char *const *args, unsigned n)
{
	fprintf(out, "%s %s", cmd, json ? "json" : "text");
	for (unsigned i = 0; i < n; i++) {
		size_t cap = CTL_ESC_SIZE(strlen(args[i]));
		char *e = malloc(cap);
		if (!e)
			return -ENOMEM;
		fprintf(out, "\t%s", ctl_escape(e, cap, args[i]));
		free(e);
	}
	fputc('\n', out);
	return fflush(out) == 0 && !ferror(out) ? 0 : -EIO;
}

/* Parses a decimal u64 at *@p (digits only) and moves *@p past it. */
static bool parse_u64(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;
	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (x > (UINT64_MAX - 9) / 10)
			return false;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	*v = x, *p = s;
	return true;
}

int ctl_reply_parse(const char *line, struct ctl_reply *r)
{
	memset(r, 0, sizeof(*r));
	r->text = "";
	r->name = "";
	char tag = line[0];
	if (tag != CTL_OUT && tag != CTL_PROGRESS && tag != CTL_ERR && tag != CTL_END)
		return -EINVAL;
	r->tag = (enum ctl_tag)tag;
	if (line[1] != ' ' && !(line[1] == '\0' && (tag == CTL_OUT || tag == CTL_ERR)))
		return -EINVAL;
	const char *p = line[1] ? line + 2 : line + 1;
	uint64_t v;
	switch (r->tag) {
	case CTL_OUT:
	case CTL_ERR:
		r->text = p;
		return 0;
	case CTL_PROGRESS:
		if (!parse_u64(&p, &r->done) || *p++ != ' ' || !parse_u64(&p, &r->total) ||
		    (*p && *p != ' '))
			return -EINVAL;
		r->name = *p ? p + 1 : p;
		return 0;
	case CTL_END:
		if (!parse_u64(&p, &v) || *p || v > 255)
			return -EINVAL;
		r->status = (int)v;
		return 0;
	}
	return -EINVAL;
}
