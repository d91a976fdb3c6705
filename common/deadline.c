#include "common/deadline.h"

#include <errno.h>
#include <poll.h>

uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct deadline deadline_in_ms(int64_t ms)
{
	struct deadline dl;
	clock_gettime(CLOCK_MONOTONIC, &dl.at);
	dl.at.tv_sec += ms / 1000;
	dl.at.tv_nsec += (ms % 1000) * 1000000;
	if (dl.at.tv_nsec >= 1000000000) {
		dl.at.tv_sec++;
		dl.at.tv_nsec -= 1000000000;
	}
	return dl;
}

int64_t deadline_left_ms(const struct deadline *dl)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t ns = (int64_t)(dl->at.tv_sec - now.tv_sec) * 1000000000 +
		     (dl->at.tv_nsec - now.tv_nsec);
	return ns <= 0 ? 0 : (ns + 999999) / 1000000;
}

bool deadline_passed(const struct deadline *dl)
{
	return deadline_left_ms(dl) == 0;
}

int wait_readable_or_stop(int fd, int stop_fd)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = stop_fd, .events = POLLIN } };
	for (;;) {
		int n = poll(p, 2, -1);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (p[1].revents)
			return 0;
		if (p[0].revents)
			return 1;
	}
}

int deadline_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t attr;
	int rc = pthread_condattr_init(&attr);
	if (rc)
		return -rc;
	rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (!rc)
		rc = pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
	return -rc;
}

int deadline_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct deadline *dl)
{
	int rc = pthread_cond_timedwait(cond, mutex, &dl->at);
	return rc == ETIMEDOUT ? -ETIMEDOUT : 0;
}
