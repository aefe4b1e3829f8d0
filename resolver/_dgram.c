/* Batched UDP receive and send for the DNS listener: recvmmsg(2) and sendmmsg(2).
 *
 * Why: under uvloop every datagram costs one trip through the loop's receive callback, a
 * Python address tuple built from the sockaddr, one call into the protocol and one sendto(2).
 * Measured on the bench (tests/bench/bench_resolver.py, README "Performance"): a bare uvloop
 * echo server spends about 19 us of user CPU per packet at 10,000 qps, dnsmasq about 7 us for
 * its whole answer. This module reads up to BATCH datagrams with one recvmmsg, calls the
 * server's `process(data, client_ip, "udp")` for each (one vectorcall, no address tuple), and
 * sends every reply that was ready at once with one sendmmsg to the address it came from.
 *
 * Python side: resolver/server.py (`_BatchedUdp`); without this module (no C compiler at
 * install time, or not Linux) the server keeps uvloop's datagram transport. Single-threaded by
 * design: the buffers are per listener object and every call runs under the GIL on the loop.
 *
 * Datagrams longer than SLOT bytes are passed on cut to SLOT bytes (MSG_TRUNC): DNS queries over
 * UDP are at most a few hundred bytes; the parser answers FORMERR to what it cannot read.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64
#define SLOT 4096

typedef struct {
    PyObject_HEAD
    int fd;
    int busy;
    PyObject *process;   /* process(data: bytes, ip: str, transport: str) -> bytes | None | other */
    PyObject *later;     /* later(result, address: bytes) for any other result (an async answer) */
    PyObject *udp;       /* the interned "udp" */
    char buffers[BATCH][SLOT];
    struct sockaddr_storage names[BATCH];
    struct iovec in_iov[BATCH];
    struct mmsghdr in_msgs[BATCH];
    struct iovec out_iov[BATCH];
    struct mmsghdr out_msgs[BATCH];
    PyObject *out_refs[BATCH];
    unsigned long long dropped; /* replies the kernel would not take (not EAGAIN) */
    unsigned long long blocked; /* replies dropped because the send buffer was full */
} Listener;

static PyObject *
client_ip(const struct sockaddr_storage *name)
{
    char text[INET6_ADDRSTRLEN];
    if (name->ss_family == AF_INET) {
        const unsigned char *b = (const unsigned char *)&((const struct sockaddr_in *)name)->sin_addr;
        int n = snprintf(text, sizeof text, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
        return PyUnicode_FromStringAndSize(text, n);
    }
    if (name->ss_family == AF_INET6) {
        if (!inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)name)->sin6_addr, text, sizeof text))
            return PyErr_SetFromErrno(PyExc_OSError);
        return PyUnicode_FromString(text);
    }
    return PyUnicode_FromString("");
}

/* Send out_msgs[0..count): one sendmmsg, then past any reply the kernel refuses. */
static void
flush(Listener *self, int count)
{
    int sent = 0;
    while (sent < count) {
        int r = sendmmsg(self->fd, self->out_msgs + sent, (unsigned)(count - sent), MSG_DONTWAIT);
        if (r > 0) {
            sent += r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            self->blocked += (unsigned long long)(count - sent); /* the clients ask again */
            break;
        }
        self->dropped += 1; /* e.g. an address the route table refuses: skip that one */
        sent += 1;
    }
    for (int i = 0; i < count; i++) {
        Py_CLEAR(self->out_refs[i]);
    }
}

static PyObject *
Listener_serve(Listener *self, PyObject *Py_UNUSED(ignored))
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "serve() called from inside serve()");
        return NULL;
    }
    for (int i = 0; i < BATCH; i++) {
        struct msghdr *h = &self->in_msgs[i].msg_hdr;
        h->msg_name = &self->names[i];
        h->msg_namelen = sizeof self->names[i];
        h->msg_iov = &self->in_iov[i];
        h->msg_iovlen = 1;
        h->msg_control = NULL;
        h->msg_controllen = 0;
        h->msg_flags = 0;
    }
    int n;
    do {
        n = recvmmsg(self->fd, self->in_msgs, BATCH, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyLong_FromLong(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->busy = 1;
    int ready = 0;
    for (int i = 0; i < n; i++) {
        struct msghdr *h = &self->in_msgs[i].msg_hdr;
        Py_ssize_t size = self->in_msgs[i].msg_len;
        if (size > SLOT)
            size = SLOT;
        PyObject *args[3];
        args[0] = PyBytes_FromStringAndSize(self->buffers[i], size);
        args[1] = args[0] ? client_ip(&self->names[i]) : NULL;
        args[2] = self->udp;
        PyObject *result = NULL;
        if (args[1] != NULL)
            result = PyObject_Vectorcall(self->process, args, 3, NULL);
        Py_XDECREF(args[0]);
        Py_XDECREF(args[1]);
        if (result == NULL) {
            PyErr_WriteUnraisable(self->process); /* the listener never dies of one packet */
            continue;
        }
        if (result == Py_None) {
            Py_DECREF(result);
        } else if (PyBytes_CheckExact(result)) {
            struct msghdr *o = &self->out_msgs[ready].msg_hdr;
            self->out_iov[ready].iov_base = PyBytes_AS_STRING(result);
            self->out_iov[ready].iov_len = (size_t)PyBytes_GET_SIZE(result);
            o->msg_name = &self->names[i];
            o->msg_namelen = h->msg_namelen;
            o->msg_iov = &self->out_iov[ready];
            o->msg_iovlen = 1;
            o->msg_control = NULL;
            o->msg_controllen = 0;
            o->msg_flags = 0;
            self->out_refs[ready] = result;
            ready++;
        } else {
            PyObject *name = PyBytes_FromStringAndSize((const char *)&self->names[i], h->msg_namelen);
            PyObject *done = NULL;
            if (name != NULL)
                done = PyObject_CallFunctionObjArgs(self->later, result, name, NULL);
            if (done == NULL)
                PyErr_WriteUnraisable(self->later);
            Py_XDECREF(done);
            Py_XDECREF(name);
            Py_DECREF(result);
        }
    }
    flush(self, ready);
    self->busy = 0;
    return PyLong_FromLong(n);
}

static PyObject *
Listener_send(Listener *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* send(data: bytes, address: bytes) -> bool: one reply to an address `later` was given.
     * False when the send buffer is full (the client asks again). */
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "send(data: bytes, address: bytes)");
        return NULL;
    }
    Py_ssize_t namelen = PyBytes_GET_SIZE(args[1]);
    if (namelen <= 0 || namelen > (Py_ssize_t)sizeof(struct sockaddr_storage)) {
        PyErr_SetString(PyExc_ValueError, "not an address from serve()");
        return NULL;
    }
    struct sockaddr_storage name;
    memcpy(&name, PyBytes_AS_STRING(args[1]), (size_t)namelen);
    ssize_t r;
    do {
        r = sendto(self->fd, PyBytes_AS_STRING(args[0]), (size_t)PyBytes_GET_SIZE(args[0]),
                   MSG_DONTWAIT, (struct sockaddr *)&name, (socklen_t)namelen);
    } while (r < 0 && errno == EINTR);
    if (r >= 0)
        Py_RETURN_TRUE;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        self->blocked += 1;
    else
        self->dropped += 1;
    Py_RETURN_FALSE;
}

static PyObject *
Listener_counts(Listener *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(KK)", self->blocked, self->dropped);
}

static int
Listener_init(Listener *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "process", "later", NULL};
    int fd;
    PyObject *process, *later;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOO", kwlist, &fd, &process, &later))
        return -1;
    if (!PyCallable_Check(process) || !PyCallable_Check(later)) {
        PyErr_SetString(PyExc_TypeError, "process and later must be callable");
        return -1;
    }
    self->fd = fd;
    Py_XSETREF(self->process, Py_NewRef(process));
    Py_XSETREF(self->later, Py_NewRef(later));
    Py_XSETREF(self->udp, PyUnicode_InternFromString("udp"));
    if (self->udp == NULL)
        return -1;
    for (int i = 0; i < BATCH; i++) {
        self->in_iov[i].iov_base = self->buffers[i];
        self->in_iov[i].iov_len = SLOT;
        self->out_refs[i] = NULL;
    }
    return 0;
}

static int
Listener_traverse(Listener *self, visitproc visit, void *arg)
{
    Py_VISIT(self->process);
    Py_VISIT(self->later);
    return 0;
}

static int
Listener_clear(Listener *self)
{
    Py_CLEAR(self->process);
    Py_CLEAR(self->later);
    Py_CLEAR(self->udp);
    return 0;
}

static void
Listener_dealloc(Listener *self)
{
    PyObject_GC_UnTrack(self);
    Listener_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Listener_methods[] = {
    {"serve", (PyCFunction)Listener_serve, METH_NOARGS,
     "Read the datagrams waiting (up to 64), answer each, send the ready replies. "
     "Returns how many were read (0: none waiting)."},
    {"send", (PyCFunction)(void (*)(void))Listener_send, METH_FASTCALL,
     "send(data, address) -> bool: one reply to an address given to `later`."},
    {"counts", (PyCFunction)Listener_counts, METH_NOARGS,
     "(replies dropped on a full send buffer, replies the kernel refused)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ListenerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "resolver._dgram.Listener",
    .tp_doc = "Listener(fd, process, later): batched UDP receive and send on one socket.",
    .tp_basicsize = sizeof(Listener),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Listener_init,
    .tp_dealloc = (destructor)Listener_dealloc,
    .tp_traverse = (traverseproc)Listener_traverse,
    .tp_clear = (inquiry)Listener_clear,
    .tp_methods = Listener_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "resolver._dgram",
    .m_doc = "Batched UDP receive and send (recvmmsg/sendmmsg) for the DNS listener.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__dgram(void)
{
    if (PyType_Ready(&ListenerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Listener", (PyObject *)&ListenerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "BATCH", BATCH) < 0 || PyModule_AddIntConstant(m, "SLOT", SLOT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
