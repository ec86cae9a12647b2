"""A local stand-in for the Hub API calls `create_repo` + `repo_info` + `create_branch` +
`create_commit` make.

`create_commit` first posts README.md to `/api/validate-yaml` (metadata check), then asks
`/api/models/{repo}/preupload/{rev}` how to send each file; this server answers `regular` for all
of them, so they travel base64-encoded inside the ndjson commit (`/api/models/{repo}/commit/{rev}`)
and no LFS/xet storage is needed (a xet store is a separate protocol, impractical to fake). Every
request is recorded; unknown ones answer 404 and are kept in `unexpected` so a test sees when the
client starts calling something new.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

REPO = r"(?P<repo>[^/]+/[^/]+)"


@dataclass
class HubState:
    token: str
    refuse: bool = False  # answer 401 to everything (an expired or revoked token)
    repos: dict[str, dict] = field(default_factory=dict)  # repo -> {"private": bool, "branches": {rev: {path: bytes}}}
    calls: list[tuple[str, str]] = field(default_factory=list)
    unexpected: list[tuple[str, str]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    card_metadata: list[dict] = field(default_factory=list)
    metadata_errors: list[str] = field(default_factory=list)  # what /api/validate-yaml refuses README.md with


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        state = self.server.state
        path = self.path.split("?")[0]
        if path == "/api/agent-harnesses":  # the client's best-effort, unauthenticated telemetry lookup
            return self._json(404, {"error": "not served"})
        state.calls.append((method, path))
        state.authorizations.append(self.headers.get("authorization", ""))
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if state.refuse or self.headers.get("authorization") != f"Bearer {state.token}":
            return self._json(401, {"error": "Invalid credentials in Authorization header"})
        routes = [
            ("GET", rf"/api/models/{REPO}", self._info),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("POST", r"/api/repos/create", self._create),
            ("POST", rf"/api/models/{REPO}/branch/(?P<rev>[^/]+)", self._branch),
            ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", self._preupload),
            ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", self._commit),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return handler(body, **match.groupdict())
        state.unexpected.append((method, path))
        self._json(404, {"error": "not faked"})

    def _validate_yaml(self, body: bytes) -> None:
        """The client checks README.md's metadata before uploading; record what it would publish."""
        content = json.loads(body)["content"]
        front = content.split("---\n")[1] if content.startswith("---\n") else ""
        self.server.state.card_metadata.append(yaml.safe_load(front) or {})
        errors = [{"message": message} for message in self.server.state.metadata_errors]
        self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _info(self, body: bytes, repo: str) -> None:
        if repo not in self.server.state.repos:
            return self._json(404, {"error": "Repository not found"})
        self._json(200, {"id": repo, "private": self.server.state.repos[repo]["private"], "sha": "0" * 40})

    def _create(self, body: bytes) -> None:
        payload = json.loads(body)
        repo = f"{payload['organization']}/{payload['name']}"
        if repo in self.server.state.repos:
            return self._json(409, {"error": "You already created this model repo", "url": f"{self.server.url}/{repo}"})
        private = payload.get("visibility") == "private" or payload.get("private") is True
        self.server.state.repos[repo] = {"private": private, "branches": {"main": {}}}
        self._json(200, {"url": f"{self.server.url}/{repo}"})

    def _branch(self, body: bytes, repo: str, rev: str) -> None:
        branches = self.server.state.repos[repo]["branches"]
        branches.setdefault(rev, dict(branches["main"]))
        self._json(200, {})

    def _preupload(self, body: bytes, repo: str, rev: str) -> None:
        files = json.loads(body)["files"]
        answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files]
        self._json(200, {"files": answer})

    def _commit(self, body: bytes, repo: str, rev: str) -> None:
        files = self.server.state.repos[repo]["branches"][rev]
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        oid = "0" * 40
        self._json(200, {"commitUrl": f"{self.server.url}/{repo}/commit/{oid}", "commitOid": oid})

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
