"""A tiny tree in NOVA's current release layout (``data/nova-v1.parquet`` + ``images/*.png``),
written with pyarrow and PIL straight from the release's described schema, not by nova's own writer:
``filename, case_id, scan_id, caption_text, image_path, meta{clinical_history, final_diagnosis},
width, height, bboxes[{x, y, width, height, source}]``."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

BOX = pa.struct([("x", pa.float64()), ("y", pa.float64()), ("width", pa.float64()), ("height", pa.float64()),
                 ("source", pa.string())])
SCHEMA = pa.schema([("filename", pa.string()), ("case_id", pa.string()), ("scan_id", pa.int64()),
                    ("caption_text", pa.string()), ("image_path", pa.string()),
                    ("meta", pa.struct([("clinical_history", pa.string()), ("final_diagnosis", pa.string())])),
                    ("width", pa.int64()), ("height", pa.int64()), ("bboxes", pa.list_(BOX))])


def release_rows() -> list[dict]:
    """Three slices of two cases: boxes from gold and two raters, one slice without a box."""
    meta_a = {"clinical_history": "A 40-year-old with seizures.", "final_diagnosis": "Glioblastoma"}
    meta_b = {"clinical_history": "Headache for two weeks.", "final_diagnosis": "Meningioma"}
    return [
        {"filename": "case0007_002.png", "case_id": "case0007", "scan_id": 2, "caption_text": "Axial FLAIR: a lesion.",
         "image_path": "images/case0007_002.png", "meta": meta_a, "width": 48, "height": 40,
         "bboxes": [{"x": 10.0, "y": 5.0, "width": 8.0, "height": 6.0, "source": "gold"},
                    {"x": 11.0, "y": 6.0, "width": 7.0, "height": 5.0, "source": "rater_1"},
                    {"x": 9.0, "y": 4.0, "width": 9.0, "height": 7.0, "source": "rater_2"}]},
        {"filename": "case0007_005.png", "case_id": "case0007", "scan_id": 5, "caption_text": "No lesion here.",
         "image_path": "images/case0007_005.png", "meta": meta_a, "width": 48, "height": 40, "bboxes": []},
        {"filename": "case0012_001.png", "case_id": "case0012", "scan_id": 1, "caption_text": "Coronal T1: a mass.",
         "image_path": "images/case0012_001.png", "meta": meta_b, "width": 48, "height": 40,
         "bboxes": [{"x": 20.0, "y": 10.0, "width": 12.0, "height": 10.0, "source": "gold"},
                    {"x": 1.0, "y": 2.0, "width": 3.0, "height": 4.0, "source": "gold"}]},
    ]


def write_release(root, rows, schema=SCHEMA):
    """``root/data/nova-v1.parquet`` and the PNGs its ``image_path`` names (48 x 40 grey)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for row in rows:
        target = root / row["image_path"]
        if target.resolve().is_relative_to(root.resolve()):
            Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).save(target)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "data" / "nova-v1.parquet")
    return root
