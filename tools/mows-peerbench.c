/*
 * mows-peerbench: how fast chunks move from a running mows-fuse peer to this node, over a
 * chosen transport, and what that costs this node's CPU.
 *
 *   mows-peerbench --peer HOST:PORT --secret-file FILE --backing DIR --file RELPATH
 *                  [--transport tcp|rdma|auto] [--seconds 10] [--inflight 4]
 *                  [--chunk-size 4M] [--listen ADDR:PORT] [--tls on|off] [--insecure]
 *                  [--digest sha256|crc32] [--peer-pid PID]
 *
 * It joins as a peer (authenticating with the shared secret), asks the peer for the chunks
 * of RELPATH (a file of the backing directory both nodes see; the peer loads chunks it does
 * not hold from its backing first, so run it twice for warm numbers), reading each into its
 * own registered memory and checking its CRC exactly as mows-fuse does, for SECONDS with
 * INFLIGHT requests at once. It prints GB/s and this process's CPU seconds per GB.
 *
 * To see what TLS costs, run it once against a default peer and once with --tls off
 * --insecure against a peer with tls = off. --peer-pid (a mows-fuse on this machine) adds the
 * peer's CPU seconds per GB: the sender's half of the cost. --digest also computes the
 * chunk's digest after each fetch, as a reader of an RDMA READ checks it (net/digest.h), and
 * reports its CPU seconds per GB on its own.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "common/config.h"
#include "common/log.h"
#include "net/digest.h"
#include "net/peer.h"
#include "net/proto.h"
#include "net/transport.h"

struct bench {
	struct peers *peers;
	struct transport_chunk_req req;
	uint64_t nchunks, file_size, chunk_size;
	unsigned inflight;
	struct deadline end;
	char *slab;
	_Atomic uint64_t next, bytes, chunks, errors;
	_Atomic uint64_t digest_ns;      /* thread CPU time spent in digests */
	int digest;                      /* enum digest_kind, 0: none */
	int peer_pid;                    /* 0: not measured */
	const char *transport;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: mows-peerbench --peer HOST:PORT --secret-file FILE --backing DIR "
		     "--file RELPATH\n"
		     "         [--transport tcp|rdma|auto] [--seconds 10] [--inflight 4] "
		     "[--chunk-size 4M] [--listen ADDR:PORT] [--tls on|off] [--insecure]\n"
		     "         [--digest sha256|crc32] [--peer-pid PID]\n"
		     "  --tls off (plaintext, for comparing TLS's cost) needs --insecure too;\n"
		     "  --insecure without --secret-file implies --tls off\n");
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* The digest a reader computes to check a chunk it read by RDMA: its CPU time. */
static void digest_chunk(struct bench *b, const void *dst, size_t len)
{
	struct digest d;
	uint64_t t0 = thread_cpu_ns();
	if (digest_compute((enum digest_kind)b->digest, dst, len, &d) == 0)
		atomic_fetch_add(&b->digest_ns, thread_cpu_ns() - t0);
}

static void *worker(void *arg)
{
	struct bench *b = arg;
	uint64_t me = atomic_fetch_add(&b->next, 1);
	void *dst = b->slab + me * b->chunk_size; /* this worker's own slot */
	for (uint64_t k = me; !deadline_passed(&b->end); k += b->inflight) {
		struct transport_chunk_req req = b->req;
		req.chunk = k % b->nchunks;
		uint64_t off = req.chunk * b->chunk_size;
		size_t len = b->file_size - off < b->chunk_size ? b->file_size - off : b->chunk_size;
		const char *t;
		int rc = peers_fetch_direct(b->peers, &req, dst, len, &t);
		if (rc) {
			atomic_fetch_add(&b->errors, 1);
			usleep(10000);
			continue;
		}
		b->transport = t;
		if (b->digest)
			digest_chunk(b, dst, len);
		atomic_fetch_add(&b->bytes, len);
		atomic_fetch_add(&b->chunks, 1);
	}
	return NULL;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* A process's user + system CPU seconds (/proc/PID/stat), or -1. */
static double proc_cpu_seconds(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	unsigned long long ut, st;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
			 &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int set(struct mows_config *cfg, const char *key, const char *value)
{
	char err[512];
	if (config_set(cfg, key, value, "command line", err, sizeof(err)) == 0)
		return 0;
	fprintf(stderr, "mows-peerbench: %s\n", err);
	return -1;
}

/* Parses the options into @cfg and @b. Returns 0, or 2 after printing what is wrong. */
static int parse(int argc, char **argv, struct mows_config *cfg, struct bench *b,
		 const char **backing, const char **file, unsigned *seconds)
{
	static const struct option opts[] = {
		{ "peer", 1, 0, 'p' }, { "secret-file", 1, 0, 's' }, { "backing", 1, 0, 'b' },
		{ "file", 1, 0, 'f' }, { "transport", 1, 0, 't' }, { "seconds", 1, 0, 'S' },
		{ "inflight", 1, 0, 'i' }, { "chunk-size", 1, 0, 'c' }, { "listen", 1, 0, 'l' },
		{ "insecure", 0, 0, 'I' }, { "tls", 1, 0, 'T' }, { "digest", 1, 0, 'd' },
		{ "peer-pid", 1, 0, 'P' }, { "help", 0, 0, 'h' }, { 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int rc = 0;
		switch (c) {
		case 'p': rc = set(cfg, "peers", optarg); break;
		case 's': rc = set(cfg, "secret_file", optarg); break;
		case 't': rc = set(cfg, "transport", optarg); break;
		case 'c': rc = set(cfg, "chunk_size", optarg); break;
		case 'l': rc = set(cfg, "listen", optarg); break;
		case 'I': rc = set(cfg, "insecure", "true"); break;
		case 'T': rc = set(cfg, "tls", optarg); break;
		case 'b': *backing = optarg; break;
		case 'f': *file = optarg; break;
		case 'S': *seconds = (unsigned)atoi(optarg); break;
		case 'i': b->inflight = (unsigned)atoi(optarg); break;
		case 'P': b->peer_pid = atoi(optarg); break;
		case 'd':
			b->digest = !strcmp(optarg, "sha256") ? DIGEST_SHA256 :
				    !strcmp(optarg, "crc32") ? DIGEST_CRC32 : -1;
			if (b->digest < 0) {
				fprintf(stderr, "mows-peerbench: --digest '%s': expected sha256 "
					"or crc32\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
		if (rc)
			return 2;
	}
	if (cfg->insecure && !cfg->secret_file[0] && set(cfg, "tls", "off"))
		return 2;
	if (!cfg->peers[0] || !*backing || !*file || !*seconds || !b->inflight ||
	    b->inflight > 64 || (!cfg->secret_file[0] && !cfg->insecure)) {
		usage(stderr);
		return 2;
	}
	return 0;
}

static struct cache_file *no_files(void *ctx, uint64_t key, uint64_t size, int64_t mtime_ns)
{
	(void)ctx, (void)key, (void)size, (void)mtime_ns;
	return NULL; /* this node serves nothing */
}

int main(int argc, char **argv)
{
	static struct mows_config cfg;
	struct bench b = { .inflight = 4 };
	const char *backing = NULL, *file = NULL;
	unsigned seconds = 10;
	char err[1024], path[8192];
	config_defaults(&cfg);
	set(&cfg, "listen", "0.0.0.0:0");
	set(&cfg, "node_id", "peerbench");
	set(&cfg, "heartbeat", "200ms");
	if (parse(argc, argv, &cfg, &b, &backing, &file, &seconds))
		return 2;
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", backing, file);
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		fprintf(stderr, "mows-peerbench: %s: %s\n", path,
			errno ? strerror(errno) : "not a non-empty regular file");
		return 2;
	}
	b.chunk_size = cfg.chunk_size;
	b.file_size = (uint64_t)st.st_size;
	b.nchunks = (b.file_size + b.chunk_size - 1) / b.chunk_size;
	b.req = (struct transport_chunk_req){
		.file_key = proto_file_key(file, b.file_size,
					   (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec),
		.file_size = b.file_size,
		.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
		.chunk_size = (uint32_t)b.chunk_size,
		.fill = true,
	};
	cfg.max_memory = (uint64_t)(b.inflight > 4 ? b.inflight : 4) * 2 * cfg.chunk_size;
	cfg.fill_threads = 1;
	log_set_level(LOG_WARNING);
	struct cache *c = cache_new(&cfg, err, sizeof(err));
	struct peer_host_ops host = { .open_key = no_files };
	b.peers = c ? peers_new(&cfg, c, &host, err, sizeof(err)) : NULL;
	if (!b.peers || peers_start(b.peers)) {
		fprintf(stderr, "mows-peerbench: %s\n", err);
		return 1;
	}
	size_t slab_len;
	cache_slab_region(c, (void **)&b.slab, &slab_len);
	struct deadline up = deadline_in_ms(10000);
	while (!peers_any_up(b.peers) && !deadline_passed(&up))
		usleep(50000);
	if (!peers_any_up(b.peers)) {
		fprintf(stderr, "mows-peerbench: %s did not come up in 10 s (address, secret?)\n",
			cfg.peers);
		return 1;
	}
	pthread_t t[64];
	double peer0 = b.peer_pid ? proc_cpu_seconds(b.peer_pid) : -1;
	if (b.peer_pid && peer0 < 0) {
		fprintf(stderr, "mows-peerbench: --peer-pid %d: no such process here\n", b.peer_pid);
		return 2;
	}
	double cpu0 = cpu_seconds();
	uint64_t t0 = mono_ns();
	b.end = deadline_in_ms((int64_t)seconds * 1000);
	for (unsigned i = 0; i < b.inflight; i++)
		pthread_create(&t[i], NULL, worker, &b);
	for (unsigned i = 0; i < b.inflight; i++)
		pthread_join(t[i], NULL);
	double secs = (double)(mono_ns() - t0) / 1e9, cpu = cpu_seconds() - cpu0;
	double peer = b.peer_pid ? proc_cpu_seconds(b.peer_pid) - peer0 : -1;
	double gb = (double)atomic_load(&b.bytes) / 1e9;
	double dig = (double)atomic_load(&b.digest_ns) / 1e9;
	printf("transport %s: %.3f GB in %.1f s = %.3f GB/s; %llu chunks, %llu errors; "
	       "CPU %.2f s = %.2f CPU-s per GB (this node)\n",
	       b.transport ? b.transport : "-", gb, secs, gb / secs,
	       (unsigned long long)atomic_load(&b.chunks), (unsigned long long)atomic_load(&b.errors),
	       cpu, gb > 0 ? cpu / gb : 0.0);
	printf("tls %s: %.3f CPU-s per GB here without the digest%s", cfg.tls ? "on" : "off",
	       gb > 0 ? (cpu - dig) / gb : 0.0, b.peer_pid ? "" : "\n");
	if (b.peer_pid)
		printf(", %.3f CPU-s per GB on the peer (pid %d)\n", gb > 0 ? peer / gb : 0.0,
		       b.peer_pid);
	if (b.digest)
		printf("digest %s: %.3f CPU-s per GB (%.2f GB/s per core), checked after each "
		       "fetch as an RDMA reader does\n", b.digest == DIGEST_SHA256 ? "sha256" :
		       "crc32", gb > 0 ? dig / gb : 0.0, dig > 0 ? gb / dig : 0.0);
	peers_free(b.peers);
	cache_free(c);
	return atomic_load(&b.chunks) ? 0 : 1;
}
