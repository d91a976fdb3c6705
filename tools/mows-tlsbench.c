/*
 * mows-tlsbench: chunk throughput over loopback TCP with and without TLS, and the cost of
 * chunk digests for RDMA reads, on this machine.
 *
 * A sender thread sends frames (a 16-byte header and a chunk straight from its buffer, as a
 * serving node sends from its slab) to a receiver thread that receives each chunk straight
 * into one buffer (a slot). Plain TCP uses net/tcp.c's sendmsg/recv; TLS uses net/tls.c with
 * a PSK. Rounds alternate plain and TLS (order reversed every other round), best of
 * --rounds. CPU per GB is each thread's CPU time (RUSAGE_THREAD) over the bytes moved, for
 * the sender and the receiver apart. The digests (SHA-256, and the keyed AES-128-GMAC) run
 * on one thread over chunk-sized buffers. Last, 200 PSK handshakes one after another: rate
 * and CPU per handshake.
 *
 *   mows-tlsbench [--bytes SIZE] [--chunk SIZE] [--rounds N]
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/config.h"
#include "common/deadline.h"
#include "net/digest.h"
#include "net/tcp.h"
#include "net/tls.h"

#define HDR_LEN 16

struct opts {
	uint64_t bytes;
	uint64_t chunk;
	int rounds;
};

struct result {
	double gbps;
	double send_cpu;	/* CPU seconds per GB, sender */
	double recv_cpu;	/* receiver */
};

struct end {
	struct tls_ctx *tls;	/* NULL: plain TCP */
	int fd;
	bool server;
	const struct opts *o;
	uint8_t *buf;
	int rc;
	double cpu;		/* seconds of this thread during the transfer */
	char err[TLS_ERR_MAX];
};

static double thread_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static int send_chunks(struct end *e, struct tls_conn *c, const struct deadline *dl)
{
	uint8_t hdr[HDR_LEN] = { 'M', 'O', 'W', 'S' };
	int rc = 0;

	for (uint64_t off = 0; off < e->o->bytes && !rc; off += e->o->chunk) {
		struct iovec iov[2] = { { hdr, HDR_LEN }, { e->buf, e->o->chunk } };

		memcpy(hdr + 8, &off, sizeof(off));
		rc = c ? tls_sendv(c, iov, 2, dl) : tcp_send_all(e->fd, iov, 2, dl);
	}
	return rc;
}

static int recv_chunks(struct end *e, struct tls_conn *c, const struct deadline *dl)
{
	uint8_t hdr[HDR_LEN];
	int rc = 0;

	for (uint64_t off = 0; off < e->o->bytes && !rc; off += e->o->chunk) {
		rc = c ? tls_recv_all(c, hdr, HDR_LEN, dl) : tcp_recv_all(e->fd, hdr, HDR_LEN, dl);
		if (!rc && memcmp(hdr + 8, &off, sizeof(off)))
			rc = -EPROTO;
		if (!rc)
			rc = c ? tls_recv_all(c, e->buf, e->o->chunk, dl) :
				 tcp_recv_all(e->fd, e->buf, e->o->chunk, dl);
	}
	return rc;
}

static void *end_main(void *arg)
{
	struct end *e = arg;
	struct deadline dl = deadline_in_ms(120000);
	struct tls_conn *c = NULL;
	double t0;

	if (e->tls) {
		c = tls_conn_new(e->tls, e->fd, e->server);
		e->rc = c ? tls_handshake(c, &dl) : -errno;
	}
	t0 = thread_cpu();
	if (!e->rc)
		e->rc = e->server ? send_chunks(e, c, &dl) : recv_chunks(e, c, &dl);
	e->cpu = thread_cpu() - t0;
	if (c) {
		snprintf(e->err, sizeof(e->err), "%s", tls_conn_strerror(c));
		tls_conn_free(c);
	}
	return NULL;
}

static int tcp_pair(int fds[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		return -errno;
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof(a)))
		return -errno;
	fds[1] = accept(l, NULL, NULL);
	close(l);
	if (fds[1] < 0)
		return -errno;
	tcp_setup(fds[0]);
	tcp_setup(fds[1]);
	return 0;
}

/* One transfer of o->bytes; fills @r. Returns 0 or -errno. */
static int one_round(const struct opts *o, struct tls_ctx *tls, uint8_t *sbuf, uint8_t *rbuf,
		     struct result *r)
{
	struct end snd = { .tls = tls, .server = true, .o = o, .buf = sbuf };
	struct end rcv = { .tls = tls, .o = o, .buf = rbuf };
	pthread_t ts, tr;
	uint64_t t0, ns;
	int fds[2] = { -1, -1 }, rc;

	rc = tcp_pair(fds);
	if (rc)
		return rc;
	rcv.fd = fds[0], snd.fd = fds[1];
	t0 = mono_ns();
	pthread_create(&ts, NULL, end_main, &snd);
	pthread_create(&tr, NULL, end_main, &rcv);
	pthread_join(ts, NULL);
	pthread_join(tr, NULL);
	ns = mono_ns() - t0;	/* includes the handshake: under a millisecond */
	close(fds[0]);
	close(fds[1]);
	if (snd.rc || rcv.rc) {
		fprintf(stderr, "mows-tlsbench: transfer failed: %s %s\n", snd.err, rcv.err);
		return snd.rc ? snd.rc : rcv.rc;
	}
	if (!o->bytes)
		return 0;
	r->gbps = (double)o->bytes / (double)ns;
	r->send_cpu = snd.cpu / ((double)o->bytes / 1e9);
	r->recv_cpu = rcv.cpu / ((double)o->bytes / 1e9);
	return 0;
}

static double max2(double a, double b)
{
	return a > b ? a : b;
}

static void keep_best(struct result *best, const struct result *r)
{
	if (r->gbps > best->gbps)
		best->gbps = r->gbps;
	if (!best->send_cpu || r->send_cpu < best->send_cpu)
		best->send_cpu = r->send_cpu;
	if (!best->recv_cpu || r->recv_cpu < best->recv_cpu)
		best->recv_cpu = r->recv_cpu;
}

static void digest_bench(const struct opts *o, uint8_t *buf, struct result *best)
{
	for (int round = 0; round < o->rounds; round++) {
		uint64_t bytes = o->bytes / 4, t0 = mono_ns();
		double c0 = thread_cpu();
		struct digest d;

		for (uint64_t off = 0; off < bytes; off += o->chunk)
			digest_compute(DIGEST_SHA256, buf, o->chunk, &d);
		struct result r = {
			.gbps = (double)bytes / (double)(mono_ns() - t0),
			.recv_cpu = (thread_cpu() - c0) / ((double)bytes / 1e9),
		};
		keep_best(best, &r);
	}
}

static double process_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Connections set up and torn down one after another: handshakes per second, CPU each. */
static int handshake_bench(struct tls_ctx *tls, uint8_t *buf, double *per_s, double *cpu_ms)
{
	const struct opts none = { .bytes = 0, .chunk = 1, .rounds = 1 };
	uint64_t t0 = mono_ns();
	double c0 = process_cpu();
	struct result r;
	int n = 200, rc;

	for (int i = 0; i < n; i++) {
		rc = one_round(&none, tls, buf, buf, &r);
		if (rc)
			return rc;
	}
	*per_s = n / ((double)(mono_ns() - t0) / 1e9);
	*cpu_ms = (process_cpu() - c0) * 1000 / n;
	return 0;
}

/* AES-128-GMAC (net/digest.h), the keyed alternative to SHA-256 for RDMA reads. */
static void gmac_bench(const struct opts *o, uint8_t *buf, struct result *best)
{
	static const uint8_t key[DIGEST_GMAC_KEY_LEN] = "mows-tlsbench-k";
	uint64_t nonce = 0;

	for (int round = 0; round < o->rounds; round++) {
		uint64_t bytes = o->bytes / 4, t0 = mono_ns();
		double c0 = thread_cpu();
		struct digest d;

		for (uint64_t off = 0; off < bytes; off += o->chunk)
			digest_gmac(key, nonce++, buf, o->chunk, &d);
		struct result r = {
			.gbps = (double)bytes / (double)(mono_ns() - t0),
			.recv_cpu = (thread_cpu() - c0) / ((double)bytes / 1e9),
		};
		keep_best(best, &r);
	}
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "bytes", required_argument, NULL, 'b' },
		{ "chunk", required_argument, NULL, 'c' },
		{ "rounds", required_argument, NULL, 'r' },
		{ 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (ch == 'b' && config_parse_size(optarg, &o->bytes) == 0 && o->bytes)
			continue;
		if (ch == 'c' && config_parse_size(optarg, &o->chunk) == 0 && o->chunk)
			continue;
		if (ch == 'r' && (o->rounds = atoi(optarg)) > 0)
			continue;
		fprintf(stderr, "usage: mows-tlsbench [--bytes SIZE (1G)] [--chunk SIZE (4M)] "
			"[--rounds N (5)]\n");
		return -EINVAL;
	}
	o->bytes -= o->bytes % o->chunk;
	return o->bytes ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
	struct opts o = { .bytes = 1ull << 30, .chunk = 4ull << 20, .rounds = 5 };
	struct result plain = { 0 }, tls = { 0 }, sha = { 0 }, gmac = { 0 }, r = { 0 };
	char err[TLS_ERR_MAX];
	double hs_rate, hs_cpu;
	struct tls_ctx *ctx;
	uint8_t *sbuf, *rbuf;

	if (parse_args(argc, argv, &o))
		return 2;
	ctx = tls_ctx_new_psk((const uint8_t *)"mows-tlsbench", 13, err, sizeof(err));
	sbuf = malloc(o.chunk);
	rbuf = malloc(o.chunk);
	if (!ctx || !sbuf || !rbuf) {
		fprintf(stderr, "mows-tlsbench: %s\n", ctx ? "out of memory" : err);
		return 1;
	}
	for (uint64_t i = 0; i < o.chunk; i++)
		sbuf[i] = (uint8_t)(i * 2654435761u >> 13);
	for (int round = 0; round < o.rounds; round++) {
		for (int k = 0; k < 2; k++) {
			bool with_tls = (k + round) % 2;

			if (one_round(&o, with_tls ? ctx : NULL, sbuf, rbuf, &r))
				return 1;
			keep_best(with_tls ? &tls : &plain, &r);
		}
	}
	digest_bench(&o, sbuf, &sha);
	gmac_bench(&o, sbuf, &gmac);
	if (handshake_bench(ctx, rbuf, &hs_rate, &hs_cpu))
		return 1;
	printf("loopback TCP, %llu MiB per round in %llu KiB chunks, best of %d, interleaved\n",
	       (unsigned long long)(o.bytes >> 20), (unsigned long long)(o.chunk >> 10), o.rounds);
	printf("%-14s %8s %16s %16s\n", "", "GB/s", "send CPU s/GB", "recv CPU s/GB");
	printf("%-14s %8.2f %16.3f %16.3f\n", "plain TCP", plain.gbps, plain.send_cpu,
	       plain.recv_cpu);
	printf("%-14s %8.2f %16.3f %16.3f\n", "TLS 1.3 (PSK)", tls.gbps, tls.send_cpu,
	       tls.recv_cpu);
	printf("%-14s %8.2f %16s %16.3f\n", "SHA-256 digest", sha.gbps, "", sha.recv_cpu);
	printf("%-14s %8.2f %16s %16.3f  (keyed, net/digest.h)\n", "AES-128-GMAC",
	       gmac.gbps, "", gmac.recv_cpu);
	printf("TLS / plain throughput: %.2fx (goal >= 0.70x)\n", tls.gbps / plain.gbps);
	/*
	 * On loopback both ends share this machine's cores; between two nodes each end has its
	 * own. What one core can drive per end is the figure that carries over.
	 */
	printf("one core per end could drive: plain %.2f GB/s, TLS %.2f GB/s (%.2fx)\n",
	       1 / max2(plain.send_cpu, plain.recv_cpu), 1 / max2(tls.send_cpu, tls.recv_cpu),
	       max2(plain.send_cpu, plain.recv_cpu) / max2(tls.send_cpu, tls.recv_cpu));
	printf("PSK handshakes (connect, handshake, close, one after another): %.0f/s, %.2f ms "
	       "CPU each, both ends\n", hs_rate, hs_cpu);
	tls_ctx_free(ctx);
	free(sbuf);
	free(rbuf);
	return 0;
}
