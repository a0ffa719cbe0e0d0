#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from the project's own fixtures and examples.

Writes fuzz/seeds/<target>/<name> (committed; regenerate after adding fixtures):
  admission             every tests/fixtures/admission review, and every SpinApp and
                        SpinAppExecutor of examples/ and tests/fixtures/api as CREATE and
                        UPDATE reviews
  admission_structured  a few byte strings (the target builds its review from bytes)
  quantity              every quantity in those manifests, one per file and in pairs
  reference             every image reference in them
  runtime_config        every spec.runtimeConfig as JSON, and the scaffold TOML fixtures
  http                  admission fixtures as HTTP/1.1 and HTTP/2 POSTs to their route, and as
                        raw HTTP/1.1 byte streams (see `spin_operator::fuzzing::http`)

Needs PyYAML (`pip install pyyaml`, or the project's .venv).
"""

import hashlib
import json
import pathlib
import shutil

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"

GROUP, VERSION = "core.spinkube.dev", "v1alpha1"
PLURAL = {"SpinApp": "spinapps", "SpinAppExecutor": "spinappexecutors"}


def manifests():
    files = sorted(ROOT.glob("examples/**/*.yaml")) + sorted(ROOT.glob("tests/fixtures/api/*.yaml"))
    for f in files:
        try:
            docs = list(yaml.safe_load_all(f.read_text()))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") in PLURAL:
                yield doc


def review(obj, operation):
    kind = obj["kind"]
    gvk = {"group": GROUP, "version": VERSION, "kind": kind}
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "seed-uid",
            "kind": gvk,
            "resource": {"group": GROUP, "version": VERSION, "resource": PLURAL[kind]},
            "requestKind": gvk,
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", "apps"),
            "operation": operation,
            "userInfo": {"username": "seed"},
            "object": obj if operation != "DELETE" else None,
            "oldObject": obj if operation != "CREATE" else None,
            "dryRun": False,
        },
    }


def walk(value, key=None):
    """(key, value) of every string in a document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v, key)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        yield key, str(value)


# Route indices of ROUTES (src/admission/routes.rs) by resource, for the http seeds.
ROUTE_INDEX = {"spinapps": 1, "spinappexecutors": 2}


def http_seeds(reviews):
    """Structured exchanges (mode, router, calls-1, method, route, content type, body) over
    HTTP/1.1 and HTTP/2, and raw HTTP/1.1 streams (mode 0), for the `http` target."""
    out = []
    for body in reviews:
        try:
            resource = json.loads(body)["request"]["resource"]["resource"]
        except (ValueError, KeyError, TypeError):
            resource = "spinapps"
        route = ROUTE_INDEX.get(resource, 1)
        for mode in (1, 2):
            out.append(bytes([mode, 0, 0, 0, route, 0]) + body)
        path = {1: "/validate-core-spinkube-dev-v1alpha1-spinapp",
                2: "/validate-core-spinkube-dev-v1alpha1-spinappexecutor"}[route]
        head = f"POST {path} HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        out.append(bytes([0, 0]) + head.encode() + body)
    # Shed by the small budget (router 1), and a pipelined raw pair.
    if reviews:
        out.append(bytes([2, 1, 0, 0, 1, 0]) + reviews[0] + b" " * 2048)
        head = "POST /validate-core-spinkube-dev-v1alpha1-spinapp HTTP/1.1\r\nHost: w\r\nContent-Length: 2\r\n\r\n{}"
        out.append(bytes([0, 0]) + (head * 2).encode())
    return out


def main():
    seeds = {t: [] for t in ["admission", "admission_structured", "quantity", "reference", "runtime_config", "http"]}
    for f in sorted((ROOT / "tests/fixtures/admission").glob("*.json")):
        seeds["admission"].append(f.read_bytes())
    quantities, images = set(), set()
    for obj in manifests():
        for op in ["CREATE", "UPDATE"]:
            seeds["admission"].append(json.dumps(review(obj, op), sort_keys=True).encode())
        spec = obj.get("spec") or {}
        if isinstance(spec, dict) and spec.get("runtimeConfig") is not None:
            seeds["runtime_config"].append(json.dumps(spec["runtimeConfig"], sort_keys=True).encode())
        for path in ["resources", "invocationLimits"]:
            for _, v in walk(spec.get(path) if isinstance(spec, dict) else None):
                quantities.add(v)
        for key, v in walk(obj):
            if key in ("image", "spinImage"):
                images.add(v)
    for f in sorted((ROOT / "tests/fixtures/scaffold").glob("*.toml")):
        seeds["runtime_config"].append(f.read_bytes())
    quantities |= {"100m", "1.5Gi", "+1e3", "-0", ".5", "1.", "129M", "1e-3", "99999999999Ei"}
    ordered = sorted(quantities)
    seeds["quantity"] = [q.encode() for q in ordered]
    seeds["quantity"] += [f"{a}\n{b}".encode() for a, b in zip(ordered, ordered[1:])]
    images |= {
        "localhost:5000/a/b:v1",
        "[::1]:5000/app@sha256:" + "0" * 64,
        "docker.io/library/alpine@sha256:" + "a" * 64,
        "a/b__c/d-e:tag_1.2",
    }
    seeds["reference"] = [i.encode() for i in sorted(images)]
    seeds["http"] = http_seeds(seeds["admission"][:12])
    seeds["admission_structured"] = [b"", bytes(range(64)), bytes(range(255, 191, -1)), b"\x01\x00\x06" * 20]
    shutil.rmtree(OUT, ignore_errors=True)
    for target, inputs in seeds.items():
        d = OUT / target
        d.mkdir(parents=True)
        for data in inputs:
            (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"{target}: {len(set(inputs))} seeds")


if __name__ == "__main__":
    main()
