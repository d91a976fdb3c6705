#include "cache/chunkmap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cache/manifest.h"
#include "common/crc.h"
#include "common/log.h"

#define SHOW_MAX 120
#define MIN_SLOTS 16

struct entry {
	char *path;        /* own copy */
	uint64_t size;
	size_t first;      /* index of its first CRC in map->crcs */
	uint32_t hash;
	unsigned line;
};

struct cache_chunkmap {
	uint64_t file_chunk, chunk; /* as written; as handed out */
	struct entry *entries;      /* entries[0] unused: slot value 0 means empty */
	size_t nentries, cap;
	uint32_t *slots;            /* open addressing into entries, at most half full */
	size_t mask;
	size_t count;
	uint32_t *crcs;
	size_t ncrcs, crccap;
};

/* One line being parsed: its fields, cut in place. */
struct fields {
	char *v[4];         /* size, path, first CRC, rest */
	unsigned line;
	const char *name;
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static uint32_t hash_path(const char *p)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h;
}

static uint32_t *find_slot(const struct cache_chunkmap *m, uint32_t *slots, size_t mask,
			   const char *path, uint32_t hash)
{
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		const struct entry *e = &m->entries[slots[i]];
		if (!slots[i] || (e->hash == hash && strcmp(e->path, path) == 0))
			return &slots[i];
	}
}

static int grow_slots(struct cache_chunkmap *m)
{
	size_t n = m->slots ? (m->mask + 1) * 2 : MIN_SLOTS;
	uint32_t *slots = calloc(n, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; m->slots && i <= m->mask; i++)
		if (m->slots[i]) {
			const struct entry *e = &m->entries[m->slots[i]];
			*find_slot(m, slots, n - 1, e->path, e->hash) = m->slots[i];
		}
	free(m->slots);
	m->slots = slots;
	m->mask = n - 1;
	return 0;
}

static int reserve(void **v, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	void *bigger = realloc(*v, n * elem);
	if (!bigger)
		return -ENOMEM;
	*v = bigger;
	*cap = n;
	return 0;
}

static int hex8(const char *s, size_t len, uint32_t *out)
{
	uint32_t v = 0;
	if (len != 8)
		return -1;
	for (size_t i = 0; i < 8; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
			c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return 0;
}

/* A decimal without sign, leading zeros (but "0") or overflow past 2^63. */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s || (s[0] == '0' && s[1]))
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_C(1) << 63) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return v <= (UINT64_C(1) << 63);
}

/* Cuts the next field of @p (at *@p) and returns it, or NULL at the end of the line. */
static char *next_field(char **p)
{
	char *s = *p;
	while (is_blank(*s))
		s++;
	if (!*s)
		return NULL;
	char *e = s;
	while (*e && !is_blank(*e))
		e++;
	*p = *e ? e + 1 : e;
	*e = '\0';
	return s;
}

static int parse_header(struct cache_chunkmap *m, char *line, const char *name, unsigned lineno,
			char *err, size_t errlen)
{
	char *p = line;
	char *magic = next_field(&p), *ver = next_field(&p), *size = next_field(&p);
	uint64_t v = 0, cs = 0;
	if (!magic || strcmp(magic, CHUNKMAP_MAGIC) != 0) {
		snprintf(err, errlen, "%s:%u: expected the header '" CHUNKMAP_MAGIC " %d "
			 "CHUNK_SIZE'; this is not a chunk sidecar (write one with mows-crc32 "
			 "--chunks)", name, lineno, CHUNKMAP_VERSION);
		return -EINVAL;
	}
	if (!ver || !parse_u64(ver, &v) || v != CHUNKMAP_VERSION) {
		snprintf(err, errlen, "%s:%u: format version '%.20s': this mows reads version %d; "
			 "write the sidecar again with this mows-crc32 --chunks", name, lineno,
			 ver ? ver : "", CHUNKMAP_VERSION);
		return -EINVAL;
	}
	if (!size || !parse_u64(size, &cs) || cs < CHUNKMAP_MIN_CHUNK || cs > CHUNKMAP_MAX_CHUNK ||
	    (cs & (cs - 1)) || next_field(&p)) {
		snprintf(err, errlen, "%s:%u: chunk size '%.20s': expected a power of two from "
			 "4096 to 1073741824 bytes, and nothing after it", name, lineno,
			 size ? size : "");
		return -EINVAL;
	}
	m->file_chunk = cs;
	return 0;
}

static int add_entry(struct cache_chunkmap *m, char *path, uint64_t size, size_t first,
		     unsigned line, const char *name)
{
	if ((m->count + 1) * 2 > (m->slots ? m->mask + 1 : 0) && grow_slots(m) < 0)
		return -ENOMEM;
	if (reserve((void **)&m->entries, &m->cap, m->nentries + 1, sizeof(*m->entries)) < 0)
		return -ENOMEM;
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	uint32_t hash = hash_path(copy);
	uint32_t *slot = find_slot(m, m->slots, m->mask, copy, hash);
	if (*slot)
		log_warn("%s:%u: '%s' listed again (first on line %u); this line replaces it", name,
			 line, copy, m->entries[*slot].line);
	else
		m->count++;
	m->entries[m->nentries] = (struct entry){ .path = copy, .size = size, .first = first,
						  .hash = hash, .line = line };
	*slot = (uint32_t)m->nentries++;
	return 0;
}

/* Parses one file line. Returns 0 when added, 1 when skipped (warned), or -ENOMEM. */
static int parse_entry(struct cache_chunkmap *m, char *line, const char *name, unsigned lineno)
{
	char *p = line, *size_s = next_field(&p), *path = next_field(&p);
	const char *problem = NULL;
	uint64_t size = 0, want = 0, got = 0;
	size_t first = m->ncrcs;
	if (!path)
		problem = "expected 'SIZE RELPATH CRC...'";
	else if (!parse_u64(size_s, &size))
		problem = "SIZE is not a decimal byte count";
	if (!problem) {
		if (path[0] == '.' && path[1] == '/')
			path += 2;
		if (!cache_manifest_path_ok(path))
			problem = "RELPATH is not a path relative to the backing root";
	}
	if (!problem)
		want = (size + m->file_chunk - 1) / m->file_chunk;
	for (char *c; !problem && (c = next_field(&p)); got++) {
		if (reserve((void **)&m->crcs, &m->crccap, m->ncrcs + 1, sizeof(*m->crcs)) < 0)
			return -ENOMEM;
		if (hex8(c, strlen(c), &m->crcs[m->ncrcs]) < 0)
			problem = "a CRC is not 8 hex digits";
		else if (got >= want)
			problem = "more CRCs than the size has chunks";
		else
			m->ncrcs++;
	}
	if (!problem && got != want)
		problem = "fewer CRCs than the size has chunks";
	if (problem) {
		m->ncrcs = first;
		log_warn("%s:%u: skipping '%.*s': %s (%" PRIu64 " chunks of %" PRIu64 " bytes "
			 "expected)", name, lineno, SHOW_MAX, path ? path : line, problem, want,
			 m->file_chunk);
		return 1;
	}
	return add_entry(m, path, size, first, lineno, name);
}

/* Regroups every entry's CRCs into chunks of @target bytes (a multiple of file_chunk). */
static int regroup(struct cache_chunkmap *m, uint64_t target)
{
	uint64_t ratio = target / m->file_chunk;
	uint32_t *out = malloc((m->ncrcs ? m->ncrcs : 1) * sizeof(*out));
	size_t k = 0;
	if (!out)
		return -ENOMEM;
	for (size_t i = 1; i < m->nentries; i++) {
		struct entry *e = &m->entries[i];
		uint64_t n = (e->size + m->file_chunk - 1) / m->file_chunk;
		size_t first = k;
		for (uint64_t j = 0; j < n; j += ratio) {
			uint32_t crc = 0;
			for (uint64_t q = j; q < j + ratio && q < n; q++) {
				uint64_t len = e->size - q * m->file_chunk;
				len = len < m->file_chunk ? len : m->file_chunk;
				crc = mows_crc32_combine(crc, m->crcs[e->first + q], len);
			}
			out[k++] = crc;
		}
		e->first = first;
	}
	free(m->crcs);
	m->crcs = out;
	m->ncrcs = k;
	m->chunk = target;
	return 0;
}

static int parse_lines(struct cache_chunkmap *m, char *text, size_t len, const char *name,
		       unsigned *nskipped, char *err, size_t errlen)
{
	char *p = text, *end = text + len;
	bool header = false;
	for (unsigned lineno = 1; p < end; lineno++) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *line = p;
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		p = nl ? nl + 1 : end;
		line[n] = '\0';
		char *first = line;
		while (is_blank(*first))
			first++;
		if (!*first || *first == '#')
			continue;
		if (strlen(line) != n) {
			log_warn("%s:%u: skipping a line with a NUL byte", name, lineno);
			(*nskipped)++;
			continue;
		}
		int rc = header ? parse_entry(m, line, name, lineno) :
				  parse_header(m, line, name, lineno, err, errlen);
		if (rc < 0)
			return rc;
		*nskipped += (unsigned)rc;
		header = true;
	}
	if (!header) {
		snprintf(err, errlen, "%s: empty: no '" CHUNKMAP_MAGIC "' header line (write it "
			 "with mows-crc32 --chunks)", name);
		return -EINVAL;
	}
	return 0;
}

/* Parses @text (@len bytes and a NUL), which it frees in every case. */
static struct cache_chunkmap *parse_owned(char *text, size_t len, const char *name,
					  uint64_t target, unsigned *nskipped, char *err,
					  size_t errlen)
{
	struct cache_chunkmap *m = calloc(1, sizeof(*m));
	unsigned skipped = 0;
	int rc = -ENOMEM;
	if (!m)
		goto out_fail;
	m->nentries = 1;
	rc = reserve((void **)&m->entries, &m->cap, 1, sizeof(*m->entries));
	if (!rc)
		rc = grow_slots(m);
	if (!rc)
		rc = parse_lines(m, text, len, name, &skipped, err, errlen);
	m->chunk = m->file_chunk;
	if (!rc && target && target != m->file_chunk) {
		if (target % m->file_chunk) {
			snprintf(err, errlen, "%s: chunk size %" PRIu64 " does not divide chunk_size "
				 "%" PRIu64 "; write it again with mows-crc32 --chunks "
				 "--chunk-size %" PRIu64, name, m->file_chunk, target, target);
			rc = -EXDEV;
		} else {
			rc = regroup(m, target);
		}
	}
	if (rc)
		goto out_fail;
	free(text);
	if (nskipped)
		*nskipped = skipped;
	return m;

out_fail:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", name);
	free(text);
	cache_chunkmap_free(m);
	errno = -rc;
	return NULL;
}

struct cache_chunkmap *cache_chunkmap_parse(const char *text, size_t len, const char *name,
					    uint64_t target, unsigned *nskipped, char *err,
					    size_t errlen)
{
	char *copy = malloc(len + 1);
	if (!copy) {
		snprintf(err, errlen, "%s: out of memory", name);
		return NULL;
	}
	if (len)
		memcpy(copy, text, len);
	copy[len] = '\0';
	return parse_owned(copy, len, name, target, nskipped, err, errlen);
}

struct cache_chunkmap *cache_chunkmap_load(int dirfd, const char *path, uint64_t target,
					   char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	int rc = cache_manifest_read(dirfd, path, &text, &len);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		errno = -rc;
		return NULL;
	}
	return parse_owned(text, len, path, target, NULL, err, errlen);
}

void cache_chunkmap_free(struct cache_chunkmap *m)
{
	if (!m)
		return;
	for (size_t i = 1; i < m->nentries; i++)
		free(m->entries[i].path);
	free(m->entries);
	free(m->slots);
	free(m->crcs);
	free(m);
}

uint64_t cache_chunkmap_chunk_size(const struct cache_chunkmap *m)
{
	return m->chunk;
}

uint64_t cache_chunkmap_file_chunk_size(const struct cache_chunkmap *m)
{
	return m->file_chunk;
}

bool cache_chunkmap_lookup(const struct cache_chunkmap *m, const char *relpath,
			   uint64_t *size, const uint32_t **crcs, uint64_t *n)
{
	uint32_t slot = *find_slot(m, m->slots, m->mask, relpath, hash_path(relpath));
	if (!slot)
		return false;
	const struct entry *e = &m->entries[slot];
	*size = e->size;
	*n = (e->size + m->chunk - 1) / m->chunk;
	*crcs = *n ? m->crcs + e->first : NULL; /* a map of empty files has no CRC array */
	return true;
}

size_t cache_chunkmap_count(const struct cache_chunkmap *m)
{
	return m->count;
}

char *cache_chunkmap_name(const char *manifest)
{
	size_t n = strlen(manifest);
	char *out = malloc(n + sizeof(".chunks"));
	if (!out)
		return NULL;
	memcpy(out, manifest, n + 1);
	if (n > 4 && strcmp(manifest + n - 4, ".txt") == 0)
		out[n - 4] = '\0';
	strcat(out, ".chunks");
	return out;
}

int cache_chunkmap_write_header(FILE *out, uint64_t chunk_size)
{
	return fprintf(out, "# per-chunk CRC-32 (zlib) of the files in crc32.txt: "
		       "SIZE RELPATH CRC...\n" CHUNKMAP_MAGIC " %d %" PRIu64 "\n",
		       CHUNKMAP_VERSION, chunk_size) < 0 ? -EIO : 0;
}

int cache_chunkmap_write_entry(FILE *out, const char *relpath, uint64_t size,
			       const uint32_t *crcs, uint64_t n)
{
	if (fprintf(out, "%" PRIu64 " %s", size, relpath) < 0)
		return -EIO;
	for (uint64_t i = 0; i < n; i++)
		if (fprintf(out, " %08" PRIx32, crcs[i]) < 0)
			return -EIO;
	return fputc('\n', out) == EOF ? -EIO : 0;
}
