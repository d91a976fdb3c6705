#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/chunkmap.h"
#include "cache/manifest.h"
#include "common/crc.h"
#include "common/log.h"

static struct cache_manifest *parse(const char *text, unsigned *nskipped)
{
	struct cache_manifest *m = cache_manifest_parse(text, strlen(text), "crc32.txt", nskipped);

	ck_assert_ptr_nonnull(m);
	return m;
}

static void assert_crc(const struct cache_manifest *m, const char *path, uint32_t want)
{
	uint32_t crc = 0;

	ck_assert_msg(cache_manifest_lookup(m, path, &crc), "'%s' not found", path);
	ck_assert_msg(crc == want, "'%s': %08x, expected %08x", path, crc, want);
}

static void assert_absent(const struct cache_manifest *m, const char *path)
{
	uint32_t crc = 0x5a5a5a5a;

	ck_assert_msg(!cache_manifest_lookup(m, path, &crc), "'%s' found", path);
	ck_assert_uint_eq(crc, 0x5a5a5a5a);
}

START_TEST(test_newlines)
{
	unsigned nskipped = 99;
	struct cache_manifest *m = parse("deadbeef a\n01234567 b/c.bin\n", &nskipped);

	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(cache_manifest_count(m), 2);
	assert_crc(m, "a", 0xdeadbeef);
	assert_crc(m, "b/c.bin", 0x01234567);
	cache_manifest_free(m);
}
END_TEST

START_TEST(test_any_whitespace)
{
	unsigned nskipped = 99;
	struct cache_manifest *m = parse("\n\n  00000001\ta\r\n\t00000002   b 00000003 c\n\n"
					 "00000004\n\nd\v00000005\fe 00000006 f", &nskipped);

	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(cache_manifest_count(m), 6);
	assert_crc(m, "a", 1);
	assert_crc(m, "b", 2);
	assert_crc(m, "c", 3);
	assert_crc(m, "d", 4); /* a pair may span lines: tokens, not lines, make entries */
	assert_crc(m, "e", 5);
	assert_crc(m, "f", 6); /* no final newline */
	cache_manifest_free(m);
}
END_TEST

START_TEST(test_empty_and_blank)
{
	unsigned nskipped = 99;
	struct cache_manifest *m = cache_manifest_parse("", 0, "crc32.txt", &nskipped);

	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(cache_manifest_count(m), 0);
	assert_absent(m, "a");
	cache_manifest_free(m);
	m = parse(" \n\t\n\n", &nskipped);
	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(cache_manifest_count(m), 0);
	cache_manifest_free(m);
	cache_manifest_free(NULL);
}
END_TEST

START_TEST(test_uppercase_hex)
{
	struct cache_manifest *m = parse("DEADBEEF a\nCbF43926 b\n", NULL);

	assert_crc(m, "a", 0xdeadbeef);
	assert_crc(m, "b", 0xcbf43926);
	cache_manifest_free(m);
}
END_TEST

START_TEST(test_dot_slash_stripped)
{
	unsigned nskipped = 99;
	struct cache_manifest *m = parse("00000001 ./a/b\n00000002 ./c\n", &nskipped);

	ck_assert_uint_eq(nskipped, 0);
	assert_crc(m, "a/b", 1);
	assert_crc(m, "c", 2);
	assert_absent(m, "./a/b");
	assert_absent(m, "/a/b");
	cache_manifest_free(m);
}
END_TEST

START_TEST(test_comments)
{
	unsigned nskipped = 99;
	struct cache_manifest *m = parse("# made by mows-crc32 00000009 z\n"
					 "00000001 a\n"
					 "   # indented comment 00000008 y\n"
					 "#\n"
					 "00000002 #b\n", /* a path may start with '#' */
					 &nskipped);

	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(cache_manifest_count(m), 2);
	assert_crc(m, "a", 1);
	assert_crc(m, "#b", 2);
	assert_absent(m, "z");
	assert_absent(m, "y");
	cache_manifest_free(m);
}
END_TEST

/* Each bad entry sits between two good ones, which must still parse. */
static const char *const bad_entries[] = {
	"xyz foo",	    "1234567 foo",     "123456789 foo", "1234567g foo",
	"0x123456 foo",	    "-1234567 foo",    "00000000 /etc/passwd",
	"00000000 ..",	    "00000000 ../x",   "00000000 ../etc/passwd",
	"00000000 a/../b",  "00000000 a/..",   "00000000 a//b", "00000000 a/./b",
	"00000000 a/",	    "00000000 .",      "00000000 ./",   "00000000 ././a",
	"00000000 .//a",    "00000000 //a",    "00000000 /",
};

START_TEST(test_malformed_entry_skipped)
{
	const char *bad = bad_entries[_i];
	char text[256];
	unsigned nskipped = 99;
	struct cache_manifest *m;

	snprintf(text, sizeof(text), "00000001 good1\n%s\n00000002 good2\n", bad);
	m = parse(text, &nskipped);
	ck_assert_msg(nskipped == 1, "'%s': %u skipped", bad, nskipped);
	ck_assert_uint_eq(cache_manifest_count(m), 2);
	assert_crc(m, "good1", 1);
	assert_crc(m, "good2", 2);
	cache_manifest_free(m);
}
END_TEST

START_TEST(test_all_malformed_together)
{
	char text[4096] = "";
	unsigned nskipped = 0, n = sizeof(bad_entries) / sizeof(bad_entries[0]);
	struct cache_manifest *m;

	for (unsigned i = 0; i < n; i++) {
		strcat(text, bad_entries[i]);
		strcat(text, i % 2 ? "\n" : "\n0000000a good\n");
	}
	m = parse(text, &nskipped);
	ck_assert_uint_eq(nskipped, n);
	ck_assert_uint_eq(cache_manifest_count(m), 1);
	assert_crc(m, "good", 0xa);
	cache_manifest_free(m);
}
END_TEST

START_TEST(test_trailing_lone_token)
{
	unsigned nskipped = 99;
	struct cache_manifest *m = parse("00000001 a\n00000002 b\ndeadbeef\n", &nskipped);

	ck_assert_uint_eq(nskipped, 1);
	ck_assert_uint_eq(cache_manifest_count(m), 2);
	assert_crc(m, "a", 1);
	assert_crc(m, "b", 2);
	assert_absent(m, "deadbeef");
	cache_manifest_free(m);
}
END_TEST

START_TEST(test_nul_in_path)
{
	static const char text[] = "00000001 a\0b\n00000002 c\n";
	unsigned nskipped = 99;
	struct cache_manifest *m = cache_manifest_parse(text, sizeof(text) - 1, "crc32.txt",
							&nskipped);

	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(nskipped, 1);
	assert_absent(m, "a");
	assert_crc(m, "c", 2);
	cache_manifest_free(m);
}
END_TEST

/* Only @len bytes count: the text need not end in a NUL, nor end at one. */
START_TEST(test_length_bounds_text)
{
	unsigned nskipped = 99;
	struct cache_manifest *m = cache_manifest_parse("00000001 abc 00000002 d", 10, "x",
							&nskipped);

	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(cache_manifest_count(m), 1);
	assert_crc(m, "a", 1);
	assert_absent(m, "abc");
	cache_manifest_free(m);
}
END_TEST

START_TEST(test_duplicate_path)
{
	unsigned nskipped = 99;
	struct cache_manifest *m = parse("00000001 a\n00000002 b\n00000003 ./a\n", &nskipped);

	ck_assert_uint_eq(nskipped, 0);
	ck_assert_uint_eq(cache_manifest_count(m), 2);
	assert_crc(m, "a", 3);
	assert_crc(m, "b", 2);
	cache_manifest_free(m);
}
END_TEST

START_TEST(test_lookup_misses)
{
	struct cache_manifest *m = parse("00000001 dir/file.bin\n00000002 File\n", NULL);

	assert_absent(m, "dir");
	assert_absent(m, "dir/");
	assert_absent(m, "dir/file");
	assert_absent(m, "dir/file.bin2");
	assert_absent(m, "ir/file.bin");
	assert_absent(m, "file");
	assert_absent(m, "");
	assert_crc(m, "File", 2);
	cache_manifest_free(m);
}
END_TEST

START_TEST(test_path_ok)
{
	static const char *const good[] = { "a", "a/b", "a.b", "..a", "a..", ".hidden", "a/.b/c",
					    "#x", "a b" };
	static const char *const bad[] = { "", "/", "/a", ".", "..", "./a", "a/.", "a/..",
					   "a/../b", "../a", "a//b", "a/" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(cache_manifest_path_ok(good[i]), "'%s' refused", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!cache_manifest_path_ok(bad[i]), "'%s' accepted", bad[i]);
}
END_TEST

/* Runs the parser with stderr going to a file and returns what the log said. */
static char *parse_capturing(const char *text, unsigned *nskipped)
{
	FILE *f = tmpfile();
	int saved = dup(2);
	static char out[8192];
	size_t n;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(saved, 0);
	log_set_level(LOG_WARNING);
	ck_assert_int_eq(dup2(fileno(f), 2), 2);
	cache_manifest_free(parse(text, nskipped));
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	fclose(f);
	return out;
}

START_TEST(test_warnings_name_line_and_token)
{
	unsigned nskipped = 0;
	const char *log = parse_capturing("# header\n"
					  "00000001 a\n"
					  "deadbeef ../etc/passwd\n"
					  "xyz foo\n"
					  "00000002 a\n"
					  "00000003 a//b\n"
					  "cafe0001\n",
					  &nskipped);

	ck_assert_uint_eq(nskipped, 4);
	ck_assert_ptr_nonnull(strstr(log, "crc32.txt:3: skipping 'deadbeef ../etc/passwd': "
					  "path leads outside the backing root"));
	ck_assert_ptr_nonnull(strstr(log, "crc32.txt:4: skipping 'xyz foo': expected 8 hex digits"));
	ck_assert_ptr_nonnull(strstr(log, "crc32.txt:5: 'a' listed again (first on line 2)"));
	ck_assert_ptr_nonnull(strstr(log, "crc32.txt:6: skipping '00000003 a//b': "));
	ck_assert_ptr_nonnull(strstr(log, "crc32.txt:7: skipping 'cafe0001'"));
}
END_TEST

static char tmp_root[64];

static int tmp_dir(void)
{
	int fd;

	strcpy(tmp_root, "/tmp/check_manifest.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp_root));
	fd = open(tmp_root, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(mkdirat(fd, "root", 0700), 0);
	ck_assert_int_eq(mkdirat(fd, "root/sub", 0700), 0);
	return fd;
}

static void write_at(int dirfd, const char *path, const char *text)
{
	int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void tmp_dir_remove(int fd)
{
	char cmd[128];

	close(fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_load)
{
	int top = tmp_dir(), root = openat(top, "root", O_RDONLY | O_DIRECTORY);
	struct cache_manifest *m;

	write_at(root, "crc32.txt", "00000001 a\n00000002 ./sub/b\n");
	write_at(root, "sub/m.txt", "00000003 c\n");
	ck_assert_int_eq(symlinkat("sub/m.txt", root, "inside-link"), 0);
	m = cache_manifest_load(root, "crc32.txt");
	ck_assert_ptr_nonnull(m);
	assert_crc(m, "a", 1);
	assert_crc(m, "sub/b", 2);
	cache_manifest_free(m);
	m = cache_manifest_load(root, "inside-link");
	ck_assert_ptr_nonnull(m);
	assert_crc(m, "c", 3);
	cache_manifest_free(m);
	close(root);
	tmp_dir_remove(top);
}
END_TEST

START_TEST(test_load_missing)
{
	int top = tmp_dir(), root = openat(top, "root", O_RDONLY | O_DIRECTORY);

	errno = 0;
	ck_assert_ptr_null(cache_manifest_load(root, "crc32.txt"));
	ck_assert_int_eq(errno, ENOENT);
	errno = 0;
	ck_assert_ptr_null(cache_manifest_load(root, "sub"));
	ck_assert_int_eq(errno, EISDIR);
	close(root);
	tmp_dir_remove(top);
}
END_TEST

START_TEST(test_load_outside_root)
{
	int top = tmp_dir(), root = openat(top, "root", O_RDONLY | O_DIRECTORY);
	char abs[128];

	write_at(top, "outside.txt", "00000001 a\n");
	ck_assert_int_eq(symlinkat("../outside.txt", root, "crc32.txt"), 0);
	ck_assert_int_eq(symlinkat("/etc/passwd", root, "abs-link"), 0);
	snprintf(abs, sizeof(abs), "%s/outside.txt", tmp_root);
	errno = 0;
	ck_assert_ptr_null(cache_manifest_load(root, "crc32.txt"));
	ck_assert_int_eq(errno, EXDEV);
	errno = 0;
	ck_assert_ptr_null(cache_manifest_load(root, "abs-link"));
	ck_assert_int_eq(errno, EXDEV);
	errno = 0;
	ck_assert_ptr_null(cache_manifest_load(root, "../outside.txt"));
	ck_assert_int_eq(errno, EXDEV);
	errno = 0;
	ck_assert_ptr_null(cache_manifest_load(root, abs));
	ck_assert_int_eq(errno, EXDEV);
	close(root);
	tmp_dir_remove(top);
}
END_TEST

#define MANY 10000

static char *many_entries(size_t *len)
{
	char *text = malloc(MANY * 64);
	size_t off = 0;

	ck_assert_ptr_nonnull(text);
	for (unsigned i = 0; i < MANY; i++)
		off += (size_t)sprintf(text + off, "%08x dir%u/model-%05u.safetensors\n",
				       i * 2654435761u, i % 37, i);
	*len = off;
	return text;
}

static void assert_many(const struct cache_manifest *m)
{
	char path[64];

	ck_assert_uint_eq(cache_manifest_count(m), MANY);
	for (unsigned i = 0; i < MANY; i++) {
		snprintf(path, sizeof(path), "dir%u/model-%05u.safetensors", i % 37, i);
		assert_crc(m, path, i * 2654435761u);
		snprintf(path, sizeof(path), "dir%u/model-%05u.safetensors", i % 37 + 1, i);
		assert_absent(m, path);
	}
}

START_TEST(test_many_entries)
{
	size_t len;
	char *text = many_entries(&len);
	unsigned nskipped = 99;
	struct cache_manifest *m = cache_manifest_parse(text, len, "crc32.txt", &nskipped);

	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(nskipped, 0);
	assert_many(m);
	cache_manifest_free(m);
	free(text);
}
END_TEST

START_TEST(test_load_many_entries)
{
	int top = tmp_dir(), root = openat(top, "root", O_RDONLY | O_DIRECTORY);
	size_t len;
	char *text = many_entries(&len);
	struct cache_manifest *m;

	write_at(root, "crc32.txt", text);
	m = cache_manifest_load(root, "crc32.txt");
	ck_assert_ptr_nonnull(m);
	assert_many(m);
	cache_manifest_free(m);
	free(text);
	close(root);
	tmp_dir_remove(top);
}
END_TEST

/* ---- crc32.chunks ---- */

static struct cache_chunkmap *cparse(const char *text, uint64_t target, unsigned *nskipped,
				     char *err)
{
	return cache_chunkmap_parse(text, strlen(text), "crc32.chunks", target, nskipped, err,
				    256);
}

START_TEST(test_chunks_good)
{
	char err[256] = "";
	unsigned skipped = 9;
	const uint32_t *crcs;
	uint64_t size, n;
	struct cache_chunkmap *m = cparse("# comment\n\nmows-crc32-chunks 1 4096\r\n"
					  "8193 ./a/b.bin 00000001 DEADBEEF 0000000a\r\n"
					  "0 empty\n"
					  "4096\tone\t12345678", 0, &skipped, err);
	ck_assert_msg(m != NULL, "%s", err);
	ck_assert_uint_eq(skipped, 0);
	ck_assert_uint_eq(cache_chunkmap_count(m), 3);
	ck_assert_uint_eq(cache_chunkmap_chunk_size(m), 4096);
	ck_assert(cache_chunkmap_lookup(m, "a/b.bin", &size, &crcs, &n));
	ck_assert_uint_eq(size, 8193);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(crcs[0], 1);
	ck_assert_uint_eq(crcs[1], 0xdeadbeef);
	ck_assert_uint_eq(crcs[2], 10);
	ck_assert(cache_chunkmap_lookup(m, "empty", &size, &crcs, &n));
	ck_assert_uint_eq(n, 0);
	ck_assert(cache_chunkmap_lookup(m, "one", &size, &crcs, &n));
	ck_assert_uint_eq(crcs[0], 0x12345678);
	ck_assert(!cache_chunkmap_lookup(m, "a", &size, &crcs, &n));
	cache_chunkmap_free(m);
}
END_TEST

START_TEST(test_chunks_bad_header)
{
	static const char *bad[] = {
		"", "# only a comment\n", "crc32 1 4096\n", "mows-crc32-chunks 2 4096\n",
		"mows-crc32-chunks 1 4095\n", "mows-crc32-chunks 1 2048\n",
		"mows-crc32-chunks 1 4096 extra\n", "mows-crc32-chunks 1\n",
		"mows-crc32-chunks 1 2147483648\n", "mows-crc32-chunks 01 4096\n",
		"00000000 a.bin\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "";
		errno = 0;
		ck_assert_msg(cparse(bad[i], 0, NULL, err) == NULL, "accepted '%s'", bad[i]);
		ck_assert_int_eq(errno, EINVAL);
		ck_assert_msg(strstr(err, "crc32.chunks") != NULL, "error '%s' names no file", err);
	}
	char err[256];
	cparse("mows-crc32-chunks 2 4096\n", 0, NULL, err);
	ck_assert_msg(strstr(err, ":1: format version '2'") != NULL, "%s", err);
}
END_TEST

START_TEST(test_chunks_bad_lines_skipped)
{
	char err[256] = "";
	unsigned skipped = 0;
	const uint32_t *crcs;
	uint64_t size, n;
	struct cache_chunkmap *m = cparse("mows-crc32-chunks 1 4096\n"
					  "4097 few 00000001\n"            /* one CRC short */
					  "4096 many 00000001 00000002\n"  /* one too many */
					  "4096 hex 0000000g\n"
					  "4096 short 0001\n"
					  "-1 neg 00000001\n"
					  "1x sz 00000001\n"
					  "4096 ../out 00000001\n"
					  "4096 /abs 00000001\n"
					  "4096\n"
					  "99999999999999999999 big 00000001\n"
					  "4096 ok 00000003\n"
					  "4096 ok 00000004\n", 0, &skipped, err);
	ck_assert_msg(m != NULL, "%s", err);
	ck_assert_uint_eq(skipped, 10);
	ck_assert_uint_eq(cache_chunkmap_count(m), 1);
	ck_assert(cache_chunkmap_lookup(m, "ok", &size, &crcs, &n));
	ck_assert_uint_eq(crcs[0], 4); /* the later line wins */
	ck_assert(!cache_chunkmap_lookup(m, "few", &size, &crcs, &n));
	ck_assert(!cache_chunkmap_lookup(m, "many", &size, &crcs, &n));
	cache_chunkmap_free(m);
	/* A NUL byte inside a line. */
	static const char nul[] = "mows-crc32-chunks 1 4096\n4096 a\0b 00000001\n";
	m = cache_chunkmap_parse(nul, sizeof(nul) - 1, "x", 0, &skipped, err, sizeof(err));
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(skipped, 1);
	ck_assert_uint_eq(cache_chunkmap_count(m), 0);
	cache_chunkmap_free(m);
}
END_TEST

/* CRCs of 4 KiB pieces regrouped into 16 KiB chunks equal the CRCs of the 16 KiB chunks. */
START_TEST(test_chunks_regroup)
{
	enum { SIZE = 16384 * 2 + 5000 };
	unsigned char *buf = malloc(SIZE);
	char *text = malloc(64 + 9 * (SIZE / 4096 + 1) + 64);
	char err[256] = "";
	const uint32_t *crcs;
	uint64_t size, n;
	ck_assert(buf && text);
	for (size_t i = 0; i < SIZE; i++)
		buf[i] = (unsigned char)(i * 131 + (i >> 7));
	int len = sprintf(text, "mows-crc32-chunks 1 4096\n%d f", SIZE);
	for (size_t off = 0; off < SIZE; off += 4096)
		len += sprintf(text + len, " %08x",
			       mows_crc32(0, buf + off, SIZE - off < 4096 ? SIZE - off : 4096));
	struct cache_chunkmap *m = cparse(text, 16384, NULL, err);
	ck_assert_msg(m != NULL, "%s", err);
	ck_assert_uint_eq(cache_chunkmap_chunk_size(m), 16384);
	ck_assert_uint_eq(cache_chunkmap_file_chunk_size(m), 4096);
	ck_assert(cache_chunkmap_lookup(m, "f", &size, &crcs, &n));
	ck_assert_uint_eq(n, 3);
	for (uint64_t k = 0; k < 3; k++) {
		size_t l = SIZE - k * 16384 < 16384 ? SIZE - k * 16384 : 16384;
		ck_assert_uint_eq(crcs[k], mows_crc32(0, buf + k * 16384, l));
	}
	cache_chunkmap_free(m);
	/* A target that the file's chunk size does not divide is refused, saying so. */
	errno = 0;
	ck_assert_ptr_null(cparse(text, 2048, NULL, err));
	ck_assert_int_eq(errno, EXDEV);
	ck_assert_msg(strstr(err, "--chunk-size 2048") != NULL, "%s", err);
	free(text);
	free(buf);
}
END_TEST

START_TEST(test_chunks_name_and_writer)
{
	char *n = cache_chunkmap_name("crc32.txt");
	ck_assert_str_eq(n, "crc32.chunks");
	free(n);
	n = cache_chunkmap_name("sub/sums");
	ck_assert_str_eq(n, "sub/sums.chunks");
	free(n);
	n = cache_chunkmap_name(".txt");
	ck_assert_str_eq(n, ".txt.chunks");
	free(n);

	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	uint32_t crcs[2] = { 0xabcdef01, 7 };
	ck_assert_int_eq(cache_chunkmap_write_header(out, 65536), 0);
	ck_assert_int_eq(cache_chunkmap_write_entry(out, "x/y", 65537, crcs, 2), 0);
	fclose(out);
	char err[256] = "";
	const uint32_t *got;
	uint64_t size, k;
	struct cache_chunkmap *m = cache_chunkmap_parse(buf, len, "mem", 0, NULL, err,
							sizeof(err));
	ck_assert_msg(m != NULL, "%s", err);
	ck_assert(cache_chunkmap_lookup(m, "x/y", &size, &got, &k));
	ck_assert_uint_eq(size, 65537);
	ck_assert_uint_eq(got[0], 0xabcdef01);
	ck_assert_uint_eq(got[1], 7);
	cache_chunkmap_free(m);
	free(buf);
}
END_TEST

static Suite *manifest_suite(void)
{
	Suite *s = suite_create("manifest");
	TCase *parsing = tcase_create("parse");
	TCase *loading = tcase_create("load");

	tcase_add_test(parsing, test_newlines);
	tcase_add_test(parsing, test_any_whitespace);
	tcase_add_test(parsing, test_empty_and_blank);
	tcase_add_test(parsing, test_uppercase_hex);
	tcase_add_test(parsing, test_dot_slash_stripped);
	tcase_add_test(parsing, test_comments);
	tcase_add_loop_test(parsing, test_malformed_entry_skipped, 0,
			    sizeof(bad_entries) / sizeof(bad_entries[0]));
	tcase_add_test(parsing, test_all_malformed_together);
	tcase_add_test(parsing, test_trailing_lone_token);
	tcase_add_test(parsing, test_nul_in_path);
	tcase_add_test(parsing, test_length_bounds_text);
	tcase_add_test(parsing, test_duplicate_path);
	tcase_add_test(parsing, test_lookup_misses);
	tcase_add_test(parsing, test_path_ok);
	tcase_add_test(parsing, test_warnings_name_line_and_token);
	tcase_add_test(parsing, test_many_entries);
	suite_add_tcase(s, parsing);
	tcase_add_test(loading, test_load);
	tcase_add_test(loading, test_load_missing);
	tcase_add_test(loading, test_load_outside_root);
	tcase_add_test(loading, test_load_many_entries);
	suite_add_tcase(s, loading);
	TCase *chunks = tcase_create("chunks");
	tcase_add_test(chunks, test_chunks_good);
	tcase_add_test(chunks, test_chunks_bad_header);
	tcase_add_test(chunks, test_chunks_bad_lines_skipped);
	tcase_add_test(chunks, test_chunks_regroup);
	tcase_add_test(chunks, test_chunks_name_and_writer);
	suite_add_tcase(s, chunks);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(manifest_suite());
	int failed;

	/* Skipped entries are the point of many tests; their warnings would only be noise. */
	log_set_level(LOG_ERR);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
