"""YAML from users (recipes, question sets, `a.b=c` values), read with limits.

`yaml.safe_load` builds no Python objects from tags, but it still lets a file exhaust memory or
the stack: nine levels of aliases ("billion laughs") are a billion nodes once the recipe code
walks them, 50,000 nested brackets overflow the composer's recursion, and a duplicated key
silently keeps the last value. `SafeLoader` refuses each of these, and `load_yaml_bytes` refuses
bytes that are not UTF-8 text, so every bad file is one `YamlProblem` with a line number.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_DEPTH = 64  # a recipe nests 3 or 4 levels
MAX_ALIASES = 100  # a recipe uses few aliases or none
MAX_NODES = 200_000  # nodes after every alias is expanded (a recipe has a few hundred)
MAX_BYTES = 16 << 20
MERGE_TAG = "tag:yaml.org,2002:merge"
BINARY = "binary data, not YAML text (it holds NUL bytes)"


class YamlProblem(ValueError):
    """Why a YAML text cannot be used: one line, with the line it happened on if known."""

    def __init__(self, problem: str, line: int | None = None, *, syntax: bool = False):
        self.problem, self.line = problem, line
        self.syntax = syntax  # plain YAML syntax, not a limit: `a.b=c` then reads c as text
        super().__init__(f"at line {line}: {problem}" if line else problem)


class _Refused(ComposerError):
    """A limit of `SafeLoader` was hit (a YAMLError, so yaml's callers see a YAML error)."""


class SafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` with bounded nesting, aliases and expansion, and no duplicate keys."""

    max_depth = MAX_DEPTH
    max_aliases = MAX_ALIASES
    max_nodes = MAX_NODES

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._open: list[str] = []  # anchors of the nodes being composed
        self.last_node: Node | None = None  # the node being constructed, for error lines

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        self.last_node = node
        return super().construct_object(node, deep)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self.max_aliases:
                raise _Refused(
                    None, None, f"more than {self.max_aliases} aliases", event.start_mark
                )
            if event.anchor in self._open:
                problem = f"alias *{event.anchor} refers to the node that contains it"
                raise _Refused(None, None, problem, event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > self.max_depth:
            raise _Refused(
                None, None, f"nested deeper than {self.max_depth} levels", event.start_mark
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.append(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.pop()

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[Any, ScalarNode] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == MERGE_TAG:
                continue
            key = self._key(key_node)
            if key in seen:
                first = seen[key].start_mark.line + 1
                problem = f"duplicate key '{key_node.value}' (first at line {first}); keep one"
                raise _Refused(None, None, problem, key_node.start_mark)
            seen[key] = key_node
        return node

    def _key(self, node: ScalarNode) -> Any:
        """The key as the mapping will hold it (`yes` and `true`, `0x10` and `16` collide)."""
        try:
            key = self.construct_object(node)
            hash(key)
            return key
        except Exception:  # left to the constructor, which says what is wrong with it
            return (node.tag, node.value)

    def get_single_node(self) -> Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node, self.max_nodes, self.max_depth)
        return node


def _check_expansion(root: Node, max_nodes: int, max_depth: int) -> None:
    """Refuse a document whose aliases, expanded, hold too many nodes or nest too deep.

    Sizes and depths are computed once per node (aliases share nodes), iteratively, so an alias
    bomb is measured in microseconds without ever being built."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in size:
            continue
        children = _children(node)
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size)
            continue
        size[id(node)] = min(1 + sum(size[id(c)] for c in children), max_nodes + 1)
        depth[id(node)] = 1 + max((depth[id(c)] for c in children), default=0)
        if size[id(node)] > max_nodes:
            problem = (
                f"its aliases expand to more than {max_nodes} values (an alias bomb?); "
                "write the values out, or share settings with `extends:`"
            )
            raise _Refused(None, None, problem, node.start_mark)
        if depth[id(node)] > max_depth:
            problem = f"its aliases nest values deeper than {max_depth} levels"
            raise _Refused(None, None, problem, node.start_mark)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml_text(text: str) -> Any:
    """Parse one YAML document with `SafeLoader`; any problem is a one-line `YamlProblem`."""
    if "\x00" in text:
        raise YamlProblem(BINARY, text.count("\n", 0, text.index("\x00")) + 1)
    loader = None
    try:
        loader = SafeLoader(text)  # checks the characters at once
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "unreadable").split())
        line = mark.line + 1 if mark else None
        raise YamlProblem(problem, line, syntax=not isinstance(exc, _Refused)) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        problem = f"character {_char(exc.character)} is not allowed"
        raise YamlProblem(problem, line, syntax=True) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(" ".join(str(exc).split()), syntax=True) from None
    except RecursionError:  # not reached within the limits above; kept as a last guard
        raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, TypeError, AttributeError, OverflowError, LookupError) as exc:
        # a value yaml's constructors fail on: an integer of 5,000 digits, `2024-13-45`,
        # `!!timestamp soon`, an empty `!!int`
        node = loader.last_node if loader is not None else None
        value = node.value if isinstance(node, ScalarNode) else ""
        reason = f": {' '.join(str(exc).split())[:160]}" if isinstance(exc, ValueError) else ""
        line = node.start_mark.line + 1 if node is not None else None
        raise YamlProblem(f"cannot read the value {value[:40]!r}{reason}", line) from None
    finally:
        if loader is not None:
            loader.dispose()


def _char(code: int | str) -> str:
    return f"{code if isinstance(code, int) else ord(code[:1] or ' '):#x}"


def load_yaml_file(path: str | os.PathLike[str]) -> Any:
    """Read and parse a user's YAML file (OSError if it cannot be read, else `YamlProblem`)."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    return load_yaml_bytes(data)


def load_yaml_bytes(data: bytes) -> Any:
    """Decode UTF-8 (a byte-order mark allowed) and parse; UTF-16 and binary files are refused."""
    if len(data) > MAX_BYTES:
        raise YamlProblem(f"too large for a YAML file (over {MAX_BYTES >> 20} MiB)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise YamlProblem("UTF-16 text; save the file as UTF-8")
    if b"\x00" in data:
        raise YamlProblem(BINARY, data.count(b"\n", 0, data.index(b"\x00")) + 1)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {data[exc.start]:#04x}); save the file as UTF-8"
        raise YamlProblem(problem, data.count(b"\n", 0, exc.start) + 1) from None
    return load_yaml_text(text)
