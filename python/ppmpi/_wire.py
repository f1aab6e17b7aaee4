"""What a client and a ppmpi-server say to each other once _auth's handshake is done.

Every message is one sealed (encrypted and authenticated) frame of _auth.Link (kind byte +
payload), in order:
  1. server -> client INFO: JSON {"version", "workers", "host", "pid"}; the client uses the
     server only after it (a server that sends anything else first is another version);
  2. client -> server JOB: struct JOB_HEAD (client job id, time limit in seconds, lengths of
     key / bundle / arguments, number of buffers) + key + bundle + arguments, then that many
     BUFFER frames (out-of-band pickle buffers: large arrays travel without a copy into one
     blob). A bundle of length 0 means "the bundle sent before under this key": each function
     crosses the link once per connection;
  3. server -> client RESULT: struct RESULT_HEAD (client job id, outcome code of the table in
     include/ppmpi/core/outcomes.hpp, seconds, lengths of worker label / message / payload,
     number of buffers) + worker + message + payload,
     then its BUFFER frames; the payload is exactly what the server's workers produced
     (pickled (result, output) or an exception report), so the server never unpickles it;
  4. client -> server CANCEL: u64 client job id (a job of a client that went away is cancelled
     by the server itself);
  5. both ways PING every PING_INTERVAL_S (the server's carries JSON {"workers": n}); a peer
     silent for SILENCE_LIMIT_S is gone: the server cancels that client's jobs, the client
     runs that server's jobs elsewhere;
  6. client -> server BYE: the client is done; the server cancels what is left and closes.
"""
import collections
import json
import struct

INFO, JOB, BUFFER, RESULT, CANCEL, PING, BYE = range(1, 8)
PROTOCOL_VERSION = 1
PING_INTERVAL_S = 1.0
SILENCE_LIMIT_S = 10.0
# One frame: as one MPI message on the server's side, at most 2 GiB.
MAX_FRAME_BYTES = 0x7FFFFFFF
MAX_BUFFERS = 4096

JOB_HEAD = struct.Struct(">QdHIIH")
RESULT_HEAD = struct.Struct(">QBdHIIH")
JOB_ID = struct.Struct(">Q")
# Functions each side remembers per connection (step 2), evicted in the same LRU order.
KNOWN_BUNDLES = 1024


class WireError(ValueError):
    """A frame that does not parse (a broken or hostile peer)."""


def pack_job(job_id, limit, key, bundle, data, nbuffers):
    key = key.encode() if isinstance(key, str) else key
    head = JOB_HEAD.pack(job_id, limit, len(key), len(bundle), len(data), nbuffers)
    return b"".join((head, key, bundle, data))


def _slices(payload, offset, lengths, what):
    out = []
    view = memoryview(payload)
    for length in lengths:
        if offset + length > len(payload):
            raise WireError(f"{what} frame is shorter than its header says")
        out.append(view[offset:offset + length])
        offset += length
    if offset != len(payload):
        raise WireError(f"{what} frame is longer than its header says")
    return out


def unpack_job(payload):
    """(job id, limit, key str, bundle bytes, data view, nbuffers)."""
    if len(payload) < JOB_HEAD.size:
        raise WireError("JOB frame shorter than its header")
    job_id, limit, nkey, nbundle, ndata, nbuf = JOB_HEAD.unpack_from(payload)
    if nbuf > MAX_BUFFERS:
        raise WireError(f"JOB frame announces {nbuf} buffers (at most {MAX_BUFFERS})")
    key, bundle, data = _slices(payload, JOB_HEAD.size, (nkey, nbundle, ndata), "JOB")
    return job_id, limit, bytes(key).decode("utf-8", "replace"), bytes(bundle), data, nbuf


def pack_result(job_id, code, seconds, worker, message, payload, nbuffers):
    worker, message = worker.encode(), message.encode()
    head = RESULT_HEAD.pack(job_id, code, seconds, len(worker), len(message), len(payload),
                            nbuffers)
    return b"".join((head, worker, message, payload))


def unpack_result(payload):
    """(job id, code, seconds, worker str, message str, payload view, nbuffers)."""
    if len(payload) < RESULT_HEAD.size:
        raise WireError("RESULT frame shorter than its header")
    job_id, code, seconds, nworker, nmessage, npayload, nbuf = RESULT_HEAD.unpack_from(payload)
    if nbuf > MAX_BUFFERS:
        raise WireError(f"RESULT frame announces {nbuf} buffers (at most {MAX_BUFFERS})")
    worker, message, body = _slices(payload, RESULT_HEAD.size, (nworker, nmessage, npayload),
                                    "RESULT")
    return (job_id, code, seconds, bytes(worker).decode("utf-8", "replace"),
            bytes(message).decode("utf-8", "replace"), body, nbuf)


def pack_json(value):
    return json.dumps(value).encode()


def unpack_json(payload, what):
    try:
        value = json.loads(bytes(payload).decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"{what} frame is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise WireError(f"{what} frame is not a JSON object")
    return value


class KnownBundles:
    """The bundles a server holds for one connection, kept the same on both sides: each key
    is recorded in the order JOB frames carry it and the least recently used goes first, so
    the client knows which keys may travel without their bytes."""

    def __init__(self):
        self._bundles = collections.OrderedDict()

    def _use(self, key, bundle):
        self._bundles[key] = bundle
        self._bundles.move_to_end(key)
        if len(self._bundles) > KNOWN_BUNDLES:
            self._bundles.popitem(last=False)

    def seen(self, key):
        """Client side: True if the server holds `key` already (the JOB then carries no
        bundle); either way it holds it after this JOB."""
        known = key in self._bundles
        self._use(key, None)
        return known

    def resolve(self, key, bundle):
        """Server side: the bundle of a JOB (`bundle` if it came along, else the one held)."""
        if not bundle:
            if key not in self._bundles:
                raise WireError(f"a job refers to the function {key!r}, never sent")
            bundle = self._bundles[key]
        self._use(key, bundle)
        return bundle


def receive_buffers(link, count, timeout):
    """The `count` BUFFER frames that follow a JOB or RESULT."""
    buffers = []
    for _ in range(count):
        kind, payload = link.receive(MAX_FRAME_BYTES, timeout)
        if kind != BUFFER:
            raise WireError(f"expected a BUFFER frame, got kind {kind}")
        buffers.append(payload)
    return buffers
