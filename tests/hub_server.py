"""A loopback stand-in for the Hugging Face Hub HTTP API: just enough for create_repo, upload_folder
(regular and LFS uploads), repo info by revision (with ``private``) and file resolve (snapshot_download).

Test-only. Serves 127.0.0.1 on a free port, keeps everything in memory, answers ``status`` for
every request when ``fail_with`` is set (e.g. 401), and records request headers (for leak checks) and
``(method, path)`` of every request. ``add_repo`` pre-seeds an existing repo (e.g. a public one);
creating a repo that exists answers 409 like the Hub and leaves its visibility alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool, "commits": [(sha, {path: bytes})]}
        self.lfs: dict[str, bytes] = {}
        self.fail_with: int | None = None
        self.seen_headers: list[dict[str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add_repo(self, repo: str, *, private: bool, files: dict[str, bytes] | None = None) -> None:
        """An existing repo (created elsewhere), with one commit holding ``files``."""
        self.repos[repo] = {"private": private, "commits": [("0" * 40, dict(files or {}))], "create": None}

    def commits(self, repo: str) -> int:
        return len(self.repos[repo]["commits"]) if repo in self.repos else 0

    def files(self, repo: str, revision: str) -> tuple[str, dict[str, bytes]]:
        commits = self.repos[repo]["commits"]
        if revision == "main":
            return commits[-1]
        for sha, files in commits:
            if sha == revision:
                return sha, files
        raise KeyError(revision)


def make_handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers=None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            self._send(status, json.dumps(obj).encode())

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _guard(self) -> bool:
            state.seen_headers.append({k.lower(): v for k, v in self.headers.items()})
            state.requests.append((self.command, urlparse(self.path).path))
            if state.fail_with:
                self._body()
                self._json(state.fail_with, {"error": "denied"})
                return False
            return True

        def do_POST(self) -> None:  # noqa: N802
            if not self._guard():
                return
            path = urlparse(self.path).path
            body = self._body()
            if path == "/api/repos/create":
                data = json.loads(body)
                repo = f"{data.get('organization') or 'user'}/{data['name']}" if "/" not in data["name"] else data["name"]
                url = f"http://127.0.0.1/{'' if data.get('type') == 'model' else 'datasets/'}{repo}"
                with state.lock:
                    if repo in state.repos:  # like the Hub: 409, visibility untouched
                        return self._json(409, {"error": "You already created this repo", "url": url})
                    private = bool(data.get("private")) or data.get("visibility") == "private"
                    state.repos[repo] = {"private": private, "commits": [("0" * 40, {})], "create": data}
                return self._json(200, {"url": url, "name": repo})
            if path == "/api/validate-yaml":  # README metadata check before a commit
                return self._json(200, {"errors": [], "warnings": []})
            match = re.match(r"^/api/(?:datasets|models)/(.+)/preupload/(.+)$", path)
            if match:
                files = json.loads(body)["files"]
                return self._json(200, {"files": [
                    {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".parquet") else "regular",
                     "shouldIgnore": False, "oid": None} for f in files]})
            match = re.match(r"^/(?:datasets/)?(.+)\.git/info/lfs/objects/batch$", path)
            if match:
                objects = json.loads(body)["objects"]
                host = f"http://{self.headers['Host']}"
                return self._send(200, json.dumps({"transfer": "basic", "objects": [
                    {"oid": o["oid"], "size": o["size"], "authenticated": True,
                     "actions": {"upload": {"href": f"{host}/lfs-upload/{o['oid']}"}}} for o in objects]}).encode(),
                    content_type="application/vnd.git-lfs+json")
            match = re.match(r"^/api/(?:datasets|models)/(.+)/commit/(.+)$", path)
            if match:
                repo = unquote(match.group(1))
                with state.lock:
                    _, files = state.files(repo, "main")
                    files = dict(files)
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        value = item.get("value", {})
                        if item["key"] == "file":
                            files[value["path"]] = base64.b64decode(value["content"])
                        elif item["key"] == "lfsFile":
                            files[value["path"]] = state.lfs[value["oid"]]
                        elif item["key"] == "deletedFile":
                            files.pop(value["path"], None)
                    digest = hashlib.sha1(json.dumps({p: hashlib.sha256(c).hexdigest() for p, c in sorted(files.items())}).encode())
                    sha = digest.hexdigest()
                    state.repos[repo]["commits"].append((sha, files))
                return self._json(200, {"commitOid": sha, "commitUrl": f"http://127.0.0.1/datasets/{repo}/commit/{sha}",
                                        "success": True})
            print("HUB 404 POST", self.path, file=sys.stderr)
            self._json(404, {"error": f"no route POST {path}"})

        def do_PUT(self) -> None:  # noqa: N802
            if not self._guard():
                return
            path = urlparse(self.path).path
            body = self._body()
            match = re.match(r"^/lfs-upload/([0-9a-f]{64})$", path)
            if match and hashlib.sha256(body).hexdigest() == match.group(1):
                state.lfs[match.group(1)] = body
                return self._send(200)
            self._json(400, {"error": "bad upload"})

        def do_GET(self) -> None:  # noqa: N802
            if not self._guard():
                return
            path = urlparse(self.path).path
            match = re.match(r"^/api/(?:datasets|models)/([^/]+/[^/]+)(?:/revision/(.+))?$", path)
            if match:
                repo, revision = unquote(match.group(1)), unquote(match.group(2) or "main")
                if repo not in state.repos:
                    return self._json(404, {"error": "Repository not found"})
                try:
                    sha, files = state.files(repo, revision)
                except KeyError:
                    return self._json(404, {"error": "Revision not found"})
                return self._json(200, {"id": repo, "sha": sha, "private": state.repos[repo]["private"],
                                        "siblings": [{"rfilename": p} for p in sorted(files)]})
            match = re.match(r"^/api/(?:datasets|models)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", path)
            if match:  # recursive listing (snapshot_download)
                repo, revision, prefix = unquote(match.group(1)), unquote(match.group(2)), unquote(match.group(3) or "")
                try:
                    _, files = state.files(repo, revision)
                except KeyError:
                    return self._json(404, {"error": "Revision not found"})
                entries, folders = [], set()
                for name, content in sorted(files.items()):
                    if prefix and not name.startswith(prefix.rstrip("/") + "/"):
                        continue
                    parts = name.split("/")
                    folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
                    entries.append({"type": "file", "path": name, "size": len(content),
                                    "oid": hashlib.sha1(content).hexdigest()})
                entries += [{"type": "directory", "path": f, "size": 0, "oid": "0" * 40} for f in sorted(folders)]
                return self._json(200, entries)
            match = re.match(r"^/(?:datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if match:
                repo, revision, file = unquote(match.group(1)), unquote(match.group(2)), unquote(match.group(3))
                try:
                    sha, files = state.files(repo, revision)
                    content = files[file]
                except KeyError:
                    return self._json(404, {"error": "Entry not found"}) if self.command == "GET" else self._send(404)
                etag = hashlib.sha256(content).hexdigest()
                return self._send(200, content, "application/octet-stream",
                                  {"ETag": f'"{etag}"', "X-Repo-Commit": sha, "X-Linked-Etag": f'"{etag}"',
                                   "X-Linked-Size": str(len(content))})
            print("HUB 404 GET", self.path, file=sys.stderr)
            self._json(404, {"error": f"no route GET {path}"})

        do_HEAD = do_GET

    return Handler


class HubServer:
    """Context manager: ``with HubServer() as hub: hub.endpoint``."""

    def __init__(self) -> None:
        self.state = HubState()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "HubServer":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
