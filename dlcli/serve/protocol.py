"""uvicorn's HTTP/1.1 protocol (httptools) with what it leaves to a proxy in front of it.

uvicorn closes a keep-alive connection that stays idle after a response, but sets no deadline
for a request's headers: a client that opens a connection and sends nothing, or one byte every
few seconds (slowloris), holds it forever, and headers are buffered without a size limit. Here
each request's headers must arrive within `read_timeout` seconds of the connection opening (or
of the previous answer) and within MAX_HEADER_BYTES, else the connection is closed (with a
JSON 431 for the size). The body has its own deadline, in the app (`app.read_body`); the rest of
a body the app refused without reading it (413, 415) is read and dropped by the parser, within the
same deadline, so that the client reads its answer (closing with its bytes unread would reset the
connection, losing the answer). A slow
client costs a connection, never a worker: the server is asynchronous, and the model thread only
sees decoded batches. uvicorn's own answer to a malformed request is a JSON 400 here too.
"""

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 64 * 1024  # the request line and headers together (nginx's default buffers total 32 KB)


def error_response(status, reason, message):
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


class GuardedProtocol(HttpToolsProtocol):
    read_timeout = 10.0  # set by the server (--read-timeout)

    def connection_made(self, transport):
        super().connection_made(transport)
        self.in_headers, self.header_bytes = False, 0
        self.deadline = self.loop.call_later(self.read_timeout, self.headers_too_slow)

    def waiting_for_headers(self):
        """No request of this connection is being answered: the next one's headers are due."""
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data):
        super().data_received(data)
        if self.in_headers and not self.transport.is_closing():
            self.header_bytes += len(data)
            if self.header_bytes > MAX_HEADER_BYTES:
                self.transport.write(error_response(431, "Request Header Fields Too Large",
                                                    f"the request line and headers are over {MAX_HEADER_BYTES} bytes."))
                self.transport.close()

    def on_message_begin(self):
        super().on_message_begin()
        self.in_headers, self.header_bytes = True, 0

    def on_headers_complete(self):
        self.in_headers = False
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        super().on_headers_complete()

    def on_response_complete(self):
        super().on_response_complete()
        if not self.transport.is_closing():  # the rest of a refused body is read (and dropped) within it too
            if self.deadline is not None:
                self.deadline.cancel()
            self.deadline = self.loop.call_later(self.read_timeout, self.headers_too_slow)

    def connection_lost(self, exc):
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        super().connection_lost(exc)

    def headers_too_slow(self):
        self.deadline = None
        if self.waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg):
        if not self.transport.is_closing():
            self.transport.write(error_response(400, "Bad Request", f"{msg.rstrip('.')}: not an HTTP/1.1 request this server reads."))
        self.transport.close()
