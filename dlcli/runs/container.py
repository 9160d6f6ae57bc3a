"""In dlcli's container image: write the mounted folders as their owner.

`docker run -v "$PWD/runs:/runs" ...` mounts a host folder that belongs to whoever made it: the
host user, or root when Docker created it because it was missing. A fixed user inside the image
(uid 1000) can write neither in general. So the image starts as root, and before anything else
dlcli takes on the owner of the mounted /runs (else /data): the files it writes then belong to
the host user who owns the folder. A folder that belongs to root is written as root. Without a
mounted volume dlcli runs as the image's user `dlcli`, except on Vertex AI (AIP_* set), whose
Cloud Storage FUSE mount at /gcs belongs to root. Started with `docker run --user ...`, nothing
is adopted: a folder that user cannot write is refused in one line before data loads
(`rundir.check_writable`), naming the `--user "$(id -u):$(id -g)"` fix.
"""

import os
import pwd
import tempfile

VOLUMES = ("/runs", "/data")
IMAGE_USER = "dlcli"


def mount_points():
    """The mount points of this process (from /proc/self/mountinfo), or an empty set."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            return {line.split()[4].replace("\\040", " ") for line in f if len(line.split()) > 4}
    except OSError:
        return set()


def target_owner():
    """(uid, gid) to run as, or None to stay as started."""
    mounted = mount_points()
    for volume in VOLUMES:
        if volume in mounted and os.path.isdir(volume):
            info = os.stat(volume)
            return info.st_uid, info.st_gid
    if any(name.startswith("AIP_") for name in os.environ):
        return None
    try:
        user = pwd.getpwnam(IMAGE_USER)
    except KeyError:
        return None
    return user.pw_uid, user.pw_gid


def adopt_volume_owner():
    """In the image (DLCLI_CONTAINER=1), started as root: switch to the owner of the mounted
    /runs or /data (see the module docstring). Elsewhere, or started as another user: nothing."""
    if not os.environ.get("DLCLI_CONTAINER") or os.geteuid() != 0:
        return
    owner = target_owner()
    if owner is None or owner[0] == 0:
        return
    uid, gid = owner
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    try:
        entry = pwd.getpwuid(uid)
        home, name = entry.pw_dir, entry.pw_name
    except KeyError:  # a host uid the image does not know
        home, name = "", str(uid)
    if not (home and os.path.isdir(home) and os.access(home, os.W_OK)):
        # Keras and matplotlib keep small config files under $HOME: give them a writable one.
        home = tempfile.mkdtemp(prefix=f"dlcli-home-{uid}-")
    os.environ["HOME"] = home
    os.environ["USER"] = os.environ["LOGNAME"] = name
