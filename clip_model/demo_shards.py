"""Write small webdataset shards straight from the demo generator (for tests, benchmarks and
development when the downloader's shards are not there): ``{key}.jpg``, ``{key}.txt``,
``{key}.json`` per sample, the layout the downloader writes."""

from __future__ import annotations

import io
import json
import os
import random
import tarfile

from pipeline.demo_world import scene as S


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0
    tar.addfile(info, io.BytesIO(data))


def write_shards(
    out_dir: str,
    samples: int,
    per_shard: int = 1000,
    seed: int = 0,
    short_side: int = 256,
    first_id: int = 0,
) -> list[str]:
    """Render ``samples`` demo images with their captions into ``out_dir/{NNNNN}.tar``; returns paths."""
    from clip_model.zero_shot import demo_scene

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for shard in range((samples + per_shard - 1) // per_shard):
        path = os.path.join(out_dir, f"{shard:05d}.tar")
        with tarfile.open(path + ".tmp", "w") as tar:
            for i in range(shard * per_shard, min(samples, (shard + 1) * per_shard)):
                image_id = first_id + i
                sc = demo_scene(image_id, seed, short_side)
                key = f"{shard:05d}{i % per_shard:04d}"
                caption = S.describe(sc, random.Random(f"{seed}:{image_id}:alt"))
                _add(tar, f"{key}.jpg", S.encode(S.render(sc, image_id, seed), "jpg"))
                _add(tar, f"{key}.txt", caption.encode())
                _add(
                    tar,
                    f"{key}.json",
                    json.dumps({"key": key, "caption": caption, "id": image_id}).encode(),
                )
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    import sys

    n = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    print(write_shards(sys.argv[1], n))
