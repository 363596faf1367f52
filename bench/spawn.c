/*
 * The benchmarks' stopwatch: spawn OUT CMD [ARG...] runs CMD, with the
 * descriptors it was given, and writes "WALL_SECONDS PEAK_RSS_KIB" to OUT;
 * it exits with CMD's status (128+N for signal N).
 *
 * Linux keeps a process's peak RSS across execve(), so a command started
 * from a big process (python3) reports at least that process's size.  This
 * small process forks and execs CMD itself: the peak RSS is CMD's own.
 * scripts/bench.sh and scripts/bench-backup.sh build it into their temp dir.
 */
#define _GNU_SOURCE
#include <sys/resource.h>
#include <sys/wait.h>

#include <stdio.h>
#include <time.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	struct timespec t0, t1;
	struct rusage ru;
	FILE *out;
	pid_t pid;
	int st;

	if (argc < 3) {
		fprintf(stderr, "usage: spawn OUT CMD [ARG...]\n");
		return 125;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((pid = fork()) < 0) {
		perror("spawn: fork");
		return 125;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	if (wait4(pid, &st, 0, &ru) < 0) {
		perror("spawn: wait4");
		return 125;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if ((out = fopen(argv[1], "w")) == NULL) {
		perror(argv[1]);
		return 125;
	}
	fprintf(out, "%.6f %ld\n", (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, ru.ru_maxrss);
	if (fclose(out) != 0)
		return 125;
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}
