"""Fetching the Inception weights for fid_backend=inception: from a local HTTP server on loopback, checked by
sha256, cached and reused; a wrong file refused; no network said in one line naming the file and where.

Only the fetching and caching layer: the stand-in file is never loaded as a network.
"""
import hashlib
import http.server
import importlib.machinery
import importlib.util
import socket
import sys
import threading

import pytest

from gancore import image_metrics
from gancore.errors import ConfigError

STAND_IN = b"stand-in Inception weights " * 1000  # several reads of a small CHUNK


class Server:
    """http.server on 127.0.0.1 (port 0) in a thread, serving `files` by path and counting requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server({"/good.pth": STAND_IN, "/bad.pth": b"not the weights"})
    yield s
    s.close()


@pytest.fixture
def fetching(tmp_path, monkeypatch):
    """torch-fidelity present (a stand-in module), empty torch hub and gancore caches, the stand-in's sha256
    expected; returns where gancore caches the weights."""
    fake = importlib.util.module_from_spec(importlib.machinery.ModuleSpec("torch_fidelity", None))
    monkeypatch.setitem(sys.modules, "torch_fidelity", fake)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("GANCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(image_metrics, "INCEPTION_SHA256", hashlib.sha256(STAND_IN).hexdigest())
    return tmp_path / "cache" / "inception" / image_metrics.INCEPTION_FILE


def closed_port_url() -> str:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/weights.pth"


def test_the_default_source_is_torch_fidelitys_release_and_its_hash():
    assert image_metrics.INCEPTION_URL == ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                                           "weights-inception-2015-12-05-6726825d.pth")
    assert image_metrics.INCEPTION_SHA256.startswith("6726825d")  # torch hub's rule: the name carries the hash
    assert len(image_metrics.INCEPTION_SHA256) == 64


def test_a_file_with_the_wrong_hash_is_refused_and_not_cached(server, fetching, monkeypatch):
    monkeypatch.setenv("GANCORE_INCEPTION_URL", server.url("/bad.pth"))
    with pytest.raises(ConfigError) as e:
        image_metrics.inception_weights()
    message = str(e.value)
    assert "\n" not in message
    assert "sha256 " + hashlib.sha256(b"not the weights").hexdigest() in message and "refused" in message
    assert not fetching.exists()
    assert not [p for p in fetching.parent.iterdir()]  # no temp file left behind either
    assert server.requests == ["/bad.pth"]


def test_a_good_file_is_cached_and_reused_without_a_request(server, fetching, monkeypatch, capfd):
    monkeypatch.setenv("GANCORE_INCEPTION_URL", server.url("/good.pth"))
    path = image_metrics.inception_weights()
    assert path == fetching and path.read_bytes() == STAND_IN
    assert "fetching torch-fidelity's Inception weights" in capfd.readouterr().err
    assert image_metrics.inception_weights() == fetching
    assert server.requests == ["/good.pth"]  # the second call found the cached file
    assert [p.name for p in fetching.parent.iterdir()] == [fetching.name]


def test_a_damaged_cached_file_is_fetched_again(server, fetching, monkeypatch):
    fetching.parent.mkdir(parents=True)
    fetching.write_bytes(STAND_IN[:100])  # a torn copy
    monkeypatch.setenv("GANCORE_INCEPTION_URL", server.url("/good.pth"))
    assert image_metrics.inception_weights().read_bytes() == STAND_IN
    assert server.requests == ["/good.pth"]


def test_torch_fidelitys_own_copy_is_used_when_it_matches(server, fetching, monkeypatch, tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints" / image_metrics.INCEPTION_FILE
    hub.parent.mkdir(parents=True)
    hub.write_bytes(STAND_IN)
    monkeypatch.setenv("GANCORE_INCEPTION_URL", server.url("/good.pth"))
    assert image_metrics.inception_weights() == hub
    assert server.requests == [] and not fetching.exists()


def test_offline_says_in_one_line_which_file_to_copy_and_where(fetching, monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv("GANCORE_INCEPTION_URL", url)
    with pytest.raises(ConfigError) as e:
        image_metrics.inception_weights()
    message = str(e.value)
    assert "\n" not in message
    assert f"cannot reach {url}" in message
    assert f"copy {image_metrics.INCEPTION_FILE} (sha256 {image_metrics.INCEPTION_SHA256}) there" in message
    assert f"at {fetching}," in message
    assert not fetching.exists()
    # doing what it says works without a network
    fetching.write_bytes(STAND_IN)
    assert image_metrics.inception_weights() == fetching


def test_a_missing_package_is_named_before_anything_is_fetched(server, fetching, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # what find_spec reads as "not installed"
    monkeypatch.setenv("GANCORE_INCEPTION_URL", server.url("/good.pth"))
    with pytest.raises(ConfigError, match="needs the torch-fidelity package, which is not installed"):
        image_metrics.inception_weights()
    assert server.requests == [] and not fetching.exists()
