/*
 * libFuzzer target for the crc32.txt parser (cache/manifest.h): any input parses without
 * reading outside it; every entry it keeps has a path that cache_manifest_path_ok() accepts
 * and that looks up to the CRC written beside it (the last one for a repeated path).
 * Build and run with test/fuzz.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "cache/manifest.h"
#include "common/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	log_set_level(LOG_ERR); /* the parser warns about every bad entry */
	char *text = malloc(size ? size : 1);
	CHECK(text);
	memcpy(text, data, size);
	unsigned skipped = 0;
	struct cache_manifest *m = cache_manifest_parse(text, size, "fuzz", &skipped);
	CHECK(m);
	CHECK(cache_manifest_count(m) <= size / 10); /* "xxxxxxxx p" is the shortest entry */

	/* Take the tokens again, naively, and look each pair up. */
	char *copy = malloc(size + 1), *save = NULL;
	CHECK(copy);
	memcpy(copy, data, size);
	copy[size] = '\0';
	uint32_t crc;
	for (char *t = strtok_r(copy, " \t\r\n\v\f", &save); t; t = strtok_r(NULL, " \t\r\n\v\f", &save)) {
		if (cache_manifest_lookup(m, t, &crc))
			CHECK(cache_manifest_path_ok(t));
	}
	free(copy);
	cache_manifest_free(m);
	free(text);
	return 0;
}
