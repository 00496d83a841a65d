"""Load annotation files, then open every kept row's media as the pipeline does, for a syscall trace.

    python tests/bad_input_trace.py DATA_ROOT ANNOTATION_FILE ...

Loads the files with the Video-R1 loader (media paths resolve against DATA_ROOT), then for every row
it keeps opens the media the way the stages do: ``load_image`` for an image, ``probe_video`` and
``sample_frames`` for a video (a ``MediaError`` is that row's quarantine). Prints one JSON object:
how many rows were kept, quarantined by the loader, and stopped by their media.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from marc_ops.data.videor1 import load_many
from marc_ops.video import MediaError, load_image, probe_video, sample_frames


def main(argv: list[str]) -> int:
    data_root, files = Path(argv[0]), [Path(name) for name in argv[1:]]
    loaded = load_many(files, data_root)
    media_errors = 0
    for row in loaded.rows.iter_rows(named=True):
        try:
            if row["data_type"] == "image":
                load_image(row["media_path"])
            else:
                probe_video(row["media_path"])
                sample_frames(row["media_path"])
        except MediaError:
            media_errors += 1
    summary = {
        "kept": loaded.rows.height,
        "quarantined": loaded.quarantine.height,
        "media_errors": media_errors,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
