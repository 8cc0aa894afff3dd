"""Run `run_distillation.main` in one process of a launched run, recording the training rows its batches read.

`tests/test_distributed.py` starts this with `accelerate launch`: each process wraps `EmbeddingRows.__getitems__`
(what the Trainer's data loader calls for each batch), trains, and writes the row numbers of its batches, in order, to
`<record_dir>/rows-<rank>.json`. Usage: `record_training_rows.py RECORD_DIR [run_distillation flags]`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import run_distillation
from modeling_cascade.trainer import EmbeddingRows


def main() -> None:
    record_dir, argv = Path(sys.argv[1]), sys.argv[2:]
    batches: list[dict[str, object]] = []
    read_batch = EmbeddingRows.__getitems__

    def recording(self: EmbeddingRows, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        batches.append({"rows_in_dataset": len(self), "indices": [int(index) for index in indices]})
        return read_batch(self, indices)

    EmbeddingRows.__getitems__ = recording
    run_distillation.main(argv)
    (record_dir / f"rows-{os.environ['RANK']}.json").write_text(json.dumps(batches))


if __name__ == "__main__":
    main()
