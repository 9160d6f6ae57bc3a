"""Text in the encodings people have: UTF-8 (with or without a BOM), UTF-16/32 with a BOM, and
otherwise what charset-normalizer detects (Windows-1252 news articles, Latin-1 exports, ...).

`encoding=auto` decodes each file or table by its BOM, else as UTF-8 when it is valid UTF-8,
else with the detected encoding. Detection is done once over every file of a corpus that is not
UTF-8 (files of one corpus share their encoding, and a few words are too little for any
detector), and again for a file that the corpus' encoding cannot decode. `encoding=NAME` forces
a codec. Bytes the encoding cannot decode stop the read with the file and line, or, with
`decode_errors=replace`, become U+FFFD and are counted.
"""

import codecs
from collections import Counter

from dlcli.core.errors import DlcliError

BOMS = (  # UTF-32's BOMs start like UTF-16's: tried first
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
DETECT_BYTES = 1 << 20  # what the detector reads of a corpus: enough to tell, bounded in time


def check_name(encoding):
    """Fails on an encoding name Python does not know (before any file is read)."""
    if encoding != "auto":
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise DlcliError(f"encoding must be auto or a codec Python knows (utf-8, cp1252, latin-1, utf-16, ...). Received: encoding={encoding}") from None


def by_bom_or_utf8(raw):
    """The encoding a BOM names, "utf-8" for valid UTF-8, or None: a detector must tell."""
    for bom, name in BOMS:
        if raw.startswith(bom):
            return name
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "utf-8"


# When charset-normalizer finds several encodings equally clean (no chaos) and coherent, as it
# does for Western text between cp1252, cp1250 and cp1257, the one most legacy text is in wins:
# windows-1252, the WHATWG's default for undeclared Western pages, then the other common ones.
PREFERRED = ("cp1252", "latin_1", "iso8859_15", "cp1251", "cp1250", "shift_jis", "gb18030", "euc_kr", "big5")


def detect(raw):
    """charset-normalizer's best guess for bytes that are not UTF-8 ("cp1252", ...), or None."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(raw[:DETECT_BYTES]))
    if not matches:
        return None
    best = matches[0]
    tied = {m.encoding for m in matches if m.chaos <= best.chaos + 0.01 and m.coherence >= best.coherence - 0.05}
    return next((name for name in PREFERRED if name in tied), best.encoding)


def decode(raw, path, encoding, errors="strict", guess=None):
    """(text, the encoding used, lines with replaced bytes) of one file's bytes; `guess` is the
    corpus' detected encoding, tried before detecting this file alone."""
    used = encoding if encoding != "auto" else by_bom_or_utf8(raw)
    if used is None and guess and fits(raw, guess):
        used = guess
    if used is None:  # only now this file alone: detection is the slow part
        alone = detect(raw)
        used = alone if alone and fits(raw, alone) else guess or "utf-8"
    try:
        return raw.decode(used), used, 0
    except UnicodeDecodeError as e:
        if errors != "replace":
            line = raw[: e.start].count(b"\n") + 1
            how = f"as {used}" if encoding != "auto" else f"as {used}, the closest encoding detected"
            raise DlcliError(
                f"{path}, line {line}: byte 0x{raw[e.start]:02x} cannot be read {how}; name the file's encoding with "
                "--set encoding=NAME, or replace such bytes with --set decode_errors=replace."
            ) from None
        text = raw.decode(used, "replace")
        return text, used, sum("\ufffd" in line for line in text.splitlines())


def fits(raw, encoding):
    try:
        raw.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def decode_corpus(items, encoding, errors="strict"):
    """[(text, key)] for [(raw bytes, path, key)], every file decoded as `decode` says, with the
    encoding detected once over the files that are not UTF-8; and Counter {encoding: files} of
    the files read as something else than UTF-8."""
    guess = None
    if encoding == "auto":
        others = [raw for raw, _, _ in items if by_bom_or_utf8(raw) is None]
        if others:
            sample = b"\n".join(raw[: DETECT_BYTES // len(others) + 1] for raw in others)[:DETECT_BYTES]
            guess = detect(sample)
    out, read_as, replaced = [], Counter(), 0
    for raw, path, key in items:
        text, used, bad = decode(raw, path, encoding, errors, guess)
        out.append((text, key))
        replaced += bad > 0
        if used.replace("-sig", "") not in ("utf-8", "utf_8"):
            read_as[used] += 1
        elif used == "utf-8-sig":
            read_as["utf-8 with BOM"] += 1
    return out, read_as, replaced


def said(read_as, total, what="files"):
    """'3 of 40 files were not plain UTF-8: read as cp1252 (2), utf-16 (1)', or ''."""
    if not read_as:
        return ""
    n = sum(read_as.values())
    return f"{n} of {total} {what} were not plain UTF-8: read as " + ", ".join(f"{name} ({k})" for name, k in read_as.most_common())
