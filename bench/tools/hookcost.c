// SPDX-License-Identifier: Apache-2.0
/* hookcost: the cost of one socket operation, averaged over many, to price
 * the hooks meshaccel puts on traffic it does not accelerate.
 *
 *   hookcost pingpong N   one TCP connection over loopback; N times: send one
 *                         byte, read it back (one sendmsg and one recvmsg per
 *                         iteration, both on this thread). Prints ns per
 *                         iteration.
 *   hookcost connect N    N times: connect, accept, close both (the sockops
 *                         callbacks of a connection's life). Prints ns per
 *                         connection.
 *
 * Each run averages N operations, so two runs that differ by one hook differ
 * by its cost plus noise that N has already averaged away. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int listener(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)addr, sizeof(*addr)) || listen(fd, 1024) ||
	    getsockname(fd, (struct sockaddr *)addr, &len)) {
		perror("listen");
		exit(1);
	}
	return fd;
}

static double pingpong(long n)
{
	struct sockaddr_in addr;
	int one = 1, srv = listener(&addr), c = socket(AF_INET, SOCK_STREAM, 0), s;
	char b = 'x';
	double t0;

	if (connect(c, (struct sockaddr *)&addr, sizeof(addr)) < 0 || (s = accept(srv, NULL, NULL)) < 0) {
		perror("connect");
		exit(1);
	}
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		if (send(c, &b, 1, 0) != 1 || recv(s, &b, 1, 0) != 1) {
			perror("pingpong");
			exit(1);
		}
	}
	return (now_ns() - t0) / n;
}

static double connects(long n)
{
	struct sockaddr_in addr;
	int srv = listener(&addr);
	double t0 = now_ns();

	for (long i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0), s;
		struct linger lg = { 1, 0 }; /* RST on close: no TIME_WAIT pile-up */

		if (connect(c, (struct sockaddr *)&addr, sizeof(addr)) < 0 || (s = accept(srv, NULL, NULL)) < 0) {
			perror("connect");
			exit(1);
		}
		setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(s);
		close(c);
	}
	return (now_ns() - t0) / n;
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 0;

	if (argc != 3 || n <= 0 || (strcmp(argv[1], "pingpong") && strcmp(argv[1], "connect"))) {
		fprintf(stderr, "usage: hookcost pingpong|connect N\n");
		return 2;
	}
	printf("%.1f\n", strcmp(argv[1], "pingpong") ? connects(n) : pingpong(n));
	return 0;
}
