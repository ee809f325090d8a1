/*
 * media_node._fanout: a room's encoded audio to every listener, one C loop per packet.
 *
 * Each listener needs the same Opus payload under its own RTP header, protected with
 * its own SRTP keys and sent on its own UDP socket. Written in Python, the interpreter
 * around those three calls cost as much as the calls themselves (docs/performance.md);
 * here a stream is a C struct (header template, SRTP session, socket, destination) and
 * `send` walks all of a room's streams without touching a Python object per listener
 * beyond the iteration.
 *
 * The SRTP session is the one aiortc set up for the peer's DTLS transport: pylibsrtp's
 * libsrtp (built on OpenSSL), reached through the `srtp_t` it holds and the address of
 * its `srtp_protect`, both handed over by rtp_fanout.py through cffi. Debian's libsrtp2
 * is built on NSS, which measured 2.0 us per AES-GCM protect and 6.4 us per AES-CM
 * one across 1000 sessions here, against 0.5 us for OpenSSL's; and a session of our
 * own would have cost a second key schedule (about 19 KB) per listener.
 *
 * The peer's RTCP receiver reports come back to the same stream (`take_rtcp`, once
 * unprotected): their report blocks about our SSRC are kept as loss, jitter and
 * round-trip figures, so none of them has to travel through aiortc's queues and
 * coroutines.
 *
 * Everything runs with the GIL held, on the event loop's thread: a call is short
 * (a few microseconds per listener), and no other thread ever touches a stream.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RTP_HEADER_SIZE 12
/* RFC 8285 one-byte extensions: 4 bytes of profile and length, then the elements. */
#define MAX_EXTENSION_SIZE 36
/* An Opus packet is at most 1275 bytes; the mix's are about 80. */
#define MAX_PAYLOAD_SIZE 1400
#define MAX_CNAME_SIZE 255
/* libsrtp's SRTP_MAX_TRAILER_LEN: the longest tag plus the longest MKI. */
#define SRTP_TRAILER 144
#define DATAGRAM_BUFFER (RTP_HEADER_SIZE + MAX_EXTENSION_SIZE + MAX_PAYLOAD_SIZE + SRTP_TRAILER)

#define RTCP_SR 200
#define RTCP_RR 201
#define RTCP_SDES 202
#define RTCP_RTPFB 205
#define RTPFB_NACK 1
#define SDES_CNAME 1
#define REPORT_BLOCK_SIZE 24
#define SENDER_INFO_SIZE 20

/* Seconds from 1900 (NTP's epoch) to 1970 (the Unix epoch). */
#define NTP_UNIX_OFFSET 2208988800ULL

/* libsrtp 2's srtp_protect(srtp_t, void *rtp_header, int *length); 0 is success. */
typedef int (*ProtectFunction)(void *session, void *header, int *length);
static ProtectFunction srtp_protect;

typedef struct {
    PyObject_HEAD
    PyObject *owner; /* the pylibsrtp Session that keeps `session` alive */
    void *session;
    int fd; /* our own duplicate of the ICE socket; -1 when there is no route */
    struct sockaddr_storage address;
    socklen_t address_size;
    /* The RTP header as sent; only the sequence number and timestamp change. */
    uint8_t header[RTP_HEADER_SIZE + MAX_EXTENSION_SIZE];
    Py_ssize_t header_size;
    uint8_t cname[MAX_CNAME_SIZE];
    Py_ssize_t cname_size;
    uint32_t ssrc;
    uint16_t sequence;
    uint32_t timestamp_origin;
    unsigned long long sent;
    unsigned long long octets;
    unsigned long long dropped;
    /* From the peer's RTCP. */
    unsigned long long receiver_reports;
    unsigned long long nacks;
    int fraction_lost;  /* of 256, in the latest report; -1 before any */
    long packets_lost;  /* cumulative, as the latest report says */
    unsigned long jitter; /* in RTP timestamp units */
    double round_trip_time; /* seconds, NaN until a report echoes one of ours */
    uint32_t last_report_ntp; /* middle 32 bits of our latest sender report's NTP time */
} Stream;

static int Stream_init(Stream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"owner", "session", "ssrc", "sequence", "timestamp_origin",
                               NULL};
    PyObject *owner;
    unsigned long long session;
    unsigned long ssrc, sequence, timestamp_origin;
    if (self->owner != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a stream is initialised once");
        return -1;
    }
    if (srtp_protect == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "use_srtp() has not been called");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OKkkk", keywords, &owner, &session,
                                     &ssrc, &sequence, &timestamp_origin))
        return -1;
    if (session == 0) {
        PyErr_SetString(PyExc_ValueError, "no SRTP session");
        return -1;
    }
    self->owner = Py_NewRef(owner);
    self->session = (void *)(uintptr_t)session;
    self->ssrc = (uint32_t)ssrc;
    self->sequence = (uint16_t)sequence;
    self->timestamp_origin = (uint32_t)timestamp_origin;
    return 0;
}

static PyObject *Stream_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Stream *self = (Stream *)PyType_GenericNew(type, args, kwargs);
    if (self == NULL)
        return NULL;
    self->fd = -1;
    self->fraction_lost = -1;
    self->round_trip_time = NAN;
    return (PyObject *)self;
}

static void close_socket(Stream *self)
{
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
}

static void Stream_dealloc(Stream *self)
{
    close_socket(self);
    Py_CLEAR(self->owner);
    PyTypeObject *type = Py_TYPE((PyObject *)self);
    freefunc free_self = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_self(self);
    Py_DECREF(type);
}

static PyObject *Stream_configure(Stream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"payload_type", "extension", "cname", NULL};
    int payload_type;
    Py_buffer extension, cname;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iy*y*", keywords, &payload_type,
                                     &extension, &cname))
        return NULL;
    PyObject *result = NULL;
    if (payload_type < 0 || payload_type > 127) {
        PyErr_SetString(PyExc_ValueError, "payload_type must be 0-127");
    } else if (extension.len > MAX_EXTENSION_SIZE || extension.len % 4) {
        PyErr_SetString(PyExc_ValueError, "extension must be whole words, at most 36 bytes");
    } else if (cname.len > MAX_CNAME_SIZE) {
        PyErr_SetString(PyExc_ValueError, "cname is at most 255 bytes");
    } else {
        uint8_t *header = self->header;
        /* Version 2; the X bit when extensions follow the fixed header. */
        header[0] = 0x80 | (extension.len ? 0x10 : 0);
        header[1] = (uint8_t)payload_type;
        header[8] = self->ssrc >> 24;
        header[9] = self->ssrc >> 16;
        header[10] = self->ssrc >> 8;
        header[11] = self->ssrc;
        memcpy(header + RTP_HEADER_SIZE, extension.buf, extension.len);
        self->header_size = RTP_HEADER_SIZE + extension.len;
        memcpy(self->cname, cname.buf, cname.len);
        self->cname_size = cname.len;
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&extension);
    PyBuffer_Release(&cname);
    return result;
}

static PyObject *Stream_route(Stream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"host", "port", "fd", NULL};
    const char *host;
    int port, fd = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "si|i", keywords, &host, &port, &fd))
        return NULL;
    struct sockaddr_storage address;
    socklen_t size;
    memset(&address, 0, sizeof(address));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&address;
    if (port < 1 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port must be 1-65535");
        return NULL;
    }
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        size = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        size = sizeof(*v6);
    } else {
        PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
        return NULL;
    }
    if (fd >= 0) {
        /* Our own descriptor of the socket aiortc reads from: sending on it skips the
         * asyncio transport's buffering, so a full send buffer drops this listener's
         * packet (EAGAIN) rather than queueing anything behind it. */
        int own = dup(fd);
        if (own < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        close_socket(self);
        self->fd = own;
    }
    self->address = address;
    self->address_size = size;
    Py_RETURN_NONE;
}

static PyObject *Stream_close(Stream *self, PyObject *Py_UNUSED(ignored))
{
    close_socket(self);
    Py_RETURN_NONE;
}

/* Header from the template, payload after it, protect in place, one sendto. */
static int send_one(Stream *self, const uint8_t *payload, Py_ssize_t size, uint32_t pts)
{
    /* libsrtp wants the RTP header 32-bit aligned. */
    uint32_t words[DATAGRAM_BUFFER / 4 + 1];
    uint8_t *datagram = (uint8_t *)words;
    uint16_t sequence = self->sequence++;
    /* The sequence number advanced even for a packet that is not sent: the receiver
     * then sees the gap as the loss it is. */
    if (self->fd < 0 || self->header_size == 0) {
        self->dropped++;
        return 0;
    }
    uint32_t timestamp = self->timestamp_origin + pts;
    memcpy(datagram, self->header, self->header_size);
    datagram[2] = sequence >> 8;
    datagram[3] = sequence;
    datagram[4] = timestamp >> 24;
    datagram[5] = timestamp >> 16;
    datagram[6] = timestamp >> 8;
    datagram[7] = timestamp;
    memcpy(datagram + self->header_size, payload, size);
    int length = (int)(self->header_size + size);
    if (srtp_protect(self->session, datagram, &length) != 0 ||
        sendto(self->fd, datagram, length, MSG_DONTWAIT | MSG_NOSIGNAL,
               (struct sockaddr *)&self->address, self->address_size) < 0) {
        /* A full socket buffer (a stalled or slow path) or a socket already closed
         * under us: this listener misses this packet, nobody waits for it. */
        self->dropped++;
        return 0;
    }
    self->sent++;
    self->octets += size;
    return 1;
}

static PyTypeObject *StreamType;

static PyObject *fanout_send(PyObject *Py_UNUSED(module), PyObject *const *args,
                             Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "send(streams, payload, pts)");
        return NULL;
    }
    Py_buffer payload;
    if (PyObject_GetBuffer(args[1], &payload, PyBUF_SIMPLE) < 0)
        return NULL;
    long sent = 0;
    PyObject *iterator = NULL;
    /* The RTP timestamp wraps modulo 2^32, so only the low bits of pts matter. */
    uint32_t pts = (uint32_t)PyLong_AsUnsignedLongLongMask(args[2]);
    if (PyErr_Occurred())
        goto done;
    if (payload.len > MAX_PAYLOAD_SIZE) {
        PyErr_Format(PyExc_ValueError, "payload of %zd bytes is over %d", payload.len,
                     MAX_PAYLOAD_SIZE);
        goto done;
    }
    iterator = PyObject_GetIter(args[0]);
    if (iterator == NULL)
        goto done;
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        if (!PyObject_TypeCheck(item, StreamType)) {
            Py_DECREF(item);
            PyErr_SetString(PyExc_TypeError, "send() takes an iterable of Stream");
            goto done;
        }
        sent += send_one((Stream *)item, payload.buf, payload.len, pts);
        Py_DECREF(item);
    }
done:
    Py_XDECREF(iterator);
    PyBuffer_Release(&payload);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(sent);
}

static uint64_t ntp_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t seconds = (uint64_t)now.tv_sec + NTP_UNIX_OFFSET;
    uint64_t fraction = ((uint64_t)now.tv_nsec << 32) / 1000000000ULL;
    return (seconds << 32) | fraction;
}

static void put32(uint8_t *at, uint32_t value)
{
    at[0] = value >> 24;
    at[1] = value >> 16;
    at[2] = value >> 8;
    at[3] = value;
}

static uint32_t get32(const uint8_t *at)
{
    return ((uint32_t)at[0] << 24) | ((uint32_t)at[1] << 16) | ((uint32_t)at[2] << 8) | at[3];
}

static PyObject *Stream_sender_report(Stream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"ntp_time", "pts", NULL};
    unsigned long long ntp;
    PyObject *pts_object;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KO", keywords, &ntp, &pts_object))
        return NULL;
    uint32_t pts = (uint32_t)PyLong_AsUnsignedLongLongMask(pts_object);
    if (PyErr_Occurred())
        return NULL;
    /* SR (RFC 3550 6.4.1) with no report blocks, then SDES with our CNAME (6.5): a
     * compound packet must carry the CNAME. */
    uint8_t packet[28 + 8 + 2 + MAX_CNAME_SIZE + 4];
    memset(packet, 0, sizeof(packet));
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
    sdes[2] = (uint8_t)((chunk / 4) >> 8);
    sdes[3] = (uint8_t)(chunk / 4);
    put32(sdes + 4, self->ssrc);
    sdes[8] = SDES_CNAME;
    sdes[9] = (uint8_t)self->cname_size;
    memcpy(sdes + 10, self->cname, self->cname_size);
    self->last_report_ntp = (uint32_t)(ntp >> 16);
    return PyBytes_FromStringAndSize((const char *)packet, 28 + 4 + chunk);
}

static PyObject *Stream_send_datagram(Stream *self, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    int ok = self->fd >= 0 &&
             sendto(self->fd, data.buf, data.len, MSG_DONTWAIT | MSG_NOSIGNAL,
                    (struct sockaddr *)&self->address, self->address_size) >= 0;
    PyBuffer_Release(&data);
    return PyBool_FromLong(ok);
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

static void take_compound(Stream *self, const uint8_t *data, Py_ssize_t size)
{
    uint32_t arrival = (uint32_t)(ntp_now() >> 16);
    Py_ssize_t at = 0;
    while (at + 4 <= size) {
        const uint8_t *packet = data + at;
        int count = packet[0] & 0x1f;
        int type = packet[1];
        Py_ssize_t length = 4 * ((((Py_ssize_t)packet[2] << 8) | packet[3]) + 1);
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
            /* Counted, not answered: see docs/decisions/001-listener-fast-path.md. */
            self->nacks++;
        }
        at += length;
    }
}

static PyObject *Stream_take_rtcp(Stream *self, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    take_compound(self, data.buf, data.len);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

static PyObject *Stream_get_round_trip_time(Stream *self, void *Py_UNUSED(closure))
{
    if (isnan(self->round_trip_time))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(self->round_trip_time);
}

static PyObject *Stream_get_fraction_lost(Stream *self, void *Py_UNUSED(closure))
{
    if (self->fraction_lost < 0)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(self->fraction_lost / 256.0);
}

static PyObject *Stream_get_routed(Stream *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->fd >= 0);
}

static PyMethodDef Stream_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))Stream_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(payload_type, extension, cname): the header and CNAME this stream sends"},
    {"route", (PyCFunction)(void (*)(void))Stream_route, METH_VARARGS | METH_KEYWORDS,
     "route(host, port, fd=-1): where to send; with fd, a duplicate of that socket"},
    {"close", (PyCFunction)Stream_close, METH_NOARGS, "stop sending (packets count as dropped)"},
    {"sender_report", (PyCFunction)(void (*)(void))Stream_sender_report,
     METH_VARARGS | METH_KEYWORDS,
     "sender_report(ntp_time, pts): an RTCP SR + SDES compound packet, unprotected"},
    {"send_datagram", (PyCFunction)Stream_send_datagram, METH_O,
     "send_datagram(data): send bytes on the stream's route; False if not sent"},
    {"take_rtcp", (PyCFunction)Stream_take_rtcp, METH_O,
     "take_rtcp(packet): read the report blocks and NACKs about us in unprotected RTCP"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Stream_members[] = {
    {"ssrc", T_UINT, offsetof(Stream, ssrc), READONLY, NULL},
    {"sequence", T_USHORT, offsetof(Stream, sequence), READONLY,
     "the sequence number of the next packet"},
    {"timestamp_origin", T_UINT, offsetof(Stream, timestamp_origin), READONLY, NULL},
    {"sent", T_ULONGLONG, offsetof(Stream, sent), READONLY, NULL},
    {"octets", T_ULONGLONG, offsetof(Stream, octets), READONLY, "payload bytes sent"},
    {"dropped", T_ULONGLONG, offsetof(Stream, dropped), READONLY, NULL},
    {"receiver_reports", T_ULONGLONG, offsetof(Stream, receiver_reports), READONLY,
     "report blocks about this stream received from the peer"},
    {"nacks", T_ULONGLONG, offsetof(Stream, nacks), READONLY, NULL},
    {"packets_lost", T_LONG, offsetof(Stream, packets_lost), READONLY, NULL},
    {"jitter", T_ULONG, offsetof(Stream, jitter), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Stream_getset[] = {
    {"round_trip_time", (getter)Stream_get_round_trip_time, NULL, NULL, NULL},
    {"fraction_lost", (getter)Stream_get_fraction_lost, NULL, NULL, NULL},
    {"routed", (getter)Stream_get_routed, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Stream_slots[] = {
    {Py_tp_doc, "One peer's outbound RTP stream: header template, SRTP session, socket."},
    {Py_tp_new, Stream_new},
    {Py_tp_init, Stream_init},
    {Py_tp_dealloc, Stream_dealloc},
    {Py_tp_methods, Stream_methods},
    {Py_tp_members, Stream_members},
    {Py_tp_getset, Stream_getset},
    {0, NULL},
};

static PyType_Spec Stream_spec = {
    .name = "media_node._fanout.Stream",
    .basicsize = sizeof(Stream),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = Stream_slots,
};

static PyObject *fanout_use_srtp(PyObject *Py_UNUSED(module), PyObject *arg)
{
    unsigned long long address = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    if (address == 0) {
        PyErr_SetString(PyExc_ValueError, "srtp_protect's address is needed");
        return NULL;
    }
    srtp_protect = (ProtectFunction)(uintptr_t)address;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"send", (PyCFunction)(void (*)(void))fanout_send, METH_FASTCALL,
     "send(streams, payload, pts): one RTP packet to every stream; how many were sent"},
    {"use_srtp", fanout_use_srtp, METH_O,
     "use_srtp(address): the srtp_protect of the libsrtp whose sessions streams use"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "media_node._fanout",
    .m_doc = "The media node's per-listener send path: RTP header, SRTP, sendto, in C.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fanout(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    StreamType = (PyTypeObject *)PyType_FromSpec(&Stream_spec);
    if (StreamType == NULL || PyModule_AddObjectRef(m, "Stream", (PyObject *)StreamType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
