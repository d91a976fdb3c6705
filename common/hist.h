/*
 * Latency histograms that any thread may add to without a lock.
 *
 * Fixed bucket bounds (hist_bounds_ns, ascending, from 50 us to 10 s) suit both a FUSE read
 * answered from memory and a chunk fill from slow storage. Each bucket is a relaxed atomic
 * counter holding the samples at or below its bound and above the previous one; the last
 * counter holds everything above the last bound. hist_read() copies them one by one, so a
 * copy taken while samples arrive may be off by those samples, never torn: count is always
 * the sum of the buckets copied. Formatting (cumulative buckets, seconds) is the reader's.
 */
#ifndef MOWS_COMMON_HIST_H
#define MOWS_COMMON_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_BUCKETS 16

/* Upper bounds of the buckets, in nanoseconds. */
extern const uint64_t hist_bounds_ns[HIST_BUCKETS];

/* Zero-initialised (static or calloc) is empty. */
struct hist {
	_Atomic uint64_t bucket[HIST_BUCKETS + 1];
	_Atomic uint64_t sum_ns;
};

/* A plain copy: per-bucket (not cumulative) counts, their total and the sum of samples. */
struct hist_copy {
	uint64_t bucket[HIST_BUCKETS + 1];
	uint64_t count;
	uint64_t sum_ns;
};

/* Records one sample of @ns nanoseconds. Lock-free; any thread. */
void hist_add(struct hist *h, uint64_t ns);

/* Copies @h into @out. Any thread. */
void hist_read(struct hist *h, struct hist_copy *out);

#endif
