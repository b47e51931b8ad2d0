"""A griffe extension for the docs build (mkdocs.yml): the reST bits of docstrings as Markdown.

The docstrings of ``janus_rs`` are Google style but name other objects with Sphinx roles
(``:class:`GenerationResult```, ``:meth:`generate```, ``:func:`janus_rs.set_num_threads```),
which Markdown would print literally. Each role is replaced by its name in code font, linked to
the object's entry in the API reference when there is one: the name is resolved here, where the
docstring's scope is known, and emitted as an *optional* mkdocs-autorefs reference, which is plain
code (and no warning) if the object is not rendered anywhere. A paragraph ending in reST's
literal-block marker ``::`` ends in ``:`` instead, as reST renders it (the indented block after it
is a code block in Markdown too). Only the docs build uses this; the package never imports it.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_LITERAL_MARKER = re.compile(r"(?<=\S)::(?=\n[ \t]*\n)")
_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|attr|exc|mod|obj|const):`(~?)([\w.]+)(?:\(\))?`")


def _target(obj: griffe.Object, name: str, package: griffe.Module) -> str | None:
    """The canonical path of ``name`` as written in ``obj``'s docstring, or None."""
    name = name.lstrip(".")
    scopes: list[griffe.Object] = []
    scope: griffe.Object | None = obj
    while scope is not None:  # the object itself (a class's own members), then its parents
        scopes.append(scope)
        scope = scope.parent
    candidates = []
    for scope in scopes:
        try:
            candidates.append(scope.resolve(name))
        except (griffe.NameResolutionError, griffe.AliasResolutionError, ValueError):
            pass
        candidates.append(f"{scope.path}.{name}")
    candidates += [f"{package.path}.{name}", name]
    for path in candidates:
        try:
            found = package.modules_collection[path]
            return found.canonical_path
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
    return None


def _replace(obj: griffe.Object, package: griffe.Module, text: str) -> str:
    def sub(match: re.Match[str]) -> str:
        short, name = match.group(1), match.group(2)
        shown = name.rsplit(".", 1)[-1] if short else name
        code = f"<code>{html.escape(shown)}</code>"
        path = _target(obj, name, package)
        if path is None:
            return code
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'

    return _LITERAL_MARKER.sub(":", _ROLE.sub(sub, text))


def _walk(obj: griffe.Object, package: griffe.Module, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if obj.docstring is not None:
        obj.docstring.value = _replace(obj, package, obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            _walk(member, package, seen)  # type: ignore[arg-type]


class SphinxRoles(griffe.Extension):
    """Rewrites ``:role:`name``` in every docstring of the loaded package (see the module doc)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _walk(pkg, pkg, set())
