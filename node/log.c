#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static bool to_syslog;
static bool debug;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void
log_init(bool verbose)
{
	debug = verbose;
}

void
log_use_syslog(void)
{
	openlog("hsmd", LOG_PID, LOG_DAEMON);
	to_syslog = true;
}

static void
vlog(int prio, const char *tag, const char *fmt, va_list ap)
{
	char msg[1024], ts[32];
	struct tm tm;
	time_t now = time(NULL);

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One event, one line: messages may quote client input. */
	for (char *p = msg; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (to_syslog) {
		syslog(prio, "%s", msg);
		return;
	}
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	pthread_mutex_lock(&lock);
	fprintf(stderr, "%s hsmd %s%s\n", ts, tag, msg);
	pthread_mutex_unlock(&lock);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_INFO, "", fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_WARNING, "warning: ", fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!debug)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, "debug: ", fmt, ap);
	va_end(ap);
}
