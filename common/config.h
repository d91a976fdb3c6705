/*
 * mows.conf: every setting the daemon has, its default and its parser, in one table.
 *
 * The file is INI (read with inih). Keys may stand before any section or in a [mows]
 * section; any other section is an error. Command-line options (--key=value or --key value,
 * with '-' and '_' interchangeable) go through the same table after the file, so they
 * override it. Every error names where it happened (file:line, or "command line"), the key,
 * the value and what is expected, e.g.
 *   mows.conf:12: max_memory '200Q': expected a size such as 512M or 200G
 * Sizes take K/M/G/T (powers of 1024, optional trailing 'B' or 'iB'); durations take ms/s/m/h
 * (a bare number is seconds); booleans take true/false/yes/no/on/off/1/0.
 *
 * Not thread-safe: configuration is loaded once at start-up before any thread starts.
 */
#ifndef MOWS_COMMON_CONFIG_H
#define MOWS_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum config_hugepages { HUGEPAGES_AUTO, HUGEPAGES_ON, HUGEPAGES_OFF };
enum config_verify { VERIFY_OFF, VERIFY_CHUNK, VERIFY_FILE, VERIFY_STRICT };
enum config_prefetch { PREFETCH_OFF, PREFETCH_ON_MOUNT, PREFETCH_IDLE };
enum config_transport { TRANSPORT_AUTO, TRANSPORT_RDMA, TRANSPORT_TCP };
enum config_rdma_verify { RDMA_VERIFY_SHA256, RDMA_VERIFY_CRC32 };
enum config_ownership { OWNERSHIP_BALANCED, OWNERSHIP_RENDEZVOUS };
enum config_store { STORE_AUTO, STORE_FILES, STORE_SLAB };
enum config_passthrough { PASSTHROUGH_AUTO, PASSTHROUGH_ON, PASSTHROUGH_OFF };
enum config_open_wait { OPEN_WAIT_OFF, OPEN_WAIT_COMPLETE };

#define CONFIG_PATH_MAX 4096

struct mows_config {
	char backing[CONFIG_PATH_MAX];        /* "" = the mountpoint itself (overmount) */
	char crc32_file[CONFIG_PATH_MAX];     /* manifest, relative to the backing root */
	char control_socket[CONFIG_PATH_MAX]; /* "" = /run/mows/<escaped mountpoint>.sock */
	uint64_t max_memory;                  /* bytes of chunk data, default 2G */
	uint64_t chunk_size;                  /* power of two, 64K..256M, default 4M */
	enum config_hugepages hugepages;      /* default auto */
	unsigned readahead_kb;                /* kernel readahead of the mount, default 1024 */
	unsigned readahead_chunks;            /* chunks filled ahead of a sequential reader, 4 */
	unsigned fill_threads;                /* 1..256, default 4 */
	unsigned fill_timeout_ms;             /* a fill past this gives EIO, default 60s */
	unsigned attr_timeout_ms;             /* kernel attribute/entry cache, default 1s */
	unsigned metadata_ttl_ms;             /* tree snapshot refreshed this often, 5m */
	enum config_verify verify;            /* default file */
	int log_level;                        /* syslog level, default LOG_INFO ("info") */

	/* Peers. Sharing is on when listen is set. */
	char listen[CONFIG_PATH_MAX];         /* ADDR:PORT to serve peers on, "" = alone */
	char peers[CONFIG_PATH_MAX];          /* "HOST:PORT, HOST:PORT, ..." */
	char peers_file[CONFIG_PATH_MAX];     /* one HOST:PORT a line, "" = none */
	char node_id[CONFIG_PATH_MAX];        /* "" = the host name */
	char secret_file[CONFIG_PATH_MAX];    /* shared secret, mode 0600 */
	int insecure;                         /* run without a secret (explicit), default 0 */
	unsigned replicas;                    /* owners per chunk, 1..8, default 1 */
	unsigned heartbeat_ms;                /* default 1s */
	unsigned peer_timeout_ms;             /* silent this long: dropped, default 5s */
	unsigned request_timeout_ms;          /* one chunk request, default 10s */
	unsigned resolve_interval_ms;         /* peer names re-resolved, default 30s */
	unsigned peer_inflight;               /* requests in flight per peer, default 8 */
	unsigned max_connections;             /* inbound peer connections, default 64 */
	int gossip;                           /* SWIM-style liveness gossip, default 1 */
	unsigned swarm_fanout;                /* requesters served per chunk before handing
						 the rest on (net/swarm.h); 0 off; default 1 */
	enum config_prefetch prefetch;        /* default off */
	enum config_transport transport;      /* default auto */
	char rdma_device[CONFIG_PATH_MAX];    /* "" = the first RDMA device with an active port */
	unsigned rdma_port;                   /* 1.. default 1 */

	char metrics_listen[CONFIG_PATH_MAX]; /* HOST:PORT serving /metrics, "" = off */
	/* TLS 1.3 on peer connections (net/tls.h). */
	int tls;                              /* default 1; 0 needs insecure = true */
	char tls_cert[CONFIG_PATH_MAX];       /* PEM chain; all three or none: certificate mode */
	char tls_key[CONFIG_PATH_MAX];        /* PEM private key */
	char tls_ca[CONFIG_PATH_MAX];         /* PEM CA that peers' certificates verify against */
	enum config_rdma_verify rdma_verify;  /* digest of RDMA-read chunks, default sha256 */
	enum config_ownership ownership;      /* chunk owners: balanced map or plain rendezvous */

	/* Where chunk bytes live (cache/store.h) and FUSE passthrough onto them (fs/). */
	enum config_store cache_store;        /* default auto: files unless hugetlb */
	char cache_dir[CONFIG_PATH_MAX];      /* "" = /run/mows/<escaped mountpoint>.cache */
	enum config_passthrough passthrough;  /* default auto */
	enum config_open_wait open_wait;      /* default off */
	unsigned open_wait_timeout_ms;        /* bound of an open_wait = complete, default 10m */
	int warm_restart;                     /* keep the cache files for the next daemon, 0 */
	int metadata_from_peers;              /* take the tree snapshot from a peer, default 1 */
	int supervise;                        /* a supervisor keeps the mount (fs/supervisor.h), 0 */
};

/* Fills @cfg with every default. */
void config_defaults(struct mows_config *cfg);

/*
 * Sets @key to @value. @where names the source for messages ("mows.conf:12" or
 * "command line"). Returns 0, or -EINVAL with a complete one-line message in @err.
 */
int config_set(struct mows_config *cfg, const char *key, const char *value, const char *where,
	       char *err, size_t errlen);

/*
 * Reads @path into @cfg. Returns 0, or -errno with a message in @err naming the file (and
 * line): missing or unreadable file, unknown section or key, bad value, a line that inih
 * could not parse or truncated (any nonzero ini_parse() result is fatal).
 */
int config_load(struct mows_config *cfg, const char *path, char *err, size_t errlen);

/*
 * Checks settings against each other once everything is set, e.g. max_memory must hold at
 * least config_min_chunks() chunks. Returns 0 or -EINVAL with a message in @err that says
 * which value to change.
 */
int config_validate(const struct mows_config *cfg, char *err, size_t errlen);

/* The fewest chunks the cache can work with for these fill/readahead settings. */
uint64_t config_min_chunks(const struct mows_config *cfg);

/* Parses a size ("4M", "2G", "4096"). Returns 0 or -EINVAL. */
int config_parse_size(const char *s, uint64_t *out);

/* Parses a duration into milliseconds ("500ms", "30s", "2m", "30"). Returns 0 or -EINVAL. */
int config_parse_duration_ms(const char *s, uint64_t *out);

/* Writes @bytes as a short size ("4M", "1.5G") into @buf. Returns @buf. */
char *config_format_size(uint64_t bytes, char *buf, size_t len);

/*
 * The control socket a daemon on @mountpoint (absolute, resolved) uses when control_socket
 * is empty: /run/mows/<mountpoint without its leading '/', '/' written as '-'>.sock.
 * mowsctl finds daemons by the same name.
 */
void config_default_socket(const char *mountpoint, char *buf, size_t len);

/* Names for enums, as written in mows.conf. */
const char *config_hugepages_name(enum config_hugepages h);
const char *config_verify_name(enum config_verify v);
const char *config_prefetch_name(enum config_prefetch p);
const char *config_transport_name(enum config_transport t);
const char *config_rdma_verify_name(enum config_rdma_verify v);

/* Whether @key (with '-' or '_') is a configuration key. */
bool config_is_key(const char *key);

/*
 * The table, for tools that list or document it (mows-fuse --list-keys, the man page
 * check): the @i-th key (0-based) in table order, or false past the last. The strings are
 * static. @def is the default as written in mows.conf; @desc is one line.
 */
struct config_key_info {
	const char *name, *def, *desc;
};
bool config_key_at(size_t i, struct config_key_info *out);

/*
 * Writes the value of @key in @cfg as mows.conf would take it ("4M", "30s", "auto", a
 * path). Returns 0, or -ENOENT for an unknown key.
 */
int config_format_value(const struct mows_config *cfg, const char *key, char *buf, size_t len);

#endif
