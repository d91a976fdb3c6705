#include "common/hist.h"

const uint64_t hist_bounds_ns[HIST_BUCKETS] = {
	50000,     100000,     250000,     500000,     1000000,    2500000,
	5000000,   10000000,   25000000,   50000000,   100000000,  250000000,
	500000000, 1000000000, 5000000000, 10000000000,
};

void hist_add(struct hist *h, uint64_t ns)
{
	unsigned b = 0;
	while (b < HIST_BUCKETS && ns > hist_bounds_ns[b])
		b++;
	atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

void hist_read(struct hist *h, struct hist_copy *out)
{
	out->count = 0;
	for (unsigned b = 0; b <= HIST_BUCKETS; b++) {
		out->bucket[b] = atomic_load_explicit(&h->bucket[b], memory_order_relaxed);
		out->count += out->bucket[b];
	}
	out->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}
