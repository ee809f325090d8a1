/*
 * The Tap: set as an aioice protocol's `datagram_received`, it takes the stream's own
 * traffic off the socket before aioice (which would first try to parse each datagram
 * as STUN) and aiortc (a queue, a coroutine, RTCP objects) see it: the peer's receiver
 * reports (rtcp.c), its consent checks on the nominated pair and the answers to ours
 * (consent.c). Everything else (other STUN, DTLS, a publisher's RTCP) goes on to the
 * protocol's own method.
 */

#include "fanout.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    Stream *stream;
    PyObject *original; /* the aioice protocol's own datagram_received */
    int socket;         /* that protocol's socket descriptor, -1 if unknown */
} Tap;

/* 1 if the datagram was this stream's to take, 0 to pass it on. */
static int tap_datagram(Tap *self, const uint8_t *data, Py_ssize_t size, PyObject *addr)
{
    Stream *stream = self->stream;
    if (stream->fd < 0)
        return 0;
    /* RFC 5761/7983: RTP and RTCP start at 128-191; the first packet's header stays in
     * the clear in SRTCP, so its type can be read here. A compound packet that starts
     * with a sender report comes from a peer that publishes: aiortc's receiver needs it. */
    if (size > 8 && data[1] == RTCP_RR && data[0] > 127 && data[0] < 192) {
        if (stream->inbound_session == NULL || size > RTCP_BUFFER)
            return 0;
        uint32_t words[RTCP_BUFFER / 4 + 1];
        uint8_t *packet = (uint8_t *)words;
        memcpy(packet, data, size);
        int length = (int)size;
        /* Forged, replayed or damaged: dropped, as aiortc would have. */
        if (srtp_unprotect_report(stream, packet, &length))
            rtcp_take_compound(stream, packet, length);
        return 1;
    }
    if (!stream->ice || data[0] > 3)
        return 0;
    StunMessage message;
    if (!stun_parse(&message, data, size))
        return 0;
    if (message.type == STUN_BINDING_REQUEST)
        return consent_answer_check(stream, self->socket, &message, data, addr);
    if (message.type == STUN_BINDING_SUCCESS || message.type == STUN_BINDING_ERROR)
        return consent_take_answer(stream, self->socket, &message, data, addr);
    return 0;
}

static void Tap_clear_references(Tap *self)
{
    Py_CLEAR(self->stream);
    Py_CLEAR(self->original);
}

static int Tap_init(Tap *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"stream", "original", "socket", NULL};
    PyObject *stream, *original;
    int socket = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O|i", keywords, StreamType, &stream,
                                     &original, &socket))
        return -1;
    if (!PyCallable_Check(original)) {
        PyErr_SetString(PyExc_TypeError, "original must be callable");
        return -1;
    }
    Tap_clear_references(self);
    self->stream = (Stream *)Py_NewRef(stream);
    self->original = Py_NewRef(original);
    self->socket = socket;
    return 0;
}

static PyObject *Tap_call(Tap *self, PyObject *args, PyObject *kwargs)
{
    PyObject *data_object, *addr;
    if (self->stream == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the tap is not initialised");
        return NULL;
    }
    if (kwargs == NULL && PyTuple_Size(args) == 2) {
        data_object = PyTuple_GetItem(args, 0);
        addr = PyTuple_GetItem(args, 1);
        Py_buffer data;
        if (PyObject_GetBuffer(data_object, &data, PyBUF_SIMPLE) < 0)
            return NULL;
        int taken = tap_datagram(self, data.buf, data.len, addr);
        PyBuffer_Release(&data);
        if (taken)
            Py_RETURN_NONE;
    }
    return PyObject_Call(self->original, args, kwargs);
}

static int Tap_traverse(Tap *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE((PyObject *)self));
    Py_VISIT(self->stream);
    Py_VISIT(self->original);
    return 0;
}

static int Tap_clear(Tap *self)
{
    Tap_clear_references(self);
    return 0;
}

static void Tap_dealloc(Tap *self)
{
    PyObject_GC_UnTrack(self);
    Tap_clear(self);
    PyTypeObject *type = Py_TYPE((PyObject *)self);
    freefunc free_self = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_self(self);
    Py_DECREF(type);
}

static PyObject *Tap_get_original(Tap *self, void *Py_UNUSED(closure))
{
    if (self->original == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(self->original);
}

static PyGetSetDef Tap_getset[] = {
    {"original", (getter)Tap_get_original, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Tap_slots[] = {
    {Py_tp_doc, "Tap(stream, original, socket=-1): an aioice protocol's datagram_received "
                "that takes the stream's consent STUN and receiver reports, and passes on "
                "the rest"},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, Tap_init},
    {Py_tp_call, Tap_call},
    {Py_tp_traverse, Tap_traverse},
    {Py_tp_clear, Tap_clear},
    {Py_tp_dealloc, Tap_dealloc},
    {Py_tp_getset, Tap_getset},
    {0, NULL},
};

static PyType_Spec Tap_spec = {
    .name = "media_node._fanout.Tap",
    .basicsize = sizeof(Tap),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = Tap_slots,
};

PyTypeObject *tap_type_create(void)
{
    return (PyTypeObject *)PyType_FromSpec(&Tap_spec);
}
