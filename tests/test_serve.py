"""`mlxtune serve` started as a user starts it (its own process, `--port 0`) and answered over
loopback: chat and completions, streaming and not, the same text as `mlxtune ask`, 50 concurrent
clients, the OpenAI surface (stop, n, response_format, usage, model), every malformed or hostile
request refused with its status, limits, the API key and the Host/Origin checks, and the
`openai` summarizer pointed at the served model.

No test generates in its own process before a request: the old fixture did, and so hid that a
typed `mlxtune serve` answered no request at all (MLX's stream belonged to the main thread)."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_support import (
    MLXTUNE,
    ask_json,
    command_env,
    post,
    quickstart,
    raw_request,
    rss_kb,
    serving,
)

QUESTION = "How can cells be segmented?"
RECIPE = "recipes/quickstart.yaml"
MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The README's quick start, run as typed: a tiny model and its trained adapter."""
    return quickstart(tmp_path_factory.mktemp("quickstart"))


@pytest.fixture(scope="module")
def served(trained):
    """`mlxtune serve --recipe recipes/quickstart.yaml`: the adapter loads in the server."""
    with serving("--recipe", RECIPE, cwd=trained) as (base, process):
        yield base, process


@pytest.fixture(scope="module")
def asked(trained):
    """`mlxtune ask --json` with the same recipe and max_tokens."""

    def answer(max_tokens: int, question: str = QUESTION) -> dict:
        return ask_json(question, "--recipe", RECIPE, "--max-tokens", str(max_tokens), cwd=trained)

    return answer


def chat(base: str, headers: dict | None = None, **body) -> tuple[int, dict]:
    return post(f"{base}/chat/completions", {"messages": MESSAGES, **body}, headers=headers)


def sse(base: str, path: str, body: dict) -> list[dict]:
    import urllib.request

    request = urllib.request.Request(
        f"{base}/{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        raw = response.read().decode()
    lines = [line[6:] for line in raw.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", raw[-300:]
    return [json.loads(line) for line in lines[:-1]]


def test_chat_and_completion_answer_as_ask_does(served, asked):
    base, _ = served
    want = asked(12)
    status, reply = chat(base, max_tokens=12)
    assert status == 200, reply
    choice = reply["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": want["answer"]}
    assert choice["finish_reason"] == ("length" if want["finish_reason"] == "length" else "stop")
    usage = reply["usage"]
    assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    status, reply = post(f"{base}/completions", {"prompt": QUESTION, "max_tokens": 12})
    assert status == 200 and reply["choices"][0]["text"] == want["answer"]


def test_streams_put_together_are_the_answer(served, asked):
    base, _ = served
    want = asked(9)["answer"]
    chunks = sse(base, "chat/completions", {"messages": MESSAGES, "stream": True, "max_tokens": 9})
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == want
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    body = {"prompt": QUESTION, "stream": True, "max_tokens": 9}
    body["stream_options"] = {"include_usage": True}
    chunks = sse(base, "completions", body)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == want
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_fifty_concurrent_clients_are_all_answered(served, asked):
    base, _ = served
    want = asked(4)["answer"]
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: chat(base, max_tokens=4), range(50)))
    assert [status for status, _ in results] == [200] * 50
    assert {reply["choices"][0]["message"]["content"] for _, reply in results} == {want}


def test_stop_n_and_response_format_are_honoured(served, asked):
    base, _ = served
    answer = asked(16)["answer"]
    words = answer.split()
    stop = words[len(words) // 2]
    status, reply = chat(base, max_tokens=16, stop=[stop, "\u2603never"])
    text = reply["choices"][0]["message"]["content"]
    assert status == 200 and text == answer[: answer.index(stop)]
    assert reply["choices"][0]["finish_reason"] == "stop"
    chunks = sse(
        base,
        "chat/completions",
        {"messages": MESSAGES, "max_tokens": 16, "stream": True, "stop": stop},
    )
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == text

    status, reply = chat(base, max_tokens=5, n=3, temperature=1.0, seed=7)
    assert status == 200 and [c["index"] for c in reply["choices"]] == [0, 1, 2]
    status, again = chat(base, max_tokens=5, n=3, temperature=1.0, seed=7)
    assert [c["message"] for c in again["choices"]] == [c["message"] for c in reply["choices"]]

    schema = {
        "type": "object",
        "properties": {"method": {"enum": ["segmentation", "detection"]}},
        "required": ["method"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "m", "schema": schema}}
    status, reply = chat(base, max_tokens=40, response_format=response_format)
    assert status == 200, reply
    parsed = json.loads(reply["choices"][0]["message"]["content"])
    assert parsed["method"] in ("segmentation", "detection") and set(parsed) == {"method"}


BAD = [
    ({"temperature": -1}, "temperature"),
    ({"temperature": 1e9}, "temperature"),
    ({"top_p": 5}, "top_p"),
    ({"frequency_penalty": -100}, "frequency_penalty"),
    ({"max_tokens": "5"}, "max_tokens"),
    ({"max_tokens": 2.7}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**70}, "seed"),
    ({"max_tokens": 10**6}, "exceed the model's context"),
    ({"n": 100}, "'n' must be an integer"),
    ({"stream": "yes"}, "'stream' must be true or false"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "'stop' must be"),
    ({"logit_bias": {"1": 5}}, "'logit_bias' is not supported"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "'tools' is not supported"),
    ({"logprobs": True}, "'logprobs' is not supported"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "x"}}}},
        "cannot be enforced",
    ),
    ({"temprature": 0.5}, "unrecognized request argument: temprature"),
    ({"messages": []}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "last message must be the user"),
    ({"messages": [{"role": "user", "content": 5}]}, "content must be a non-empty string"),
    ({"messages": [{"role": "user", "content": None}]}, "content must be a non-empty string"),
    ({"messages": [{"role": "user", "content": ""}]}, "content must be a non-empty string"),
    ({"messages": [{"role": "wizard", "content": "q"}]}, "with a role of"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "lone surrogate"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[str(e)[:40] for e, _ in BAD])
def test_bad_values_get_400_with_a_message(served, extra, message):
    base, _ = served
    body = {"messages": MESSAGES, "max_tokens": 4, **extra}
    status, reply = post(f"{base}/chat/completions", json.dumps(body).encode())
    assert status == 400, reply
    assert message in reply["error"]["message"] and reply["error"]["type"], reply


def test_malformed_bodies_methods_and_models(served):
    base, _ = served
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
        (b'{"messages": [{"role": "user", "content": "q"}], "max_tokens": Infinity}', 400, ""),
        (b'"a string"', 400, "must be a JSON object"),
        (b"\xff\xfe{}", 400, "not valid JSON"),
    ]
    for body, status, message in cases:
        got, reply = post(f"{base}/chat/completions", body)
        assert got == status and message in reply["error"]["message"], (body[:30], reply)
    status, reply = post(f"{base}/completions", {"prompt": ""})
    assert status == 400 and "'prompt'" in reply["error"]["message"]
    status, reply = chat(base, model="gpt-4o", max_tokens=2)
    assert status == 404 and reply["error"]["code"] == "model_not_found"
    status, reply = post(f"{base}/embeddings", {"input": "x"})
    assert status == 404
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{base}/chat/completions", timeout=10)
    assert info.value.code == 405 and info.value.headers["Allow"] == "POST"
    status, reply = post(f"{base}/models", {})
    assert status == 405
    models = json.loads(urllib.request.urlopen(f"{base}/models", timeout=10).read())
    assert [m["id"] for m in models["data"]] == ["quickstart"]


def test_a_50_mb_body_is_refused_at_once_with_memory_flat(served):
    base, process = served
    before = rss_kb(process.pid)
    start = time.monotonic()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n"
    )
    reply = raw_request(base, head, b'{"messages": "' + b"x" * 65536)
    assert reply.startswith(b"HTTP/1.1 413") and b"--max-body" in reply, reply[:200]
    assert time.monotonic() - start < 1.0
    reply = raw_request(base, head.replace(b"52428800", b"99999999999999"))
    assert reply.startswith(b"HTTP/1.1 413")
    assert rss_kb(process.pid) - before < 20_000  # kB: nothing of the body was kept
    status, _ = chat(base, max_tokens=2)  # and the server goes on
    assert status == 200


def test_a_body_that_never_arrives_times_out(tiny_model):
    with serving("--model", str(tiny_model), "--timeout", "2") as (base, _):
        head = (
            b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        start = time.monotonic()
        reply = raw_request(base, head, b'{"prompt": "q"', wait=20)
        assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 10
        status, _ = post(f"{base}/completions", {"prompt": QUESTION, "max_tokens": 2})
        assert status == 200


def test_web_pages_and_rebound_names_are_refused(served):
    base, _ = served
    status, reply = chat(base, max_tokens=2, headers={"Origin": "https://evil.example"})
    assert status == 403 and "web pages" in reply["error"]["message"]
    # a cross-site "simple" request: text/plain, no preflight
    status, _ = post(
        f"{base}/chat/completions",
        json.dumps({"messages": MESSAGES}).encode(),
        headers={"Content-Type": "text/plain", "Origin": "http://attacker.test"},
    )
    assert status == 403
    head = b"POST /v1/completions HTTP/1.1\r\nHost: rebind.attacker.test:8080\r\n"
    head += b"Content-Length: 2\r\n\r\n{}"
    assert raw_request(base, head).startswith(b"HTTP/1.1 403")
    status, _ = chat(base, max_tokens=2, headers={"Origin": "http://localhost:3000"})
    assert status == 200  # a local web UI may call it


def test_api_key_from_the_environment_is_required(tiny_model):
    from openai import AuthenticationError, OpenAI

    env = command_env(MLXTUNE_API_KEY="s3cret-key")
    with serving("--model", str(tiny_model), env=env) as (base, process):
        status, reply = chat(base, max_tokens=2)
        assert status == 401 and "API key" in reply["error"]["message"]
        status, _ = chat(base, max_tokens=2, headers={"Authorization": "Bearer wrong"})
        assert status == 401
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
        client = OpenAI(base_url=base, api_key="s3cret-key", max_retries=0)
        reply = client.chat.completions.create(model="model", messages=MESSAGES, max_tokens=3)
        assert reply.choices[0].message.content is not None
        process.terminate()
        _, err = process.communicate(timeout=20)
        assert "s3cret-key" not in err


def test_bad_hosts_and_ports_are_one_clear_error(tiny_model):
    import socket

    def serve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [MLXTUNE, "serve", "--model", str(tiny_model), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=command_env(),
        )

    done = serve("--host", "0.0.0.0")
    assert done.returncode != 0 and "--api-key" in done.stderr + done.stdout
    done = serve("--host", "no-such-host.invalid")
    assert done.returncode != 0 and "no such host" in done.stderr + done.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = serve("--port", str(taken.getsockname()[1]))
    assert done.returncode != 0 and "the port is in use" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


FRAGILE = textwrap.dedent(
    """
    from mlxtune import hookimpl
    from mlxtune.formatters.builtin import ApproachFormatter

    class Fragile(ApproachFormatter):
        name = "fragile"

        def prompt(self, question):
            if "BOOM" in question:
                raise RuntimeError("the formatter broke")
            return super().prompt(question)

    @hookimpl
    def register_formatters(register):
        register(Fragile)
    """
)


def test_an_unexpected_error_is_a_logged_500_and_the_server_goes_on(tiny_model, tmp_path):
    (tmp_path / "fragile.py").write_text(FRAGILE)
    process = subprocess.Popen(
        [MLXTUNE, "--plugins-dir", str(tmp_path), "serve", "--model", str(tiny_model)]
        + ["--format", "fragile", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=command_env(),
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        base = line.split(" at ")[1].split()[0]
        status, reply = post(f"{base}/completions", {"prompt": "BOOM?", "max_tokens": 2})
        assert status == 500 and reply["error"]["type"] == "server_error", reply
        status, _ = post(f"{base}/completions", {"prompt": QUESTION, "max_tokens": 2})
        assert status == 200
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert "RuntimeError: the formatter broke" in err


def test_a_client_that_leaves_mid_stream_frees_the_model(served):
    import socket

    base, _ = served
    port = int(base.rsplit(":", 1)[1].split("/")[0])
    body = json.dumps({"messages": MESSAGES, "stream": True, "max_tokens": 400}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 200")
    start = time.monotonic()
    status, _ = post(f"{base}/completions", {"prompt": QUESTION, "max_tokens": 3}, 120)
    assert status == 200 and time.monotonic() - start < 60


def test_summarizer_pointed_at_the_served_model(served, tmp_path, papers_dir):
    """The `openai` summarizer against `mlxtune serve`: the pipeline runs end to end; a random
    model's replies are recorded as failures with their raw text, every paper accounted for."""
    from conftest import write_recipe

    base, _ = served
    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"name: s\npapers: {papers_dir}\nrun_dir: {tmp_path / 'run'}\nmodel: {{tiny: {{}}}}\n"
        f"summarize: {{use: openai, model: quickstart, base_url: '{base}', max_tokens: 8, "
        "structured: none}\n",
    )
    done = subprocess.run(
        [MLXTUNE, "recipe", "run", str(recipe), "--until", "summarize"],
        capture_output=True,
        text=True,
        timeout=300,
        env=command_env(),
    )
    assert "Traceback" not in done.stderr
    failures = (tmp_path / "run" / "summary_failures.jsonl").read_text().splitlines()
    pairs_file = tmp_path / "run" / "pairs.jsonl"
    pairs = pairs_file.read_text().splitlines() if pairs_file.is_file() else []
    assert len(pairs) + len(failures) == 6
    assert all(json.loads(f)["raw"] for f in failures)
