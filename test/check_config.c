#define _XOPEN_SOURCE 700
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "common/config.h"

/* Every test writes its files here; main() makes it and removes it after the run. */
static char tmpdir[] = "/tmp/check_config.XXXXXX";

/* Writes @text to a file @name in tmpdir; returns its path in @path. */
static void write_conf(char *path, size_t len, const char *name, const char *text)
{
	FILE *fp;

	snprintf(path, len, "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(fputs(text, fp) >= 0, 1);
	ck_assert_int_eq(fclose(fp), 0);
}

/* Loads @text as the file @name into defaults; returns config_load()'s result. */
static int load_text(struct mows_config *cfg, char *path, size_t len, const char *name,
		     const char *text, char *err, size_t errlen)
{
	config_defaults(cfg);
	write_conf(path, len, name, text);
	err[0] = '\0';
	return config_load(cfg, path, err, errlen);
}

__attribute__((format(printf, 3, 4)))
static void ck_err_eq(const char *err, char *buf, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, 8192, fmt, ap);
	va_end(ap);
	ck_assert_str_eq(err, buf);
}

START_TEST(test_defaults)
{
	struct mows_config cfg;
	char err[512];

	memset(&cfg, 0xa5, sizeof(cfg));
	config_defaults(&cfg);
	ck_assert_str_eq(cfg.backing, "");
	ck_assert_str_eq(cfg.crc32_file, "crc32.txt");
	ck_assert_str_eq(cfg.control_socket, "");
	ck_assert_uint_eq(cfg.max_memory, 2ull << 30);
	ck_assert_uint_eq(cfg.chunk_size, 4ull << 20);
	ck_assert_int_eq(cfg.hugepages, HUGEPAGES_AUTO);
	ck_assert_uint_eq(cfg.readahead_kb, 1024);
	ck_assert_uint_eq(cfg.readahead_chunks, 4);
	ck_assert_uint_eq(cfg.fill_threads, 4);
	ck_assert_uint_eq(cfg.fill_timeout_ms, 60000);
	ck_assert_uint_eq(cfg.attr_timeout_ms, 1000);
	ck_assert_int_eq(cfg.verify, VERIFY_FILE);
	ck_assert_int_eq(cfg.log_level, LOG_INFO);
	ck_assert_uint_eq(config_min_chunks(&cfg), 14);

	/* Not every test machine has 2G free; the defaults otherwise check out. */
	cfg.max_memory = 64 << 20;
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_min_chunks)
{
	struct mows_config cfg;

	config_defaults(&cfg);
	cfg.fill_threads = 1;
	cfg.readahead_chunks = 0;
	ck_assert_uint_eq(config_min_chunks(&cfg), 8);
	cfg.fill_threads = 256;
	cfg.readahead_chunks = 64;
	ck_assert_uint_eq(config_min_chunks(&cfg), 2 * 256 + 64 + 2);
}
END_TEST

START_TEST(test_load_every_key)
{
	struct mows_config cfg;
	char path[4200], text[8192], err[512];

	snprintf(text, sizeof(text),
		 "# a comment\n"
		 "; another comment\n"
		 "backing = %s\n"
		 "crc32_file = sums/crc32.txt\n"
		 "control_socket = /run/mows/test.sock\n"
		 "max_memory = 512M\n"
		 "\n"
		 "[mows]\n"
		 "chunk_size = 8M\n"
		 "hugepages = off\n"
		 "readahead_kb = 4096\n"
		 "readahead_chunks = 8\n"
		 "fill_threads = 16\n"
		 "fill_timeout = 2m\n"
		 "attr_timeout = 250ms\n"
		 "verify = strict\n"
		 "log_level = debug\n",
		 tmpdir);
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "every.conf", text, err,
				   sizeof(err)), 0);
	ck_assert_str_eq(cfg.backing, tmpdir);
	ck_assert_str_eq(cfg.crc32_file, "sums/crc32.txt");
	ck_assert_str_eq(cfg.control_socket, "/run/mows/test.sock");
	ck_assert_uint_eq(cfg.max_memory, 512ull << 20);
	ck_assert_uint_eq(cfg.chunk_size, 8ull << 20);
	ck_assert_int_eq(cfg.hugepages, HUGEPAGES_OFF);
	ck_assert_uint_eq(cfg.readahead_kb, 4096);
	ck_assert_uint_eq(cfg.readahead_chunks, 8);
	ck_assert_uint_eq(cfg.fill_threads, 16);
	ck_assert_uint_eq(cfg.fill_timeout_ms, 120000);
	ck_assert_uint_eq(cfg.attr_timeout_ms, 250);
	ck_assert_int_eq(cfg.verify, VERIFY_STRICT);
	ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_load_example)
{
	struct mows_config cfg, def;
	char err[512];

	/* The shipped example must load, and (all commented out) change nothing. */
	config_defaults(&cfg);
	config_defaults(&def);
	ck_assert_msg(config_load(&cfg, "mows.conf.example", err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(memcmp(&cfg, &def, sizeof(cfg)), 0);
}
END_TEST

START_TEST(test_load_later_wins_and_empty_paths)
{
	struct mows_config cfg;
	char path[4200], err[512];

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "later.conf",
				   "fill_threads = 2\nfill_threads = 3\nbacking =\n"
				   "control_socket =\nverify = OFF ; inline comment\n",
				   err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.fill_threads, 3);
	ck_assert_str_eq(cfg.backing, "");
	ck_assert_str_eq(cfg.control_socket, "");
	ck_assert_int_eq(cfg.verify, VERIFY_OFF);
}
END_TEST

START_TEST(test_parse_size)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "512B", 512 },
		{ "4K", 4096 },
		{ "4k", 4096 },
		{ "4KB", 4096 },
		{ "4KiB", 4096 },
		{ "4M", 4ull << 20 },
		{ "2G", 2ull << 30 },
		{ "2 G", 2ull << 30 },
		{ "3T", 3ull << 40 },
		{ "1.5G", 3ull << 29 },
		{ "0.5K", 512 },
		{ "16383T", 16383ull << 40 },
		{ "16777215T", 16777215ull << 40 },
		{ "18446744073709551615", UINT64_MAX },
	};
	static const char *const bad[] = {
		"200Q", "", "-1", "+1", "1.5.5G", "99999999T", "18446744073709551616",
		"16777216T", "G", ".5G", "1.", "4MBB", "4Ki", "4 ", " 4", "1.5", "4M4", "0x10",
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 1;
		ck_assert_msg(config_parse_size(good[i].s, &v) == 0, "'%s' rejected", good[i].s);
		ck_assert_msg(v == good[i].v, "'%s' gave %llu", good[i].s, (unsigned long long)v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(config_parse_size(bad[i], &v) == -EINVAL, "'%s' accepted", bad[i]);
}
END_TEST

START_TEST(test_parse_duration)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} good[] = {
		{ "500ms", 500 }, { "30s", 30000 }, { "2m", 120000 }, { "1h", 3600000 },
		{ "30", 30000 }, { "0", 0 }, { "1.5s", 1500 }, { "0.25", 250 }, { "10 s", 10000 },
		{ "5MS", 5 },
	};
	static const char *const bad[] = {
		"", "5x", "-1", "1.2.3s", "ms", "s", "99999999999999999999h", "5000000000000000h",
		"1d", "5 ms ", "5 ",
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 1;
		ck_assert_msg(config_parse_duration_ms(good[i].s, &v) == 0, "'%s' rejected",
			      good[i].s);
		ck_assert_msg(v == good[i].ms, "'%s' gave %llu", good[i].s, (unsigned long long)v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(config_parse_duration_ms(bad[i], &v) == -EINVAL, "'%s' accepted",
			      bad[i]);
}
END_TEST

START_TEST(test_format_size)
{
	static const struct {
		uint64_t v;
		const char *s;
	} cases[] = {
		{ 0, "0" },
		{ 123, "123" },
		{ 1000, "1000" },
		{ 512 << 10, "512K" },
		{ 4 << 20, "4M" },
		{ 2ull << 30, "2G" },
		{ 1ull << 40, "1T" },
		{ 3ull << 29, "1536M" },
		{ (3ull << 29) + 1, "1.5G" },
		{ 1536, "1.5K" },
		{ (1ull << 30) - 1, "1024.0M" },
	};
	char buf[32];
	uint64_t back;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_str_eq(config_format_size(cases[i].v, buf, sizeof(buf)), cases[i].s);
		if (strchr(cases[i].s, '.'))
			continue;
		/* Exact forms read back to the same number. */
		ck_assert_int_eq(config_parse_size(buf, &back), 0);
		ck_assert_uint_eq(back, cases[i].v);
	}
	/* A short buffer is cut, not overrun. */
	ck_assert_str_eq(config_format_size(1536, buf, 3), "1.");
}
END_TEST

START_TEST(test_enums)
{
	struct mows_config cfg;
	char err[512], want[8192];

	config_defaults(&cfg);
	ck_assert_int_eq(config_set(&cfg, "hugepages", "on", "command line", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.hugepages, HUGEPAGES_ON);
	ck_assert_int_eq(config_set(&cfg, "hugepages", "off", "command line", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.hugepages, HUGEPAGES_OFF);
	ck_assert_int_eq(config_set(&cfg, "hugepages", "auto", "command line", err, sizeof(err)),
			 0);
	ck_assert_int_eq(cfg.hugepages, HUGEPAGES_AUTO);
	ck_assert_int_eq(config_set(&cfg, "verify", "off", "x", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.verify, VERIFY_OFF);
	ck_assert_int_eq(config_set(&cfg, "verify", "chunk", "x", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.verify, VERIFY_CHUNK);
	ck_assert_int_eq(config_set(&cfg, "verify", "file", "x", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.verify, VERIFY_FILE);
	ck_assert_int_eq(config_set(&cfg, "verify", "strict", "x", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.verify, VERIFY_STRICT);
	ck_assert_int_eq(config_set(&cfg, "log_level", "error", "x", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.log_level, LOG_ERR);
	ck_assert_int_eq(config_set(&cfg, "log_level", "warn", "x", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.log_level, LOG_WARNING);
	ck_assert_int_eq(config_set(&cfg, "log-level", "info", "x", err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.log_level, LOG_INFO);

	ck_assert_int_eq(config_set(&cfg, "hugepages", "maybe", "mows.conf:4", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "mows.conf:4: hugepages 'maybe': expected auto, on or off");
	ck_assert_int_eq(config_set(&cfg, "verify", "", "mows.conf:5", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "mows.conf:5: verify '': expected off, chunk, file or strict");
	ck_assert_int_eq(config_set(&cfg, "log_level", "loud", "mows.conf:6", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "mows.conf:6: log_level 'loud': expected error, warn, info or debug");
	/* A failed set leaves the old value. */
	ck_assert_int_eq(cfg.hugepages, HUGEPAGES_AUTO);

	ck_assert_str_eq(config_hugepages_name(HUGEPAGES_AUTO), "auto");
	ck_assert_str_eq(config_hugepages_name(HUGEPAGES_ON), "on");
	ck_assert_str_eq(config_hugepages_name(HUGEPAGES_OFF), "off");
	ck_assert_str_eq(config_verify_name(VERIFY_OFF), "off");
	ck_assert_str_eq(config_verify_name(VERIFY_CHUNK), "chunk");
	ck_assert_str_eq(config_verify_name(VERIFY_FILE), "file");
	ck_assert_str_eq(config_verify_name(VERIFY_STRICT), "strict");
}
END_TEST

START_TEST(test_ranges)
{
	static const struct {
		const char *key, *value;
		int rc;
	} cases[] = {
		{ "fill_threads", "0", -EINVAL },   { "fill_threads", "1", 0 },
		{ "fill_threads", "256", 0 },       { "fill_threads", "257", -EINVAL },
		{ "fill_threads", "4.0", -EINVAL }, { "fill_threads", "4K", -EINVAL },
		{ "fill_threads", "", -EINVAL },    { "readahead_kb", "0", 0 },
		{ "readahead_kb", "65536", 0 },     { "readahead_kb", "65537", -EINVAL },
		{ "readahead_chunks", "64", 0 },    { "readahead_chunks", "65", -EINVAL },
		{ "fill_timeout", "100ms", 0 },     { "fill_timeout", "99ms", -EINVAL },
		{ "fill_timeout", "1h", 0 },        { "fill_timeout", "61m", -EINVAL },
		{ "attr_timeout", "0", 0 },         { "attr_timeout", "3601s", -EINVAL },
		{ "chunk_size", "64K", 0 },         { "chunk_size", "256M", 0 },
		{ "chunk_size", "32K", -EINVAL },   { "chunk_size", "512M", -EINVAL },
		{ "chunk_size", "3M", -EINVAL },    { "crc32_file", "", -EINVAL },
		{ "backing", "", 0 },               { "control_socket", "", 0 },
	};
	struct mows_config cfg;
	char err[512];

	config_defaults(&cfg);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(config_set(&cfg, cases[i].key, cases[i].value, "test", err,
					 sizeof(err)) == cases[i].rc,
			      "%s = '%s'", cases[i].key, cases[i].value);
}
END_TEST

START_TEST(test_range_messages)
{
	struct mows_config cfg;
	char err[512], want[8192];

	config_defaults(&cfg);
	ck_assert_int_eq(config_set(&cfg, "fill_threads", "300", "command line", err,
				    sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "command line: fill_threads '300': expected a whole number from 1 to 256");
	ck_assert_int_eq(config_set(&cfg, "fill_timeout", "2h", "command line", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "command line: fill_timeout '2h': expected a duration from 100ms "
		  "to 1h, such as 500ms, 30s or 2m");
	ck_assert_int_eq(config_set(&cfg, "chunk_size", "3M", "command line", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "command line: chunk_size '3M': expected a power of two from 64K "
		  "to 256M, such as 4M");
	ck_assert_int_eq(config_set(&cfg, "crc32_file", "", "command line", err, sizeof(err)),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "crc32_file '': expected a path"));
	ck_assert_uint_eq(cfg.chunk_size, 4 << 20);
	ck_assert_uint_eq(cfg.fill_threads, 4);
}
END_TEST

START_TEST(test_path_too_long)
{
	struct mows_config cfg;
	char err[512];
	char *longpath = malloc(CONFIG_PATH_MAX + 1);

	ck_assert_ptr_nonnull(longpath);
	memset(longpath, 'a', CONFIG_PATH_MAX);
	longpath[CONFIG_PATH_MAX] = '\0';
	config_defaults(&cfg);
	ck_assert_int_eq(config_set(&cfg, "backing", longpath, "command line", err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(cfg.backing, "");
	longpath[CONFIG_PATH_MAX - 1] = '\0';
	ck_assert_int_eq(config_set(&cfg, "backing", longpath, "command line", err, sizeof(err)),
			 0);
	ck_assert_uint_eq(strlen(cfg.backing), CONFIG_PATH_MAX - 1);
	free(longpath);
}
END_TEST

START_TEST(test_command_line)
{
	struct mows_config cfg;
	char err[512], want[8192];

	config_defaults(&cfg);
	ck_assert_int_eq(config_set(&cfg, "max-memory", "8G", "command line", err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.max_memory, 8ull << 30);
	ck_assert_int_eq(config_set(&cfg, "fill-timeout", "5s", "command line", err, sizeof(err)),
			 0);
	ck_assert_uint_eq(cfg.fill_timeout_ms, 5000);
	ck_assert_int_eq(config_set(&cfg, "max-memory", "200Q", "command line", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "command line: max_memory '200Q': expected a size such as 512M or 200G");
	ck_assert_uint_eq(cfg.max_memory, 8ull << 30);
	ck_assert_int_eq(config_set(&cfg, "max-memroy", "8G", "command line", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "command line: unknown key 'max-memroy' (value '8G'; did you mean "
		  "'max_memory'? see mows.conf.example)");
	ck_assert_int_eq(config_set(&cfg, "colour", "red", "command line", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "command line: unknown key 'colour' (value 'red'; see "
		  "mows.conf.example for every key)");
	/* No message buffer is allowed too. */
	ck_assert_int_eq(config_set(&cfg, "colour", "red", "command line", NULL, 0), -EINVAL);

	ck_assert(config_is_key("max_memory"));
	ck_assert(config_is_key("max-memory"));
	ck_assert(config_is_key("log-level"));
	ck_assert(config_is_key("backing"));
	ck_assert(!config_is_key("max_memroy"));
	ck_assert(!config_is_key(""));
	ck_assert(!config_is_key("mows"));
}
END_TEST

START_TEST(test_err_bad_size)
{
	struct mows_config cfg;
	char path[4200], err[512], want[8192];

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "badsize.conf",
				   "# sizes\n[mows]\nmax_memory = 200Q\n", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "%s:3: max_memory '200Q': expected a size such as 512M or 200G", path);
	ck_assert_uint_eq(cfg.max_memory, 2ull << 30);

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "overflow.conf",
				   "max_memory = 99999999T\n", err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "%s:1: max_memory '99999999T': too large; expected a size such as "
		  "512M or 200G", path);

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "emptysize.conf",
				   "\n\nmax_memory =\n", err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "%s:3: max_memory '': expected a size such as 512M or 200G", path);

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "negsize.conf",
				   "max_memory = -1\n", err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "%s:1: max_memory '-1': expected a size such as 512M or 200G", path);
}
END_TEST

START_TEST(test_err_chunk_size)
{
	struct mows_config cfg;
	char path[4200], err[512], want[8192];

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "chunk.conf",
				   "chunk_size = 4M\nchunk_size = 3M\n", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "%s:2: chunk_size '3M': expected a power of two from 64K to 256M, "
		  "such as 4M", path);
	/* Nothing of a failed file is kept. */
	ck_assert_uint_eq(cfg.chunk_size, 4 << 20);
}
END_TEST

START_TEST(test_err_unknown_key)
{
	struct mows_config cfg;
	char path[4200], err[512], want[8192];

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "unknown.conf",
				   "fill_threads = 8\n\nmax_memroy = 4G\n", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "%s:3: unknown key 'max_memroy' (value '4G'; did you mean "
		  "'max_memory'? see mows.conf.example)", path);
	ck_assert_uint_eq(cfg.fill_threads, 4);

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "dash.conf",
				   "max-memory = 1G\nfill-threads = 2\n", err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.max_memory, 1ull << 30);
	ck_assert_uint_eq(cfg.fill_threads, 2);
}
END_TEST

START_TEST(test_err_unknown_section)
{
	struct mows_config cfg;
	char path[4200], err[512], want[8192];

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "section.conf",
				   "[mows]\nfill_threads = 8\n\n# other things\n[foo]\n"
				   "bar = 1\n", err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "%s:5: unknown section [foo]: keys go before any section or under "
		  "[mows]", path);

	/* Even a key that mows knows does not belong under another section. */
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "section2.conf",
				   "[cache]\nmax_memory = 1G\n", err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "%s:1: unknown section [cache]: keys go before any section or "
		  "under [mows]", path);
}
END_TEST

START_TEST(test_err_no_equals)
{
	struct mows_config cfg;
	char path[4200], err[512], want[8192];

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "noeq.conf",
				   "fill_threads = 8\nmax_memory 2G\n", err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "%s:2: cannot parse this line (expected key = value, [mows] or a "
		  "# comment)", path);

	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "nobracket.conf",
				   "[mows\nfill_threads = 8\n", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, ":1: cannot parse this line"));

	/* The first error in the file is the one reported. */
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "two.conf",
				   "oops\nfill_threads = 0\n", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, ":1: cannot parse this line"));
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "two2.conf",
				   "fill_threads = 0\noops\n", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, ":1: fill_threads '0'"));
}
END_TEST

START_TEST(test_err_long_line)
{
	struct mows_config cfg;
	char path[4200], err[512], want[8192], text[1024], longval[301];

	/* inih's lines hold 199 characters; a 300-character line must not be half-read. */
	memset(longval, 'x', 300);
	longval[300] = '\0';
	snprintf(text, sizeof(text), "fill_threads = 8\nbacking = /%s\nfill_threads = 9\n",
		 longval);
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "long.conf", text, err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "%s:2: line is longer than 199 characters (key 'backing'); shorten "
		  "it, or give the setting on the command line (--backing=value)", path);

	/* Even a comment: its tail would otherwise be read as a line of its own. */
	snprintf(text, sizeof(text), "# %.*s fill_threads = 7\nfill_threads = 9\n", 250, longval);
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "longcomment.conf", text, err,
				   sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, ":1: line is longer than 199 characters"));

	/* 199 characters is fine, with or without a newline at the end. */
	snprintf(text, sizeof(text), "# %.*s\nfill_threads = 9\n", 197, longval);
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "fits.conf", text, err, sizeof(err)),
			 0);
	ck_assert_uint_eq(cfg.fill_threads, 9);
	snprintf(text, sizeof(text), "fill_threads = 9\n# %.*s", 197, longval);
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "fits2.conf", text, err, sizeof(err)),
			 0);
	snprintf(text, sizeof(text), "fill_threads = 9\n# %.*s", 198, longval);
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "over.conf", text, err, sizeof(err)),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, ":2: line is longer"));
}
END_TEST

START_TEST(test_err_indented)
{
	struct mows_config cfg;
	char path[4200], err[512], want[8192];

	/* inih would make this control_socket = "fill_threads = 8". */
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "indent.conf",
				   "control_socket = /run/x.sock\n  fill_threads = 8\n", err,
				   sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "%s:2: line starts with a space or tab, which continues the value "
		  "above; remove the indentation", path);
	ck_assert_str_eq(cfg.control_socket, "");

	/* Indented comments and blank lines are harmless. */
	ck_assert_int_eq(load_text(&cfg, path, sizeof(path), "indent2.conf",
				   "fill_threads = 8\n   # note\n\t\n", err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.fill_threads, 8);
}
END_TEST

START_TEST(test_err_cannot_open)
{
	struct mows_config cfg;
	char path[4200], err[512], want[8192];

	config_defaults(&cfg);
	snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
	ck_assert_int_eq(config_load(&cfg, path, err, sizeof(err)), -ENOENT);
	ck_err_eq(err, want, "%s: cannot open: %s", path, strerror(ENOENT));

	ck_assert_int_eq(config_load(&cfg, tmpdir, err, sizeof(err)), -EISDIR);
	ck_err_eq(err, want, "%s: cannot read: %s", tmpdir, strerror(EISDIR));
}
END_TEST

START_TEST(test_err_backing)
{
	struct mows_config cfg;
	char path[4200], err[512], want[8192];

	config_defaults(&cfg);
	cfg.max_memory = 64 << 20;
	snprintf(path, sizeof(path), "%s/nope", tmpdir);
	ck_assert_int_eq(config_set(&cfg, "backing", path, "command line", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "backing '%s': %s; set backing to the model directory", path,
		  strerror(ENOENT));

	write_conf(path, sizeof(path), "plainfile", "not a directory\n");
	ck_assert_int_eq(config_set(&cfg, "backing", path, "command line", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "backing '%s': not a directory; set backing to the model directory",
		  path);

	ck_assert_int_eq(config_set(&cfg, "backing", tmpdir, "command line", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_err_memory)
{
	struct mows_config cfg;
	char err[512], want[8192];

	config_defaults(&cfg);
	cfg.max_memory = 16 << 20;
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "max_memory 16M holds 4 chunks of 4M; mows needs at least 14 (raise "
		  "max_memory to at least 56M or lower chunk_size)");

	cfg.max_memory = 56 << 20;
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);

	/* More fill threads need more chunks. */
	cfg.fill_threads = 16;
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "needs at least 38 (raise max_memory to at least 152M"));

	config_defaults(&cfg);
	cfg.max_memory = 1000ull << 40;
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strncmp(err, "max_memory 1000T is more than this machine's available "
			      "memory (", 56) == 0, "%s", err);
	ck_assert_ptr_nonnull(strstr(err, "); lower max_memory"));

	/* A struct filled by hand gets its chunk_size checked too (and no division by 0). */
	config_defaults(&cfg);
	cfg.max_memory = 64 << 20;
	cfg.chunk_size = 0;
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "chunk_size 0: expected a power of two"));
}
END_TEST

START_TEST(test_tls)
{
	struct mows_config cfg;
	char path[4200], err[512], want[8192];

	config_defaults(&cfg);
	cfg.max_memory = 64 << 20;
	ck_assert_int_eq(cfg.tls, 1);
	ck_assert_str_eq(cfg.tls_cert, "");
	ck_assert_int_eq(cfg.rdma_verify, RDMA_VERIFY_SHA256);

	/* tls = off only with insecure = true. */
	ck_assert_int_eq(config_set(&cfg, "tls", "off", "command line", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "tls = off sends peer traffic, chunks included, in plaintext; set "
		  "insecure = true as well to allow that, or remove tls = off");
	ck_assert_int_eq(config_set(&cfg, "insecure", "true", "command line", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
	/* With listen and insecure but no secret, TLS has nothing to authenticate with. */
	ck_assert_int_eq(config_set(&cfg, "listen", "127.0.0.1:7070", "command line", err,
				    sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(config_set(&cfg, "tls", "on", "command line", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "insecure = true without secret_file or tls_cert leaves TLS nothing "
		  "to authenticate with; set secret_file (or tls_cert, tls_key and tls_ca), or "
		  "tls = off to share in plaintext");
	ck_assert_int_eq(config_set(&cfg, "tls", "maybe", "mows.conf:3", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "mows.conf:3: tls 'maybe': expected on or off");

	/* The three files go together, exist, and make a secret_file unnecessary. */
	config_defaults(&cfg);
	cfg.max_memory = 64 << 20;
	write_conf(path, sizeof(path), "tls.pem", "x\n");
	ck_assert_int_eq(config_set(&cfg, "tls_cert", path, "command line", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "tls_cert, tls_key and tls_ca go together (tls_key is not set); set "
		  "all three for certificates, or none to use secret_file");
	ck_assert_int_eq(config_set(&cfg, "tls_key", path, "command line", err, sizeof(err)), 0);
	snprintf(cfg.tls_ca, sizeof(cfg.tls_ca), "%s/nope.pem", tmpdir);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_err_eq(err, want, "tls_ca '%s': %s; set tls_ca to the PEM certificate of the CA that "
		  "signs the peers' certificates", cfg.tls_ca, strerror(ENOENT));
	ck_assert_int_eq(config_set(&cfg, "tls_ca", path, "command line", err, sizeof(err)), 0);
	ck_assert_int_eq(config_set(&cfg, "listen", "127.0.0.1:7070", "command line", err,
				    sizeof(err)), 0);
	ck_assert_msg(config_validate(&cfg, err, sizeof(err)) == 0, "%s", err);
	cfg.tls_cert[0] = '\0';
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "(tls_cert is not set)"));

	/* rdma_verify */
	ck_assert_int_eq(config_set(&cfg, "rdma_verify", "crc32", "command line", err,
				    sizeof(err)), 0);
	ck_assert_int_eq(cfg.rdma_verify, RDMA_VERIFY_CRC32);
	ck_assert_str_eq(config_rdma_verify_name(cfg.rdma_verify), "crc32");
	ck_assert_int_eq(config_set(&cfg, "rdma-verify", "md5", "command line", err, sizeof(err)),
			 -EINVAL);
	ck_err_eq(err, want, "command line: rdma_verify 'md5': expected sha256 or crc32");
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("parse");
	TCase *tf = tcase_create("file");
	TCase *tv = tcase_create("validate");

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_min_chunks);
	tcase_add_test(tc, test_parse_size);
	tcase_add_test(tc, test_parse_duration);
	tcase_add_test(tc, test_format_size);
	tcase_add_test(tc, test_enums);
	tcase_add_test(tc, test_ranges);
	tcase_add_test(tc, test_range_messages);
	tcase_add_test(tc, test_path_too_long);
	tcase_add_test(tc, test_command_line);
	suite_add_tcase(s, tc);

	tcase_add_test(tf, test_load_every_key);
	tcase_add_test(tf, test_load_example);
	tcase_add_test(tf, test_load_later_wins_and_empty_paths);
	tcase_add_test(tf, test_err_bad_size);
	tcase_add_test(tf, test_err_chunk_size);
	tcase_add_test(tf, test_err_unknown_key);
	tcase_add_test(tf, test_err_unknown_section);
	tcase_add_test(tf, test_err_no_equals);
	tcase_add_test(tf, test_err_long_line);
	tcase_add_test(tf, test_err_indented);
	tcase_add_test(tf, test_err_cannot_open);
	suite_add_tcase(s, tf);

	tcase_add_test(tv, test_err_backing);
	tcase_add_test(tv, test_err_memory);
	tcase_add_test(tv, test_tls);
	suite_add_tcase(s, tv);
	return s;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	SRunner *sr;
	int failed;

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	sr = srunner_create(config_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? 1 : 0;
}
