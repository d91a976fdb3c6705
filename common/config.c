#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define TIB (UINT64_C(1) << 40)

#define MS_PER_S UINT64_C(1000)
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)

/* Fraction digits beyond this are dropped: keeps fraction * unit within 64 bits. */
#define FRACTION_DIGITS_MAX 6

/* Longest key name worth comparing; anything longer is simply unknown. */
#define KEY_NAME_MAX 64

enum key_type {
	KEY_PATH,	/* char[CONFIG_PATH_MAX] */
	KEY_SIZE,	/* uint64_t bytes */
	KEY_UINT,	/* unsigned */
	KEY_MS,		/* unsigned milliseconds, written as a duration */
	KEY_ENUM,	/* an enum or int, read by parse_enum */
};

#define KEY_EMPTY_OK 0x1	/* "" is a value of its own (use the built-in default) */
#define KEY_POW2 0x2		/* a size that must be a power of two */

struct config_key {
	const char *name;
	enum key_type type;
	size_t offset;
	const char *def;		/* default, as written in mows.conf */
	unsigned flags;
	uint64_t min, max;		/* KEY_SIZE, KEY_UINT, KEY_MS: accepted range */
	int (*parse_enum)(const char *s); /* KEY_ENUM: the value, or -1 */
	const char *choices;		/* KEY_ENUM: the names, for messages */
	const char *desc;
};

static const char *const hugepages_names[] = {
	[HUGEPAGES_AUTO] = "auto", [HUGEPAGES_ON] = "on", [HUGEPAGES_OFF] = "off",
};

static const char *const verify_names[] = {
	[VERIFY_OFF] = "off", [VERIFY_CHUNK] = "chunk", [VERIFY_FILE] = "file",
	[VERIFY_STRICT] = "strict",
};

static const char *const prefetch_names[] = {
	[PREFETCH_OFF] = "off", [PREFETCH_ON_MOUNT] = "on-mount", [PREFETCH_IDLE] = "idle",
};

static const char *const transport_names[] = {
	[TRANSPORT_AUTO] = "auto", [TRANSPORT_RDMA] = "rdma", [TRANSPORT_TCP] = "tcp",
};

static const char *const ownership_names[] = {
	[OWNERSHIP_BALANCED] = "balanced", [OWNERSHIP_RENDEZVOUS] = "rendezvous",
};
static const char *const rdma_verify_names[] = {
	[RDMA_VERIFY_SHA256] = "sha256", [RDMA_VERIFY_CRC32] = "crc32",
};

static const char *const store_names[] = {
	[STORE_AUTO] = "auto", [STORE_FILES] = "files", [STORE_SLAB] = "slab",
};

static const char *const passthrough_names[] = {
	[PASSTHROUGH_AUTO] = "auto", [PASSTHROUGH_ON] = "on", [PASSTHROUGH_OFF] = "off",
};

static const char *const open_wait_names[] = {
	[OPEN_WAIT_OFF] = "off", [OPEN_WAIT_COMPLETE] = "complete",
};

/* Enum fields are stored through an int; these make sure that is the same thing. */
_Static_assert(sizeof(enum config_hugepages) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_verify) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_prefetch) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_transport) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_rdma_verify) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_ownership) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_store) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_passthrough) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_open_wait) == sizeof(int), "enum size");

static int name_index(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

static int parse_hugepages(const char *s)
{
	return name_index(hugepages_names, ARRAY_SIZE(hugepages_names), s);
}

static int parse_verify(const char *s)
{
	return name_index(verify_names, ARRAY_SIZE(verify_names), s);
}

static int parse_prefetch(const char *s)
{
	return name_index(prefetch_names, ARRAY_SIZE(prefetch_names), s);
}

static int parse_transport(const char *s)
{
	return name_index(transport_names, ARRAY_SIZE(transport_names), s);
}

static int parse_ownership(const char *s)
{
	return name_index(ownership_names, ARRAY_SIZE(ownership_names), s);
}

static int parse_rdma_verify(const char *s)
{
	return name_index(rdma_verify_names, ARRAY_SIZE(rdma_verify_names), s);
}

static int parse_store(const char *s)
{
	return name_index(store_names, ARRAY_SIZE(store_names), s);
}

static int parse_passthrough(const char *s)
{
	return name_index(passthrough_names, ARRAY_SIZE(passthrough_names), s);
}

static int parse_open_wait(const char *s)
{
	return name_index(open_wait_names, ARRAY_SIZE(open_wait_names), s);
}

static int parse_bool(const char *s)
{
	static const char *const no[] = { "false", "no", "off", "0" };
	static const char *const yes[] = { "true", "yes", "on", "1" };
	if (name_index(no, ARRAY_SIZE(no), s) >= 0)
		return 0;
	return name_index(yes, ARRAY_SIZE(yes), s) >= 0 ? 1 : -1;
}

#define FIELD(f) offsetof(struct mows_config, f)

/* Every setting. mows.conf.example describes the same keys for users: keep them in step. */
static const struct config_key config_keys[] = {
	{ .name = "backing", .type = KEY_PATH, .offset = FIELD(backing), .def = "",
	  .flags = KEY_EMPTY_OK,
	  .desc = "directory holding the model files (empty: the mountpoint itself)" },
	{ .name = "crc32_file", .type = KEY_PATH, .offset = FIELD(crc32_file),
	  .def = "crc32.txt",
	  .desc = "CRC-32 manifest written by mows-crc32, relative to the backing directory" },
	{ .name = "control_socket", .type = KEY_PATH, .offset = FIELD(control_socket),
	  .def = "", .flags = KEY_EMPTY_OK,
	  .desc = "unix socket for mowsctl (empty: /run/mows/<escaped mountpoint>.sock)" },
	{ .name = "max_memory", .type = KEY_SIZE, .offset = FIELD(max_memory), .def = "2G",
	  .min = 0, .max = UINT64_MAX,
	  .desc = "memory for cached chunk data" },
	{ .name = "chunk_size", .type = KEY_SIZE, .offset = FIELD(chunk_size), .def = "4M",
	  .flags = KEY_POW2, .min = 64 * KIB, .max = 256 * MIB,
	  .desc = "unit of caching, filling and verification" },
	{ .name = "hugepages", .type = KEY_ENUM, .offset = FIELD(hugepages), .def = "auto",
	  .parse_enum = parse_hugepages, .choices = "auto, on or off",
	  .desc = "back the cache with huge pages" },
	{ .name = "readahead_kb", .type = KEY_UINT, .offset = FIELD(readahead_kb),
	  .def = "1024", .min = 0, .max = 65536,
	  .desc = "kernel readahead of the mount, in KiB" },
	{ .name = "readahead_chunks", .type = KEY_UINT, .offset = FIELD(readahead_chunks),
	  .def = "4", .min = 0, .max = 64,
	  .desc = "chunks filled ahead of a sequential reader" },
	{ .name = "fill_threads", .type = KEY_UINT, .offset = FIELD(fill_threads), .def = "4",
	  .min = 1, .max = 256,
	  .desc = "threads that fill chunks from the backing files" },
	{ .name = "fill_timeout", .type = KEY_MS, .offset = FIELD(fill_timeout_ms),
	  .def = "60s", .min = 100, .max = MS_PER_H,
	  .desc = "a read waiting longer than this for its chunk fails with EIO" },
	{ .name = "attr_timeout", .type = KEY_MS, .offset = FIELD(attr_timeout_ms),
	  .def = "1s", .min = 0, .max = MS_PER_H,
	  .desc = "how long the kernel caches attributes and names" },
	{ .name = "metadata_ttl", .type = KEY_MS, .offset = FIELD(metadata_ttl_ms),
	  .def = "5m", .min = 1000, .max = MS_PER_H,
	  .desc = "how often the snapshot of names and attributes is taken again" },
	{ .name = "verify", .type = KEY_ENUM, .offset = FIELD(verify), .def = "file",
	  .parse_enum = parse_verify, .choices = "off, chunk, file or strict",
	  .desc = "how filled data is checked against the CRC-32 manifest" },
	{ .name = "log_level", .type = KEY_ENUM, .offset = FIELD(log_level), .def = "info",
	  .parse_enum = log_level_parse, .choices = "error, warn, info or debug",
	  .desc = "least important messages logged" },
	{ .name = "listen", .type = KEY_PATH, .offset = FIELD(listen), .def = "",
	  .flags = KEY_EMPTY_OK, .desc = "ADDR:PORT to share chunks with peers on" },
	{ .name = "peers", .type = KEY_PATH, .offset = FIELD(peers), .def = "",
	  .flags = KEY_EMPTY_OK, .desc = "HOST:PORT of peers, separated by commas" },
	{ .name = "peers_file", .type = KEY_PATH, .offset = FIELD(peers_file), .def = "",
	  .flags = KEY_EMPTY_OK,
	  .desc = "file of peers, one HOST:PORT a line, read again every resolve_interval" },
	{ .name = "node_id", .type = KEY_PATH, .offset = FIELD(node_id), .def = "",
	  .flags = KEY_EMPTY_OK, .desc = "this node's name among peers (empty: host name)" },
	{ .name = "secret_file", .type = KEY_PATH, .offset = FIELD(secret_file), .def = "",
	  .flags = KEY_EMPTY_OK, .desc = "file with the secret shared by all peers, mode 0600" },
	{ .name = "insecure", .type = KEY_ENUM, .offset = FIELD(insecure), .def = "false",
	  .parse_enum = parse_bool, .choices = "true or false",
	  .desc = "share chunks without authentication" },
	{ .name = "replicas", .type = KEY_UINT, .offset = FIELD(replicas), .def = "1",
	  .min = 1, .max = 8, .desc = "nodes that own each chunk" },
	{ .name = "heartbeat", .type = KEY_MS, .offset = FIELD(heartbeat_ms), .def = "1s",
	  .min = 50, .max = MS_PER_M, .desc = "interval of heartbeats to peers" },
	{ .name = "peer_timeout", .type = KEY_MS, .offset = FIELD(peer_timeout_ms),
	  .def = "5s", .min = 100, .max = MS_PER_H,
	  .desc = "a peer silent this long is dropped" },
	{ .name = "request_timeout", .type = KEY_MS, .offset = FIELD(request_timeout_ms),
	  .def = "10s", .min = 50, .max = MS_PER_H,
	  .desc = "a chunk request to a peer gives up after this long without progress" },
	{ .name = "resolve_interval", .type = KEY_MS, .offset = FIELD(resolve_interval_ms),
	  .def = "30s", .min = 100, .max = MS_PER_H,
	  .desc = "how often peer names are resolved again" },
	{ .name = "peer_inflight", .type = KEY_UINT, .offset = FIELD(peer_inflight),
	  .def = "8", .min = 1, .max = 256, .desc = "chunk requests in flight per peer" },
	{ .name = "max_connections", .type = KEY_UINT, .offset = FIELD(max_connections),
	  .def = "64", .min = 1, .max = 4096, .desc = "inbound peer connections" },
	{ .name = "gossip", .type = KEY_ENUM, .offset = FIELD(gossip), .def = "on",
	  .parse_enum = parse_bool, .choices = "on or off",
	  .desc = "spread suspicions and deaths of peers on heartbeats (SWIM)" },
	{ .name = "swarm_fanout", .type = KEY_UINT, .offset = FIELD(swarm_fanout),
	  .def = "1", .min = 0, .max = 64,
	  .desc = "peers served one chunk before the rest are sent to them (0: off)" },
	{ .name = "prefetch", .type = KEY_ENUM, .offset = FIELD(prefetch), .def = "off",
	  .parse_enum = parse_prefetch, .choices = "on-mount, idle or off",
	  .desc = "load the whole mount into the cache in the background" },
	{ .name = "transport", .type = KEY_ENUM, .offset = FIELD(transport), .def = "auto",
	  .parse_enum = parse_transport, .choices = "auto, rdma or tcp",
	  .desc = "how chunks travel between peers" },
	{ .name = "ownership", .type = KEY_ENUM, .offset = FIELD(ownership), .def = "balanced",
	  .parse_enum = parse_ownership, .choices = "balanced or rendezvous",
	  .desc = "who owns a chunk: a map balanced over the model, or plain rendezvous" },
	{ .name = "rdma_device", .type = KEY_PATH, .offset = FIELD(rdma_device), .def = "",
	  .flags = KEY_EMPTY_OK, .desc = "RDMA device to use (empty: the first active one)" },
	{ .name = "rdma_port", .type = KEY_UINT, .offset = FIELD(rdma_port), .def = "1",
	  .min = 1, .max = 255, .desc = "port of the RDMA device" },
	{ .name = "metrics_listen", .type = KEY_PATH, .offset = FIELD(metrics_listen),
	  .def = "", .flags = KEY_EMPTY_OK,
	  .desc = "HOST:PORT to serve Prometheus metrics on at /metrics (empty: off)" },
	{ .name = "tls", .type = KEY_ENUM, .offset = FIELD(tls), .def = "on",
	  .parse_enum = parse_bool, .choices = "on or off",
	  .desc = "TLS 1.3 on peer connections (off needs insecure = true)" },
	{ .name = "tls_cert", .type = KEY_PATH, .offset = FIELD(tls_cert), .def = "",
	  .flags = KEY_EMPTY_OK, .desc = "this node's PEM certificate (with tls_key, tls_ca)" },
	{ .name = "tls_key", .type = KEY_PATH, .offset = FIELD(tls_key), .def = "",
	  .flags = KEY_EMPTY_OK, .desc = "this node's PEM private key" },
	{ .name = "tls_ca", .type = KEY_PATH, .offset = FIELD(tls_ca), .def = "",
	  .flags = KEY_EMPTY_OK, .desc = "PEM CA that peers' certificates must verify against" },
	{ .name = "rdma_verify", .type = KEY_ENUM, .offset = FIELD(rdma_verify),
	  .def = "sha256", .parse_enum = parse_rdma_verify, .choices = "sha256 or crc32",
	  .desc = "check of chunks read by RDMA (crc32 only on a trusted fabric)" },
	{ .name = "cache_store", .type = KEY_ENUM, .offset = FIELD(cache_store), .def = "auto",
	  .parse_enum = parse_store, .choices = "auto, files or slab",
	  .desc = "chunks in files on a private huge-page tmpfs, or in one slab" },
	{ .name = "cache_dir", .type = KEY_PATH, .offset = FIELD(cache_dir), .def = "",
	  .flags = KEY_EMPTY_OK,
	  .desc = "where the cache tmpfs is mounted (empty: /run/mows/<escaped mountpoint>.cache)" },
	{ .name = "passthrough", .type = KEY_ENUM, .offset = FIELD(passthrough), .def = "auto",
	  .parse_enum = parse_passthrough, .choices = "auto, on or off",
	  .desc = "open complete, verified files in FUSE passthrough mode onto the cache" },
	{ .name = "open_wait", .type = KEY_ENUM, .offset = FIELD(open_wait), .def = "off",
	  .parse_enum = parse_open_wait, .choices = "off or complete",
	  .desc = "complete: an open waits until the file is cached and verified" },
	{ .name = "open_wait_timeout", .type = KEY_MS, .offset = FIELD(open_wait_timeout_ms),
	  .def = "10m", .min = 100, .max = MS_PER_H,
	  .desc = "longest wait of an open under open_wait = complete" },
	{ .name = "warm_restart", .type = KEY_ENUM, .offset = FIELD(warm_restart), .def = "off",
	  .parse_enum = parse_bool, .choices = "on or off",
	  .desc = "keep the cache files at exit and adopt them at start when they check" },
	{ .name = "metadata_from_peers", .type = KEY_ENUM, .offset = FIELD(metadata_from_peers),
	  .def = "on", .parse_enum = parse_bool, .choices = "on or off",
	  .desc = "one node of the peers lists the backing, the others copy its snapshot" },
	{ .name = "supervise", .type = KEY_ENUM, .offset = FIELD(supervise), .def = "off",
	  .parse_enum = parse_bool, .choices = "on or off",
	  .desc = "a supervisor holds the mount and restarts the serving process when it dies" },
};

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Copies @key with '-' turned into '_'; false if it is too long to be a key. */
static bool normalise_key(const char *key, char *buf, size_t len)
{
	size_t i;

	for (i = 0; key[i]; i++) {
		if (i + 1 >= len)
			return false;
		buf[i] = key[i] == '-' ? '_' : key[i];
	}
	buf[i] = '\0';
	return true;
}

static const struct config_key *key_find(const char *key)
{
	char name[KEY_NAME_MAX + 1];

	if (!normalise_key(key, name, sizeof(name)))
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++)
		if (strcmp(name, config_keys[i].name) == 0)
			return &config_keys[i];
	return NULL;
}

static bool same_letter(char a, char b)
{
	return tolower((unsigned char)a) == tolower((unsigned char)b);
}

static size_t min3(size_t a, size_t b, size_t c)
{
	size_t m = a < b ? a : b;

	return m < c ? m : c;
}

/*
 * Edit distance counting a swap of neighbours as one edit (max_memroy vs max_memory).
 * @b is at most KEY_NAME_MAX long: a name from the table.
 */
static size_t edit_distance(const char *a, const char *b)
{
	size_t rows[3][KEY_NAME_MAX + 1];
	size_t la = strlen(a), lb = strlen(b);
	size_t *two_up = rows[0], *up = rows[1], *cur = rows[2], *t;

	for (size_t j = 0; j <= lb; j++)
		up[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = !same_letter(a[i - 1], b[j - 1]);

			cur[j] = min3(up[j] + 1, cur[j - 1] + 1, up[j - 1] + cost);
			if (i > 1 && j > 1 && same_letter(a[i - 1], b[j - 2]) &&
			    same_letter(a[i - 2], b[j - 1]) && two_up[j - 2] + 1 < cur[j])
				cur[j] = two_up[j - 2] + 1;
		}
		t = two_up;
		two_up = up;
		up = cur;
		cur = t;
	}
	return up[lb];
}

/* The key @key was probably meant to be, or NULL when none is close. */
static const char *key_suggest(const char *key)
{
	char name[KEY_NAME_MAX + 1];
	const char *best = NULL;
	size_t best_dist = SIZE_MAX;

	if (!normalise_key(key, name, sizeof(name)))
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++) {
		size_t d = edit_distance(name, config_keys[i].name);

		if (d < best_dist) {
			best_dist = d;
			best = config_keys[i].name;
		}
	}
	/* A third of the name or more changed is a different word, not a typo. */
	if (best_dist > 2 || best_dist * 3 > strlen(best))
		return NULL;
	return best;
}

bool config_is_key(const char *key)
{
	return key_find(key) != NULL;
}

/* A number as written: whole part and an optional fraction frac / scale. */
struct decimal {
	uint64_t whole;
	uint64_t frac;
	uint64_t scale;
};

/*
 * Reads digits[.digits] at *s and moves *s past them. Returns 0, -EINVAL when there is no
 * number, or -EOVERFLOW when the whole part does not fit 64 bits.
 */
static int parse_decimal(const char **s, struct decimal *d)
{
	const char *p = *s;
	int ndigits = 0;

	*d = (struct decimal){ .scale = 1 };
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++)
		if (__builtin_mul_overflow(d->whole, 10, &d->whole) ||
		    __builtin_add_overflow(d->whole, (uint64_t)(*p - '0'), &d->whole))
			return -EOVERFLOW;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (++ndigits > FRACTION_DIGITS_MAX)
				continue;
			d->frac = d->frac * 10 + (uint64_t)(*p - '0');
			d->scale *= 10;
		}
	}
	*s = p;
	return 0;
}

/* @d times @unit, rounded down. Returns 0 or -EOVERFLOW. */
static int decimal_scale(const struct decimal *d, uint64_t unit, uint64_t *out)
{
	uint64_t v;

	if (__builtin_mul_overflow(d->whole, unit, &v) ||
	    __builtin_add_overflow(v, d->frac * unit / d->scale, &v))
		return -EOVERFLOW;
	*out = v;
	return 0;
}

/* Skips blanks between a number and its unit ("2 G"), but not trailing ones ("2 "). */
static const char *skip_to_unit(const char *s)
{
	const char *p = s;

	while (*p == ' ')
		p++;
	return *p ? p : s;
}

/* Bytes per unit letter K/M/G/T (any case), or 0 if @c is not one. */
static uint64_t size_unit(char c)
{
	switch (tolower((unsigned char)c)) {
	case 'k': return KIB;
	case 'm': return MIB;
	case 'g': return GIB;
	case 't': return TIB;
	default: return 0;
	}
}

/* Like config_parse_size(), but tells a number too large for 64 bits (-EOVERFLOW) apart. */
static int parse_size(const char *s, uint64_t *out)
{
	struct decimal d;
	uint64_t unit = 1;
	int rc;

	rc = parse_decimal(&s, &d);
	if (rc)
		return rc;
	s = skip_to_unit(s);
	if (size_unit(*s)) {
		unit = size_unit(*s++);
		if (tolower((unsigned char)*s) == 'i' && tolower((unsigned char)s[1]) == 'b')
			s++;
	}
	if (tolower((unsigned char)*s) == 'b')
		s++;
	/* Half a byte means nothing: fractions need a unit. */
	if (*s || (unit == 1 && d.scale > 1))
		return -EINVAL;
	return decimal_scale(&d, unit, out);
}

int config_parse_size(const char *s, uint64_t *out)
{
	return parse_size(s, out) ? -EINVAL : 0;
}

/* Milliseconds per duration unit at *s (moving past it); a bare number is seconds. */
static uint64_t duration_unit(const char **s)
{
	static const struct {
		const char *name;
		uint64_t ms;
	} units[] = {
		{ "ms", 1 }, { "s", MS_PER_S }, { "m", MS_PER_M }, { "h", MS_PER_H }, { "", MS_PER_S },
	};

	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(*s, units[i].name) == 0) {
			*s += strlen(units[i].name);
			return units[i].ms;
		}
	}
	return 0;
}

static int parse_duration(const char *s, uint64_t *out)
{
	struct decimal d;
	uint64_t unit;
	int rc;

	rc = parse_decimal(&s, &d);
	if (rc)
		return rc;
	s = skip_to_unit(s);
	unit = duration_unit(&s);
	if (!unit)
		return -EINVAL;
	return decimal_scale(&d, unit, out);
}

int config_parse_duration_ms(const char *s, uint64_t *out)
{
	return parse_duration(s, out) ? -EINVAL : 0;
}

/* Plain digits only: a count has no units and no sign. */
static int parse_uint(const char *s, uint64_t *out)
{
	struct decimal d;
	int rc;

	rc = parse_decimal(&s, &d);
	if (rc)
		return rc;
	if (*s || d.scale > 1)
		return -EINVAL;
	*out = d.whole;
	return 0;
}

char *config_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const uint64_t units[] = { TIB, GIB, MIB, KIB };
	static const char letters[] = "TGMK";

	if (!len)
		return buf;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (bytes && bytes % units[i] == 0) {
			snprintf(buf, len, "%llu%c", (unsigned long long)(bytes / units[i]),
				 letters[i]);
			return buf;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (bytes >= units[i]) {
			uint64_t whole = bytes / units[i];
			uint64_t tenths = (bytes % units[i] * 10 + units[i] / 2) / units[i];

			if (tenths == 10) {
				whole++;
				tenths = 0;
			}
			snprintf(buf, len, "%llu.%llu%c", (unsigned long long)whole,
				 (unsigned long long)tenths, letters[i]);
			return buf;
		}
	}
	snprintf(buf, len, "%llu", (unsigned long long)bytes);
	return buf;
}

/* Writes @ms in the largest unit that holds it exactly ("100ms", "60s", "1h"). */
static char *format_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms && ms % MS_PER_H == 0)
		snprintf(buf, len, "%lluh", (unsigned long long)(ms / MS_PER_H));
	else if (ms && ms % MS_PER_M == 0)
		snprintf(buf, len, "%llum", (unsigned long long)(ms / MS_PER_M));
	else if (ms && ms % MS_PER_S == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / MS_PER_S));
	else if (ms)
		snprintf(buf, len, "%llums", (unsigned long long)ms);
	else
		snprintf(buf, len, "0");
	return buf;
}

const char *config_hugepages_name(enum config_hugepages h)
{
	if ((unsigned)h >= ARRAY_SIZE(hugepages_names))
		return "?";
	return hugepages_names[h];
}

const char *config_verify_name(enum config_verify v)
{
	if ((unsigned)v >= ARRAY_SIZE(verify_names))
		return "?";
	return verify_names[v];
}

void config_default_socket(const char *mountpoint, char *buf, size_t len)
{
	size_t k = (size_t)snprintf(buf, len, "/run/mows/");
	for (const char *p = mountpoint + 1; *p && k + 6 < len; p++)
		buf[k++] = *p == '/' ? '-' : *p;
	snprintf(buf + k, len - k, ".sock");
}

const char *config_prefetch_name(enum config_prefetch p)
{
	if ((unsigned)p >= ARRAY_SIZE(prefetch_names))
		return "?";
	return prefetch_names[p];
}

const char *config_transport_name(enum config_transport t)
{
	if ((unsigned)t >= ARRAY_SIZE(transport_names))
		return "?";
	return transport_names[t];
}

const char *config_rdma_verify_name(enum config_rdma_verify v)
{
	if ((unsigned)v >= ARRAY_SIZE(rdma_verify_names))
		return "?";
	return rdma_verify_names[v];
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* What a valid value of @k looks like, for messages: "a size such as 512M or 200G". */
static void describe_expected(const struct config_key *k, char *buf, size_t len)
{
	char lo[32], hi[32];

	switch (k->type) {
	case KEY_PATH:
		snprintf(buf, len, "a path of at most %d bytes", CONFIG_PATH_MAX - 1);
		break;
	case KEY_SIZE:
		if (k->flags & KEY_POW2)
			snprintf(buf, len, "a power of two from %s to %s, such as %s",
				 config_format_size(k->min, lo, sizeof(lo)),
				 config_format_size(k->max, hi, sizeof(hi)), k->def);
		else
			snprintf(buf, len, "a size such as 512M or 200G");
		break;
	case KEY_UINT:
		snprintf(buf, len, "a whole number from %llu to %llu",
			 (unsigned long long)k->min, (unsigned long long)k->max);
		break;
	case KEY_MS:
		snprintf(buf, len, "a duration from %s to %s, such as 500ms, 30s or 2m",
			 format_ms(k->min, lo, sizeof(lo)), format_ms(k->max, hi, sizeof(hi)));
		break;
	case KEY_ENUM:
		snprintf(buf, len, "%s", k->choices);
		break;
	}
}

/* Parses a number of @k's type and checks its range. Returns 0, -EINVAL or -EOVERFLOW. */
static int parse_number(const struct config_key *k, const char *value, uint64_t *v)
{
	int rc;

	if (k->type == KEY_SIZE)
		rc = parse_size(value, v);
	else if (k->type == KEY_MS)
		rc = parse_duration(value, v);
	else
		rc = parse_uint(value, v);
	if (rc)
		return rc;
	if (*v < k->min || *v > k->max)
		return -EINVAL;
	if ((k->flags & KEY_POW2) && !is_pow2(*v))
		return -EINVAL;
	return 0;
}

/* Stores @value into @cfg's field for @k. Returns 0, -EINVAL or -EOVERFLOW. */
static int store_value(struct mows_config *cfg, const struct config_key *k, const char *value)
{
	char *field = (char *)cfg + k->offset;
	uint64_t v;
	unsigned u;
	int e, rc;

	switch (k->type) {
	case KEY_PATH:
		if (!*value && !(k->flags & KEY_EMPTY_OK))
			return -EINVAL;
		if (strlen(value) >= CONFIG_PATH_MAX)
			return -EINVAL;
		memcpy(field, value, strlen(value) + 1);
		return 0;
	case KEY_ENUM:
		e = k->parse_enum(value);
		if (e < 0)
			return -EINVAL;
		memcpy(field, &e, sizeof(e));
		return 0;
	case KEY_SIZE:
		rc = parse_number(k, value, &v);
		if (!rc)
			memcpy(field, &v, sizeof(v));
		return rc;
	case KEY_UINT:
	case KEY_MS:
		rc = parse_number(k, value, &v);
		if (rc)
			return rc;
		u = (unsigned)v; /* ranges in the table fit */
		memcpy(field, &u, sizeof(u));
		return 0;
	}
	return -EINVAL;
}

int config_set(struct mows_config *cfg, const char *key, const char *value, const char *where,
	       char *err, size_t errlen)
{
	const struct config_key *k = key_find(key);
	const char *hint;
	char expected[128];
	int rc;

	if (!k) {
		hint = key_suggest(key);
		if (hint)
			set_err(err, errlen,
				"%s: unknown key '%s' (value '%s'; did you mean '%s'? see "
				"mows.conf.example)", where, key, value ? value : "", hint);
		else
			set_err(err, errlen,
				"%s: unknown key '%s' (value '%s'; see mows.conf.example for every "
				"key)", where, key, value ? value : "");
		return -EINVAL;
	}
	if (!value)
		value = "";
	rc = store_value(cfg, k, value);
	if (!rc)
		return 0;
	if (k->type == KEY_PATH && strlen(value) >= CONFIG_PATH_MAX) {
		/* Quoting it all would cut the message off before it says why. */
		set_err(err, errlen, "%s: %s '%.32s...' is %zu bytes long, at most %d fit%s", where,
			k->name, value, strlen(value), CONFIG_PATH_MAX - 1,
			strcmp(k->name, "peers") ? "" : "; put a long peer list in peers_file, one "
			"HOST:PORT a line");
		return -EINVAL;
	}
	describe_expected(k, expected, sizeof(expected));
	set_err(err, errlen, "%s: %s '%s': %sexpected %s", where, k->name, value,
		rc == -EOVERFLOW ? "too large; " : "", expected);
	return -EINVAL;
}

void config_defaults(struct mows_config *cfg)
{
	char err[256];

	memset(cfg, 0, sizeof(*cfg));
	/* The defaults go through the parsers, so the table is the only place they are written. */
	for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++)
		config_set(cfg, config_keys[i].name, config_keys[i].def, "default", err,
			   sizeof(err));
}

uint64_t config_min_chunks(const struct mows_config *cfg)
{
	/* Each fill thread may hold a chunk being filled and one being read, plus readahead. */
	uint64_t need = 2 * (uint64_t)cfg->fill_threads + cfg->readahead_chunks + 2;

	return need > 8 ? need : 8;
}

/* State of one config_load(): inih hands it to both the line reader and the handler. */
struct load_ctx {
	struct mows_config *cfg;
	const char *path;
	FILE *fp;
	int lineno;		/* line the reader returned last, the one being handled */
	bool indented;		/* that line starts with a blank */
	int section_line;	/* line of the last [section] header */
	int read_errno;
	int err_line;		/* line of the error in err, 0 if none */
	char *err;
	size_t errlen;
};

/* Whether an error on @line comes before every error seen so far; if so it takes its place. */
static bool load_first_error(struct load_ctx *ctx, int line)
{
	if (ctx->err_line && ctx->err_line <= line)
		return false;
	ctx->err_line = line;
	return true;
}

/*
 * Whether fgets() stopped @line short of its end. If so, reads the rest of the line away
 * (inih r55 would parse it as a line of its own) and ends @line with '\n' (later inih
 * versions would read away the next line instead).
 */
static bool line_cut(FILE *fp, char *line, int num)
{
	size_t len = strlen(line);
	int c;

	if (len + 1 < (size_t)num || line[len - 1] == '\n')
		return false;
	c = getc(fp);
	if (c == '\r')
		c = getc(fp);
	if (c == EOF || c == '\n')
		return false;
	while (c != EOF && c != '\n')
		c = getc(fp);
	line[len - 1] = '\n';
	return true;
}

/* inih's fgets-like reader: counts lines so that messages can name them. */
static char *load_read_line(char *str, int num, void *stream)
{
	struct load_ctx *ctx = stream;
	const char *p;

	errno = 0;
	if (!fgets(str, num, ctx->fp)) {
		if (ferror(ctx->fp))
			ctx->read_errno = errno ? errno : EIO;
		return NULL;
	}
	ctx->lineno++;
	ctx->indented = str[0] == ' ' || str[0] == '\t';
	for (p = str; *p == ' ' || *p == '\t'; p++)
		;
	if (*p == '[')
		ctx->section_line = ctx->lineno;
	if (line_cut(ctx->fp, str, num) && load_first_error(ctx, ctx->lineno)) {
		/* Name the key the line sets, so the user knows which setting it is. */
		int keylen = (int)strcspn(p, " \t=");
		set_err(ctx->err, ctx->errlen,
			"%s:%d: line is longer than %d characters (key '%.*s'); shorten it, or "
			"give the setting on the command line (--%.*s=value)",
			ctx->path, ctx->lineno, num - 1, keylen > 64 ? 64 : keylen, p,
			keylen > 64 ? 64 : keylen, p);
	}
	return str;
}

static int load_handler(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *ctx = user;
	char where[CONFIG_PATH_MAX + 16];

	if (*section && strcasecmp(section, "mows") != 0) {
		if (load_first_error(ctx, ctx->section_line))
			set_err(ctx->err, ctx->errlen,
				"%s:%d: unknown section [%s]: keys go before any section or "
				"under [mows]", ctx->path, ctx->section_line, section);
		return 0;
	}
	/* After an error the result is thrown away; keep the first message. */
	if (ctx->err_line)
		return 0;
	if (ctx->indented) {
		/* inih would glue an indented line onto the value above it. */
		load_first_error(ctx, ctx->lineno);
		set_err(ctx->err, ctx->errlen,
			"%s:%d: line starts with a space or tab, which continues the value "
			"above; remove the indentation", ctx->path, ctx->lineno);
		return 0;
	}
	snprintf(where, sizeof(where), "%s:%d", ctx->path, ctx->lineno);
	if (config_set(ctx->cfg, name, value, where, ctx->err, ctx->errlen)) {
		load_first_error(ctx, ctx->lineno);
		return 0;
	}
	return 1;
}

int config_load(struct mows_config *cfg, const char *path, char *err, size_t errlen)
{
	struct mows_config work = *cfg;
	struct load_ctx ctx = {
		.cfg = &work, .path = path, .err = err, .errlen = errlen,
	};
	int rc;

	ctx.fp = fopen(path, "re");
	if (!ctx.fp) {
		rc = -errno;
		set_err(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	/* Our own reader rather than ini_parse(): it knows line numbers and cut lines. */
	rc = ini_parse_stream(load_read_line, &ctx, load_handler, &ctx);
	fclose(ctx.fp);
	if (ctx.read_errno) {
		set_err(err, errlen, "%s: cannot read: %s", path, strerror(ctx.read_errno));
		return -ctx.read_errno;
	}
	if (rc < 0) {
		set_err(err, errlen, "%s: cannot parse: out of memory", path);
		return -ENOMEM;
	}
	if (rc > 0 && load_first_error(&ctx, rc))
		set_err(err, errlen,
			"%s:%d: cannot parse this line (expected key = value, [mows] or a "
			"# comment)", path, rc);
	if (ctx.err_line)
		return -EINVAL;
	*cfg = work;
	return 0;
}

static int validate_backing(const struct mows_config *cfg, char *err, size_t errlen)
{
	struct stat st;

	if (!cfg->backing[0])
		return 0;
	if (stat(cfg->backing, &st) < 0) {
		set_err(err, errlen, "backing '%s': %s; set backing to the model directory",
			cfg->backing, strerror(errno));
		return -EINVAL;
	}
	if (!S_ISDIR(st.st_mode)) {
		set_err(err, errlen,
			"backing '%s': not a directory; set backing to the model directory",
			cfg->backing);
		return -EINVAL;
	}
	return 0;
}

static int validate_chunk_size(const struct mows_config *cfg, char *err, size_t errlen)
{
	char size[32];

	/* config_set() checks this too, but a caller may have filled the struct itself. */
	if (is_pow2(cfg->chunk_size) && cfg->chunk_size >= 64 * KIB &&
	    cfg->chunk_size <= 256 * MIB)
		return 0;
	set_err(err, errlen, "chunk_size %s: expected a power of two from 64K to 256M",
		config_format_size(cfg->chunk_size, size, sizeof(size)));
	return -EINVAL;
}

/* MemAvailable from /proc/meminfo in bytes. Returns 0 or -errno. */
static int mem_available(uint64_t *bytes)
{
	char line[256];
	unsigned long long kb;
	FILE *fp;
	int rc = -ENOENT;

	fp = fopen("/proc/meminfo", "re");
	if (!fp)
		return -errno;
	while (fgets(line, sizeof(line), fp)) {
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
			*bytes = (uint64_t)kb * KIB;
			rc = 0;
			break;
		}
	}
	fclose(fp);
	return rc;
}

static int validate_memory(const struct mows_config *cfg, char *err, size_t errlen)
{
	uint64_t chunks = cfg->max_memory / cfg->chunk_size;
	uint64_t need = config_min_chunks(cfg);
	uint64_t avail = 0;
	char mem[32], chunk[32], least[32], have[32];

	if (chunks < need) {
		set_err(err, errlen,
			"max_memory %s holds %llu chunks of %s; mows needs at least %llu (raise "
			"max_memory to at least %s or lower chunk_size)",
			config_format_size(cfg->max_memory, mem, sizeof(mem)),
			(unsigned long long)chunks,
			config_format_size(cfg->chunk_size, chunk, sizeof(chunk)),
			(unsigned long long)need,
			config_format_size(need * cfg->chunk_size, least, sizeof(least)));
		return -EINVAL;
	}
	/* Without /proc/meminfo there is nothing to compare against: the slab will tell. */
	if (mem_available(&avail) == 0 && cfg->max_memory > avail) {
		set_err(err, errlen,
			"max_memory %s is more than this machine's available memory (%s); lower "
			"max_memory", config_format_size(cfg->max_memory, mem, sizeof(mem)),
			config_format_size(avail, have, sizeof(have)));
		return -EINVAL;
	}
	return 0;
}

/* Whether @s (@len bytes) is HOST:PORT with a port from 1 to 65535 ("[v6]:PORT" too). */
static bool host_port_ok(const char *s, size_t len)
{
	const char *colon = NULL;
	for (size_t i = 0; i < len; i++)
		if (s[i] == ':')
			colon = s + i;
	if (!colon || colon == s)
		return false;
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	return !errno && end == s + len && end > colon + 1 && port >= 1 && port <= 65535;
}

/* Whether @s (@len bytes, no ':') is a DNS name to look SRV records up for (net/srv.h). */
static bool srv_name_ok(const char *s, size_t len)
{
	if (!len || len > 253 || s[0] == '.' || memchr(s, ':', len))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return !strstr(s, "..") || (size_t)(strstr(s, "..") - s) >= len;
}

static int validate_peers(const struct mows_config *cfg, char *err, size_t errlen)
{
	if (cfg->listen[0] && !host_port_ok(cfg->listen, strlen(cfg->listen))) {
		set_err(err, errlen, "listen '%s': expected ADDR:PORT such as 0.0.0.0:7070",
			cfg->listen);
		return -EINVAL;
	}
	for (const char *p = cfg->peers; *p;) {
		size_t n = strcspn(p, ", \t");
		if (n && !host_port_ok(p, n) && !srv_name_ok(p, n)) {
			set_err(err, errlen, "peers: '%.*s': expected HOST:PORT such as node2:7070, "
				"or a DNS SRV name such as _mows._tcp.mows.default.svc.cluster.local",
				(int)n, p);
			return -EINVAL;
		}
		p += n;
		p += strspn(p, ", \t");
	}
	if (cfg->peers_file[0] && !cfg->listen[0]) {
		set_err(err, errlen, "peers_file is set but listen is not; set listen = ADDR:PORT "
			"so peers can reach this node");
		return -EINVAL;
	}
	if (cfg->peers[0] && !cfg->listen[0]) {
		set_err(err, errlen, "peers is set but listen is not; set listen = ADDR:PORT so "
			"peers can reach this node");
		return -EINVAL;
	}
	if (cfg->listen[0] && !cfg->secret_file[0] && !cfg->tls_cert[0] && !cfg->insecure) {
		set_err(err, errlen, "listen is set but secret_file is not; set secret_file to a "
			"file only its owner can read (chmod 600), or tls_cert, tls_key and tls_ca, "
			"or insecure = true to share without authentication");
		return -EINVAL;
	}
	return 0;
}

static int validate_metrics(const struct mows_config *cfg, char *err, size_t errlen)
{
	if (!cfg->metrics_listen[0] ||
	    host_port_ok(cfg->metrics_listen, strlen(cfg->metrics_listen)))
		return 0;
	set_err(err, errlen, "metrics_listen '%s': expected HOST:PORT such as 127.0.0.1:9464 "
		"(a port from 1 to 65535), or nothing to serve no metrics", cfg->metrics_listen);
	return -EINVAL;
}

/* @path of TLS key @name is readable; else a message naming the key and the fix. */
static int validate_tls_file(const char *name, const char *path, const char *what, char *err,
			     size_t errlen)
{
	if (access(path, R_OK) == 0)
		return 0;
	set_err(err, errlen, "%s '%s': %s; set %s to %s", name, path, strerror(errno), name,
		what);
	return -EINVAL;
}

static int validate_tls(const struct mows_config *cfg, char *err, size_t errlen)
{
	int set = !!cfg->tls_cert[0] + !!cfg->tls_key[0] + !!cfg->tls_ca[0];
	int rc;

	if (!cfg->tls && !cfg->insecure) {
		set_err(err, errlen, "tls = off sends peer traffic, chunks included, in plaintext; "
			"set insecure = true as well to allow that, or remove tls = off");
		return -EINVAL;
	}
	if (set == 0 && cfg->listen[0] && cfg->tls && cfg->insecure && !cfg->secret_file[0]) {
		set_err(err, errlen, "insecure = true without secret_file or tls_cert leaves TLS "
			"nothing to authenticate with; set secret_file (or tls_cert, tls_key and "
			"tls_ca), or tls = off to share in plaintext");
		return -EINVAL;
	}
	if (set == 0)
		return 0;
	if (set != 3) {
		set_err(err, errlen, "tls_cert, tls_key and tls_ca go together (%s is not set); "
			"set all three for certificates, or none to use secret_file",
			!cfg->tls_cert[0] ? "tls_cert" : !cfg->tls_key[0] ? "tls_key" : "tls_ca");
		return -EINVAL;
	}
	if (!cfg->tls) {
		set_err(err, errlen, "tls_cert is set but tls = off; remove tls = off or the "
			"tls_cert, tls_key and tls_ca settings");
		return -EINVAL;
	}
	rc = validate_tls_file("tls_cert", cfg->tls_cert, "this node's PEM certificate", err,
			       errlen);
	if (!rc)
		rc = validate_tls_file("tls_key", cfg->tls_key, "this node's PEM private key", err,
				       errlen);
	if (!rc)
		rc = validate_tls_file("tls_ca", cfg->tls_ca, "the PEM certificate of the CA that "
				       "signs the peers' certificates", err, errlen);
	return rc;
}

int config_validate(const struct mows_config *cfg, char *err, size_t errlen)
{
	int rc;

	rc = validate_metrics(cfg, err, errlen);
	if (rc)
		return rc;

	rc = validate_tls(cfg, err, errlen);
	if (rc)
		return rc;

	rc = validate_peers(cfg, err, errlen);
	if (rc)
		return rc;

	rc = validate_backing(cfg, err, errlen);
	if (rc)
		return rc;
	rc = validate_chunk_size(cfg, err, errlen);
	if (rc)
		return rc;
	return validate_memory(cfg, err, errlen);
}

bool config_key_at(size_t i, struct config_key_info *out)
{
	if (i >= ARRAY_SIZE(config_keys))
		return false;
	*out = (struct config_key_info){ .name = config_keys[i].name, .def = config_keys[i].def,
					 .desc = config_keys[i].desc };
	return true;
}

/* The word of @k->choices ("auto, on or off") that parses to @v, or "?" if none does. */
static const char *enum_word(const struct config_key *k, int v, char *buf, size_t len)
{
	for (const char *p = k->choices; p && *p;) {
		size_t n = strcspn(p, ", ");
		if (n && n < len) {
			memcpy(buf, p, n);
			buf[n] = '\0';
			if (strcmp(buf, "or") && k->parse_enum(buf) == v)
				return buf;
		}
		p += n;
		p += strspn(p, ", ");
	}
	return "?";
}

int config_format_value(const struct mows_config *cfg, const char *key, char *buf, size_t len)
{
	const struct config_key *k = key_find(key);
	const char *field;
	char word[32];
	unsigned ms;

	if (!k)
		return -ENOENT;
	field = (const char *)cfg + k->offset;
	switch (k->type) {
	case KEY_PATH:
		snprintf(buf, len, "%s", field);
		break;
	case KEY_SIZE:
		config_format_size(*(const uint64_t *)(const void *)field, buf, len);
		break;
	case KEY_UINT:
		snprintf(buf, len, "%u", *(const unsigned *)(const void *)field);
		break;
	case KEY_MS:
		ms = *(const unsigned *)(const void *)field;
		if (ms % MS_PER_S)
			snprintf(buf, len, "%ums", ms);
		else
			snprintf(buf, len, "%us", (unsigned)(ms / MS_PER_S));
		break;
	case KEY_ENUM:
		snprintf(buf, len, "%s",
			 enum_word(k, *(const int *)(const void *)field, word, sizeof(word)));
		break;
	default:
		snprintf(buf, len, "?");
		break;
	}
	return 0;
}
