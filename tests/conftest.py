import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

os.environ.setdefault("DAMOC_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """Tiny random models of every tested architecture, saved once per session: {arch: path}."""
    from damoc.testing import TINY_ARCHS, save_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {arch: save_tiny_model(root / arch, arch, n_layers=4, seed=1) for arch in TINY_ARCHS}


@pytest.fixture(scope="module")
def scorer():
    """A tiny random llama and its tokenizer, the scoring model of the token-compression tests."""
    from damoc.testing import tiny_model, tiny_tokenizer

    return tiny_model("llama", n_layers=2, seed=3), tiny_tokenizer()


@pytest.fixture
def run_cli(capsys):
    """Run the damoc CLI in-process: returns (exit code, stdout, stderr)."""
    from damoc.cli import main

    def _run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


@pytest.fixture
def qa_file(tmp_path):
    """A small JSONL QA task with labels."""
    import json

    rows = []
    for i in range(40):
        lab = ["yes", "no", "maybe"][i % 3]
        rows.append(
            {
                "id": f"q{i}",
                "question": f"Is compound {i} effective against condition {i % 5}?",
                "context": f"In a trial of {20 + i} patients, compound {i} reduced symptoms of condition {i % 5}.",
                "answer": f"The answer is {lab} for compound {i}.",
                "label": lab,
            }
        )
    p = tmp_path / "task.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread is faster, and much faster on a shared, loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _ChatHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible ``/chat/completions`` endpoint: records each request and its authorization;
    answers the server's ``reply``, or 401 with the authorization echoed back (as a careless server might)
    when the server's ``fail`` is set."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        auth = self.headers.get("Authorization", "")
        self.server.seen.append((self.path, body))
        self.server.auth.append(auth)
        if self.server.fail:
            data = json.dumps({"error": f"bad credentials: {auth}"}).encode()
            self.send_response(401, f"Unauthorized ({auth})")
        else:
            reply = {"choices": [{"message": {"role": "assistant", "content": self.server.reply}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_endpoint():
    """A fake OpenAI-compatible endpoint on a free local port, served from a thread. Its ``seen`` lists
    (path, JSON body) per request, ``auth`` the Authorization headers; set ``reply`` (the assistant's
    text) or ``fail`` (answer 401) to change what it answers."""
    server = HTTPServer(("127.0.0.1", 0), _ChatHandler)
    server.seen, server.auth, server.fail, server.reply = [], [], False, " rewritten text "
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
