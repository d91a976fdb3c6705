/*
 * The control protocol between mowsctl and mows-fuse, as pure functions (no FUSE, no
 * sockets) so that both ends share one definition and a fuzzer can drive it.
 *
 * Request, one line:  "COMMAND FORMAT\tARG\tARG...\n"   (FORMAT is "json" or "text")
 * Reply, lines:       ". TEXT"  stdout,  "% DONE TOTAL NAME"  progress,
 *                     "! TEXT"  stderr,  "= N"  the end, N the client's exit status.
 *
 * Names (paths, node ids) never go on the wire raw. In text, and in request arguments, a
 * name is escaped with ctl_escape(): backslash, tab, newline, carriage return, other control
 * bytes and bytes that are not valid UTF-8 become "\\", "\t", "\n", "\r" and "\xHH"; the
 * rest (printable ASCII and well-formed UTF-8) stays. An escaped name holds no tab and no
 * newline, so every line and every field parses, and ctl_unescape() gives the bytes back.
 * In JSON (RFC 8259) a name is written with ctl_json_str(), which escapes '"', '\\' and
 * control bytes and, since JSON text must be UTF-8, writes U+FFFD for each byte that is not
 * valid UTF-8 (then returns false, so the caller can add the exact escaped form too).
 *
 * All functions are thread-safe (no state).
 */
#ifndef MOWS_COMMON_CTLPROTO_H
#define MOWS_COMMON_CTLPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The largest escaped form of a name of @n bytes, with its NUL. */
#define CTL_ESC_SIZE(n) (4 * (n) + 1)
/* Room for any escaped path (PATH_MAX is 4096 on Linux). */
#define CTL_ESC_MAX CTL_ESC_SIZE(4096)

#define CTL_MAX_ARGS 1024

/* Length of the well-formed UTF-8 sequence at @p (at most @n bytes), or 0 if none. */
size_t ctl_utf8_len(const unsigned char *p, size_t n);

/*
 * Writes the escaped form of the NUL-terminated @s into @dst (@cap bytes, always
 * NUL-terminated when @cap > 0; a name that does not fit is cut at a whole escape).
 * Returns @dst, so it can be an argument of printf.
 */
const char *ctl_escape(char *dst, size_t cap, const char *s);

/*
 * Undoes ctl_escape() in place. Returns 0, or -EINVAL for a malformed escape, a raw tab or
 * newline, or an escape that decodes to NUL (a name never holds one).
 */
int ctl_unescape(char *s);

/* Writes @s as a JSON string with its quotes. Returns false when a byte was not UTF-8. */
bool ctl_json_str(FILE *out, const char *s);

struct ctl_request {
	const char *cmd;             /* points into the parsed buffer */
	bool json;
	unsigned nargs;
	char *args[CTL_MAX_ARGS];    /* unescaped, pointing into the parsed buffer */
};

/*
 * Parses one request: @buf holds @len bytes, the last of which must be its only '\n' (it
 * becomes the NUL that ends the last word; @buf is split and unescaped in place). Returns 0,
 * or -EINVAL for anything that is not one request line of the form above, -E2BIG for more
 * than CTL_MAX_ARGS arguments; then *@err says what is wrong.
 */
int ctl_request_parse(char *buf, size_t len, struct ctl_request *req, const char **err);

/* Writes a request line for @cmd and @args (escaped) to @out. Returns 0 or -errno. */
int ctl_request_write(FILE *out, const char *cmd, bool json, char *const *args, unsigned n);

enum ctl_tag { CTL_OUT = '.', CTL_PROGRESS = '%', CTL_ERR = '!', CTL_END = '=' };

struct ctl_reply {
	enum ctl_tag tag;
	const char *text;            /* CTL_OUT, CTL_ERR: the rest of the line ("" if none) */
	uint64_t done, total;        /* CTL_PROGRESS */
	const char *name;            /* CTL_PROGRESS: the escaped name, as sent */
	int status;                  /* CTL_END: 0..255 */
};

/*
 * Parses one reply line @line (NUL-terminated, without its newline). Returns 0 or -EINVAL
 * for a line that is not one of the four forms (a client must then stop and fail, never
 * guess).
 */
int ctl_reply_parse(const char *line, struct ctl_reply *r);

#endif
