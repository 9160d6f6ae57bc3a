"""Tar archives (plain, gzip, bzip2 or xz), read member by member in place, within byte budgets.

An archive is data a stranger may have made, so it is read as a stream whose every byte is
counted, and nothing is ever written out of it:

- **Member types.** Only regular files are ever opened. Symbolic links, hard links, FIFOs and
  character or block devices are never opened or followed, whatever their names: `members`
  yields them with `regular=False` so the reader can skip them and count them (a link inside an
  archive could only point at a file outside it, or at another member read anyway).
- **Decompressed bytes.** The whole archive, headers and skipped members included, may
  decompress to at most MAX_ARCHIVE_BYTES. The budget is checked twice: against the layout the
  headers declare (a member's end, before its bytes are read or skipped), and against the bytes
  the decompressor actually delivers (a gzip bomb under an honest-looking header stops there).
- **Headers.** The records tar keeps between members (long names, PAX headers, sparse maps)
  may take at most MAX_HEADER_BYTES each; a sparse member is counted at the size it declares
  (a 10 GB sparse file is 10 GB, however few bytes it stores).
- **Entries.** At most MAX_MEMBERS, and the members seen are not kept in memory.

What a member's own bytes may be (a review: a few MiB) is the reader's budget: it reads a member
through `read(limit)`, which refuses more than `limit` bytes before reading any.
"""

import bz2
import contextlib
import gzip
import io
import lzma
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from dlcli.core.errors import DlcliError
from dlcli.data.splits import printable

MAX_ARCHIVE_BYTES = 4 << 30  # 4 GiB decompressed: over 8x the whole aclImdb_v1.tar.gz (under 0.5 GB, unsup and .feat included)
MAX_HEADER_BYTES = 1 << 20  # one long name, PAX header or sparse map; real ones take a few hundred bytes
MAX_MEMBERS = 1 << 20  # entries: aclImdb_v1 has ~100,000
COMPRESSED = {b"\x1f\x8b": lambda f: gzip.GzipFile(fileobj=f), b"BZh": bz2.BZ2File, b"\xfd7zXZ\x00": lzma.LZMAFile}
# What a damaged or forged archive makes tarfile and the decompressors raise.
ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError, IndexError)


class OverBudget(DlcliError):
    """The archive asks for more bytes than a budget allows."""


@dataclass
class Member:
    """One entry of an archive: its name, declared size, whether it is a regular file, and
    `read(limit)`, its bytes (only for regular files, at most `limit` of them)."""

    name: str
    size: int
    regular: bool
    read: object


class _Counted(io.RawIOBase):
    """The decompressed stream as tarfile sees it: every seek and read is checked against the
    archive's budget, and reads against what the current step may take (`allow`)."""

    def __init__(self, stream, path):
        super().__init__()
        self.stream, self.path, self.allowed = stream, path, 0

    def allow(self, n):
        self.allowed = n

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.stream.tell()

    def seek(self, position, whence=io.SEEK_SET):
        if whence != io.SEEK_SET:  # tarfile only seeks to absolute positions; keep it so
            raise OSError(f"unexpected seek (whence={whence})")
        self._check_end(position)
        return self.stream.seek(position)

    def read(self, n=-1):
        if n is None or n < 0 or n > self.allowed:
            raise OverBudget(
                f"{printable(self.path)}: a tar record near byte {self.tell():,} asks for "
                f"{'all the remaining' if n is None or n < 0 else f'{n:,}'} bytes, more than the {MAX_HEADER_BYTES:,} "
                "a header (long name, PAX record, sparse map) may take: not an archive dlcli reads."
            )
        self._check_end(self.tell() + n)
        data = self.stream.read(n)
        self.allowed -= len(data)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _check_end(self, end):
        if end > MAX_ARCHIVE_BYTES:
            raise OverBudget(
                f"{printable(self.path)} decompresses past {MAX_ARCHIVE_BYTES:,} bytes (4 GiB), the budget dlcli reads "
                "from one archive; unpack what you need into a folder, or split the archive."
            )


@contextlib.contextmanager
def _decompressed(path):
    """The archive's tar stream: decompressed by its magic number (what tarfile's "r:*" does)."""
    with open(path, "rb") as raw:
        magic = raw.read(6)
        raw.seek(0)
        opener = next((opener for prefix, opener in COMPRESSED.items() if magic.startswith(prefix)), None)
        if opener is None:
            yield raw
            return
        with opener(raw) as stream:
            yield stream


def _cannot_read(path, error):
    reason = str(error).strip().splitlines()[0].rstrip(":") if str(error).strip() else type(error).__name__
    return DlcliError(f"cannot read {printable(path)} as a tar archive: {reason}")


def members(path):
    """The entries of the tar archive at `path`, in order, as `Member`s; a damaged or
    over-budget archive is one `DlcliError` naming it. A member's `read` is only valid until
    the next member is drawn."""
    path = Path(path)
    if not path.is_file():  # a FIFO named data.tar.gz would block the open for ever
        raise DlcliError(f"{printable(path)} is not a regular file: dlcli reads archives from regular files only.")
    try:
        with _decompressed(path) as stream:
            counted = _Counted(stream, path)
            counted.allow(MAX_HEADER_BYTES)
            with tarfile.TarFile(fileobj=counted, mode="r") as tar:
                for number in range(MAX_MEMBERS + 1):
                    counted.allow(MAX_HEADER_BYTES)
                    info = tar.next()
                    if info is None:
                        return
                    tar.members.clear()  # tarfile keeps every entry it has seen; a million empty ones add up
                    if number == MAX_MEMBERS:
                        raise OverBudget(f"{printable(path)} holds more than {MAX_MEMBERS:,} entries, the most dlcli reads from one archive.")
                    if tar.offset > MAX_ARCHIVE_BYTES:  # what the header declares, before a byte of it is read or skipped
                        raise OverBudget(
                            f"{printable(path)}: {printable(info.name)} ends at byte {tar.offset:,} of the decompressed archive, past "
                            f"{MAX_ARCHIVE_BYTES:,} (4 GiB), the budget dlcli reads from one archive; unpack what you need into a folder."
                        )
                    regular = info.isreg()  # not links (SYMTYPE, LNKTYPE), FIFOs, devices, folders
                    yield Member(info.name, info.size, regular, _reader(tar, counted, info, path) if regular else None)
    except DlcliError:
        raise
    except ERRORS as e:
        raise _cannot_read(path, e) from None


def _reader(tar, counted, info, path):
    def read(limit):
        if info.size > limit:
            raise OverBudget(
                f"{printable(path)}: {printable(info.name)} is {info.size:,} bytes, over the budget of {limit:,} for one member; "
                "remove it from the archive."
            )
        counted.allow(info.size)
        try:
            data = tar.extractfile(info).read(info.size + 1)
        except DlcliError:
            raise
        except ERRORS as e:
            raise _cannot_read(path, e) from None
        if len(data) != info.size:
            raise DlcliError(f"cannot read {printable(path)} as a tar archive: {printable(info.name)} is cut short.")
        return data

    return read
