"""gs:// run folders and data, through TensorFlow's own file system (tf.io.gfile).

Training writes a run folder with local file operations that object stores do not have: a
lock (flock), atomic replacement (write a temporary file, rename it), appends (TensorBoard
events). So a gs:// run folder is *staged*: a local copy under the cache
($DLCLI_CACHE, else ~/.cache/dlcli), keyed by the URL, that training writes as it writes any
run folder, and that is mirrored to the URL:

- at the start, the local copy is made equal to the URL (a restarted job on a new machine
  starts from an empty disk: what it continues from is what the bucket holds);
- after every checkpoint, at every epoch end, and when the command ends (finished, failed or
  stopped by a signal), what changed is uploaded: new files first, the checkpoint state file
  `checkpoint` (and `saved_model.pb`) last, then the files the local copy no longer has are
  deleted. An object store replaces an object whole when its upload completes, so a reader
  sees the old or the new object, never half of one; and a state file never points at a
  checkpoint whose files are not there yet.

`--data gs://...` is copied into the cache (files already there with the same size and time
are kept) and read from there by the usual sources. TensorFlow (and its gs:// client) is
imported only when a location is remote.
"""

import hashlib
import os
import re
from pathlib import Path

from dlcli.core import cluster
from dlcli.core.errors import DlcliError, WriteError

SCHEME = "gs://"
# Written last: what readers look for to know that everything else is there.
LAST = ("checkpoint", "saved_model.pb")
_mirrors = {}  # local staging folder -> Mirror
_data = {}  # --data URL -> its copy in the cache


def is_remote(location):
    """Whether `location` (a str or a Path, which folds gs://b into gs:/b) is a gs:// URL."""
    return location is not None and str(location).startswith("gs:/")


def url(location):
    """`location` as a canonical gs://bucket/path URL (no trailing slash)."""
    text = str(location)
    return (SCHEME + text[len("gs:/"):].lstrip("/")).rstrip("/")


def cache_root():
    base = os.environ.get("DLCLI_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlcli"
    return Path(base)


def cache_dir(kind, location):
    """A local folder for `location`, stable across runs: readable name plus a hash of the URL."""
    address = url(location)
    readable = re.sub(r"[^\w.-]+", "_", address[len(SCHEME):])[-60:]
    return cache_root() / kind / f"{readable}-{hashlib.sha1(address.encode()).hexdigest()[:10]}"


def _gfile():
    from dlcli.core.lazy import tf

    return tf.io.gfile, tf.errors.OpError


def _reason(error):
    return str(getattr(error, "message", error)).strip().splitlines()[0][:200]


def check(location, what, *, write=False):
    """Fails in one line (exit 2), before any data loads, on a bucket that does not exist, that
    cannot be reached, or (`write`) that this account cannot write: a probe object is written
    and deleted."""
    gfile, OpError = _gfile()
    address = url(location)
    bucket = SCHEME + address[len(SCHEME):].split("/")[0]
    hint = ("check the bucket name and the credentials (gcloud auth application-default login, "
            "or GOOGLE_APPLICATION_CREDENTIALS) and that this machine reaches storage.googleapis.com")
    try:
        if not gfile.exists(bucket):
            raise DlcliError(f"{what} {address}: bucket {bucket} does not exist or this account cannot see it; {hint}.")
        if write:
            probe = f"{address}/.dlcli-write-test-{os.getpid()}"
            with gfile.GFile(probe, "wb") as f:
                f.write(b"dlcli")
            gfile.remove(probe)
    except OpError as e:
        raise DlcliError(f"{what} {address}: cannot {'write' if write else 'read'} it ({_reason(e)}); {hint}.") from None


def _remote_files(address):
    """{relative path: (size, mtime_ns)} of every file under `address` (none if it does not exist)."""
    gfile, _ = _gfile()
    if not gfile.exists(address):
        return {}
    if not gfile.isdir(address):
        stat = gfile.stat(address)
        return {"": (stat.length, stat.mtime_nsec)}
    found = {}
    for folder, _, names in gfile.walk(address):
        prefix = folder.rstrip("/")[len(address):].lstrip("/")
        for name in names:
            rel = f"{prefix}/{name}" if prefix else name
            stat = gfile.stat(f"{address}/{rel}")
            found[rel] = (stat.length, stat.mtime_nsec)
    return found


def _local_files(root):
    """{relative path: (size, mtime_ns)} of the files under `root`, without hidden temporaries
    (the `.name.tmp` files of atomic writes, scratch folders): they are not the run."""
    root = Path(root)
    found = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        stat = path.stat()
        found[rel.as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def download(location, local, *, skip=()):
    """Makes the folder `local` a copy of the gs:// folder `location` (a single file lands in
    `local` under its own name): downloads what differs in size or time, removes what the
    remote does not hold, leaving alone the top-level folders named in `skip`. Returns the
    number of files downloaded."""
    gfile, OpError = _gfile()
    address, local = url(location), Path(local)
    try:
        remote = {rel: sig for rel, sig in _remote_files(address).items() if rel.split("/")[0] not in skip}
    except OpError as e:
        raise DlcliError(f"cannot read {address}: {_reason(e)}.") from None
    local.mkdir(parents=True, exist_ok=True)
    if "" in remote:  # a single file
        remote = {address.rsplit("/", 1)[1]: remote[""]}
        address = address.rsplit("/", 1)[0]
    else:
        for rel in _local_files(local):
            if rel not in remote and rel.split("/")[0] not in skip:
                (local / rel).unlink()
    fetched = 0
    for rel, (size, mtime_ns) in remote.items():
        target = local / rel
        if target.is_file() and (target.stat().st_size, target.stat().st_mtime_ns) == (size, mtime_ns):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        try:
            gfile.copy(f"{address}/{rel}", str(partial), overwrite=True)
        except OpError as e:
            raise DlcliError(f"cannot download {address}/{rel}: {_reason(e)}.") from None
        os.utime(partial, ns=(mtime_ns, mtime_ns))  # the remote's time: an unchanged file is not fetched again
        os.replace(partial, target)
        fetched += 1
    return fetched


def _is_last(rel):
    return rel.rsplit("/", 1)[-1] in LAST


class Mirror:
    """A local folder kept in step with a gs:// folder: `pull` makes it a copy of the remote,
    `push` uploads what changed since (state files last) and deletes what went away."""

    def __init__(self, location, local):
        self.url = url(location)
        self.local = Path(local)
        self.synced = {}  # relative path -> (size, mtime_ns) of the local file the remote holds

    def pull(self, skip=()):
        download(self.url, self.local, skip=skip)
        self.synced = _local_files(self.local)
        return self.local

    def changed(self):
        return _local_files(self.local) != self.synced

    def push(self):
        gfile, OpError = _gfile()
        files = _local_files(self.local)
        upload = sorted((rel for rel, sig in files.items() if self.synced.get(rel) != sig), key=lambda rel: (_is_last(rel), rel))
        gone = sorted((rel for rel in self.synced if rel not in files), key=lambda rel: not _is_last(rel))
        # A state file the run dropped (--overwrite) goes first, so the bucket never pairs a new
        # config.json with an old run's checkpoint; the files it pointed at go last.
        steps = [("remove", rel) for rel in gone if _is_last(rel)] + [("upload", rel) for rel in upload]
        steps += [("remove", rel) for rel in gone if not _is_last(rel)]
        current = None
        try:
            for action, current in steps:
                if action == "upload":
                    gfile.copy(str(self.local / current), f"{self.url}/{current}", overwrite=True)
                    self.synced[current] = files[current]
                else:
                    if gfile.exists(f"{self.url}/{current}"):
                        gfile.remove(f"{self.url}/{current}")
                    self.synced.pop(current, None)
        except OpError as e:
            raise WriteError(
                f"could not upload {current} to {self.url} ({_reason(e)}); the local copy in {self.local} is complete, "
                "and the run continues from the last uploaded checkpoint."
            ) from None


def stage_run(location):
    """The local staging folder of the gs:// run folder `location`, made a copy of it (after
    checking that the bucket is there and writable); later `push`es go back to `location`."""
    address = url(location)
    check(address, "run folder", write=True)
    local = cache_dir("runs", address)
    spec = cluster.tf_config()
    if not cluster.is_chief():  # workers of `dlcli launch` share a disk: each keeps its own copy
        local = local.with_name(f"{local.name}-{spec['task']['type']}{spec['task']['index']}")
    mirror = Mirror(address, local)
    mirror.pull()
    _mirrors[local] = mirror
    return local


def mirror_of(run_dir):
    """The Mirror whose staging folder is `run_dir`, or None for a run folder that is only local."""
    return _mirrors.get(Path(run_dir)) if run_dir is not None else None


def location_of(run_dir):
    """What the user named: the gs:// URL of a staged run folder, else the folder itself."""
    mirror = mirror_of(run_dir)
    return mirror.url if mirror is not None else run_dir


def push(run_dir):
    """Uploads what changed in a staged run folder; does nothing for a local one."""
    mirror = mirror_of(run_dir)
    if mirror is not None and mirror.changed():
        mirror.push()


def pull(run_dir):
    """Makes a staged run folder a copy of its gs:// URL again (a reader following a run that
    another process writes: the evaluator task); does nothing for a local one."""
    mirror = mirror_of(run_dir)
    if mirror is not None:
        mirror.pull()


def push_on_close(run_dir):
    """A callback for the end of a command: the last push, also after a failure or a signal
    (then a failed upload is not allowed to hide the error that stopped training)."""
    import sys

    def close():
        try:
            push(run_dir)
        except WriteError:
            if sys.exc_info()[0] is None:
                raise

    return close


class SyncHook:
    """A training hook: uploads the staged run folder after each checkpoint (mid-epoch and at
    epoch ends, after the epoch's history, logs and early-stopping state) and at the end."""

    def __init__(self, run_dir):
        self.run_dir = run_dir

    def on_checkpoint(self, global_step):
        push(self.run_dir)  # the checkpoint, and what the epoch's hooks wrote before it

    def on_finish(self, state, final):
        push(self.run_dir)


def sync_hooks(run_dir):
    """[SyncHook] for a staged run folder, [] for a local one."""
    return [SyncHook(run_dir)] if mirror_of(run_dir) is not None else []


def local_run(location, *, what="run folder"):
    """A run folder or exported model to read. A gs:// run folder is downloaded (without its
    checkpoints and TensorBoard logs) into its staging folder, and `push` goes back to it; a
    gs:// exported file comes with its sidecar. A local path is returned as it is."""
    if not is_remote(location):
        return Path(location)
    address = url(location)
    check(address, what)
    gfile, _ = _gfile()
    if not gfile.exists(address):
        raise DlcliError(f"{what} not found: {address}")
    if not gfile.isdir(address):  # model.keras or model.tflite from `dlcli export`, and its sidecar
        local = cache_dir("models", address)
        for part in (address, address + ".json"):
            if gfile.exists(part):
                download(part, local)
        return local / address.rsplit("/", 1)[1]
    local = cache_dir("runs", address)
    mirror = Mirror(address, local)
    mirror.pull(skip=("checkpoints", "logs"))
    _mirrors[local] = mirror
    return local


def local_data(location):
    """--data: a gs:// file or folder copied into the cache (unchanged files kept); a local path as it is."""
    if not is_remote(location):
        return Path(location)
    address = url(location)
    if address in _data:  # checked and fetched once per command
        return _data[address]
    check(address, "--data")
    gfile, _ = _gfile()
    if not gfile.exists(address):
        raise DlcliError(f"--data path does not exist: {address}")
    local = cache_dir("data", address)
    download(address, local)
    _data[address] = local if gfile.isdir(address) else local / address.rsplit("/", 1)[1]
    return _data[address]
