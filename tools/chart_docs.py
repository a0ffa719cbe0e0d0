#!/usr/bin/env python3
"""Generates the chart's reference tables from the files the chart itself uses:

- the values table of helm/spin-operator/README.md, from values.yaml and its `# --` comments
  (helm-docs style: a `# -- text` comment, continued by the `#` lines right below it, describes the
  key on the next line; a described key is one row, its default the whole subtree);
- the permission tables of docs/rbac.md, from helm/spin-operator/files/permissions.json (the list
  the chart's RBAC template renders, kept equal to src/rbac.rs by tests/helm_chart.rs).

Each table sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers; the text around it
is written by hand. `python3 tools/chart_docs.py` rewrites both files (`make docs` runs it);
`--check` only reports whether they are current (tests/helm/test_docs.py does the same).
Needs PyYAML (in the project's .venv).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "spin-operator"
VALUES = CHART / "values.yaml"
PERMISSIONS = CHART / "files" / "permissions.json"
CHART_README = CHART / "README.md"
RBAC_DOC = REPO / "docs" / "rbac.md"

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")
COMMENT = re.compile(r"^ *# ?(?P<text>.*)$")


def value_descriptions(text: str) -> dict[tuple[str, ...], str]:
    """Key path -> description, from the `# --` comments of a values.yaml."""
    descriptions: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        comment = COMMENT.match(line)
        if comment:
            body = comment.group("text")
            if body.startswith("-- "):
                pending = [body[3:].strip()]
            elif pending is not None:
                pending.append(body.strip())
            continue
        key = KEY.match(line)
        if not key:
            # A blank line or a list item ends a description that named no key.
            pending = None
            continue
        indent = len(key.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = tuple(k for _, k in stack) + (key.group("key"),)
        if pending is not None:
            descriptions[path] = " ".join(p for p in pending if p)
            pending = None
        stack.append((indent, key.group("key")))
    return descriptions


def value_rows(values: Any, descriptions: dict[tuple[str, ...], str], path: tuple[str, ...] = ()) -> list[tuple[str, Any, str | None]]:
    """(dotted key, default, description or None) for every chart value, in file order."""
    if path and (path in descriptions or not isinstance(values, dict) or not values):
        return [(".".join(path), values, descriptions.get(path))]
    rows = []
    for key, sub in values.items():
        rows.extend(value_rows(sub, descriptions, path + (key,)))
    return rows


def cell(text: str) -> str:
    """One Markdown table cell: one line, `|` escaped, and `<`, `>` outside code spans as entities
    (so `<release>` is shown, not taken for an HTML tag)."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def values_table() -> str:
    text = VALUES.read_text()
    rows = value_rows(yaml.safe_load(text), value_descriptions(text))
    out = ["| value | default | description |", "| --- | --- | --- |"]
    for key, default, description in rows:
        shown = json.dumps(default, separators=(", ", ": "), ensure_ascii=False)
        out.append(f"| `{key}` | `{shown.replace('|', chr(92) + '|')}` | {cell(description or '')} |")
    return "\n".join(out) + "\n"


def undocumented_values() -> list[str]:
    text = VALUES.read_text()
    return [key for key, _, description in value_rows(yaml.safe_load(text), value_descriptions(text)) if not description]


# The parts of files/permissions.json: when the chart grants each, and what leaves it out.
PARTS: dict[str, tuple[str, str]] = {
    "controllers": (
        "The controllers (reconcilers) and their leader election.",
        "`controllers.enabled=false` (`--disable-controllers`): a webhooks-only install.",
    ),
    "webhooks": (
        "The admission webhooks' caches (executor lookups, apps using an executor).",
        "`webhooks.enabled=false` (`--disable-webhooks`): a controllers-only install.",
    ),
    "webhook-references": (
        "The webhooks' warnings about referenced Secrets and ConfigMaps that do not exist (names only).",
        "`webhooks.watchReferences=false` (`--skip-reference-watch`); the warnings are then off.",
    ),
    "webhook-secret-references": (
        "The webhooks' warnings about referenced Secrets that do not exist (names only, never data).",
        "`webhooks.secretExistenceWarnings=false` (`--hide-secret-existence`), or "
        "`webhooks.watchReferences=false`: SpinApp authors are then never told whether a Secret name exists.",
    ),
    "metrics-auth": (
        "Authentication and authorization of `/metrics` callers (TokenReview, SubjectAccessReview).",
        "granted only with `metrics.auth.enabled=true` (`--metrics-auth`); off by default.",
    ),
    "self-signed": (
        "The operator's own certificate (`--self-signed`): granted only when the chart runs it, i.e. "
        "with `certManager.enabled=false` and no `tls.existingSecret`.",
        "cert-manager (`certManager.enabled=true`, the default) or `tls.existingSecret`.",
    ),
    "ca-bundle-readiness": (
        "Readiness in the cert-manager and `tls.existingSecret` modes (`--webhook-ca-bundle-readiness`): a "
        "pod is Ready only once both webhook configurations' caBundle verifies the certificate it serves.",
        "the self-signed mode, whose own rules already cover it.",
    ),
    "ca-bundle-secret": (
        "The `tls.existingSecret` mode (`--ca-bundle-file`): the operator writes the Secret's CA "
        "(its `ca.crt`, or `tls.caBundle`) into both webhook configurations' caBundle.",
        "cert-manager (its CA injector writes caBundle) or the self-signed mode.",
    ),
}

SCOPES = {
    "watched": "watched namespaces",
    "namespace": "release namespace",
    "cluster": "cluster",
}


def rbac_tables() -> str:
    permissions: dict[str, list[dict[str, Any]]] = json.loads(PERMISSIONS.read_text())
    unknown = sorted(set(permissions) - set(PARTS))
    if unknown:
        raise SystemExit(f"tools/chart_docs.py: describe the permission parts {unknown} in PARTS")
    out = []
    for part, (what, removed_by) in PARTS.items():
        if part not in permissions:
            continue
        out += [f"### `{part}`", "", f"{what} Left out by: {removed_by}", ""]
        out += ["| API group | resource | verbs | where | why |", "| --- | --- | --- | --- | --- |"]
        for p in permissions[part]:
            resource = p["resource"]
            if p.get("resourceNames"):
                resource += " (only " + ", ".join(f"`{n}`" for n in p["resourceNames"]) + ")"
            group = f"`{p['group']}`" if p["group"] else "core"
            verbs = ", ".join(p["verbs"])
            out.append(f"| {group} | {cell(resource)} | {verbs} | {SCOPES[p['scope']]} | {cell(p['reason'])} |")
        out.append("")
    return "\n".join(out)


def replace_between(text: str, name: str, body: str, path: Path) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if text.count(begin) != 1 or text.count(end) != 1:
        raise SystemExit(f"{path.relative_to(REPO)}: needs exactly one {begin} and one {end}")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{body}{end}{tail}"


def generated() -> dict[Path, str]:
    """Each generated file's expected content."""
    return {
        CHART_README: replace_between(CHART_README.read_text(), "values", values_table(), CHART_README),
        RBAC_DOC: replace_between(RBAC_DOC.read_text(), "permissions", rbac_tables(), RBAC_DOC),
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, content in generated().items():
        if path.read_text() != content:
            stale.append(str(path.relative_to(REPO)))
            if not check:
                path.write_text(content)
    if check and stale:
        print(f"stale: {', '.join(stale)}; run `make docs`", file=sys.stderr)
        return 1
    if not check and stale:
        print(f"rewrote {', '.join(stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
