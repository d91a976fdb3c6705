/*
 * libFuzzer target for the crc32.chunks parser (cache/chunkmap.h): any input parses (or is
 * refused with a reason) without reading outside it; every entry a map keeps has a valid
 * path, a CRC count that matches its size and chunk size, and survives a write-and-parse
 * round trip unchanged. The first input byte picks a regrouping target (none, or 1 to 4
 * times the file's chunk size). Build and run with test/fuzz.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "cache/chunkmap.h"
#include "cache/manifest.h"
#include "common/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/* Writes entry @rel of @m as a one-file sidecar and parses it back: same size and CRCs. */
static void round_trip(const struct cache_chunkmap *m, const char *rel)
{
	uint64_t fsize, n, n2, fsize2;
	const uint32_t *crcs, *crcs2;
	char *buf = NULL;
	size_t len = 0;
	CHECK(cache_chunkmap_lookup(m, rel, &fsize, &crcs, &n));
	FILE *out = open_memstream(&buf, &len);
	CHECK(out);
	CHECK(cache_chunkmap_write_header(out, cache_chunkmap_chunk_size(m)) == 0);
	CHECK(cache_chunkmap_write_entry(out, rel, fsize, crcs, n) == 0);
	CHECK(fclose(out) == 0);
	char err[256];
	unsigned skipped = 0;
	struct cache_chunkmap *back = cache_chunkmap_parse(buf, len, "rt", 0, &skipped, err,
							   sizeof(err));
	CHECK(back && skipped == 0);
	CHECK(cache_chunkmap_lookup(back, rel, &fsize2, &crcs2, &n2));
	CHECK(fsize2 == fsize && n2 == n && (n == 0 || !memcmp(crcs, crcs2, n * sizeof(*crcs))));
	cache_chunkmap_free(back);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	log_set_level(LOG_CRIT); /* the parser warns about every bad line */
	if (size < 1)
		return 0;
	unsigned mult = data[0] % 5;
	data++, size--;
	char *text = malloc(size ? size : 1);
	CHECK(text);
	memcpy(text, data, size);
	char err[256];
	unsigned skipped = 0;
	struct cache_chunkmap *m = cache_chunkmap_parse(text, size, "fuzz", 0, &skipped, err,
							sizeof(err));
	if (!m) {
		CHECK(err[0] != '\0'); /* refused, with a reason */
		free(text);
		return 0;
	}
	uint64_t cs = cache_chunkmap_chunk_size(m);
	CHECK(cs >= CHUNKMAP_MIN_CHUNK && cs <= CHUNKMAP_MAX_CHUNK && (cs & (cs - 1)) == 0);
	/* Every path token that looks up must be valid and consistent, and round-trip. */
	char *copy = malloc(size + 1), *save = NULL;
	CHECK(copy);
	memcpy(copy, data, size);
	copy[size] = '\0';
	uint64_t fsize, n;
	const uint32_t *crcs;
	for (char *t = strtok_r(copy, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save))
		if (cache_chunkmap_lookup(m, t, &fsize, &crcs, &n)) {
			CHECK(cache_manifest_path_ok(t));
			CHECK(n == (fsize + cs - 1) / cs);
			round_trip(m, t);
		}
	free(copy);
	if (mult) {
		struct cache_chunkmap *g = cache_chunkmap_parse(text, size, "fuzz", cs * mult,
								&skipped, err, sizeof(err));
		if (g) {
			CHECK(cache_chunkmap_chunk_size(g) == cs * mult);
			CHECK(cache_chunkmap_count(g) == cache_chunkmap_count(m));
			cache_chunkmap_free(g);
		}
	}
	cache_chunkmap_free(m);
	free(text);
	return 0;
}
