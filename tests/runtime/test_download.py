"""`data download` against a local HTTP server on 127.0.0.1 serving files made here:
a good file, a file whose MD5 is wrong, and a transfer cut in the middle that the next run resumes."""

import hashlib
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets import hdf5
from edge_pcam.runtime.datasets.download import download, load_manifest
from edge_pcam.runtime.datasets.progress import silent

GOOD, BAD, CUT = "good.h5.gz", "bad.h5.gz", "cut.h5.gz"


class Server:
    """Serves `files` with Range support; the first `cuts[name]` requests for a name stop halfway."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.cuts, self.requests = files, {}, []
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                rng = self.headers.get("Range")
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cuts.get(name, 0) > 0:
                    server.cuts[name] -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture()
def served(tmp_path):
    rng = np.random.default_rng(0)
    files = {name: rng.bytes(size) for name, size in ((GOOD, 300_000), (BAD, 50_000), (CUT, 3_000_000))}
    server = Server(files)
    entries = [{"name": GOOD, "split": "train", "size": len(files[GOOD]), "md5": hashlib.md5(files[GOOD]).hexdigest()},
               {"name": BAD, "split": "valid", "size": None, "md5": "0" * 32},
               {"name": CUT, "split": "test", "size": None, "md5": hashlib.md5(files[CUT]).hexdigest()}]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"base_url": "http://127.0.0.1:9/nowhere", "files": entries}))
    yield server, load_manifest(manifest), manifest, files
    server.httpd.shutdown()
    server.httpd.server_close()


def test_good_file_is_fetched_checked_and_not_fetched_again(served, tmp_path):
    server, manifest, _, files = served
    dest = tmp_path / "pcam"
    done = download(dest, ["train"], base_url=server.url, manifest=manifest, progress=silent)
    assert [(d.name, d.status, d.size) for d in done] == [(GOOD, "downloaded", len(files[GOOD]))]
    assert (dest / GOOD).read_bytes() == files[GOOD] and not (dest / f"{GOOD}.part").exists()
    again = download(dest, ["train"], base_url=server.url, manifest=manifest, progress=silent)
    assert again[0].status == "present" and len(server.requests) == 1


def test_wrong_md5_is_an_error_and_nothing_is_kept(served, tmp_path):
    server, manifest, _, _ = served
    with pytest.raises(DataError, match=rf"{BAD}: MD5 [0-9a-f]{{32}} does not match the manifest's 0{{32}}"):
        download(tmp_path, ["valid"], base_url=server.url, manifest=manifest, progress=silent)
    assert not (tmp_path / BAD).exists() and not (tmp_path / f"{BAD}.part").exists()


def test_cut_transfer_resumes_with_a_range_request(served, tmp_path):
    server, manifest, _, files = served
    server.cuts[CUT] = 1
    with pytest.raises(DataError, match=rf"{CUT}: transfer interrupted after 1,500,000 bytes"):
        download(tmp_path, ["test"], base_url=server.url, manifest=manifest, progress=silent)
    part = tmp_path / f"{CUT}.part"
    assert part.stat().st_size == len(files[CUT]) // 2 and not (tmp_path / CUT).exists()
    done = download(tmp_path, ["test"], base_url=server.url, manifest=manifest, progress=silent)
    assert done[0].status == "resumed"
    assert server.requests[-1] == (CUT, f"bytes={len(files[CUT]) // 2}-")
    assert (tmp_path / CUT).read_bytes() == files[CUT] and not part.exists()


def test_server_without_range_support_restarts_the_file(served, tmp_path):
    server, manifest, _, files = served
    server.honour_range = False
    (tmp_path / f"{CUT}.part").write_bytes(files[CUT][:1000])
    done = download(tmp_path, ["test"], base_url=server.url, manifest=manifest, progress=silent)
    assert done[0].status == "resumed" and (tmp_path / CUT).read_bytes() == files[CUT]


def test_missing_file_and_unknown_split(served, tmp_path):
    server, manifest, _, _ = served
    with pytest.raises(DataError, match=r"/good\.h5\.gz: HTTP 404"):
        download(tmp_path, ["train"], base_url=server.url + "/mirror", manifest=manifest, progress=silent)
    with pytest.raises(DataError, match="unknown split"):
        download(tmp_path, ["training"], base_url=server.url, manifest=manifest, progress=silent)


def test_packaged_manifest_lists_the_official_files():
    manifest = load_manifest()
    assert "2546921" in manifest.base_url
    assert sorted(f.name for f in manifest.files) == sorted(
        hdf5.file_name(s, a) + ".gz" for s in ("train", "valid", "test") for a in ("x", "y"))
    # the MD5s published with PCam (Zenodo record 2546921; SPEC section 2)
    official = {"train_x": "1571f514728f59376b705fc836ff4b63", "train_y": "35c2d7259d906cfc8143347bb8e05be7",
                "valid_x": "d8c2d60d490dbd479f8199bdfa0cf6ec", "valid_y": "60a7035772fbdb7f34eb86d4420cf66a",
                "test_x": "d5b63470df7cfa627aeec8b9dc0c066e", "test_y": "2b85f58b927af9964a4c15b8f7e8f179"}
    assert {f.name: f.md5 for f in manifest.files} == {
        hdf5.file_name(*key.split("_")) + ".gz": md5 for key, md5 in official.items()}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edge_pcam", "data", "download", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_download_good_then_bad(served, tmp_path):
    server, _, manifest_path, files = served
    dest = tmp_path / "pcam"
    run = _cli(str(dest), "--split", "train", "--base-url", server.url, "--manifest", str(manifest_path))
    assert run.returncode == 0, run.stderr
    assert GOOD in run.stdout and "downloaded" in run.stdout
    assert (dest / GOOD).read_bytes() == files[GOOD]
    run = _cli(str(dest), "--split", "valid", "--base-url", server.url, "--manifest", str(manifest_path))
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("edge-pcam: error:") and "MD5" in run.stderr
    assert "downloaded" not in run.stdout and not (dest / BAD).exists()
