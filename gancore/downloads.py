"""Fetching a file once: an HTTP(S) download kept only when its sha256 is the one expected.

gancore's one download is torch-fidelity's FID Inception weights (`image_metrics.inception_weights`).
The file streams into a hidden temp file beside its destination (`runs.atomic_write`), is hashed as it
arrives, and is renamed into place only when the hash matches: a reader finds the whole verified file
or none, and a wrong or torn download leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import http.client
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .errors import GancoreError
from .runs import atomic_write

TIMEOUT_S = 30   # seconds a connection may stay silent (connecting, or between reads) before the download gives up
CHUNK = 1 << 20  # bytes read and hashed at a time

_VERIFIED: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256: a file hashed once per process, not per check


class DownloadError(GancoreError):
    """A file could not be fetched (no network, an HTTP error) or was not the file expected (its sha256)."""


def sha256_of(path) -> str:
    """The file's sha256 (hex), read in chunks; remembered while the file's size and mtime stay the same."""
    st = Path(path).stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                h.update(block)
        _VERIFIED[key] = h.hexdigest()
    return _VERIFIED[key]


def _reason(e: Exception) -> str:
    """One line for what went wrong while fetching."""
    if isinstance(e, urllib.error.HTTPError):
        text = f"HTTP {e.code} {e.reason}"
    elif isinstance(e, urllib.error.URLError):
        text = str(e.reason)
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def fetch(url: str, dest, sha256: str, what: str = "file", timeout: float = TIMEOUT_S) -> Path:
    """Download `url` to `dest` (directories made) and return `dest`, only if the bytes hash to `sha256`.

    DownloadError (one line) when the server cannot be reached or answers with an error ("cannot reach
    URL (reason)") or when the file's sha256 is not `sha256` (refused: nothing is written at `dest`).
    A line on stderr says what is being fetched, with a progress bar when stderr is a terminal.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def write(f):
        try:
            response = urllib.request.urlopen(url, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise DownloadError(f"{url} answered {_reason(e)}") from None
        except (OSError, http.client.HTTPException, ValueError) as e:  # refused, no route, DNS, timeout; not a URL
            raise DownloadError(f"this machine cannot reach {url} ({_reason(e)})") from None
        h = hashlib.sha256()
        with response:
            size = int(response.headers.get("Content-Length") or 0) or None
            print(f"gancore: fetching {what} ({size / 1e6:.1f} MB) " if size else f"gancore: fetching {what} ",
                  f"from {url} into {dest}", sep="", file=sys.stderr)
            bar = tqdm(total=size, unit="B", unit_scale=True, file=sys.stderr, disable=not sys.stderr.isatty(),
                       mininterval=1.0, dynamic_ncols=True)
            with bar:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:  # connection dropped or silent too long
                        raise DownloadError(f"fetching {url} broke off ({_reason(e)})") from None
                    if not block:
                        break
                    h.update(block)
                    f.write(block)
                    bar.update(len(block))
        if h.hexdigest() != sha256:  # raising here makes atomic_write remove the temp file: nothing is kept
            raise DownloadError(f"{url} served a file with sha256 {h.hexdigest()}, not the expected {sha256}: "
                                f"refused, nothing kept")

    atomic_write(dest, write)
    return dest
