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


def main():
    seeds = {t: [] for t in ["admission", "admission_structured", "quantity", "reference", "runtime_config"]}
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
