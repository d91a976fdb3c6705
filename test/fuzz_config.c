/*
 * libFuzzer target for the configuration file parser (common/config.h): the input is a
 * whole mows.conf, read by config_load() from a memfd. It must accept or refuse without
 * crashing; a refusal carries a message, and a refused file leaves the configuration as it
 * was. An accepted configuration is then validated. Every "key = value" line of the input
 * also goes through config_set() the way the command line would give it.
 * Build and run with test/fuzz.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void fuzz_file(const uint8_t *data, size_t size)
{
	static struct mows_config cfg, before;
	char path[64], err[1024] = "";
	int fd = memfd_create("fuzz.conf", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(write(fd, data, size) == (ssize_t)size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	config_defaults(&cfg);
	before = cfg;
	int rc = config_load(&cfg, path, err, sizeof(err));
	if (rc) {
		CHECK(err[0] && memchr(err, '\0', sizeof(err)));
		CHECK(!memcmp(&cfg, &before, sizeof(cfg)));
	} else {
		err[0] = '\0';
		if (config_validate(&cfg, err, sizeof(err)))
			CHECK(err[0]);
	}
	close(fd);
}

static void fuzz_lines(const uint8_t *data, size_t size)
{
	static struct mows_config cfg;
	char *copy = malloc(size + 1), *save = NULL, err[1024];
	CHECK(copy);
	memcpy(copy, data, size);
	copy[size] = '\0';
	config_defaults(&cfg);
	unsigned n = 0;
	/* A few lines only: an unknown key costs an edit distance to every key (slow here). */
	for (char *l = strtok_r(copy, "\n", &save); l && n < 2; l = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(l, '=');
		if (!eq || strlen(l) > 199 || l[0] == '#' || l[0] == ';')
			continue;
		*eq = '\0';
		err[0] = '\0';
		n++;
		if (config_set(&cfg, l, eq + 1, "fuzz", err, sizeof(err)))
			CHECK(err[0]);
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	log_set_level(LOG_ERR);
	fuzz_file(data, size);
	fuzz_lines(data, size);
	return 0;
}
