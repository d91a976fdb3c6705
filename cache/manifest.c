#include "cache/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"

/* A million entries take about 100 MB; anything much larger is not a manifest. */
#define MANIFEST_MAX_BYTES (1ul << 30)
/* Bytes of a bad token quoted in a warning, so that one line of garbage stays one line. */
#define SHOW_MAX 200
#define MIN_SLOTS 16

struct slot {
	const char *path; /* NULL when empty; points into manifest->text */
	uint32_t hash;
	uint32_t crc;
	unsigned line;
};

struct cache_manifest {
	char *text;         /* the manifest with every token NUL-terminated in place */
	struct slot *slots; /* open addressing, linear probing, at most half full */
	size_t mask;        /* number of slots - 1; the number is a power of two */
	size_t count;
};

struct token {
	char *s; /* NUL-terminated, but may hold NUL bytes of its own before s[len] */
	size_t len;
	unsigned line;
};

struct lexer {
	char *p, *end;
	unsigned line;
	bool line_start; /* nothing but whitespace since the last newline */
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void skip_space(struct lexer *lx)
{
	for (; lx->p < lx->end; lx->p++) {
		if (*lx->p == '#' && lx->line_start) {
			/* A comment runs up to its newline, which is then counted below. */
			char *nl = memchr(lx->p, '\n', lx->end - lx->p);
			if (!nl) {
				lx->p = lx->end;
				return;
			}
			lx->p = nl;
		}
		if (!is_space(*lx->p))
			return;
		if (*lx->p == '\n') {
			lx->line++;
			lx->line_start = true;
		}
	}
}

/* Cuts the next token out of the text. Returns false at the end. */
static bool next_token(struct lexer *lx, struct token *t)
{
	skip_space(lx);
	if (lx->p >= lx->end)
		return false;
	t->s = lx->p;
	t->line = lx->line;
	while (lx->p < lx->end && !is_space(*lx->p))
		lx->p++;
	t->len = lx->p - t->s;
	lx->line_start = false;
	if (lx->p < lx->end) {
		/* The terminator overwrites the separator, so account for it first. */
		if (*lx->p == '\n') {
			lx->line++;
			lx->line_start = true;
		}
		*lx->p++ = '\0';
	}
	return true;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool parse_crc(const struct token *t, uint32_t *crc)
{
	uint32_t v = 0;

	if (t->len != 8)
		return false;
	for (size_t i = 0; i < 8; i++) {
		int d = hex_value(t->s[i]);
		if (d < 0)
			return false;
		v = v << 4 | (uint32_t)d;
	}
	*crc = v;
	return true;
}

/* Returns why @p cannot be a manifest path, or NULL when it can. */
static const char *path_problem(const char *p)
{
	const char *problem = NULL;
	long depth = 0;

	if (*p == '\0')
		return "empty path";
	if (*p == '/')
		return "path leads outside the backing root";
	if (strlen(p) >= PATH_MAX)
		return "path too long";
	for (const char *c = p; c; ) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);

		if (n == 2 && c[0] == '.' && c[1] == '.') {
			if (--depth < 0)
				return "path leads outside the backing root";
			problem = problem ? problem : "path has a '..' component";
		} else if (n == 1 && c[0] == '.') {
			problem = problem ? problem : "path has a '.' component";
		} else if (n == 0) {
			problem = problem ? problem : "path has an empty component";
		} else {
			depth++;
		}
		c = slash ? slash + 1 : NULL;
	}
	return problem;
}

bool cache_manifest_path_ok(const char *relpath)
{
	return path_problem(relpath) == NULL;
}

static uint32_t hash_path(const char *p)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h;
}

static struct slot *find_slot(struct slot *slots, size_t mask, const char *path, uint32_t hash)
{
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		struct slot *s = &slots[i];
		if (!s->path || (s->hash == hash && strcmp(s->path, path) == 0))
			return s;
	}
}

static int grow(struct cache_manifest *m)
{
	size_t nslots = (m->mask + 1) * 2;
	struct slot *slots = calloc(nslots, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i <= m->mask; i++)
		if (m->slots[i].path)
			*find_slot(slots, nslots - 1, m->slots[i].path, m->slots[i].hash) = m->slots[i];
	free(m->slots);
	m->slots = slots;
	m->mask = nslots - 1;
	return 0;
}

static int insert(struct cache_manifest *m, const char *name, const char *path, uint32_t crc,
		  unsigned line)
{
	uint32_t hash = hash_path(path);
	struct slot *s;

	if ((m->count + 1) * 2 > m->mask + 1) {
		int rc = grow(m);
		if (rc < 0)
			return rc;
	}
	s = find_slot(m->slots, m->mask, path, hash);
	if (s->path) {
		log_warn("%s:%u: '%s' listed again (first on line %u): %08x replaces %08x", name,
			 line, path, s->line, crc, s->crc);
	} else {
		m->count++;
	}
	*s = (struct slot){ .path = path, .hash = hash, .crc = crc, .line = line };
	return 0;
}

/* Adds one "crc path" pair. Returns 0 when added, 1 when skipped, or -ENOMEM. */
static int add_pair(struct cache_manifest *m, const char *name, const struct token *crc_tok,
		    const struct token *path_tok)
{
	const char *path = path_tok->s;
	const char *problem = NULL;
	uint32_t crc;

	if (!parse_crc(crc_tok, &crc))
		problem = "expected 8 hex digits";
	else if (strlen(path) != path_tok->len)
		problem = "path contains a NUL byte";
	if (!problem) {
		if (path[0] == '.' && path[1] == '/')
			path += 2;
		problem = path_problem(path);
	}
	if (problem) {
		log_warn("%s:%u: skipping '%.*s %.*s': %s", name, crc_tok->line, SHOW_MAX,
			 crc_tok->s, SHOW_MAX, path_tok->s, problem);
		return 1;
	}
	return insert(m, name, path, crc, crc_tok->line);
}

static int parse_tokens(struct cache_manifest *m, size_t len, const char *name,
			unsigned *nskipped)
{
	struct lexer lx = { .p = m->text, .end = m->text + len, .line = 1, .line_start = true };
	struct token crc_tok, path_tok;

	while (next_token(&lx, &crc_tok)) {
		int rc;

		if (!next_token(&lx, &path_tok)) {
			log_warn("%s:%u: skipping '%.*s': expected a path after it", name,
				 crc_tok.line, SHOW_MAX, crc_tok.s);
			(*nskipped)++;
			break;
		}
		rc = add_pair(m, name, &crc_tok, &path_tok);
		if (rc < 0)
			return rc;
		*nskipped += rc;
	}
	return 0;
}

/* Parses @text (@len bytes followed by a NUL), taking ownership of it whatever happens. */
static struct cache_manifest *parse_owned(char *text, size_t len, const char *name,
					  unsigned *nskipped)
{
	struct cache_manifest *m = calloc(1, sizeof(*m));
	unsigned skipped = 0;
	int rc;

	if (!m)
		goto out_free_text;
	m->text = text;
	m->mask = MIN_SLOTS - 1;
	m->slots = calloc(MIN_SLOTS, sizeof(*m->slots));
	if (!m->slots)
		goto out_free_manifest;
	rc = parse_tokens(m, len, name, &skipped);
	if (rc < 0)
		goto out_free_manifest;
	if (nskipped)
		*nskipped = skipped;
	return m;

out_free_manifest:
	cache_manifest_free(m);
	errno = ENOMEM;
	return NULL;
out_free_text:
	free(text);
	errno = ENOMEM;
	return NULL;
}

struct cache_manifest *cache_manifest_parse(const char *text, size_t len, const char *name,
					    unsigned *nskipped)
{
	char *copy = malloc(len + 1);

	if (!copy)
		return NULL;
	if (len)
		memcpy(copy, text, len);
	copy[len] = '\0';
	return parse_owned(copy, len, name, nskipped);
}

static int open_beneath(int dirfd, const char *path)
{
	/* O_NONBLOCK: a FIFO in place of the manifest must not hang the caller in open. */
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));

	return fd < 0 ? -errno : (int)fd;
}

/* Reads all of @fd into a new NUL-terminated buffer. Returns 0 or -errno. */
static int read_whole(int fd, char **out, size_t *outlen)
{
	size_t len = 0, cap;
	struct stat st;
	char *buf;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((uint64_t)st.st_size >= MANIFEST_MAX_BYTES)
		return -EFBIG;
	/* +2: room for the NUL and one byte to notice a file that grew since fstat. */
	cap = (size_t)st.st_size + 2;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n;

		if (len + 1 == cap) {
			char *bigger = cap < MANIFEST_MAX_BYTES ? realloc(buf, cap * 2) : NULL;
			if (!bigger) {
				free(buf);
				return cap < MANIFEST_MAX_BYTES ? -ENOMEM : -EFBIG;
			}
			buf = bigger;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;
			free(buf);
			return err;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}

int cache_manifest_read(int dirfd, const char *path, char **text, size_t *len)
{
	int fd = open_beneath(dirfd, path);
	int rc;

	if (fd < 0)
		return fd;
	rc = read_whole(fd, text, len);
	close(fd);
	return rc;
}

struct cache_manifest *cache_manifest_load(int dirfd, const char *path)
{
	size_t len = 0;
	char *text = NULL;
	int rc = cache_manifest_read(dirfd, path, &text, &len);

	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	return parse_owned(text, len, path, NULL);
}

void cache_manifest_free(struct cache_manifest *m)
{
	if (!m)
		return;
	free(m->slots);
	free(m->text);
	free(m);
}

bool cache_manifest_lookup(const struct cache_manifest *m, const char *relpath, uint32_t *crc)
{
	const struct slot *s = find_slot(m->slots, m->mask, relpath, hash_path(relpath));

	if (!s->path)
		return false;
	*crc = s->crc;
	return true;
}

size_t cache_manifest_count(const struct cache_manifest *m)
{
	return m->count;
}
