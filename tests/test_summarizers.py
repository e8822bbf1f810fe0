"""LLM summarizers: reply parsing, chunking, the OpenAI-compatible client against a real loopback
server (every failure kind), and the mlx summarizer's batching on a tiny model."""

from __future__ import annotations

import json
import re

import pytest
from llm_server import FakeLLMServer

from mlxtune.components import SummaryFailure
from mlxtune.errors import MlxtuneError
from mlxtune.records import Document, Pair
from mlxtune.summarize.llm import chunk_text
from mlxtune.summarize.openai_summarizer import OpenAISummarizer
from mlxtune.summarize.replies import parse_pair, strip_thinking

# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "reply",
    [
        '{"question": "Why?", "approach": "Because."}',
        'Sure! Here:\n```json\n{"question": "Why?", "approach": "Because."}\n```\nBye',
        '{"question": "Why?", "approach": "Because.",}',
        "{'question': 'Why?', 'approach': 'Because.'}",
        '{"Research Question": "Why?", "Method": "Because."}',
        '<think>{"question": "no", "approach": "no"} hmm</think>\n'
        '{"question": "Why?", "approach": "Because."}',
        'reasoning about it...</think>{"question": "Why?", "approach": "Because."}',
        "**Research question:** Why?\n**Approach:** Because.",
        '{"question": "Why?", "approach": ["Because", "."]}',
        'The JSON object is:\n{"data": {"question": "Why?", "approach": "Because."}}',
    ],
)
def test_parse_pair_is_tolerant(reply):
    question, approach = parse_pair(reply)
    assert question == "Why?"
    assert approach.replace(" .", ".") == "Because."


@pytest.mark.parametrize(
    "reply",
    [
        "I cannot help with that.",
        '{"question": "Why?"}',
        '{"question": "", "approach": "x"}',
        '{"a": {"question": "Why?", "approach": "x"}, "b": {"question": "No"}}',
        "<think>still thinking when max_tokens ran out",
    ],
)
def test_parse_pair_rejects_what_is_not_a_pair(reply):
    with pytest.raises(ValueError):
        parse_pair(reply)


def test_strip_thinking():
    assert strip_thinking("<think>a</think> b <think>c</think>") == "b"
    assert strip_thinking("answer <think>unfinished") == "answer"


def test_chunk_text_respects_size_paragraphs_and_limit():
    paragraphs = [f"Paragraph {i}. " + "word " * 40 for i in range(30)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, 600, 100)
    assert all(len(c) <= 600 for c in chunks)
    assert "".join(chunks).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(
        " ", ""
    )
    assert len(chunk_text(text, 600, 3)) == 3
    long_paragraph = "A sentence that goes on. " * 100
    assert all(len(c) <= 300 for c in chunk_text(long_paragraph, 300, 100))


# ---------------------------------------------------------------- openai-compatible server


def docs(n: int, *, long: bool = False) -> list[Document]:
    method = "We train a network with a contrastive loss. " * (200 if long else 2)
    return [
        Document(
            id=f"doc{i}",
            path=f"/papers/p{i}.pdf",
            category="vision",
            title=f"Paper Number {i}",
            text="...",
            sections={"abstract": f"Abstract of paper {i}.", "method": method},
        )
        for i in range(n)
    ]


def summarizer(server: FakeLLMServer, **options) -> OpenAISummarizer:
    settings = {"model": "qwen-test", "base_url": server.base_url, "backoff": 0.01, **options}
    return OpenAISummarizer(OpenAISummarizer.Options(**settings))


def test_openai_concurrent_happy_path_with_provenance_and_secret_key(monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-very-secret")
    with FakeLLMServer(delay=0.05) as server:
        s = summarizer(server, concurrency=4, api_key_env="TEST_LLM_KEY")
        results = list(s.summarize(docs(10)))
    assert all(isinstance(r, Pair) for r in results) and len(results) == 10
    by_id = {r.document_id: r for r in results}
    assert by_id["doc3"].question == "How can we improve Paper Number 3?"
    assert by_id["doc3"].model == "qwen-test" and len(by_id["doc3"].prompt_hash) == 16
    assert len(server.requests) == 10 and {r["model"] for r in server.requests} == {"qwen-test"}
    assert {r["authorization"] for r in server.requests} == {"Bearer sk-very-secret"}
    assert "sk-very-secret" not in repr(s.fingerprint()) + repr(results)


def test_openai_missing_key_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with FakeLLMServer() as server, pytest.raises(MlxtuneError, match="NO_SUCH_KEY is not set"):
        list(summarizer(server, api_key_env="NO_SUCH_KEY").summarize(docs(1)))


@pytest.mark.parametrize("failure", ["500", "429", "malformed", "drop", "slow"])
def test_openai_retries_each_failure_kind_then_succeeds(failure):
    with FakeLLMServer() as server:
        server.script["Paper Number 1"] = [failure, failure]
        results = list(summarizer(server, timeout=0.5, concurrency=2).summarize(docs(3)))
    assert all(isinstance(r, Pair) for r in results), results
    assert server.count("Paper Number 1") == 3  # two failures, then the answer
    assert server.count("Paper Number 0") == 1


def test_openai_gives_up_after_retries_as_a_transient_failure():
    with FakeLLMServer() as server:
        server.always["Paper Number 0"] = "500"
        results = list(summarizer(server, max_retries=2).summarize(docs(2)))
    failed = [r for r in results if isinstance(r, SummaryFailure)]
    assert len(failed) == 1 and failed[0].transient and "HTTP 500" in failed[0].reason
    assert server.count("Paper Number 0") == 3
    assert any(isinstance(r, Pair) and r.document_id == "doc1" for r in results)


def test_openai_unauthorized_stops_with_the_servers_message():
    with FakeLLMServer() as server:
        server.always["Paper"] = "401"
        with pytest.raises(MlxtuneError, match="HTTP 401: scripted 401"):
            list(summarizer(server).summarize(docs(2)))


def test_prose_reply_is_repaired_once_else_kept_raw():
    with FakeLLMServer() as server:
        server.script["Paper Number 0"] = ["prose"]
        server.always["Paper Number 1"] = "prose"
        results = {
            r.document.id if isinstance(r, SummaryFailure) else r.document_id: r
            for r in summarizer(server).summarize(docs(2))
        }
    assert isinstance(results["doc0"], Pair)
    assert server.count("Paper Number 0", "repair") == 1
    failure = results["doc1"]
    assert isinstance(failure, SummaryFailure) and not failure.transient
    assert "unparseable" in failure.reason and "is interesting" in failure.raw
    assert server.count("Paper Number 1", "repair") == 1  # one repair, no more


def test_long_papers_are_summarized_chunk_by_chunk():
    with FakeLLMServer() as server:
        results = list(
            summarizer(server, chunk_chars=2000, max_chunks=3).summarize(docs(2, long=True))
        )
    assert all(isinstance(r, Pair) for r in results)
    assert server.count("Paper Number 0", "chunk") == 3
    pair_prompt = next(r["prompt"] for r in server.requests if r["kind"] == "pair")
    assert "Notes on the paper" in pair_prompt and "- Part 3:" in pair_prompt


def test_custom_prompt_file_changes_prompt_and_cache_key(tmp_path):
    template = tmp_path / "mine.md"
    template.write_text('Summarize {title} as {"question": ..., "approach": ...}\n{text}')
    with FakeLLMServer() as server:
        default = summarizer(server)
        custom = summarizer(server, prompt_file=str(template))
        list(custom.summarize(docs(1)))
    assert server.requests[0]["prompt"].startswith("Summarize Paper Number 0 as {")
    assert default.fingerprint() != custom.fingerprint()
    assert summarizer(server, concurrency=9).fingerprint() == default.fingerprint()


# ---------------------------------------------------------------- mlx (tiny model)


@pytest.mark.slow
def test_mlx_batched_replies_equal_one_at_a_time(tiny_model):
    from mlxtune.summarize.mlx_summarizer import MlxSummarizer

    def replies(batch_size: int) -> list[str]:
        s = MlxSummarizer(
            MlxSummarizer.Options(model=str(tiny_model), batch_size=batch_size, max_tokens=12)
        )
        # prompts of very different lengths, so that left-padding in the batch is exercised
        conversations = [
            [{"role": "user", "content": f"{i} " * (7 * i) + d.title}]
            for i, d in enumerate(docs(6))
        ]
        return s.complete(conversations)

    batched, single = replies(6), replies(1)
    assert batched == single and len(set(batched)) > 1


@pytest.mark.slow
def test_mlx_unparseable_reply_is_recorded_with_raw_text(tiny_model):
    from mlxtune.summarize.mlx_summarizer import MlxSummarizer

    s = MlxSummarizer(MlxSummarizer.Options(model=str(tiny_model), batch_size=4, max_tokens=8))
    results = list(s.summarize(docs(2)))
    # a random-weight model does not write JSON: each paper is a recorded, non-transient failure
    assert all(isinstance(r, SummaryFailure) and not r.transient and r.raw for r in results)
    assert "--- repair reply ---" in results[0].raw


def test_openai_sends_the_schema_and_falls_back_once_when_refused(capsys):
    from mlxtune.summarize import openai_summarizer

    openai_summarizer.REFUSED.clear()
    with FakeLLMServer() as server:
        results = list(summarizer(server, frequency_penalty=0.3).summarize(docs(2)))
        assert all(isinstance(r, Pair) for r in results)
        assert {r["response_format"] for r in server.requests} == {"json_schema"}
        assert {r["frequency_penalty"] for r in server.requests} == {0.3}
        assert results[0].decoding == "structured=json_schema"

        server.requests.clear()
        server.refuse_formats = {"json_schema"}  # a server that knows only json_object
        results = list(summarizer(server, concurrency=1).summarize(docs(3)))
        assert all(isinstance(r, Pair) for r in results)
        sent = [r["response_format"] for r in server.requests]
        assert sent.count("json_schema") == 1  # refused once, then remembered
        assert sent.count("json_object") == 3
        assert capsys.readouterr().err.count("refused response_format json_schema") == 1

        server.requests.clear()
        server.refuse_formats = {"json_schema", "json_object"}
        openai_summarizer.REFUSED.clear()
        results = list(summarizer(server, concurrency=1).summarize(docs(2)))
        assert all(isinstance(r, Pair) for r in results)
        sent = [r["response_format"] for r in server.requests]
        assert sent == ["json_schema", "json_object", None, None]
    openai_summarizer.REFUSED.clear()


def test_openai_notes_are_not_constrained_and_the_option_keys_the_cache():
    from mlxtune.summarize import openai_summarizer

    openai_summarizer.REFUSED.clear()
    with FakeLLMServer() as server:
        list(summarizer(server, chunk_chars=500).summarize(docs(1, long=True)))
        kinds = {(r["kind"], r["response_format"]) for r in server.requests}
        assert ("chunk", None) in kinds and ("pair", "json_schema") in kinds
        plain = summarizer(server, structured="none")
    assert plain.fingerprint() != summarizer(server).fingerprint()


@pytest.mark.slow
def test_mlx_structured_replies_are_the_pair_json_even_from_a_random_model(tiny_model):
    """A random-weight model writes anything; constrained by the pair's schema, every reply is
    a JSON object with exactly a question and an approach of the allowed lengths."""
    from mlxtune.summarize.llm import PAIR_SCHEMA
    from mlxtune.summarize.mlx_summarizer import MlxSummarizer

    s = MlxSummarizer(
        MlxSummarizer.Options(
            model=str(tiny_model), batch_size=4, max_tokens=1500, stop_loops=0, dry_multiplier=1.5
        )
    )
    conversations = [[{"role": "user", "content": f"Summarize {d.title}"}] for d in docs(4)]
    for reply in s.complete_pairs(conversations):
        pair = json.loads(reply)
        assert set(pair) == {"question", "approach"}
        for key, spec in PAIR_SCHEMA["properties"].items():
            assert spec["minLength"] <= len(pair[key]) <= spec["maxLength"]
            assert re.match(spec.get("pattern", ""), pair[key])
    unconstrained = s.complete(conversations)
    assert not any(reply.startswith('{"question":') for reply in unconstrained)


@pytest.mark.slow
def test_mlx_loop_is_cut_short_and_retried_once_with_its_provenance(tiny_model):
    from mlxtune.summarize.llm import LoopedReply
    from mlxtune.summarize.mlx_summarizer import MlxSummarizer

    options = dict(model=str(tiny_model), batch_size=2, max_tokens=400, dry_multiplier=0.0)
    s = MlxSummarizer(MlxSummarizer.Options(**options, structured="none", stop_loops=8))
    conversation = [{"role": "user", "content": "Summarize Paper Number 1"}]
    looped = s.complete_pairs([conversation])[0]
    free = MlxSummarizer(MlxSummarizer.Options(**options, structured="none", stop_loops=0))
    unbounded = free.complete_pairs([conversation])[0]
    # greedy decoding of a random model loops: the detector ends it long before max_tokens
    assert isinstance(looped, LoopedReply) and not isinstance(unbounded, LoopedReply)
    assert len(looped) < len(unbounded) / 2 and unbounded.startswith(looped[:20])
    # in summarize, the looped reply is asked again once, with stronger penalties
    calls = []
    real_stream = s.stream
    s.stream = lambda c, structured, retry: (
        calls.append(retry) or real_stream(c, structured=structured, retry=retry)
    )
    (result,) = s.summarize(docs(1))
    assert calls[:2] == [False, True]
    if isinstance(result, Pair):
        assert "retried after a loop" in result.decoding
