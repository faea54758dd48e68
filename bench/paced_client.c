/*
 * Paced-stream load generator in C: the same measurement as `stream_client.py burst`, at a
 * fraction of the cost per event, so that thousands of concurrent streams (250,000 events a
 * second at 5,000 x 50 / s) measure the server and not the client.
 *
 *   paced_client --port P --request FILE --streams C [--deadline S] [--nominal-ms 20]
 *                [--expect 48]
 *
 * Opens C non-blocking connections to 127.0.0.1:P at once; when all are connected (or failed),
 * writes the request in FILE (raw HTTP/1.1 bytes) on each, in one pass. Then reads every
 * response with epoll, stamping each read with CLOCK_MONOTONIC: an SSE event ends at "\n\n";
 * an event holding "delta":{"content":" is a content delta; "data: [DONE]" ends the stream.
 * Prints one JSON object with the same keys as stream_client.py burst. Built by bench/run.py.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char CONTENT[] = "\"delta\":{\"content\":\"";
static const char DONE[] = "data: [DONE]";

enum { CONNECTING, CONNECTED, SENT, FINISHED, FAILED };

typedef struct {
    int fd, state, status, head, content, done, timed_out;
    double t_connect0, t_connect, t_send, t_first, t_last_content;
    char *buf;
    size_t len, cap;
} conn_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* q-th quantile in ms of values[0..n) (sorted in place), as the Python client computes it */
static void put_pct(const char *key, double *values, size_t n, double q, int comma) {
    if (n == 0) {
        printf("\"%s\": null%s", key, comma ? ", " : "");
        return;
    }
    qsort(values, n, sizeof(double), cmp_double);
    size_t i = (size_t)(q * n);
    if (i > n - 1) i = n - 1;
    printf("\"%s\": %.6f%s", key, values[i] * 1000.0, comma ? ", " : "");
}

static double *gaps;
static size_t ngaps, gaps_cap;
static double nominal = 0.020;

static void add_gap(double g) {
    if (ngaps == gaps_cap) {
        gaps_cap = gaps_cap ? gaps_cap * 2 : 1 << 16;
        gaps = realloc(gaps, gaps_cap * sizeof(double));
        if (!gaps) { perror("realloc"); exit(1); }
    }
    gaps[ngaps++] = g;
}

/* scan complete events in c->buf; returns 1 once [DONE] was seen */
static int scan(conn_t *c, double t) {
    size_t start = 0;
    if (!c->head) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) return 0;
        if (c->len >= 12 && memcmp(c->buf, "HTTP/1.", 7) == 0) c->status = atoi(c->buf + 9);
        c->head = 1;
        start = (size_t)(end - c->buf) + 4;
        if (c->status != 200) return -1;
    }
    int done = 0;
    for (;;) {
        char *sep = memmem(c->buf + start, c->len - start, "\n\n", 2);
        if (!sep) break;
        size_t elen = (size_t)(sep - (c->buf + start));
        char *ev = c->buf + start;
        if (memmem(ev, elen, CONTENT, sizeof CONTENT - 1)) {
            if (c->content > 0) {
                double g = t - c->t_last_content - nominal;
                add_gap(g < 0 ? -g : g);
            }
            c->t_last_content = t;
            c->content++;
        } else if (memmem(ev, elen, DONE, sizeof DONE - 1)) {
            done = 1;
        }
        start += elen + 2;
    }
    memmove(c->buf, c->buf + start, c->len - start);
    c->len -= start;
    return done;
}

int main(int argc, char **argv) {
    int port = 0, streams = 500, expect = 48;
    double deadline_s = 60.0;
    const char *request_file = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--streams")) streams = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--deadline")) deadline_s = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--nominal-ms")) nominal = atof(argv[i + 1]) / 1000.0;
        else if (!strcmp(argv[i], "--expect")) expect = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--request")) request_file = argv[i + 1];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (!port || !request_file || streams <= 0) {
        fprintf(stderr, "usage: paced_client --port P --request FILE --streams C\n");
        return 2;
    }
    FILE *f = fopen(request_file, "rb");
    if (!f) { perror(request_file); return 2; }
    char request[65536];
    size_t request_len = fread(request, 1, sizeof request, f);
    fclose(f);

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    conn_t *conns = calloc((size_t)streams, sizeof(conn_t));
    double *ttfb = calloc((size_t)streams, sizeof(double));
    double *connect_times = calloc((size_t)streams, sizeof(double));
    int ep = epoll_create1(0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    int errs_socket = 0, errs_connect = 0, errs_refused = 0, errs_reset = 0, errs_write = 0;

    double cpu0 = cpu_seconds(), t0 = now(), deadline = t0 + deadline_s;
    int pending = 0;
    for (int i = 0; i < streams; i++) {
        conn_t *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (c->fd < 0) { c->state = FAILED; errs_socket++; continue; }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->t_connect0 = now();
        int r = connect(c->fd, (struct sockaddr *)&addr, sizeof addr);
        if (r < 0 && errno != EINPROGRESS) {
            c->state = FAILED; errs_connect++; close(c->fd); c->fd = -1; continue;
        }
        c->state = r == 0 ? CONNECTED : CONNECTING;
        if (r == 0) c->t_connect = now();
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (unsigned)i};
        if (r != 0) { epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev); pending++; }
    }
    struct epoll_event *events = calloc(4096, sizeof(struct epoll_event));
    while (pending > 0 && now() < deadline) {
        int n = epoll_wait(ep, events, 4096, 100);
        for (int k = 0; k < n; k++) {
            conn_t *c = &conns[events[k].data.u32];
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            pending--;
            if (err) {
                c->state = FAILED; close(c->fd); c->fd = -1;
                if (err == ECONNREFUSED) errs_refused++; else errs_connect++;
            } else {
                c->state = CONNECTED; c->t_connect = now();
            }
        }
    }
    double connected_at = now();
    int connected = 0, nconnect = 0, errs_connect_timeout = 0;
    for (int i = 0; i < streams; i++) {
        conn_t *c = &conns[i];
        if (c->state == CONNECTING) {  /* never connected before the deadline */
            c->state = FAILED; c->timed_out = 1; close(c->fd); c->fd = -1;
            errs_connect_timeout++;
        }
        if (c->state == CONNECTED) {
            connected++;
            connect_times[nconnect++] = c->t_connect - c->t_connect0;
        }
    }
    /* every request in one pass */
    int active = 0;
    for (int i = 0; i < streams; i++) {
        conn_t *c = &conns[i];
        if (c->state != CONNECTED) continue;
        c->cap = 65536;
        c->buf = malloc(c->cap);
        c->t_send = now();
        size_t off = 0;
        while (off < request_len) {
            ssize_t w = write(c->fd, request + off, request_len - off);
            if (w < 0) break;
            off += (size_t)w;
        }
        if (off < request_len) {
            c->state = FAILED; errs_write++; close(c->fd); c->fd = -1; continue;
        }
        c->state = SENT;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        active++;
    }
    while (active > 0) {
        double left = deadline - now();
        if (left <= 0) break;
        int n = epoll_wait(ep, events, 4096, left > 0.1 ? 100 : (int)(left * 1000) + 1);
        for (int k = 0; k < n; k++) {
            conn_t *c = &conns[events[k].data.u32];
            if (c->state != SENT) continue;
            for (;;) {
                if (c->cap - c->len < 16384) {
                    c->cap *= 2;
                    c->buf = realloc(c->buf, c->cap);
                }
                double t = now();
                ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
                if (r > 0) {
                    if (!c->t_first) c->t_first = t;
                    c->len += (size_t)r;
                    int s = scan(c, t);
                    if (s != 0) {  /* [DONE] or a non-200 head */
                        c->done = s == 1;
                        c->state = FINISHED;
                        break;
                    }
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (r < 0 && errno == ECONNRESET) errs_reset++;
                c->state = FINISHED;  /* closed before [DONE]: counted as short below */
                break;
            }
            if (c->state == FINISHED) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                active--;
            }
        }
    }
    double elapsed = now() - t0;
    double cpu = cpu_seconds() - cpu0;
    int ok = 0, bad_status = 0, short_ = 0, timeout = 0, nttfb = 0;
    for (int i = 0; i < streams; i++) {
        conn_t *c = &conns[i];
        if (c->t_first) ttfb[nttfb++] = c->t_first - c->t_send;
        if (c->state == SENT) { timeout++; close(c->fd); }
        else if (c->state == FINISHED) {
            if (c->status != 200) bad_status++;
            else if (c->content != expect || !c->done) short_++;  /* or closed before [DONE] */
            else ok++;
        }
        free(c->buf);
    }
    printf("{\"mode\": \"burst\", \"client\": \"c\", \"streams\": %d, \"connected\": %d, "
           "\"completed\": %d, ", streams, connected, ok);
    printf("\"outcome\": {\"ok\": %d, \"bad_status\": %d, \"short\": %d, \"timeout\": %d}, ",
           ok, bad_status, short_, timeout);
    printf("\"errors\": {");
    int first = 1;
#define ERR(name, v) if (v) { printf("%s\"%s\": %d", first ? "" : ", ", name, v); first = 0; }
    ERR("socket", errs_socket) ERR("connect", errs_connect) ERR("ConnectionRefusedError",
        errs_refused) ERR("ConnectionResetError", errs_reset) ERR("write", errs_write)
    ERR("connect_timeout", errs_connect_timeout)
    printf("}, \"connect_s\": %.6f, \"elapsed_s\": %.6f, \"gaps\": %zu, ", connected_at - t0,
           elapsed, ngaps);
    put_pct("gap_error_p50_ms", gaps, ngaps, 0.50, 1);
    put_pct("gap_error_p99_ms", gaps, ngaps, 0.99, 1);
    put_pct("gap_error_max_ms", gaps, ngaps, 1.0, 1);
    put_pct("ttfb_p50_ms", ttfb, (size_t)nttfb, 0.50, 1);
    put_pct("ttfb_p99_ms", ttfb, (size_t)nttfb, 0.99, 1);
    put_pct("ttfb_max_ms", ttfb, (size_t)nttfb, 1.0, 1);
    put_pct("connect_p99_ms", connect_times, (size_t)nconnect, 0.99, 1);
    put_pct("connect_max_ms", connect_times, (size_t)nconnect, 1.0, 1);
    printf("\"client_cpu\": %.4f}\n", elapsed > 0 ? cpu / elapsed : 0.0);
    return 0;
}
