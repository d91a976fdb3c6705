/*
 * genmodel: writes a fake model directory for the mows benchmark.
 *
 *   genmodel DIR TOTAL_BYTES NSHARDS [SEED]
 *
 * DIR gets NSHARDS files model-0000i-of-0000N.safetensors of about TOTAL_BYTES/NSHARDS each,
 * laid out like safetensors (8-byte little-endian header length, JSON header, tensor data),
 * plus config.json and model.safetensors.index.json. Tensor data comes from a fast PRNG
 * (xoshiro256**), so it does not compress and costs far less than /dev/urandom.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GEN_BUF (4u << 20)
#define GEN_TENSORS 8 /* tensors per shard */

struct rng {
	uint64_t s[4];
};

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t result = rotl(r->s[1] * 5, 7) * 9, t = r->s[1] << 17;

	r->s[2] ^= r->s[0];
	r->s[3] ^= r->s[1];
	r->s[1] ^= r->s[2];
	r->s[0] ^= r->s[3];
	r->s[2] ^= t;
	r->s[3] = rotl(r->s[3], 45);
	return result;
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++) { /* splitmix64 */
		uint64_t z = (seed += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		r->s[i] = z ^ (z >> 31);
	}
}

static int write_all(int fd, const void *buf, size_t len, const char *path)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "genmodel: write %s: %s\n", path, strerror(errno));
			return -1;
		}
		p += n;
		len -= n;
	}
	return 0;
}

static int write_text(const char *dir, const char *name, const char *text)
{
	char path[4096];
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "genmodel: create %s: %s\n", path, strerror(errno));
		return -1;
	}
	rc = write_all(fd, text, strlen(text), path);
	close(fd);
	return rc;
}

/* Builds the safetensors JSON header for shard @k: GEN_TENSORS BF16 tensors of @cols columns. */
static size_t shard_header(char *hdr, size_t len, int k, uint64_t rows, uint64_t cols)
{
	size_t used = snprintf(hdr, len, "{\"__metadata__\":{\"format\":\"pt\"}");
	uint64_t tensor = rows * cols * 2;

	for (int t = 0; t < GEN_TENSORS; t++)
		used += snprintf(hdr + used, len - used,
				 ",\"model.layers.%d.mlp.w%d.weight\":{\"dtype\":\"BF16\","
				 "\"shape\":[%llu,%llu],\"data_offsets\":[%llu,%llu]}",
				 k, t, (unsigned long long)rows, (unsigned long long)cols,
				 (unsigned long long)(t * tensor), (unsigned long long)((t + 1) * tensor));
	used += snprintf(hdr + used, len - used, "}");
	/* safetensors pads the header with spaces to a multiple of 8 */
	while (used % 8 != 0 && used + 1 < len)
		hdr[used++] = ' ';
	hdr[used] = '\0';
	return used;
}

static int write_shard(const char *dir, int k, int nshards, uint64_t bytes, struct rng *rng,
		       uint64_t *buf)
{
	const uint64_t cols = 4096;
	uint64_t rows = bytes / GEN_TENSORS / (cols * 2), left;
	char path[4096], hdr[4096];
	uint64_t hlen;
	int fd, rc = -1;

	if (rows == 0)
		rows = 1;
	snprintf(path, sizeof(path), "%s/model-%05d-of-%05d.safetensors", dir, k + 1, nshards);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "genmodel: create %s: %s\n", path, strerror(errno));
		return -1;
	}
	hlen = shard_header(hdr, sizeof(hdr), k, rows, cols);
	if (write_all(fd, &hlen, sizeof(hlen), path) < 0 || write_all(fd, hdr, hlen, path) < 0)
		goto out_close;
	for (left = rows * cols * 2 * GEN_TENSORS; left > 0;) {
		size_t n = left < GEN_BUF ? left : GEN_BUF;

		for (size_t i = 0; i < GEN_BUF / 8; i++)
			buf[i] = rng_next(rng);
		if (write_all(fd, buf, n, path) < 0)
			goto out_close;
		left -= n;
	}
	rc = 0;
out_close:
	if (close(fd) < 0 && rc == 0) {
		fprintf(stderr, "genmodel: close %s: %s\n", path, strerror(errno));
		rc = -1;
	}
	return rc;
}

static int write_index(const char *dir, int nshards)
{
	size_t len = 256 + nshards * 256, used;
	char *text = malloc(len);
	int rc;

	if (!text)
		return -1;
	used = snprintf(text, len, "{\n  \"metadata\": {},\n  \"weight_map\": {");
	for (int k = 0; k < nshards; k++)
		for (int t = 0; t < GEN_TENSORS; t++)
			used += snprintf(text + used, len - used,
					 "%s\n    \"model.layers.%d.mlp.w%d.weight\": "
					 "\"model-%05d-of-%05d.safetensors\"",
					 k + t ? "," : "", k, t, k + 1, nshards);
	snprintf(text + used, len - used, "\n  }\n}\n");
	rc = write_text(dir, "model.safetensors.index.json", text);
	free(text);
	return rc;
}

int main(int argc, char *argv[])
{
	const char *config = "{\n  \"architectures\": [\"MowsBenchForCausalLM\"],\n"
			     "  \"hidden_size\": 4096,\n  \"torch_dtype\": \"bfloat16\"\n}\n";
	unsigned long long total;
	uint64_t *buf;
	struct rng rng;
	int nshards;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: %s DIR TOTAL_BYTES NSHARDS [SEED]\n", argv[0]);
		return 2;
	}
	total = strtoull(argv[2], NULL, 0);
	nshards = atoi(argv[3]);
	if (total == 0 || nshards < 1 || nshards > 99999) {
		fprintf(stderr, "genmodel: TOTAL_BYTES '%s' and NSHARDS '%s' must be positive\n",
			argv[2], argv[3]);
		return 2;
	}
	rng_seed(&rng, argc == 5 ? strtoull(argv[4], NULL, 0) : 1);
	if (mkdir(argv[1], 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "genmodel: mkdir %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	buf = malloc(GEN_BUF);
	if (!buf)
		return 1;
	for (int k = 0; k < nshards; k++)
		if (write_shard(argv[1], k, nshards, total / nshards, &rng, buf) < 0)
			return 1;
	free(buf);
	if (write_text(argv[1], "config.json", config) < 0 || write_index(argv[1], nshards) < 0)
		return 1;
	return 0;
}
