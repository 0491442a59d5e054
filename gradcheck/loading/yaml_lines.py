"""PyYAML's safe loader, plus what a case file needs from it: the line of every key, a
refusal of duplicate keys, and a cap on how far aliases may expand (alias bombs)."""

from __future__ import annotations

from collections.abc import Iterator

import yaml

MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 32

Path = tuple[object, ...]  # keys and list indices from the document root


class YamlError(ValueError):
    def __init__(self, message: str, line: int | None, case: str | None = None):
        super().__init__(message)
        self.message, self.line, self.case = message, line, case


def documents(text: str) -> Iterator[tuple[object, dict[Path, int], int]]:
    """Yield (data, {path: line}, first line) for each YAML document in `text`."""
    loader = _loader(text)
    try:
        while _check_node(loader):
            node = _get_node(loader)
            _check_expansion(node)
            lines = _line_map(node)
            yield _construct(loader, node), lines, node.start_mark.line + 1
    finally:
        loader.dispose()


def _loader(text: str) -> yaml.SafeLoader:
    try:
        return yaml.SafeLoader(text)
    except yaml.reader.ReaderError as e:
        # the reader refuses control characters up front, before any mark exists
        line = text.count("\n", 0, max(e.position, 0)) + 1
        raise YamlError(
            f"YAML: unacceptable character #x{e.character:04x}: {e.reason}", line
        ) from None


def _check_node(loader) -> bool:
    try:
        return loader.check_node()
    except yaml.YAMLError as e:
        raise _yaml_error(e) from None


def _get_node(loader):
    try:
        return loader.get_node()
    except yaml.YAMLError as e:
        raise _yaml_error(e) from None
    except RecursionError:
        # PyYAML composes nested collections recursively: thousands of `[` exhaust the stack
        raise YamlError(
            f"document is nested deeper than {MAX_DEPTH} levels", loader.get_mark().line + 1
        ) from None


def _construct(loader, node):
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        error = _yaml_error(e)
    except (ValueError, OverflowError) as e:
        # scalars the resolver accepts but Python cannot build: 2001-13-01, a 5000-digit int
        error = YamlError(f"YAML: invalid value: {e}", None)
    error.case = _case_name(node)
    raise error


def _case_name(node) -> str | None:
    """The document's `name:`, read from the node tree (the document itself failed)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == "name" and isinstance(value, yaml.ScalarNode):
                return value.value
    return None


def _yaml_error(e: yaml.YAMLError) -> YamlError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    message = f"YAML: {context + ', ' if context else ''}{problem}"
    return YamlError(message, None if mark is None else mark.line + 1)


def _check_expansion(root) -> None:
    """Size of the document with every alias expanded, computed on the shared node graph."""
    sizes: dict[int, int] = {}
    order, stack = [], [(root, 0)]
    while stack:  # iterative post-order: deep documents cannot recurse
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise YamlError(
                f"document is nested deeper than {MAX_DEPTH} levels", node.start_mark.line + 1
            )
        if id(node) in sizes:
            continue
        sizes[id(node)] = 0
        order.append(node)
        stack.extend((child, depth + 1) for child in _children(node))
    for node in reversed(order):
        sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _children(node))
        if sizes[id(node)] > MAX_EXPANDED_NODES:
            raise YamlError(
                f"document expands to more than {MAX_EXPANDED_NODES} nodes "
                "(aliases nested too deep)",
                node.start_mark.line + 1,
            )


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _line_map(root) -> dict[Path, int]:
    lines: dict[Path, int] = {(): root.start_mark.line + 1}
    stack: list[tuple[Path, yaml.Node]] = [((), root)]
    while stack:
        path, node = stack.pop()
        for key, child in _items(node, path):
            lines[path + (key,)] = child.start_mark.line + 1
            if len(path) < 16:
                stack.append((path + (key,), child))
    return lines


def _items(node, path):
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    if not isinstance(node, yaml.MappingNode):
        return []
    seen, items = set(), []
    for key_node, value in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
        if key in seen:
            where = ".".join(map(str, path + (key,)))
            raise YamlError(f"duplicate key {where!r}", key_node.start_mark.line + 1)
        seen.add(key)
        items.append((key, value))
    return items
