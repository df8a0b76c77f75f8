#!/usr/bin/env python3
"""Packages a Wasm module as an OCI image layout that Istio can pull, without Docker.

    python3 scripts/oci.py [--wasm dist/fusion.wasm] [--out dist/oci] [--tag VERSION]

The image follows the "compat" variant of the Wasm image specification (solo-io/wasm,
spec-compat.md), the one istio-agent reads first (pkg/wasm/imagefetcher.go): one
`application/vnd.oci.image.layer.v1.tar+gzip` layer holding exactly one file,
`plugin.wasm`; the manifest carries the annotation `module.wasm.image/variant: compat`;
the config is an ordinary `application/vnd.oci.image.config.v1+json`.

The output is byte-for-byte reproducible (fixed mtime, owner, mode and gzip header):
the same .wasm always gives the same manifest digest. Push it with

    skopeo copy oci:dist/oci:TAG docker://REGISTRY/fusion-wasm:TAG
    oras cp --from-oci-layout dist/oci:TAG REGISTRY/fusion-wasm:TAG

Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_MAGIC = b"\0asm"


def canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(wasm: bytes, mtime: int) -> bytes:
    """An uncompressed tar with one regular file, plugin.wasm, with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_fixed(data: bytes) -> bytes:
    buf = io.BytesIO()
    # mtime=0 and no file name: the gzip header does not depend on when or where.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    m = re.search(r'(?ms)^\[package\].*?^version\s*=\s*"([^"]+)"', text)
    return m.group(1) if m else "latest"


def build(wasm_path: Path, out: Path, tag: str, mtime: int = 0) -> dict:
    """Writes the layout; returns the digests and sizes it wrote."""
    wasm = wasm_path.read_bytes()
    if not wasm.startswith(WASM_MAGIC):
        raise SystemExit(f"{wasm_path} is not a Wasm module (no \\0asm header)")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", tag):
        raise SystemExit(f"bad tag {tag!r}")
    if out.exists():
        if not (out / "oci-layout").exists():
            raise SystemExit(f"{out} exists and is not an OCI image layout: not overwriting it")
        shutil.rmtree(out)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        digest = sha256(data)
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    tar = layer_tar(wasm, mtime)
    layer = put(gzip_fixed(tar))
    config = put(canonical({
        # GOARCH/GOOS names for a WASI module: what it is, not a host platform.
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    }))
    manifest = put(canonical({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, **config},
        "layers": [{"mediaType": LAYER, **layer}],
        "annotations": {
            "module.wasm.image/variant": "compat",
            "org.opencontainers.image.title": "fusion-wasm",
            # The crate version the module was built from (CHANGELOG.md), whatever the tag.
            "org.opencontainers.image.version": cargo_version(),
            "org.opencontainers.image.licenses": "Apache-2.0",
        },
    }))
    (out / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(canonical({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, **manifest,
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }))
    return {"manifest": manifest, "config": config, "layer": layer, "tag": tag}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wasm", type=Path, default=ROOT / "dist" / "fusion.wasm")
    p.add_argument("--out", type=Path, default=ROOT / "dist" / "oci")
    p.add_argument("--tag", default=None, help="image tag (default: the version in Cargo.toml, e.g. 0.1.0)")
    args = p.parse_args(argv)
    tag = args.tag or cargo_version()
    built = build(args.wasm, args.out, tag)
    digest = built["manifest"]["digest"]
    (args.out.parent / "oci.digest").write_text(digest + "\n")
    print(f"{args.out}: OCI image layout of {args.wasm} (tag {tag})")
    print(f"  manifest {digest}  ({built['manifest']['size']} bytes)")
    print(f"  layer    {built['layer']['digest']}  ({built['layer']['size']} bytes, plugin.wasm)")
    print(f"  WasmPlugin sha256 / EnvoyFilter sha256: {digest.split(':', 1)[1]}  (also in {args.out.parent / 'oci.digest'})")
    print(f"push: skopeo copy oci:{args.out}:{tag} docker://REGISTRY/fusion-wasm:{tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
