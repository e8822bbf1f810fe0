"""`mlxtune serve` over loopback with a real HTTP client: chat and completions, streaming and
not, 50 concurrent requests, bad requests, a dropped stream, a port in use, and the `openai`
summarizer pointed at the served model."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from conftest import write_recipe

from mlxtune.cli import cli
from mlxtune.components import Sampling

QUESTION = "How can cells be segmented?"


@pytest.fixture(scope="module")
def served(tiny_model):
    from mlxtune.asking import open_session
    from mlxtune.serving import make_server

    session = open_session(model=str(tiny_model), formatter="approach")
    session.sampling = Sampling(max_tokens=12)
    server = make_server(session, "tiny", "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1", session
    server.shutdown()
    server.server_close()


def post(url: str, body: dict, timeout: float = 60) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def expected(session, question: str = QUESTION, **sampling) -> tuple[str, str]:
    """What `mlxtune ask` answers: the same session, prompt and sampling."""
    from dataclasses import replace

    reply = session.answer(question, replace(session.sampling, **sampling))
    return reply.text, reply.finish_reason


def events(raw: bytes) -> list:
    lines = [line[6:] for line in raw.decode().split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_chat_and_completion_answer_as_ask_does(served):
    server, base, session = served
    with server.lock:
        want, reason = expected(session)
    status, raw = post(
        f"{base}/chat/completions", {"messages": [{"role": "user", "content": QUESTION}]}
    )
    assert status == 200, raw
    reply = json.loads(raw)
    assert reply["choices"][0]["message"]["content"] == want
    assert reply["choices"][0]["finish_reason"] == ("length" if reason == "length" else "stop")
    assert reply["usage"]["completion_tokens"] > 0
    status, raw = post(f"{base}/completions", {"prompt": QUESTION})
    assert status == 200 and json.loads(raw)["choices"][0]["text"] == want
    models = json.loads(urllib.request.urlopen(f"{base}/models", timeout=10).read())
    assert [m["id"] for m in models["data"]] == ["tiny"]


def test_streams_put_together_are_the_answer(served):
    server, base, session = served
    with server.lock:
        want, _ = expected(session, max_tokens=9)
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": True, "max_tokens": 9}
    status, raw = post(f"{base}/chat/completions", body)
    chunks = events(raw)
    assert (
        status == 200
        and "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == want
    )
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    status, raw = post(f"{base}/completions", {"prompt": QUESTION, "stream": True, "max_tokens": 9})
    assert "".join(c["choices"][0]["text"] for c in events(raw)) == want


def test_fifty_concurrent_requests_are_all_answered(served):
    server, base, session = served
    with server.lock:
        want, _ = expected(session, max_tokens=4)
    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 4}
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: post(f"{base}/chat/completions", body, 120), range(50)))
    assert [status for status, _ in results] == [200] * 50
    assert {json.loads(raw)["choices"][0]["message"]["content"] for _, raw in results} == {want}


def test_bad_requests_get_400_with_a_message(served):
    _, base, _ = served
    cases = [
        ({"messages": []}, "'messages' must be a non-empty list"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message must be the user"),
        (
            {"messages": [{"role": "user", "content": "q"}], "max_tokens": 10**7},
            "exceed the model's context",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}], "temperature": "hot"},
            "'temperature' must be a number",
        ),
    ]
    for body, message in cases:
        status, raw = post(f"{base}/chat/completions", body)
        assert status == 400 and message in json.loads(raw)["error"]["message"], raw
    request = urllib.request.Request(f"{base}/chat/completions", b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    status, _ = post(f"{base}/embeddings", {"input": "x"})
    assert status == 404


def test_a_client_that_leaves_mid_stream_does_not_stop_the_server(served):
    server, base, session = served
    port = server.server_address[1]
    body = json.dumps(
        {"messages": [{"role": "user", "content": QUESTION}], "stream": True, "max_tokens": 200}
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 200")
    # the next request is served (the dropped one gave the model back)
    status, raw = post(f"{base}/completions", {"prompt": QUESTION, "max_tokens": 3}, 120)
    assert status == 200 and json.loads(raw)["choices"][0]["text"] is not None


def test_port_in_use_is_one_clear_error(tiny_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--model", str(tiny_model), "--port", str(port)])
    assert (
        result.exit_code == 2 and "is the port in use? choose another with --port" in result.output
    )


def test_summarizer_pointed_at_the_served_model(served, tmp_path, papers_dir):
    """The `openai` summarizer against `mlxtune serve`: the pipeline runs end to end; a random
    model's replies are recorded as failures with their raw text, every paper accounted for."""
    from mlxtune.pipeline import run_recipe
    from mlxtune.recipe import load_recipe

    _, base, _ = served
    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"name: s\npapers: {papers_dir}\nrun_dir: {tmp_path / 'run'}\nmodel: {{tiny: {{}}}}\n"
        f"summarize: {{use: openai, model: tiny, base_url: '{base}', max_tokens: 8, "
        "structured: none}\n",
    )
    loaded, registry = load_recipe(recipe)
    try:
        run_recipe(loaded, registry, until="summarize")
    except Exception as exc:
        assert "no document gave a question/approach pair" in str(exc)
    failures = (tmp_path / "run" / "summary_failures.jsonl").read_text().splitlines()
    pairs_file = tmp_path / "run" / "pairs.jsonl"
    pairs = pairs_file.read_text().splitlines() if pairs_file.is_file() else []
    assert len(pairs) + len(failures) == 6
    assert all(json.loads(f)["raw"] for f in failures)
