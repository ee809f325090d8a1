/*
 * The Stream type: one peer's outbound RTP stream as Python sees it. Its construction,
 * header template and route are here; what it does with them is in the files of each
 * concern (send.c, srtp.c, rtcp.c, consent.c).
 */

#include "fanout.h"

#include <arpa/inet.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int Stream_init(Stream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"owner",           "session",          "ssrc",
                               "sequence",        "timestamp_origin", "inbound_owner",
                               "inbound_session", NULL};
    PyObject *owner, *inbound_owner = Py_None;
    unsigned long long session, inbound_session = 0;
    unsigned long ssrc, sequence, timestamp_origin;
    if (self->owner != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a stream is initialised once");
        return -1;
    }
    if (!srtp_ready()) {
        PyErr_SetString(PyExc_RuntimeError, "use_srtp() has not been called");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OKkkk|OK", keywords, &owner, &session,
                                     &ssrc, &sequence, &timestamp_origin, &inbound_owner,
                                     &inbound_session))
        return -1;
    if (session == 0) {
        PyErr_SetString(PyExc_ValueError, "no SRTP session");
        return -1;
    }
    self->owner = Py_NewRef(owner);
    self->session = (void *)(uintptr_t)session;
    if (inbound_session != 0) {
        self->inbound_owner = Py_NewRef(inbound_owner);
        self->inbound_session = (void *)(uintptr_t)inbound_session;
    }
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
    self->route_socket = -1;
    self->fraction_lost = -1;
    self->round_trip_time = NAN;
    return (PyObject *)self;
}

void stream_close_socket(Stream *self)
{
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
        self->socket_key = 0;
    }
}

int stream_send_datagram(Stream *self, const void *data, size_t size)
{
    return self->fd >= 0 && sendto(self->fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL,
                                   (struct sockaddr *)&self->address, self->address_size) >= 0;
}

static void Stream_dealloc(Stream *self)
{
    stream_close_socket(self);
    srtp_forget_keys(self);
    EVP_MAC_CTX_free(self->local_key);
    EVP_MAC_CTX_free(self->remote_key);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->inbound_owner);
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
        put32(header + 8, self->ssrc);
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
    if (fd >= 0 && !self->consent_expired) {
        /* Our own descriptor of the socket aiortc reads from: sending on it skips the
         * asyncio transport's buffering, so a full send buffer drops this listener's
         * packet (EAGAIN) rather than queueing anything behind it. */
        int own = dup(fd);
        if (own < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        /* A socket's inode stays its own while our duplicate holds it open. */
        struct stat status;
        if (fstat(own, &status) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            close(own);
            return NULL;
        }
        stream_close_socket(self);
        self->fd = own;
        self->socket_key = (unsigned long)status.st_ino;
        self->route_socket = fd;
    }
    self->address = address;
    self->address_size = size;
    Py_RETURN_NONE;
}

static PyObject *Stream_close(Stream *self, PyObject *Py_UNUSED(ignored))
{
    stream_close_socket(self);
    self->route_socket = -1;
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
    {"use_gcm", (PyCFunction)(void (*)(void))Stream_use_gcm, METH_VARARGS | METH_KEYWORDS,
     "protect RTP here with AES-GCM (RFC 7714) under this session key and salt, not libsrtp"},
    {"sender_report", (PyCFunction)(void (*)(void))Stream_sender_report,
     METH_VARARGS | METH_KEYWORDS,
     "sender_report(ntp_time, pts): an RTCP SR + SDES compound packet, unprotected"},
    {"send_report", (PyCFunction)(void (*)(void))Stream_send_report,
     METH_VARARGS | METH_KEYWORDS,
     "send_report(ntp_time, pts): send a sender report, SRTCP-protected; False if not sent"},
    {"ice", (PyCFunction)(void (*)(void))Stream_ice, METH_VARARGS | METH_KEYWORDS,
     "ice(local_username, local_password, remote_username, remote_password, controlling, "
     "tie_breaker, priority): take over consent freshness for the nominated pair"},
    {"take_rtcp", (PyCFunction)Stream_take_rtcp, METH_O,
     "take_rtcp(packet): read the report blocks and NACKs about us in unprotected RTCP"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Stream_members[] = {
    {"ssrc", T_UINT, offsetof(Stream, ssrc), READONLY, NULL},
    {"rollover", T_UINT, offsetof(Stream, rollover), READONLY,
     "SRTP's rollover counter: how many times the sequence number has wrapped"},
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
    {"consent_checks", T_ULONGLONG, offsetof(Stream, consent_checks), READONLY,
     "consent checks sent to the peer"},
    {"consent_responses", T_ULONGLONG, offsetof(Stream, consent_responses), READONLY,
     "authenticated success responses to them"},
    {"consent_answers", T_ULONGLONG, offsetof(Stream, consent_answers), READONLY,
     "the peer's checks on the nominated pair answered here"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Stream_getset[] = {
    {"round_trip_time", (getter)Stream_get_round_trip_time, NULL, NULL, NULL},
    {"fraction_lost", (getter)Stream_get_fraction_lost, NULL, NULL, NULL},
    {"routed", (getter)Stream_get_routed, NULL, NULL, NULL},
    {"consent_age", (getter)Stream_get_consent_age, NULL,
     "seconds since consent was last granted; None before ice()", NULL},
    {"consent_expired", (getter)Stream_get_consent_expired, NULL, NULL, NULL},
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

PyTypeObject *stream_type_create(void)
{
    return (PyTypeObject *)PyType_FromSpec(&Stream_spec);
}
