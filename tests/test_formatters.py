from __future__ import annotations

from mlxtune.formatters.builtin import ApproachFormatter, ChatFormatter
from mlxtune.records import Example, Pair
from mlxtune.tokens import encode_example, encode_prompt

PAIR = Pair(
    document_id="d",
    category="c",
    question="Why do nets forget?",
    approach="Add gated memory cells.",
)


def test_approach_shape_and_prompt_match():
    formatter = ApproachFormatter()
    (example,) = formatter.examples(PAIR)
    assert example.text == (
        "Research question: Why do nets forget?\nApproach: Add gated memory cells."
    )
    assert example.prompt == formatter.prompt(PAIR.question).prompt
    assert example.text.startswith(example.prompt)


def test_chat_shape():
    (example,) = ChatFormatter().examples(PAIR)
    roles = [m["role"] for m in example.messages]
    assert roles == ["system", "user", "assistant"]
    assert example.messages[-1]["content"] == PAIR.approach
    assert ChatFormatter(ChatFormatter.Options(system="")).prompt("q").messages == [
        {"role": "user", "content": "q"}
    ]


def test_tokens_end_with_eos_and_mask_the_prompt(tiny_model):
    from mlx_lm import load

    _, tokenizer = load(str(tiny_model))
    eos = tokenizer.eos_token_id
    for formatter in (ApproachFormatter(), ChatFormatter()):
        (example,) = formatter.examples(PAIR)
        tokens, offset = encode_example(tokenizer, example, mask_prompt=True)
        prompt = encode_prompt(tokenizer, formatter.prompt(PAIR.question))
        assert eos in tokens[-2:]
        assert tokens[:offset] == prompt  # what `ask` feeds is exactly the masked prefix
        assert tokenizer.decode(tokens[offset:]).strip().startswith("Add gated memory cells.")
        assert encode_example(tokenizer, example, mask_prompt=False)[1] == 0
    assert encode_prompt(tokenizer, Example(prompt="hi")) == tokenizer.encode("hi")


def test_every_builtin_formatter_matches_its_documented_example():
    import json
    import re
    from pathlib import Path

    from mlxtune.plugins import get_registry

    doc = (Path(__file__).parents[1] / "docs" / "formatters.md").read_text()
    pair_block = re.search(r"```yaml\nquestion: (.+)\napproach: (.+)\n```", doc)
    pair = Pair(document_id="d", category="c", question=pair_block[1], approach=pair_block[2])
    registry = get_registry()
    documented = dict(re.findall(r"## `(\w+)`.*?```jsonl\n(.*?)\n```", doc, re.S))
    builtin = [n for k, n, e in registry.entries() if k == "formatter" and "built-in" in e.source]
    assert set(builtin) == set(documented) == {"prompt_qa", "qa", "approach", "q_and_a", "chat"}
    for name, block in documented.items():
        formatter = registry.build("formatter", {"use": name})
        *examples, prompt = [json.loads(line) for line in block.splitlines()]
        assert [e.to_json() for e in formatter.examples(pair)] == examples, name
        assert formatter.prompt(pair.question).to_json() == prompt["ask_prompt"], name
