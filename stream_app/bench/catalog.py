"""`istream bench e2e --items N`: the serving bundle with a synthetic catalog of ``N`` items.

``grown_registry`` copies the registry's CURRENT bundle into a registry of its own with its item table
grown to ``N`` rows: the trained items first (so the workload's events name the same items and steps),
then synthetic ones drawn around them (``index_data.synthetic_items``), popularity 0; the manifest lists
the new files' sha256 and is signed again with the workers' key. ``prepare_graph`` then does, in the
bench, what a worker does at its first start with that bundle: the approximate search's graph is built
and saved where the workers look, so the timed workers load it as a restarted worker does.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from stream_app.bench.index_data import synthetic_items
from stream_app.exceptions import ConfigError
from stream_app.settings import Settings


def grown_registry(settings: Settings, registry: Path, items: int, work_dir: Path) -> Path:
    from export.integrity import file_entry, sign_bundle
    from export.item_table import load_item_table, save_item_table
    from export.manifest import MANIFEST, encode_manifest, format_for
    from export.registry import Registry

    source = Registry(registry)
    champion = source.current()
    if champion is None:
        raise ConfigError(f"registry {registry} has no CURRENT version to serve")
    manifest = source.manifest(champion)
    table = manifest.item_table
    if items < table.count:
        raise ConfigError(f"--items {items:,} is fewer than the bundle's {table.count:,} items; give more")
    bundle = work_dir / f"items-{items}" / "bundle"
    shutil.rmtree(bundle.parent, ignore_errors=True)
    shutil.copytree(source.bundle_path(champion), bundle)
    real = load_item_table(bundle / table.vectors, table.dtype, (table.count, manifest.dim))
    dtype = save_item_table(bundle / table.vectors, np.vstack([real, synthetic_items(real, items - len(real))]))
    ids = json.loads((bundle / table.ids).read_text(encoding="utf-8"))
    ids += [f"synthetic-{i}" for i in range(items - len(ids))]
    (bundle / table.ids).write_text(json.dumps(ids), encoding="utf-8")
    files = [table.vectors, table.ids]
    if table.popularity is not None:
        popularity = np.load(bundle / table.popularity)
        np.save(
            bundle / table.popularity, np.concatenate([popularity, np.zeros(items - len(popularity), popularity.dtype)])
        )
        files.append(table.popularity)
    manifest = msgspec.structs.replace(
        manifest,
        format=format_for(dtype),
        item_table=msgspec.structs.replace(table, count=items, dtype=dtype),
        files={**manifest.files, **{name: file_entry(bundle / name) for name in files}},
    )
    (bundle / MANIFEST).write_bytes(encode_manifest(manifest))
    key = settings.bundle_signing_key.get_secret_value() if settings.bundle_signing_key is not None else None
    if key is not None:
        sign_bundle(bundle, key)
    grown = Registry(bundle.parent / "registry", key)
    grown.promote(grown.publish(bundle))
    shutil.rmtree(bundle)
    return bundle.parent / "registry"


def prepare_graph(settings: Settings, registry: Path) -> dict[str, Any]:
    """The worker's index of ``registry``'s CURRENT built as a worker builds it, graph saved under
    ``settings.run_dir`` (the workers' run dir): bundle load and graph build seconds, the item table's bytes
    on disk and how they are stored."""
    from export.registry import Registry
    from export.runtime import RuntimeOptions, load_runtime
    from stream_app.worker.serving_index import model_index

    reg = Registry(registry)
    bundle = reg.bundle_path(reg.current())
    started = time.perf_counter()
    runtime = load_runtime(bundle, RuntimeOptions.from_settings(settings))
    loaded = time.perf_counter()
    index = model_index(runtime, settings)
    return {
        "items": len(index.ids),
        "bundle_load_s": loaded - started,
        "index_build_s": time.perf_counter() - loaded,
        "approximate": index.approximate is not None,
        "item_table_mb": (bundle / runtime.manifest.item_table.vectors).stat().st_size / 2**20,
        "item_table_dtype": runtime.manifest.item_table.dtype,
    }


_GRAPH_LINE = re.compile(r"search graph of ([\d]+) items (loaded|built) .*? in ([\d.]+) s")


def worker_graph(run_dir: Path) -> dict[str, Any]:
    """How the first worker of a bench run got its search graph, from its log: loaded or built, and seconds."""
    log = run_dir / "worker-0.log"
    found = _GRAPH_LINE.search(log.read_text(encoding="utf-8", errors="replace")) if log.is_file() else None
    if found is None:
        return {"graph": "none (exact search)"}
    return {"graph": found.group(2), "graph_items": int(found.group(1)), "graph_seconds": float(found.group(3))}
