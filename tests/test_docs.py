"""The docs keep up with the code: every hook and every built-in component option is documented."""

from __future__ import annotations

from pathlib import Path

from mlxtune import hookspecs
from mlxtune.plugins import get_registry
from mlxtune.recipe import AskSection, EvaluateSection, ModelSection, SplitSection, TinyModel

DOCS = Path(__file__).parent.parent / "docs"


def test_every_hook_is_documented():
    text = (DOCS / "plugins.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert hooks
    for hook in hooks:
        assert f"`{hook}(" in text, hook


def test_every_recipe_key_and_option_is_documented():
    text = (DOCS / "recipes.md").read_text()
    for kind, name, entry in get_registry().entries():
        assert f"{kind} `{name}`" in text, (kind, name)
        for option in entry.cls.Options.model_fields:
            assert f"`{option}`" in text, (name, option)
    for section in (ModelSection, SplitSection, AskSection, TinyModel, EvaluateSection):
        for key, field in section.model_fields.items():
            sub = getattr(field.annotation, "model_fields", None)
            if sub and section is not ModelSection:  # nested: documented as `key.sub`
                for subkey in sub:
                    assert f"`{key}.{subkey}`" in text, (section.__name__, key, subkey)
            else:
                assert f"`{key}`" in text, (section.__name__, key)
    assert "`cache_dir`" in text
