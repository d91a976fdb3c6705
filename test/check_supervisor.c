/*
 * fs/supervisor.h, the parts with no process behind them: the crash-loop backoff, the table
 * of opens every serving process shares (records found again, a record with opens never
 * reused, one without reused), and the environment a child reads (a bad one is refused with
 * the variables named; the saved INIT comes back as it was sent).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fs/mows.h"
#include "fs/supervisor.h"

START_TEST(test_backoff)
{
	ck_assert_uint_eq(super_backoff_ms(0), 0);
	ck_assert_uint_eq(super_backoff_ms(1), 0);
	ck_assert_uint_eq(super_backoff_ms(2), 500);
	ck_assert_uint_eq(super_backoff_ms(3), 1000);
	ck_assert_uint_eq(super_backoff_ms(4), 2000);
	ck_assert_uint_eq(super_backoff_ms(7), 16000);
	ck_assert_uint_eq(super_backoff_ms(8), 30000);
	ck_assert_uint_eq(super_backoff_ms(1000000), 30000);
}
END_TEST

static struct mows m;

/* A child's environment as the supervisor sets it; @init NULL for a first child. */
static void child_env(const char *init)
{
	int sv[2];
	char v[32];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	int ofd = memfd_create("opens-test", 0);
	ck_assert_int_ge(ofd, 0);
	ck_assert_int_eq(ftruncate(ofd, 65536 * (off_t)sizeof(struct mows_open_rec)), 0);
	snprintf(v, sizeof(v), "%d", sv[1]);
	setenv("MOWS_SUPER_FD", v, 1);
	snprintf(v, sizeof(v), "%d", ofd);
	setenv("MOWS_OPENS_FD", v, 1);
	setenv("MOWS_RESTARTS", "3", 1);
	if (init)
		setenv("MOWS_INIT", init, 1);
	else
		unsetenv("MOWS_INIT");
	unsetenv("MOWS_FUSE_FD");
}

START_TEST(test_attach_and_init)
{
	char err[512];
	size_t len;
	bool pt;
	child_env("1:0700000028000000");
	ck_assert(super_is_child());
	ck_assert_int_eq(super_child_attach(&m, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(m.super);
	ck_assert(!super_is_child()); /* the variables are not passed on */
	ck_assert_uint_eq(super_child_restarts(m.super), 3);
	ck_assert_int_eq(super_child_fuse_fd(m.super), -1);
	const unsigned char *init = super_child_init(m.super, &len, &pt);
	ck_assert_ptr_nonnull(init);
	ck_assert_uint_eq(len, 8);
	ck_assert(pt);
	ck_assert_uint_eq(init[0], 7);
	ck_assert_uint_eq(init[4], 0x28); /* minor 40 */
	super_child_free(m.super);
	m.super = NULL;
}
END_TEST

START_TEST(test_attach_refuses_bad_env)
{
	char err[512] = "";
	child_env("1:0g");
	ck_assert_int_eq(super_child_attach(&m, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(m.super);
	ck_assert_ptr_nonnull(strstr(err, "MOWS_INIT"));
	child_env(NULL);
	setenv("MOWS_FUSE_FD", "999", 1); /* not an open descriptor */
	ck_assert_int_eq(super_child_attach(&m, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "MOWS_FUSE_FD"));
	unsetenv("MOWS_FUSE_FD");
	unsetenv("MOWS_SUPER_FD");
	ck_assert_int_eq(super_child_attach(&m, err, sizeof(err)), 0); /* not supervised */
	ck_assert_ptr_null(m.super);
	ck_assert_uint_eq(super_child_restarts(NULL), 0);
}
END_TEST

#define N 5000

static unsigned listed;
static void count_one(void *arg, uint64_t nodeid)
{
	(void)arg, (void)nodeid;
	listed++;
}

START_TEST(test_opens_table)
{
	char err[512];
	child_env(NULL);
	ck_assert_int_eq(super_child_attach(&m, err, sizeof(err)), 0);
	struct super_child *sc = m.super;
	ck_assert_ptr_null(super_opens_rec(sc, 42, false));
	for (uint64_t id = 2; id < N + 2; id++) {
		struct mows_open_rec *r = super_opens_rec(sc, id, true);
		ck_assert_ptr_nonnull(r);
		ck_assert_uint_eq(r->plain + r->pt, 0);
		ck_assert_int_eq(r->backing_id, -1);
		r->plain = (uint32_t)id;
		r->pt = id % 2;
	}
	listed = 0;
	super_opens_foreach(sc, count_one, NULL);
	ck_assert_uint_eq(listed, N);
	/* Half close: their records may go to other ids, the rest stay as they were. */
	for (uint64_t id = 2; id < N + 2; id += 2) {
		struct mows_open_rec *r = super_opens_rec(sc, id, false);
		ck_assert_ptr_nonnull(r);
		r->plain = r->pt = 0;
	}
	for (uint64_t id = N + 2; id < N + 2 + N / 2; id++)
		super_opens_rec(sc, id, true)->plain = 1;
	for (uint64_t id = 3; id < N + 2; id += 2) {
		struct mows_open_rec *r = super_opens_rec(sc, id, false);
		ck_assert_ptr_nonnull(r);
		ck_assert_uint_eq(r->nodeid, id);
		ck_assert_uint_eq(r->plain, id);
	}
	listed = 0;
	super_opens_foreach(sc, count_one, NULL);
	ck_assert_uint_eq(listed, N);
	super_child_free(m.super);
	m.super = NULL;
}
END_TEST

static Suite *supervisor_suite(void)
{
	Suite *s = suite_create("supervisor");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_backoff);
	tcase_add_test(tc, test_attach_and_init);
	tcase_add_test(tc, test_attach_refuses_bad_env);
	tcase_add_test(tc, test_opens_table);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(supervisor_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
