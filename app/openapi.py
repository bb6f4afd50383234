"""The OpenAPI document (`app/openapi.yaml`) at `/openapi.json`, and a browsable `/docs` page.

The document is written by hand, next to the code it describes, rather than generated from
it: it states the contract (SPEC §2, §5), and tests/test_openapi.py runs schemathesis against
the app to prove that the code keeps it. `/docs` is rendered here, on the server, from the
same document: no JavaScript and no CDN, because the machines this runs on (and operators'
networks) often cannot reach the internet. Neither needs credentials: the document holds no
secrets, and an integrator reads it before having any.
"""

from __future__ import annotations

import json
import re
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify

bp = Blueprint("openapi", __name__)

DOCUMENT = Path(__file__).with_name("openapi.yaml")
METHODS = ("get", "put", "post", "delete", "patch")
_REF = re.compile(r'"#/components/schemas/([A-Za-z0-9_.-]+)"')
_CODE = re.compile(r"`([^`]+)`")
_STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:70em;margin:1em auto;padding:0 1em;color:#222}
h2{border-bottom:2px solid #ccc;margin-top:2em}h3{margin:1.5em 0 .3em}code,pre{font:13px monospace}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto}table{border-collapse:collapse;margin:.3em 0}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
.m{display:inline-block;min-width:4em;padding:0 .4em;color:#fff;border-radius:3px;text-align:center}
.get{background:#2b7bb9}.post{background:#3a9a4a}.put,.patch{background:#b98a2b}.delete{background:#b93a2b}"""


@cache
def document() -> dict[str, Any]:
    """Parsed once per process: the file does not change while the service runs."""
    with DOCUMENT.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())


@bp.get("/docs")
def docs() -> Response:
    return Response(render(), mimetype="text/html")


@cache
def render() -> str:
    """The whole page: operations grouped by tag, credentials, then every schema. Built once."""
    doc = document()
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {t["name"]: [] for t in doc.get("tags", [])}
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                for tag in item[method].get("tags", ["other"]):
                    by_tag.setdefault(tag, []).append((path, method, item[method]))
    descriptions = {t["name"]: t.get("description", "") for t in doc.get("tags", [])}
    info = doc["info"]
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(info['title'])}</title>",
           f"<style>{_STYLE}</style></head><body><h1>{escape(info['title'])} <small>{escape(info['version'])}"
           f"</small></h1><p>{_text(info.get('description', ''))}</p>",
           "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Sections: "
           + ", ".join(f"<a href='#tag-{escape(t)}'>{escape(t)}</a>" for t in by_tag)
           + ", <a href='#credentials'>credentials</a>, <a href='#schemas'>schemas</a>.</p>"]
    for tag, operations in by_tag.items():
        out.append(f"<h2 id='tag-{escape(tag)}'>{escape(tag)}</h2><p>{_text(descriptions.get(tag, ''))}</p>")
        out += [_operation(doc, path, method, op) for path, method, op in operations]
    out += _credentials(doc) + _schemas(doc)
    out.append("</body></html>")
    return "\n".join(out)


def _credentials(doc: dict[str, Any]) -> list[str]:
    rows = []
    for name, scheme in doc["components"]["securitySchemes"].items():
        where = scheme.get("scheme") or f"in {scheme['in']} <code>{escape(scheme['name'])}</code>"
        rows.append(f"<tr><td id='auth-{escape(name)}'><code>{escape(name)}</code></td>"
                    f"<td>{escape(scheme['type'])} {where}</td>"
                    f"<td>{_text(scheme.get('description', ''))}</td></tr>")
    return ["<h2 id='credentials'>Credentials</h2><table>", *rows, "</table>"]


def _schemas(doc: dict[str, Any]) -> list[str]:
    """Each schema as its JSON, with every `$ref` a link to the schema it names."""
    out = ["<h2 id='schemas'>Schemas</h2>"]
    for name, schema in doc["components"]["schemas"].items():
        text = _REF.sub(lambda m: f'"<a href="#schema-{m[1]}">{m[1]}</a>"',
                        escape(json.dumps(schema, indent=2, ensure_ascii=False), quote=False))
        out.append(f"<h3 id='schema-{escape(name)}'>{escape(name)}</h3><pre>{text}</pre>")
    return out


def _operation(doc: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    security = op.get("security", doc.get("security", []))
    schemes = " or ".join(" and ".join(f"<a href='#auth-{escape(n)}'>{escape(n)}</a>" for n in s)
                          for s in security) or "none"
    html = [f"<h3 id='{escape(op.get('operationId', method + path))}'><span class='m {method}'>"
            f"{method.upper()}</span> <code>{escape(path)}</code></h3>",
            f"<p><b>{_text(op.get('summary', ''))}</b> {_text(op.get('description', ''))}</p>",
            f"<p>Credentials: {schemes}</p>"]
    params = [_resolve(doc, p) for p in op.get("parameters", [])]
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else ''}</td><td>{_type(p.get('schema', {}))}</td>"
            f"<td>{_text(p.get('description', ''))}</td></tr>" for p in params)
        html.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>type</th>"
                    f"<th>meaning</th></tr>{rows}</table>")
    body = op.get("requestBody")
    if body:
        kinds = "; ".join(f"<code>{escape(k)}</code>: {_type(v.get('schema', {}))}"
                          for k, v in body["content"].items())
        html.append(f"<p>Body ({'required' if body.get('required') else 'optional'}): {kinds}</p>")
    rows = []
    for status, answer in op.get("responses", {}).items():
        answer = _resolve(doc, answer)
        content = "; ".join(f"<code>{escape(k)}</code> {_type(v.get('schema', {}))}"
                            for k, v in answer.get("content", {}).items())
        headers = ", ".join(f"<code>{escape(h)}</code>" for h in answer.get("headers", {}))
        rows.append(f"<tr><td>{escape(str(status))}</td><td>{_text(answer.get('description', ''))}</td>"
                    f"<td>{content}</td><td>{headers}</td></tr>")
    html.append("<table><tr><th>answer</th><th>when</th><th>body</th><th>headers</th></tr>"
                + "".join(rows) + "</table>")
    return "\n".join(html)


def _text(prose: str) -> str:
    """Escaped prose, with the document's `backquoted` names set as code."""
    return _CODE.sub(r"<code>\1</code>", escape(prose))


def _resolve(doc: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (parameters, responses) to what it names."""
    while "$ref" in obj:
        node: Any = doc
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def _type(schema: dict[str, Any]) -> str:
    """A short human rendering of a schema: a link for a named one, else its type."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"<a href='#schema-{escape(name)}'>{escape(name)}</a>"
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            return " | ".join(_type(s) for s in schema[combinator])
    if "const" in schema:
        return f"<code>{escape(json.dumps(schema['const']))}</code>"
    kind = schema.get("type", "any")
    kinds = " | ".join(kind) if isinstance(kind, list) else kind
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "properties" in schema:  # an inline object: its fields
        return "{" + ", ".join(f"{escape(k)}: {_type(v)}" for k, v in schema["properties"].items()) + "}"
    facets = ("format", "minimum", "maximum", "minLength", "pattern")
    bounds = [f"{k} {schema[k]}" for k in facets if k in schema]
    return escape(kinds + (f" ({', '.join(bounds)})" if bounds else ""))
