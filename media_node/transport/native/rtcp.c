/*
 * RTCP of a stream: sender reports out (RFC 3550 6.4.1, with the CNAME), and the peer's
 * receiver reports and NACKs in.
 *
 * aiortc's RTCRtpSender is never started for a fast-path peer, so its RTCP loop does
 * not run: `upkeep` sends each stream's report every 5 s. The peer's receiver reports
 * come back through the tap (tap.c), once unprotected: their report blocks about our
 * SSRC are kept as loss, jitter and round-trip figures, so none of them has to travel
 * through aiortc's queues and coroutines.
 */

#include "fanout.h"

#include <string.h>
#include <time.h>

#define RTCP_SDES 202
#define RTCP_RTPFB 205
#define RTPFB_NACK 1
#define SDES_CNAME 1
#define REPORT_BLOCK_SIZE 24
#define SENDER_INFO_SIZE 20
/* Seconds from 1900 (NTP's epoch) to 1970 (the Unix epoch). */
#define NTP_UNIX_OFFSET 2208988800ULL
/* SR with no report blocks, SDES with the CNAME, room for an SRTCP trailer. */
#define REPORT_BUFFER (28 + 8 + 2 + MAX_CNAME_SIZE + 4 + SRTP_TRAILER)

static uint64_t ntp_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t seconds = (uint64_t)now.tv_sec + NTP_UNIX_OFFSET;
    uint64_t fraction = ((uint64_t)now.tv_nsec << 32) / 1000000000ULL;
    return (seconds << 32) | fraction;
}

/* SR (RFC 3550 6.4.1) with no report blocks, then SDES with our CNAME (6.5): a compound
 * packet must carry the CNAME. Into `packet` (REPORT_BUFFER bytes); the size. */
static int build_report(Stream *self, uint8_t *packet, uint64_t ntp, uint32_t pts)
{
    memset(packet, 0, REPORT_BUFFER);
    packet[0] = 0x80;
    packet[1] = RTCP_SR;
    packet[3] = 6; /* length in words, minus one */
    put32(packet + 4, self->ssrc);
    put32(packet + 8, (uint32_t)(ntp >> 32));
    put32(packet + 12, (uint32_t)ntp);
    put32(packet + 16, self->timestamp_origin + pts);
    put32(packet + 20, (uint32_t)self->sent);
    put32(packet + 24, (uint32_t)self->octets);
    uint8_t *sdes = packet + 28;
    /* SSRC, item (type, length, text), a null end item, padded to a word. */
    Py_ssize_t chunk = 4 + 2 + self->cname_size + 1;
    chunk = (chunk + 3) & ~(Py_ssize_t)3;
    sdes[0] = 0x81;
    sdes[1] = RTCP_SDES;
    put16(sdes + 2, (uint16_t)(chunk / 4));
    put32(sdes + 4, self->ssrc);
    sdes[8] = SDES_CNAME;
    sdes[9] = (uint8_t)self->cname_size;
    memcpy(sdes + 10, self->cname, self->cname_size);
    return (int)(28 + 4 + chunk);
}

static int send_report(Stream *self, uint64_t ntp, uint32_t pts)
{
    if (self->fd < 0)
        return 0;
    uint32_t words[REPORT_BUFFER / 4 + 1]; /* libsrtp wants it 32-bit aligned */
    uint8_t *packet = (uint8_t *)words;
    int length = build_report(self, packet, ntp, pts);
    if (!srtp_protect_report(self, packet, &length))
        return 0;
    self->last_report_ntp = (uint32_t)(ntp >> 16);
    return stream_send_datagram(self, packet, (size_t)length);
}

/* The stream's report when its time has come; the first upkeep picks its phase. `ntp`
 * is read from the clock once per upkeep, when the first report needs it. */
void rtcp_upkeep(Stream *self, double now, uint64_t *ntp, uint32_t pts)
{
    if (self->next_report == 0) {
        self->next_report = now + REPORT_SECONDS * spread_uniform();
    } else if (now >= self->next_report) {
        if (*ntp == 0)
            *ntp = ntp_now();
        send_report(self, *ntp, pts);
        self->next_report += REPORT_SECONDS;
        if (self->next_report <= now)
            self->next_report = now + REPORT_SECONDS;
    }
}

/* The (ntp_time, pts) arguments of a sender report; 0 with an exception set on error. */
static int report_arguments(PyObject *args, PyObject *kwargs, unsigned long long *ntp,
                            uint32_t *pts)
{
    static char *keywords[] = {"ntp_time", "pts", NULL};
    PyObject *pts_object;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KO", keywords, ntp, &pts_object))
        return 0;
    *pts = (uint32_t)PyLong_AsUnsignedLongLongMask(pts_object);
    return !PyErr_Occurred();
}

PyObject *Stream_sender_report(Stream *self, PyObject *args, PyObject *kwargs)
{
    unsigned long long ntp;
    uint32_t pts;
    if (!report_arguments(args, kwargs, &ntp, &pts))
        return NULL;
    uint8_t packet[REPORT_BUFFER];
    int length = build_report(self, packet, ntp, pts);
    return PyBytes_FromStringAndSize((const char *)packet, length);
}

PyObject *Stream_send_report(Stream *self, PyObject *args, PyObject *kwargs)
{
    unsigned long long ntp;
    uint32_t pts;
    if (!report_arguments(args, kwargs, &ntp, &pts))
        return NULL;
    return PyBool_FromLong(send_report(self, ntp, pts));
}

/* One report block, if it is about our SSRC. */
static void take_report_block(Stream *self, const uint8_t *block, uint32_t arrival)
{
    if (get32(block) != self->ssrc)
        return;
    self->receiver_reports++;
    self->fraction_lost = block[4];
    long lost = ((long)block[5] << 16) | ((long)block[6] << 8) | block[7];
    if (lost & 0x800000) /* 24-bit two's complement: duplicates can make it negative */
        lost -= 0x1000000;
    self->packets_lost = lost;
    self->jitter = get32(block + 12);
    uint32_t last_report = get32(block + 16);
    uint32_t delay = get32(block + 20);
    /* RFC 3550 6.4.1: round trip = arrival - LSR - DLSR, all in 1/65536 s. Only for
     * a report that echoes our latest SR, so a stale echo is never mistaken for it. */
    if (last_report != 0 && last_report == self->last_report_ntp) {
        uint32_t round_trip = arrival - last_report - delay;
        if (round_trip < 0x80000000u)
            self->round_trip_time = round_trip / 65536.0;
    }
}

void rtcp_take_compound(Stream *self, const uint8_t *data, Py_ssize_t size)
{
    uint32_t arrival = (uint32_t)(ntp_now() >> 16);
    Py_ssize_t at = 0;
    while (at + 4 <= size) {
        const uint8_t *packet = data + at;
        int count = packet[0] & 0x1f;
        int type = packet[1];
        Py_ssize_t length = 4 * ((Py_ssize_t)get16(packet + 2) + 1);
        if ((packet[0] & 0xc0) != 0x80 || at + length > size)
            break;
        Py_ssize_t blocks = 0;
        if (type == RTCP_RR)
            blocks = 8;
        else if (type == RTCP_SR)
            blocks = 8 + SENDER_INFO_SIZE;
        if (blocks) {
            for (int i = 0; i < count && blocks + REPORT_BLOCK_SIZE <= length; i++) {
                take_report_block(self, packet + blocks, arrival);
                blocks += REPORT_BLOCK_SIZE;
            }
        } else if (type == RTCP_RTPFB && count == RTPFB_NACK && length >= 12 &&
                   get32(packet + 8) == self->ssrc) {
            /* Counted, not answered: see docs/decisions/009-no-nack-for-listeners.md. */
            self->nacks++;
        }
        at += length;
    }
}

PyObject *Stream_take_rtcp(Stream *self, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    rtcp_take_compound(self, data.buf, data.len);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}
