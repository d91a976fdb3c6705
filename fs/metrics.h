/*
 * Prometheus metrics: GET /metrics on metrics_listen (HOST:PORT, off when empty), in the
 * Prometheus text exposition format (version 0.0.4), served by libmicrohttpd.
 *
 * Every scrape takes fresh snapshots (cache_get_stats(), cache_source_stats(), the peers'
 * report) and formats them with no lock held, so a scrape costs a reader at most the brief
 * hold of the cache lock that a snapshot takes, never a wait on the HTTP client: the reply is
 * built in memory and written by libmicrohttpd's own thread.
 *
 * Metric names (all with the mows_ prefix, base units, _total on counters, no per-file or
 * per-chunk labels) are listed in README.md, section "Metrics".
 *
 * Threads: metrics_new() and metrics_free() from the main thread; libmicrohttpd's one
 * internal thread (started by metrics_start()) runs the handler.
 */
#ifndef MOWS_FS_METRICS_H
#define MOWS_FS_METRICS_H

#include <stddef.h>

struct mows;
struct metrics;

/*
 * Binds @listen (HOST:PORT) for @m; starts no thread (the daemon may still fork). Returns
 * NULL with a message naming metrics_listen in @err.
 */
struct metrics *metrics_new(struct mows *m, const char *listen, char *err, size_t errlen);

/* Starts serving on the bound socket. Returns 0 or -errno. */
int metrics_start(struct metrics *mx);

/* Stops serving (waits for the handler to finish) and frees @mx. NULL is fine. */
void metrics_free(struct metrics *mx);

/*
 * Formats every metric of @m into a malloc'ed buffer (*@buf, *@len bytes, owned by the
 * caller). Returns 0 or -ENOMEM. Any thread.
 */
int metrics_format(struct mows *m, char **buf, size_t *len);

#endif
