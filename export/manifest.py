"""manifest.json: what a bundle holds and how to check it.

Every file of the bundle except manifest.json and its signature (manifest.sig) is listed in
``files`` with its sha256 and size; every other path in the manifest must be one of those.
Paths are relative, POSIX, and stay inside the bundle's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from export.exceptions import ManifestError
from export.item_table import ItemDtype
from export.signatures import GraphSpec

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FORMAT = 1
# A float16 item table (``export.item_table``): a reader of format 1 only would refuse its table with a
# less clear error, so such bundles say so. Float32 bundles stay format 1, readable by every worker.
FLOAT16_TABLE_FORMAT = 2
READABLE_FORMATS = (FORMAT, FLOAT16_TABLE_FORMAT)


class FileEntry(msgspec.Struct, frozen=True):
    sha256: str
    size: int


class TokenizerSpec(msgspec.Struct, frozen=True):
    files: tuple[str, ...]  # the Hugging Face tokenizer files; the runtime reads tokenizer.json
    max_length: int  # longer comments are truncated to this many tokens

    @property
    def tokenizer_json(self) -> str:
        matches = [f for f in self.files if f.rsplit("/", 1)[-1] == "tokenizer.json"]
        if not matches:
            raise ManifestError("the manifest's tokenizer lists no tokenizer.json; re-export the bundle")
        return matches[0]


class ItemTable(msgspec.Struct, frozen=True, omit_defaults=True):
    vectors: str  # [N, D] .npy of ``dtype``
    ids: str  # JSON list of N item ids, row order
    count: int
    popularity: str | None = None  # float32 [N] .npy: training events per item (bundles since 0.1 may lack it)
    dtype: ItemDtype = "float32"  # float16 for large catalogs (export.item_table)


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    format: int = FORMAT
    name: str
    version: str
    parent_version: str | None = None
    created_at: str  # ISO 8601, UTC
    text_dim: int
    dim: int
    state_dim: int
    model_config: dict[str, Any]
    graphs: dict[str, GraphSpec]
    tokenizer: TokenizerSpec
    item_table: ItemTable
    checkpoint: tuple[str, ...]  # the torch checkpoint the bundle was exported from, to continue training
    files: dict[str, FileEntry]
    metrics: dict[str, Any] = {}
    export: dict[str, Any] = {}  # how it was exported: opset, exporter, optimizer, quantization

    def referenced_paths(self) -> list[str]:
        """Every path the manifest points at outside ``files``."""
        graphs = [g.file for g in self.graphs.values()]
        table = self.item_table
        extra = [table.popularity] if table.popularity is not None else []
        return [*graphs, *self.tokenizer.files, table.vectors, table.ids, *extra, *self.checkpoint]


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"


def decode_manifest(raw: bytes, where: Path | str) -> Manifest:
    try:
        manifest = msgspec.json.decode(raw, type=Manifest)
    except msgspec.DecodeError as exc:
        raise ManifestError(f"{where} is not a bundle manifest ({exc}); re-export the bundle") from None
    if manifest.format not in READABLE_FORMATS:
        raise ManifestError(
            f"{where} has manifest format {manifest.format}, this version reads formats {READABLE_FORMATS}; "
            "upgrade interest-stream to serve it"
        )
    if manifest.format != format_for(manifest.item_table.dtype):
        raise ManifestError(
            f"{where}: a {manifest.item_table.dtype} item table needs manifest format "
            f"{format_for(manifest.item_table.dtype)}, not {manifest.format}; re-export the bundle"
        )
    return manifest


def format_for(item_dtype: ItemDtype) -> int:
    """The manifest format of a bundle whose item table is stored as ``item_dtype``."""
    return FLOAT16_TABLE_FORMAT if item_dtype == "float16" else FORMAT
