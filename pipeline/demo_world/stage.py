"""Stage ``demo-world``: generate the offline demo world into ``<out>/world`` (and serve it on request)."""

from __future__ import annotations

import json
import time

from pipeline import fs
from pipeline.config import RunConfig
from pipeline.demo_world.config import DemoWorldConfig
from pipeline.demo_world.generate import generate_world, params
from pipeline.layout import Layout


def existing_manifest(world: str, requested: dict) -> dict | None:
    """The manifest already in ``world`` if it was made with ``requested`` and all its files are there."""
    path = fs.join(world, "manifest.json")
    if not fs.exists(path):
        return None
    try:
        manifest = json.loads(fs.read_text(path))
    except ValueError:
        return None
    if manifest.get("params") != requested:
        return None
    files = [f for group in manifest.get("files", {}).values() for f in group]
    return manifest if all(fs.exists(fs.join(world, f)) for f in files) else None


def summarize(manifest: dict, world: str, generated: bool, seconds: float) -> dict:
    """The stage summary: where the world is and how much it holds."""
    counts = manifest["counts"]
    return {
        "world": world,
        "generated": generated,
        "seconds": round(seconds, 2),
        **{k: manifest[k] for k in ("seed", "size", "scale", "fault_rate") if k in manifest},
        "port": manifest["port"],
        "articles": counts["articles"],
        "wiki_pages": counts["wiki"]["pages"],
        "pageview_files": len(manifest["files"]["pageviews"]),
        "wat_files": len(manifest["files"]["wat"]),
        "tables": len(manifest["files"]["tables"]),
        "candidates": manifest["candidates"]["total"],
    }


def serve_until_interrupted(world: str) -> None:
    """Serve the world's images on its port until Ctrl-C."""
    from pipeline.demo_world.server import serve_world  # aiohttp only when serving

    with serve_world(world) as server:
        print(f"demo images served at {server.base_url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopped", flush=True)


def run(run: RunConfig, demo_world: DemoWorldConfig) -> dict:
    """Generate the demo world unless an identical one is already there; optionally serve it."""
    cfg = demo_world
    world = Layout(run.out).world
    requested = params(run.seed, cfg.demo_size, cfg.demo_scale, cfg.demo_port, cfg.demo_fault_rate)
    started = time.time()
    manifest = None if run.force else existing_manifest(world, requested)
    generated = manifest is None
    if generated:
        manifest = generate_world(
            world, run.seed, cfg.demo_size, cfg.demo_scale, cfg.demo_port, cfg.demo_fault_rate
        )
    summary = summarize(manifest, world, generated, time.time() - started)
    if cfg.demo_serve:
        serve_until_interrupted(world)
    return summary
