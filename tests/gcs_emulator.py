"""A Cloud Storage emulator that TensorFlow's own gs:// file system talks to, offline.

TensorFlow's GCS client (tsl/platform/cloud/gcs_file_system.cc) has its endpoints built in
(https://www.googleapis.com/storage/v1/, .../upload/storage/v1/ and https://storage.googleapis.com/
for reads) and no setting to change them. What it does honour: libcurl's proxy variables
(https_proxy, http_proxy), CURL_CA_BUNDLE for the certificates it trusts, and
GOOGLE_AUTH_TOKEN_FOR_TESTING for a bearer token without credentials. So the emulator here is
gcp-storage-emulator's request handler (the JSON API, resumable uploads, ranged reads, rewrite)
served as that proxy: a CONNECT to www.googleapis.com:443 or storage.googleapis.com:443 is
answered by TLS with a certificate of a throw-away CA (trustme), and the requests inside it go
to the emulator. Nothing leaves the machine.

    with GcsEmulator(tmp_path) as gcs:
        gcs.create_bucket("bucket")
        subprocess.run([...], env={**os.environ, **gcs.env})
"""

import os
import socketserver
import ssl
import threading
from functools import partial
from http import server
from urllib.parse import urlsplit

import trustme
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.handlers.buckets import create_bucket
from gcp_storage_emulator.server import RequestHandler
from gcp_storage_emulator.storage import Storage

HOSTS = ["www.googleapis.com", "storage.googleapis.com"]


def _media_upload_of_empty_objects(upload):
    """gcp-storage-emulator reads an empty body as None and fails on it; TensorFlow's folder
    markers (`makedirs`) are empty media uploads."""

    def media_upload(request, response, storage):
        if request.data is None:
            request._data = b""
        return upload(request, response, storage)

    return media_upload


if not getattr(objects._media_upload, "patched", False):
    objects._media_upload = _media_upload_of_empty_objects(objects._media_upload)
    objects._media_upload.patched = True


class _ProxyHandler(RequestHandler):
    """The emulator's handler, reached as an HTTP proxy: CONNECT becomes a TLS session whose
    requests it serves; absolute-form requests (plain http through the proxy) lose their host."""

    def __init__(self, tls_context, *args, **kwargs):
        self.tls_context = tls_context
        super().__init__(*args, **kwargs)

    def do_CONNECT(self):
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        tls = self.tls_context.wrap_socket(self.connection, server_side=True)
        self.connection = tls
        self.rfile = tls.makefile("rb", self.rbufsize)
        self.wfile = socketserver._SocketWriter(tls)
        self.close_connection = False  # BaseHTTPRequestHandler.handle then reads the tunnelled requests

    def parse_request(self):
        ok = super().parse_request()
        if ok and self.path.startswith(("http://", "https://")):
            parts = urlsplit(self.path)
            self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        if ok and "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # TensorFlow's uploads send both; HTTP says the chunked framing wins (RFC 9112 6.3),
            # the emulator reads Content-Length first and would store the framing.
            del self.headers["Content-Length"]
        if ok and self.command != "CONNECT" and self.headers.get("Authorization", "").strip() in ("", "Bearer"):
            # As Cloud Storage answers a client without credentials (TensorFlow then sends an empty token).
            body = b'{"error": {"code": 401, "message": "Anonymous caller does not have storage.objects.get access."}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return False
        return ok

    def log_message(self, format, *args):
        pass


class GcsEmulator:
    """An in-memory Cloud Storage on 127.0.0.1, and the environment that points TensorFlow at it."""

    def __init__(self, workdir):
        self.workdir = os.fspath(workdir)

    def __enter__(self):
        ca = trustme.CA()
        cert = ca.issue_cert(*HOSTS)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self.ca_file = os.path.join(self.workdir, "gcs-emulator-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        self.storage = Storage(use_memory_fs=True)
        handler = partial(_ProxyHandler, context, self.storage)
        self.httpd = server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        proxy = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.env = {
            "https_proxy": proxy, "http_proxy": proxy, "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy,
            # Only Cloud Storage goes through the emulator: workers talk to each other (gRPC) directly.
            "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
            "CURL_CA_BUNDLE": self.ca_file,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
            "NO_GCE_CHECK": "true",
            # The emulator answers at once; a failing call should not wait through TF's backoff.
            "GCS_RETRY_CONFIG_MAX_RETRIES": "2",
            "GCS_RETRY_CONFIG_INIT_DELAY_TIME_US": "10000",
        }
        return self

    def create_bucket(self, name):
        create_bucket(name, self.storage)

    def put(self, bucket, name, content):
        """Stores an object as an upload would (the metadata TensorFlow's stat reads included)."""
        obj = objects._make_object_resource("http://127.0.0.1", bucket, name, "application/octet-stream", str(len(content)))
        self.storage.create_file(bucket, name, content, objects._checksums(content, obj))

    def objects(self, bucket):
        """{name: bytes} of what `bucket` holds, read from the emulator itself."""
        for _ in range(5):  # the emulator's threads may be adding objects meanwhile
            try:
                names = list(self.storage.objects.get(bucket, {}))
                return {name: self.storage.get_file(bucket, name) for name in names}
            except (RuntimeError, KeyError, FileNotFoundError):
                continue
        raise RuntimeError(f"could not list {bucket}")

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
