/*
 * What batching would save on the fast path's sends: `python -m bench.media.sends`
 * compiles and runs this (see that module's docstring for the method).
 *
 *   sends MODE LISTENERS TICKS SENDER_CPU RECEIVER_CPU
 *
 * The sender sends one SRTP-sized datagram to each of LISTENERS receivers every 20 ms,
 * TICKS times, from its own CPU, in one of these ways:
 *
 *   sendto     one socket per listener, unconnected, one sendto(2) each: the fast
 *              path before the ICE mux (each listener's ICE pair had a socket of its own)
 *   connected  one socket per listener, connect(2)ed to it, one send(2) each: the
 *              route is looked up once, not per datagram
 *   io_uring   one socket per listener, all of a tick's sends in one io_uring_enter(2)
 *              (registered sockets): the only batching across sockets Linux has
 *   sendmmsg   one socket for every listener, a tick in one sendmmsg(2): the batching
 *              a single shared socket (the node's ICE mux) allows, as the fast path does
 *
 * A child process on RECEIVER_CPU drains every receiver through epoll, as the
 * listeners' machines would. The sender's CPU time (user and system, getrusage) over
 * the ticks after a warm-up, per datagram sent, is printed as one JSON line; on
 * loopback it includes the kernel's receive path, the same for every mode.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* 12-byte RTP header, an 80-byte Opus payload (the mix's are about that), 16-byte
 * AES-GCM tag. */
#define DATAGRAM_SIZE 108
#define TICK_NS 20000000L
#define WARM_UP_TICKS 25

enum mode { SENDTO, CONNECTED, IO_URING, SENDMMSG };
static const char *const MODES[] = {"sendto", "connected", "io_uring", "sendmmsg"};

static void fail(const char *what) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    exit(1);
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) fail("sched_setaffinity");
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
}

static int loopback_socket(struct sockaddr_in *bound) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t size = sizeof address;
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, size) != 0) fail("socket");
    if (bound != NULL && getsockname(fd, (struct sockaddr *)bound, &size) != 0) fail("getsockname");
    return fd;
}

static void drain_forever(const int *receivers, int count) {
    int epoll = epoll_create1(0);
    for (int i = 0; i < count; i++) {
        struct epoll_event event = {.events = EPOLLIN, .data.fd = receivers[i]};
        if (epoll_ctl(epoll, EPOLL_CTL_ADD, receivers[i], &event) != 0) fail("epoll_ctl");
    }
    struct epoll_event ready[256];
    char buffer[2048];
    for (;;) {
        int n = epoll_wait(epoll, ready, 256, -1);
        for (int i = 0; i < n; i++)
            while (recv(ready[i].data.fd, buffer, sizeof buffer, MSG_DONTWAIT) > 0) {
            }
    }
}

/* io_uring without liburing: the submission and completion rings, mapped. */
static struct {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
} ring;

static void *map_ring(size_t size, off_t offset) {
    void *area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd, offset);
    if (area == MAP_FAILED) fail("mmap");
    return area;
}

static int ring_setup(unsigned entries, const int *files, int count) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    ring.fd = (int)syscall(__NR_io_uring_setup, entries, &params);
    if (ring.fd < 0) return -1;
    size_t sq_size = params.sq_off.array + params.sq_entries * sizeof(unsigned);
    size_t cq_size = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
    if (params.features & IORING_FEAT_SINGLE_MMAP) sq_size = cq_size = sq_size > cq_size ? sq_size : cq_size;
    char *sq = map_ring(sq_size, IORING_OFF_SQ_RING);
    char *cq = params.features & IORING_FEAT_SINGLE_MMAP ? sq : map_ring(cq_size, IORING_OFF_CQ_RING);
    ring.sq_tail = (unsigned *)(sq + params.sq_off.tail);
    ring.sq_mask = (unsigned *)(sq + params.sq_off.ring_mask);
    ring.sq_array = (unsigned *)(sq + params.sq_off.array);
    ring.cq_head = (unsigned *)(cq + params.cq_off.head);
    ring.cq_tail = (unsigned *)(cq + params.cq_off.tail);
    ring.cq_mask = (unsigned *)(cq + params.cq_off.ring_mask);
    ring.cqes = (struct io_uring_cqe *)(cq + params.cq_off.cqes);
    ring.sqes = map_ring(params.sq_entries * sizeof(struct io_uring_sqe), IORING_OFF_SQES);
    if (syscall(__NR_io_uring_register, ring.fd, IORING_REGISTER_FILES, files, count) != 0) return -1;
    return 0;
}

/* One tick's sends as one submission; how many datagrams went out. */
static long ring_send_all(struct msghdr *messages, int count) {
    unsigned tail = *ring.sq_tail;
    for (int i = 0; i < count; i++, tail++) {
        unsigned slot = tail & *ring.sq_mask;
        struct io_uring_sqe *entry = &ring.sqes[slot];
        memset(entry, 0, sizeof *entry);
        entry->opcode = IORING_OP_SENDMSG;
        entry->fd = i; /* the i-th registered socket */
        entry->flags = IOSQE_FIXED_FILE;
        entry->addr = (uintptr_t)&messages[i];
        entry->len = 1;
        entry->msg_flags = MSG_DONTWAIT;
        ring.sq_array[slot] = slot;
    }
    __atomic_store_n(ring.sq_tail, tail, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, ring.fd, count, count, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        fail("io_uring_enter");
    long sent = 0;
    unsigned head = *ring.cq_head, end = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
    for (; head != end; head++) sent += ring.cqes[head & *ring.cq_mask].res > 0;
    __atomic_store_n(ring.cq_head, head, __ATOMIC_RELEASE);
    return sent;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s sendto|connected|io_uring|sendmmsg LISTENERS TICKS SENDER_CPU RECEIVER_CPU\n", argv[0]);
        return 2;
    }
    int mode = -1;
    for (int m = 0; m < 4; m++)
        if (strcmp(argv[1], MODES[m]) == 0) mode = m;
    int count = atoi(argv[2]), ticks = atoi(argv[3]);
    if (mode < 0 || count < 1 || ticks < 1) return 2;

    int *receivers = calloc(count, sizeof *receivers), *senders = calloc(count, sizeof *senders);
    struct sockaddr_in *destinations = calloc(count, sizeof *destinations);
    struct iovec *vectors = calloc(count, sizeof *vectors);
    struct mmsghdr *messages = calloc(count, sizeof *messages);
    unsigned char datagram[DATAGRAM_SIZE];
    memset(datagram, 0x5a, sizeof datagram);
    for (int i = 0; i < count; i++) {
        receivers[i] = loopback_socket(&destinations[i]);
        if (mode != SENDMMSG || i == 0) senders[i] = loopback_socket(NULL);
        if (mode == CONNECTED &&
            connect(senders[i], (struct sockaddr *)&destinations[i], sizeof destinations[i]) != 0)
            fail("connect");
        vectors[i] = (struct iovec){.iov_base = datagram, .iov_len = sizeof datagram};
        messages[i].msg_hdr = (struct msghdr){
            .msg_name = &destinations[i],
            .msg_namelen = sizeof destinations[i],
            .msg_iov = &vectors[i],
            .msg_iovlen = 1,
        };
    }
    if (mode == IO_URING && ring_setup(count, senders, count) != 0) {
        printf("{\"mode\": \"io_uring\", \"unavailable\": \"%s\"}\n", strerror(errno));
        return 0;
    }
    struct msghdr *plain = calloc(count, sizeof *plain);
    for (int i = 0; i < count; i++) plain[i] = messages[i].msg_hdr;

    pid_t drainer = fork();
    if (drainer == 0) {
        pin(atoi(argv[5]));
        drain_forever(receivers, count);
    }
    pin(atoi(argv[4]));
    for (int i = 0; i < count; i++) close(receivers[i]);

    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    double started = 0;
    long sent = 0;
    for (int tick = 0; tick < WARM_UP_TICKS + ticks; tick++) {
        if (tick == WARM_UP_TICKS) {
            started = cpu_seconds();
            sent = 0;
        }
        switch (mode) {
        case SENDTO:
            for (int i = 0; i < count; i++)
                sent += sendto(senders[i], datagram, sizeof datagram, MSG_DONTWAIT,
                               (struct sockaddr *)&destinations[i], sizeof destinations[i]) > 0;
            break;
        case CONNECTED:
            for (int i = 0; i < count; i++)
                sent += send(senders[i], datagram, sizeof datagram, MSG_DONTWAIT) > 0;
            break;
        case IO_URING:
            sent += ring_send_all(plain, count);
            break;
        case SENDMMSG:
            for (int done = 0; done < count;) {
                int n = sendmmsg(senders[0], messages + done, count - done, MSG_DONTWAIT);
                if (n <= 0) break;
                done += n;
                sent += n;
            }
            break;
        }
        next.tv_nsec += TICK_NS;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    double spent = cpu_seconds() - started;
    kill(drainer, SIGKILL);
    waitpid(drainer, NULL, 0);
    printf("{\"mode\": \"%s\", \"listeners\": %d, \"ticks\": %d, \"sent\": %ld, \"expected\": %ld, "
           "\"cpu_seconds\": %.6f, \"us_per_packet\": %.4f}\n",
           MODES[mode], count, ticks, sent, (long)count * ticks, spent, sent ? spent / (double)sent * 1e6 : 0.0);
    return 0;
}
