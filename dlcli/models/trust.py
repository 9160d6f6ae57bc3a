"""Which exported models dlcli runs without `--unsafe`.

A SavedModel or a .tflite file is a program: its graph runs whatever ops it holds (file
writes included), as a Keras `Lambda` layer does. So `dlcli predict` runs one only when it is
this user's own `dlcli export`: export signs the artifact's bytes with an HMAC-SHA256 key kept
in the user's dlcli folder (`$DLCLI_HOME`, else `~/.dlcli`, created with mode 0600), and writes
the signature into the export's sidecar (dlcli.json / FILE.json). An artifact from elsewhere,
or one changed after export, has no valid signature and needs `--unsafe`. What else predict
reads from the sidecar to run the artifact (a text model's vocabulary) is signed with it. (`.keras` files are
data, not code: Keras' safe mode loads them without running any, and refuses `Lambda` layers.)
"""

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path


def home():
    return Path(os.environ.get("DLCLI_HOME") or Path.home() / ".dlcli").expanduser()


def key(create=False):
    """This user's signing key, or None when there is none (and `create` is False)."""
    path = home() / "export.key"
    if path.is_file():
        return path.read_bytes()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    return path.read_bytes()


def digest(artifact):
    """SHA-256 over every file of an artifact (a file, or a folder's files by relative path);
    the sidecar of a folder (dlcli.json) is left out, since it holds the signature."""
    artifact = Path(artifact)
    files = [artifact] if artifact.is_file() else sorted(p for p in artifact.rglob("*") if p.is_file() and p.name != "dlcli.json")
    h = hashlib.sha256()
    for path in files:
        h.update(str(path.relative_to(artifact) if artifact.is_dir() else path.name).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def message(artifact, extra):
    """What is signed: the artifact's digest, and `extra` (JSON, keys sorted) when there is any."""
    text = digest(artifact)
    if extra:
        text += "\0" + json.dumps(extra, sort_keys=True, separators=(",", ":"))
    return text.encode()


def sign(artifact, extra=None):
    return hmac.new(key(create=True), message(artifact, extra), hashlib.sha256).hexdigest()


def is_own_export(artifact, signature, extra=None):
    """Whether `signature` (from the sidecar) is this user's signature of the artifact (and of
    `extra`) as they are now."""
    secret = key()
    if not secret or not isinstance(signature, str):
        return False
    expected = hmac.new(secret, message(artifact, extra), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
