/* authd: the pod test's "cluster DNS" - a minimal authoritative DNS server over UDP, for
 * scripts/pod-test.sh. Built statically with musl (musl-gcc -static) to run on `scratch`.
 *
 *   authd IP PORT NAME=ADDR...
 *
 * Serves the given names (several NAME=ADDR for one name give it several addresses; IPv4 and IPv6)
 * authoritatively (AA): A/AAAA -> the addresses of that family (NOERROR without answers when
 * there are none), any other name -> NXDOMAIN, the root "." -> NOERROR without answers (what
 * splitdns's health probe `. NS` needs). Every query is logged to stdout, one line each
 * ("query NAME TYPE -> RCODE ANSWERS"), so that the test can check what reached the upstream.
 * SIGTERM/SIGINT exit 0 (as PID 1 of a container a signal without a handler is ignored).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_RECORDS 64

struct record {
    char name[256]; /* lower case, no trailing dot */
    int family;
    unsigned char addr[16];
};
static struct record records[MAX_RECORDS];
static int nrecords;

static void on_signal(int sig) {
    (void)sig;
    _exit(0);
}

static void lower_strip(char *s) {
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '.') s[--n] = '\0';
    for (char *p = s; *p; p++) *p = (char)tolower((unsigned char)*p);
}

/* Reads the question name at q (uncompressed, as in any query) into out, dotted; returns the
 * offset just past it, or -1. */
static int read_name(const unsigned char *msg, int len, int off, char *out, size_t cap) {
    size_t used = 0;
    out[0] = '\0';
    while (off < len) {
        int l = msg[off++];
        if (l == 0) return off;
        if (l > 63 || off + l > len || used + (size_t)l + 2 > cap) return -1;
        if (used) out[used++] = '.';
        memcpy(out + used, msg + off, (size_t)l);
        used += (size_t)l;
        out[used] = '\0';
        off += l;
    }
    return -1;
}

static const char *type_name(int t, char *buf) {
    switch (t) {
    case 1: return "A";
    case 2: return "NS";
    case 6: return "SOA";
    case 13: return "HINFO";
    case 28: return "AAAA";
    case 255: return "ANY";
    }
    sprintf(buf, "TYPE%d", t);
    return buf;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (argc < 3) {
        fprintf(stderr, "usage: authd IP PORT NAME=ADDR...\n");
        return 64;
    }
    for (int i = 3; i < argc && nrecords < MAX_RECORDS; i++) {
        struct record *r = &records[nrecords];
        char *eq = strchr(argv[i], '=');
        if (!eq || (size_t)(eq - argv[i]) >= sizeof r->name) {
            fprintf(stderr, "authd: bad record %s (want NAME=ADDR)\n", argv[i]);
            return 64;
        }
        memcpy(r->name, argv[i], (size_t)(eq - argv[i]));
        r->name[eq - argv[i]] = '\0';
        lower_strip(r->name);
        if (inet_pton(AF_INET, eq + 1, r->addr) == 1) r->family = AF_INET;
        else if (inet_pton(AF_INET6, eq + 1, r->addr) == 1) r->family = AF_INET6;
        else {
            fprintf(stderr, "authd: bad address in %s\n", argv[i]);
            return 64;
        }
        nrecords++;
    }

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "authd: bad listen address %s\n", argv[1]);
        return 64;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("authd: bind");
        return 1;
    }
    printf("authd: serving %d records on udp %s:%s\n", nrecords, argv[1], argv[2]);

    for (;;) {
        unsigned char q[4096], r[4096];
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(s, q, sizeof q, 0, (struct sockaddr *)&peer, &plen);
        if (n < 12) continue;
        if (q[2] & 0x80) continue;                 /* a response: drop */
        if (q[4] != 0 || q[5] != 1) continue;      /* QDCOUNT must be 1 */
        char name[256], tbuf[16];
        int end = read_name(q, (int)n, 12, name, sizeof name);
        if (end < 0 || end + 4 > n) continue;
        int qtype = q[end] << 8 | q[end + 1];
        int qend = end + 4;
        char key[256];
        snprintf(key, sizeof key, "%s", name);
        lower_strip(key);

        int known = key[0] == '\0', nans = 0, rlen = qend;
        memcpy(r, q, (size_t)qend);
        for (int i = 0; i < nrecords; i++) {
            if (strcmp(records[i].name, key) != 0) continue;
            known = 1;
            int want = qtype == 1 ? AF_INET : qtype == 28 ? AF_INET6 : qtype == 255 ? -1 : 0;
            if (want == 0 || (want != -1 && want != records[i].family)) continue;
            int alen = records[i].family == AF_INET ? 4 : 16;
            if (rlen + 12 + alen > (int)sizeof r) break;
            unsigned char *a = r + rlen;
            a[0] = 0xc0; a[1] = 12;                                    /* name: the question */
            a[2] = 0; a[3] = records[i].family == AF_INET ? 1 : 28;    /* type */
            a[4] = 0; a[5] = 1;                                        /* class IN */
            a[6] = 0; a[7] = 0; a[8] = 0; a[9] = 30;                   /* TTL 30 */
            a[10] = 0; a[11] = (unsigned char)alen;
            memcpy(a + 12, records[i].addr, (size_t)alen);
            rlen += 12 + alen;
            nans++;
        }
        int rcode = known ? 0 : 3;
        r[2] = (unsigned char)(0x80 | (q[2] & 0x79) | 0x04); /* QR, opcode and RD kept, AA */
        r[3] = (unsigned char)rcode;                          /* RA=0: authoritative only */
        r[6] = 0; r[7] = (unsigned char)nans;
        r[8] = r[9] = r[10] = r[11] = 0;                      /* no authority, no OPT */
        sendto(s, r, (size_t)rlen, 0, (struct sockaddr *)&peer, plen);
        printf("query %s %s -> %s %d\n", name[0] ? name : ".", type_name(qtype, tbuf),
               rcode ? "NXDOMAIN" : "NOERROR", nans);
    }
}
