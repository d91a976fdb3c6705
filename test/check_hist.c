/*
 * common/hist.h: samples land in the bucket whose bound is the first at or above them, the
 * last counter takes the rest, count and sum add up, and adds from several threads at once
 * are all counted.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/hist.h"

START_TEST(test_bounds_ascend)
{
	for (unsigned b = 1; b < HIST_BUCKETS; b++)
		ck_assert_uint_lt(hist_bounds_ns[b - 1], hist_bounds_ns[b]);
}
END_TEST

START_TEST(test_bucket_placement)
{
	static struct hist h;
	struct hist_copy c;
	hist_add(&h, 0);                            /* first bucket */
	hist_add(&h, hist_bounds_ns[0]);            /* on a bound: that bucket */
	hist_add(&h, hist_bounds_ns[0] + 1);        /* just above: the next */
	hist_add(&h, hist_bounds_ns[HIST_BUCKETS - 1] + 1); /* above all: the last counter */
	hist_read(&h, &c);
	ck_assert_uint_eq(c.bucket[0], 2);
	ck_assert_uint_eq(c.bucket[1], 1);
	ck_assert_uint_eq(c.bucket[HIST_BUCKETS], 1);
	ck_assert_uint_eq(c.count, 4);
	ck_assert_uint_eq(c.sum_ns, 2 * hist_bounds_ns[0] + 1 + hist_bounds_ns[HIST_BUCKETS - 1] + 1);
}
END_TEST

#define THREADS 4
#define ADDS 100000

static void *adder(void *arg)
{
	struct hist *h = arg;
	for (unsigned i = 0; i < ADDS; i++)
		hist_add(h, (uint64_t)(i % 7) * 1000000u);
	return NULL;
}

START_TEST(test_concurrent_adds)
{
	static struct hist h;
	struct hist_copy c;
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, adder, &h), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	hist_read(&h, &c);
	ck_assert_uint_eq(c.count, (uint64_t)THREADS * ADDS);
	uint64_t sum = 0;
	for (unsigned i = 0; i < ADDS; i++)
		sum += (uint64_t)(i % 7) * 1000000u;
	ck_assert_uint_eq(c.sum_ns, THREADS * sum);
}
END_TEST

static Suite *hist_suite(void)
{
	Suite *s = suite_create("hist");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_bounds_ascend);
	tcase_add_test(tc, test_bucket_placement);
	tcase_add_test(tc, test_concurrent_adds);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(hist_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
