"""taskforce-verify: check a prosecutor package offline.

    taskforce-verify package.zip [--fingerprint HEX] [--public-key FILE]

Needs only the Python standard library and `cryptography`: no server, no
network, no database, none of the app. It checks, in order:

1. manifest.json is signed (manifest.sig) by the Ed25519 key in the package
   (or the one given with --public-key), and that key's fingerprint is the
   one the manifest names (and the one given with --fingerprint);
2. every file the manifest lists is in the ZIP, with its size and SHA-256;
3. each item's file hashes to the item's recorded SHA-256;
4. nothing is in the ZIP that the manifest does not list.

It prints a verdict and the first mismatch (naming the file), and exits 0 if
the package is intact, 1 if it is not (or cannot be read).
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
import zipfile
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MANIFEST, SIGNATURE, DEFAULT_KEY = "manifest.json", "manifest.sig", "signing-key.pub.pem"
CHUNK = 1024 * 1024


class Failure(Exception):
    """The package is not intact: the message says where first."""


def _fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _read(zf: zipfile.ZipFile, name: str, limit: int = 64 * 1024 * 1024) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise Failure(f"{name} is missing from the package") from None
    if info.file_size > limit:
        raise Failure(f"{name} is implausibly large ({info.file_size} bytes)")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise Failure(f"{name} cannot be read from the ZIP: {e}") from e


def _hash_member(zf: zipfile.ZipFile, name: str) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    try:
        with zf.open(name) as f:
            while chunk := f.read(CHUNK):
                sha.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, OSError, ValueError) as e:  # a CRC error: bytes changed
        raise Failure(f"{name}: its bytes were changed in the ZIP ({e})") from e
    return sha.hexdigest(), size


def verify_package(path: str, *, fingerprint: str | None = None,
                   public_key_pem: bytes | None = None, out=None) -> dict[str, Any]:
    """Check the package; returns a summary, or raises Failure at the first problem."""
    out = out or (lambda _line: None)
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise Failure(f"{path} is not a readable ZIP file: {e}") from e
    with zf:
        body = _read(zf, MANIFEST)
        try:
            signature = base64.b64decode(_read(zf, SIGNATURE).strip(), validate=True)
        except (binascii.Error, ValueError) as e:
            raise Failure(f"{SIGNATURE} is not a base64 signature") from e
        try:
            manifest = json.loads(body)
        except ValueError as e:
            raise Failure(f"{MANIFEST} is not valid JSON: {e}") from e
        if not isinstance(manifest, dict):
            raise Failure(f"{MANIFEST} is not a manifest")
        key_info = manifest.get("signing_key") or {}
        key_pem = public_key_pem if public_key_pem is not None else _read(
            zf, str(key_info.get("file") or DEFAULT_KEY))
        try:
            key = serialization.load_pem_public_key(key_pem)
        except (ValueError, TypeError) as e:
            raise Failure(f"the public key cannot be read: {e}") from e
        if not isinstance(key, Ed25519PublicKey):
            raise Failure("the public key is not an Ed25519 key")
        found = _fingerprint(key)
        out(f"signing key fingerprint (SHA-256): {found}")
        if fingerprint and fingerprint.strip().lower().replace(":", "") != found:
            raise Failure(f"the package was signed with key {found}, not the expected "
                          f"{fingerprint}")
        try:
            key.verify(signature, body)
        except InvalidSignature:
            raise Failure(f"SIGNATURE INVALID: {MANIFEST} was changed after it was signed, "
                          "or signed with another key") from None
        if key_info.get("fingerprint_sha256") != found:
            raise Failure("the manifest names a different signing key than the one that "
                          "verified it")
        out(f"signature: valid ({MANIFEST} signed with Ed25519)")

        files = manifest.get("files")
        if not isinstance(files, list):
            raise Failure(f"{MANIFEST} lists no files")
        listed: dict[str, dict[str, Any]] = {}
        for entry in files:
            name = entry.get("path") if isinstance(entry, dict) else None
            if not isinstance(name, str):
                raise Failure(f"{MANIFEST} has a malformed file entry")
            listed[name] = entry
            digest, size = _hash_member(zf, name) if name in zf.namelist() else (None, None)
            if digest is None:
                raise Failure(f"{name} is listed in the manifest but missing from the package")
            if size != entry.get("size") or digest != entry.get("sha256"):
                raise Failure(f"{name}: MISMATCH: SHA-256 {digest} ({size} bytes), the "
                              f"manifest says {entry.get('sha256')} ({entry.get('size')} "
                              "bytes)")
        for item in manifest.get("items") or []:
            name = item.get("file")
            if name and listed.get(name, {}).get("sha256") != item.get("sha256"):
                raise Failure(f"{name}: does not hash to item {item.get('number')}'s recorded "
                              f"SHA-256 {item.get('sha256')}")
        extra = [n for n in zf.namelist() if n not in listed and n not in (MANIFEST, SIGNATURE)
                 and not n.endswith("/")]
        if extra:
            raise Failure(f"{extra[0]} is in the package but not in the manifest")
    package = manifest.get("package") or {}
    return {"package": package.get("number"), "files": len(listed),
            "items": len(manifest.get("items") or []), "fingerprint": found,
            "bates": f"{package.get('bates_first')} - {package.get('bates_last')}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="taskforce-verify",
        description="Check a task force evidence package offline: the manifest's signature "
                    "and the SHA-256 of every file.")
    parser.add_argument("package", help="the package ZIP")
    parser.add_argument("--fingerprint", help="the task force's published key fingerprint "
                                              "(SHA-256 hex): refuse any other key")
    parser.add_argument("--public-key", help="the task force's public key (PEM) to check "
                                             "with, instead of the one in the package")
    args = parser.parse_args(argv)
    pem = None
    if args.public_key:
        try:
            with open(args.public_key, "rb") as f:
                pem = f.read()
        except OSError as e:
            print(f"FAILED: cannot read {args.public_key}: {e.strerror}")
            return 1
    try:
        summary = verify_package(args.package, fingerprint=args.fingerprint,
                                 public_key_pem=pem, out=print)
    except Failure as e:
        print(f"FAILED: {e}")
        print(f"VERDICT: {args.package} is NOT intact. Do not rely on it.")
        return 1
    print(f"files: {summary['files']} checked, every SHA-256 matches")
    print(f"items: {summary['items']}; Bates {summary['bates']}")
    print(f"VERDICT: package {summary['package']} is INTACT: signature valid, every hash "
          "matches.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
