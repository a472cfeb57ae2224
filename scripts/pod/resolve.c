/* resolve: the pod's "application" for scripts/pod-test.sh - looks names up the way any program in
 * the pod does, through libc's getaddrinfo(), which reads the pod's /etc/resolv.conf (nameserver,
 * search list, ndots). Built twice: statically with musl (musl-gcc -static, /resolve) and with
 * glibc (/resolve-glibc, its shared libraries copied into the image), because the two resolvers
 * use a second nameserver differently: glibc asks the first one and moves on only when it fails
 * to answer (timeout, SERVFAIL, REFUSED), musl asks all of them at once and takes the first
 * reply that is an answer or NXDOMAIN. Neither caches (no nscd in the pod), so every call asks
 * again.
 *
 *   resolve [-4|-6] NAME
 *       prints NAME's addresses, one a line, in getaddrinfo's order; exit 0, or 2 with the reason
 *       (gai_strerror) when the lookup fails.
 *   resolve [-4|-6] -w ADDR [-t MS] NAME
 *       prints "before: <addresses>" (flushed: the caller waits for it), then looks NAME up every
 *       10 ms until ADDR is among its addresses and prints "seen ADDR after <ms> ms at <unix ns>";
 *       exit 0, or 1 after MS milliseconds (default 5000) without it.
 *   resolve -c FILE
 *       prints FILE (the image has no cat: this is how the test reads the container's
 *       /etc/resolv.conf from inside it).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int lookup(const char *name, int family, char *out, size_t cap, const char **err) {
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_DGRAM; /* one entry per address */
    int rc = getaddrinfo(name, NULL, &hints, &res);
    out[0] = '\0';
    if (rc != 0) {
        *err = gai_strerror(rc);
        return -1;
    }
    size_t used = 0;
    for (ai = res; ai; ai = ai->ai_next) {
        char buf[INET6_ADDRSTRLEN];
        const void *a = ai->ai_family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if (!inet_ntop(ai->ai_family, a, buf, sizeof buf)) continue;
        int n = snprintf(out + used, cap - used, "%s%s", used ? " " : "", buf);
        if (n < 0 || (size_t)n >= cap - used) break;
        used += (size_t)n;
    }
    freeaddrinfo(res);
    return 0;
}

static int contains(const char *list, const char *addr) {
    size_t n = strlen(addr);
    for (const char *p = list; (p = strstr(p, addr)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return 1;
    return 0;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    int family = AF_UNSPEC, opt;
    const char *want = NULL, *err = "";
    long timeout_ms = 5000;
    while ((opt = getopt(argc, argv, "46w:t:c:")) != -1) {
        switch (opt) {
        case 'c': {
            FILE *f = fopen(optarg, "r");
            int ch;
            if (!f) {
                perror(optarg);
                return 2;
            }
            while ((ch = getc(f)) != EOF) putchar(ch);
            return 0;
        }
        case '4': family = AF_INET; break;
        case '6': family = AF_INET6; break;
        case 'w': want = optarg; break;
        case 't': timeout_ms = atol(optarg); break;
        default: goto usage;
        }
    }
    if (optind != argc - 1) goto usage;
    const char *name = argv[optind];
    char addrs[4096];

    if (!want) {
        if (lookup(name, family, addrs, sizeof addrs, &err) != 0) {
            fprintf(stderr, "resolve: %s: %s\n", name, err);
            return 2;
        }
        for (char *tok = strtok(addrs, " "); tok; tok = strtok(NULL, " ")) puts(tok);
        return 0;
    }

    double t0 = now_ms();
    int rc = lookup(name, family, addrs, sizeof addrs, &err);
    printf("before: %s\n", rc == 0 ? addrs : err);
    fflush(stdout);
    for (;;) {
        if (rc == 0 && contains(addrs, want)) {
            struct timespec wall;
            clock_gettime(CLOCK_REALTIME, &wall);
            printf("seen %s after %.0f ms at %lld%09ld\n", want, now_ms() - t0,
                   (long long)wall.tv_sec, wall.tv_nsec);
            return 0;
        }
        if (now_ms() - t0 > (double)timeout_ms) {
            printf("timeout: %s still %s after %ld ms\n", name, rc == 0 ? addrs : err, timeout_ms);
            return 1;
        }
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
        rc = lookup(name, family, addrs, sizeof addrs, &err);
    }
usage:
    fprintf(stderr, "usage: resolve [-4|-6] [-w ADDR [-t MS]] NAME | resolve -c FILE\n");
    return 64;
}
