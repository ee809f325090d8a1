/*
 * The send loop: one packet to every stream of a room.
 *
 * Each datagram is the stream's header template with its sequence number and
 * timestamp, the shared payload, protected with the stream's keys (srtp.c). Streams on
 * one socket (a worker's peers share one, see udp_mux.py) go out SEND_BATCH datagrams
 * per sendmmsg call: the kernel's entry and exit and the socket's lookup are paid once
 * per batch.
 */

#include "fanout.h"

#include <string.h>

#define SEND_BATCH 64

/* System calls `send` has made (sendto and sendmmsg), for tests and stats. */
static unsigned long long send_calls;

/* Header from the template, payload after it, protected in place, into `datagram`
 * (32-bit aligned: libsrtp wants the RTP header so). The datagram's length, or 0 when
 * this stream sends nothing now (counted as dropped). */
static int build_one(Stream *self, const uint8_t *payload, Py_ssize_t size, uint32_t pts,
                     uint8_t *datagram)
{
    uint16_t sequence = self->sequence++;
    uint32_t rollover = self->rollover;
    if (self->sequence == 0)
        self->rollover++;
    /* The sequence number advanced even for a packet that is not sent: the receiver
     * then sees the gap as the loss it is. */
    if (self->fd < 0 || self->header_size == 0) {
        self->dropped++;
        return 0;
    }
    memcpy(datagram, self->header, self->header_size);
    put16(datagram + 2, sequence);
    put32(datagram + 4, self->timestamp_origin + pts);
    memcpy(datagram + self->header_size, payload, size);
    int length = (int)(self->header_size + size);
    if (!srtp_protect_rtp(self, datagram, &length, sequence, rollover)) {
        self->dropped++;
        return 0;
    }
    return length;
}

/* One packet to one stream, with its own sendto. */
static int send_one(Stream *self, const uint8_t *payload, Py_ssize_t size, uint32_t pts)
{
    uint32_t words[DATAGRAM_BUFFER / 4 + 1];
    uint8_t *datagram = (uint8_t *)words;
    int length = build_one(self, payload, size, pts, datagram);
    if (length == 0)
        return 0;
    send_calls++;
    if (sendto(self->fd, datagram, length, MSG_DONTWAIT | MSG_NOSIGNAL,
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

/* Each stream holds its own duplicate descriptor, so a batch is the streams whose
 * duplicates are of one socket (`socket_key`), sent on the first one's. The buffers
 * are the module's: the GIL is held throughout a send, and a batch never outlives it. */
static uint32_t batch_words[SEND_BATCH][DATAGRAM_BUFFER / 4 + 1];
static struct mmsghdr batch_messages[SEND_BATCH];
static struct iovec batch_vectors[SEND_BATCH];
static Stream *batch_streams[SEND_BATCH];

typedef struct {
    int fd;
    unsigned long socket_key;
    int count;
    long sent;
    Py_ssize_t size; /* the payload's, for the streams' octet counts */
} Batch;

/* Send the batch. A datagram the kernel refuses (a full socket buffer, a destination
 * it cannot reach) ends a sendmmsg call: that stream misses this packet, and the
 * batch goes on after it. */
static void batch_flush(Batch *batch)
{
    int start = 0;
    while (start < batch->count) {
        int done = sendmmsg(batch->fd, batch_messages + start, (unsigned)(batch->count - start),
                            MSG_DONTWAIT | MSG_NOSIGNAL);
        send_calls++;
        if (done <= 0) {
            batch_streams[start]->dropped++;
            start++;
            continue;
        }
        for (int i = start; i < start + done; i++) {
            batch_streams[i]->sent++;
            batch_streams[i]->octets += batch->size;
        }
        batch->sent += done;
        start += done;
    }
    batch->count = 0;
}

static void batch_add(Batch *batch, Stream *stream, const uint8_t *payload, uint32_t pts)
{
    if (batch->count > 0 &&
        (stream->socket_key != batch->socket_key || batch->count == SEND_BATCH))
        batch_flush(batch);
    int slot = batch->count;
    uint8_t *datagram = (uint8_t *)batch_words[slot];
    int length = build_one(stream, payload, batch->size, pts, datagram);
    if (length == 0)
        return;
    if (slot == 0) {
        batch->fd = stream->fd;
        batch->socket_key = stream->socket_key;
    }
    batch_vectors[slot].iov_base = datagram;
    batch_vectors[slot].iov_len = (size_t)length;
    struct msghdr *header = &batch_messages[slot].msg_hdr;
    header->msg_name = &stream->address;
    header->msg_namelen = stream->address_size;
    header->msg_iov = &batch_vectors[slot];
    header->msg_iovlen = 1;
    header->msg_control = NULL;
    header->msg_controllen = 0;
    header->msg_flags = 0;
    batch_streams[slot] = stream;
    batch->count++;
}

/* Ask for the cache lines build_one will read of `self`: from the object's head to the
 * destination address's first bytes. */
static inline void prefetch_stream(const Stream *self)
{
    const char *start = (const char *)self;
    const char *end = (const char *)&self->address + sizeof(struct sockaddr_in6);
    for (const char *line = start; line < end; line += 64)
        __builtin_prefetch(line, 1, 3);
}

/* A room's StreamSet: walked by index, each stream's lines fetched one turn ahead (its
 * datagram takes a microsecond to build; the fetch is then long done), the datagrams
 * sent in batches per socket. The number sent, or -1 with an exception set. */
static long send_tuple(PyObject *streams, const Py_buffer *payload, uint32_t pts)
{
    Py_ssize_t count = PyTuple_Size(streams);
    PyObject *next = count > 0 ? PyTuple_GetItem(streams, 0) : NULL;
    Batch batch = {.fd = -1, .socket_key = 0, .count = 0, .sent = 0, .size = payload->len};
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = next;
        next = i + 1 < count ? PyTuple_GetItem(streams, i + 1) : NULL;
        /* No look at the next item's type before the fetch: that read would be the
         * very cache miss the fetch is there to hide. A fetch reads nothing. */
        if (next != NULL)
            prefetch_stream((const Stream *)next);
        if (!PyObject_TypeCheck(item, StreamType)) {
            /* What is already built goes out: those streams' sequence numbers have
             * advanced. */
            batch_flush(&batch);
            PyErr_SetString(PyExc_TypeError, "send() takes an iterable of Stream");
            return -1;
        }
        batch_add(&batch, (Stream *)item, payload->buf, pts);
    }
    batch_flush(&batch);
    return batch.sent;
}

/* Any other iterable: one sendto per stream. */
static long send_iterable(PyObject *streams, const Py_buffer *payload, uint32_t pts)
{
    PyObject *iterator = PyObject_GetIter(streams);
    if (iterator == NULL)
        return -1;
    long sent = 0;
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        if (!PyObject_TypeCheck(item, StreamType)) {
            Py_DECREF(item);
            PyErr_SetString(PyExc_TypeError, "send() takes an iterable of Stream");
            break;
        }
        sent += send_one((Stream *)item, payload->buf, payload->len, pts);
        Py_DECREF(item);
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : sent;
}

PyObject *fanout_send(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "send(streams, payload, pts)");
        return NULL;
    }
    Py_buffer payload;
    if (PyObject_GetBuffer(args[1], &payload, PyBUF_SIMPLE) < 0)
        return NULL;
    long sent = -1;
    /* The RTP timestamp wraps modulo 2^32, so only the low bits of pts matter. */
    uint32_t pts = (uint32_t)PyLong_AsUnsignedLongLongMask(args[2]);
    if (!PyErr_Occurred() && payload.len > MAX_PAYLOAD_SIZE)
        PyErr_Format(PyExc_ValueError, "payload of %zd bytes is over %d", payload.len,
                     MAX_PAYLOAD_SIZE);
    if (!PyErr_Occurred())
        sent = PyTuple_Check(args[0]) ? send_tuple(args[0], &payload, pts)
                                      : send_iterable(args[0], &payload, pts);
    PyBuffer_Release(&payload);
    return sent < 0 ? NULL : PyLong_FromLong(sent);
}

PyObject *fanout_send_calls(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(args))
{
    return PyLong_FromUnsignedLongLong(send_calls);
}
