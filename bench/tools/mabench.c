/* SPDX-License-Identifier: Apache-2.0 */
/* mabench: the identical request/response and bulk workload over TCP or an
 * AF_UNIX stream socket, for the benchmark's physical floor (sockperf and
 * iperf3 speak only IP). One binary, two roles:
 *
 *   mabench server tcp IP PORT | unix PATH
 *   mabench latency    tcp IP PORT | unix PATH  SIZE SECONDS
 *   mabench throughput tcp IP PORT | unix PATH  SIZE SECONDS
 *
 * Each connection starts with an 8-byte header: the message size for
 * request/response (server echoes SIZE bytes per request), or 0 for a bulk
 * sink (server reads to EOF and answers with the byte count). Clients print
 * one JSON line; latencies are round trips in microseconds. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static int full_io(int fd, void *buf, size_t n, int writing)
{
	size_t done = 0;

	while (done < n) {
		ssize_t k = writing ? write(fd, (char *)buf + done, n - done)
				    : read(fd, (char *)buf + done, n - done);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k <= 0)
			return -1;
		done += k;
	}
	return 0;
}

/* argv: tcp IP PORT | unix PATH; returns the number of args consumed. */
static int make_addr(char **argv, struct sockaddr_storage *ss, socklen_t *len, int *family)
{
	memset(ss, 0, sizeof(*ss));
	if (!strcmp(argv[0], "tcp")) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(atoi(argv[2]));
		if (inet_pton(AF_INET, argv[1], &in->sin_addr) != 1)
			die("address");
		*len = sizeof(*in);
		*family = AF_INET;
		return 3;
	}
	struct sockaddr_un *un = (struct sockaddr_un *)ss;

	un->sun_family = AF_UNIX;
	strncpy(un->sun_path, argv[1], sizeof(un->sun_path) - 1);
	*len = sizeof(*un);
	*family = AF_UNIX;
	return 2;
}

static void *serve_one(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint64_t size;
	char *buf = malloc(1 << 20);

	if (full_io(fd, &size, 8, 0) == 0) {
		if (size == 0) {
			uint64_t total = 0;
			ssize_t k;

			while ((k = read(fd, buf, 1 << 20)) > 0)
				total += k;
			full_io(fd, &total, 8, 1);
		} else {
			while (full_io(fd, buf, size, 0) == 0 && full_io(fd, buf, size, 1) == 0)
				;
		}
	}
	free(buf);
	close(fd);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int connect_to(char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family, one = 1;

	make_addr(argv, &ss, &len, &family);
	int fd = socket(family, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0)
		die("connect");
	if (family == AF_INET)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: see the comment at the top of mabench.c\n");
		return 2;
	}
	if (!strcmp(argv[1], "server")) {
		struct sockaddr_storage ss;
		socklen_t len;
		int family, one = 1;

		make_addr(argv + 2, &ss, &len, &family);
		int lfd = socket(family, SOCK_STREAM, 0);

		if (family == AF_UNIX)
			unlink(((struct sockaddr_un *)&ss)->sun_path);
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(lfd, (struct sockaddr *)&ss, len) < 0 || listen(lfd, 1024) < 0)
			die("listen");
		for (;;) {
			int fd = accept(lfd, NULL, NULL);
			pthread_t t;

			if (fd < 0)
				continue;
			if (family == AF_INET)
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			pthread_create(&t, NULL, serve_one, (void *)(intptr_t)fd);
			pthread_detach(t);
		}
	}
	int consumed = !strcmp(argv[2], "tcp") ? 3 : 2;
	uint64_t size = strtoull(argv[2 + consumed], NULL, 10);
	double seconds = atof(argv[3 + consumed]);
	int fd = connect_to(argv + 2);
	char *buf = calloc(1, size < 8 ? 8 : size);

	if (!strcmp(argv[1], "latency")) {
		size_t cap = 1 << 22, n = 0, all = 0;
		double *rtt = malloc(cap * sizeof(double));
		double warm = now() + 0.2, end = warm + seconds, t0;

		full_io(fd, &size, 8, 1);
		while ((t0 = now()) < end) {
			if (full_io(fd, buf, size, 1) || full_io(fd, buf, size, 0))
				die("echo");
			all++;
			if (t0 >= warm && n < cap)
				rtt[n++] = (now() - t0) * 1e6;
		}
		qsort(rtt, n, sizeof(double), cmp);
#define PCT(p) rtt[(size_t)((n - 1) * (p))]
		printf("{\"rounds\": %zu, \"rounds_total\": %zu, \"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, "
		       "\"p999\": %.2f}\n", n, all, PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999));
		return 0;
	}
	uint64_t zero = 0, total = 0, echoed;
	double t0 = now(), end = t0 + seconds;

	full_io(fd, &zero, 8, 1);
	while (now() < end) {
		if (full_io(fd, buf, size, 1))
			die("write");
		total += size;
	}
	shutdown(fd, SHUT_WR);
	if (full_io(fd, &echoed, 8, 0) || echoed != total)
		die("sink count");
	double took = now() - t0;

	printf("{\"bytes\": %llu, \"seconds\": %.4f, \"gbit_per_s\": %.4f}\n", (unsigned long long)total, took,
	       total * 8 / took / 1e9);
	return 0;
}
