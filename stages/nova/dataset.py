"""NOVA as distributed, its layouts, and the ingest manifest the later stages read.

CSV layout (a folder):

- ``captions.csv``: filename, case_id, scan_id, caption (one row per slice)
- ``case_metadata.csv``: case_id, clinical_history, final_diagnosis (one row per case)
- ``bboxes_gold.csv``: filename, x, y, width, height (one row per gold box; slices without a
  box have no row)
- the slices as PNG, named like ``case0183_001.png``, in ``images/`` (or beside the CSVs)

Parquet, current release (``data/nova-v1.parquet``, images as separate PNG files): one row per
slice with ``filename``, ``case_id``, ``scan_id``, ``caption_text``, ``image_path`` (the PNG,
relative to the data set's folder), ``meta`` (a struct with ``clinical_history`` and
``final_diagnosis``), ``width``, ``height`` and ``bboxes`` (a list of ``{x, y, width, height,
source}``; ``source`` tells the gold boxes from each rater's). Schema as the issue describing the
release and its public loaders give it (the dataset card was not reachable here).

Parquet, older release (Hugging Face ``datasets`` style, images embedded): ``image``
(``{"bytes", "path"}``), ``bbox_gold`` (``{"x": [...], "y": [...], "width": [...], "height":
[...]}``, parallel lists), ``bbox_raters`` (the same plus ``"rater"``, or null), and
``filename``, ``case_id``, ``scan_id``, ``caption``, ``clinical_history``, ``final_diagnosis``.

Boxes are COCO ``[x, y, w, h]`` in pixels everywhere.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.common.atomic import atomic_path
from stages.common.badinput import BadInputError
from stages.common.io import FormatError, check_declared_size, read_png, read_table, write_png, write_table
from stages.common.paths import UnsafePathError, from_portable, resolve_inside
from stages.common.stage import StageContext, UndeclaredPathError

CAPTION_COLUMNS = ("filename", "case_id", "scan_id", "caption")
METADATA_COLUMNS = ("case_id", "clinical_history", "final_diagnosis")
GOLD_COLUMNS = ("filename", "x", "y", "width", "height")
PARQUET_COLUMNS = ("image", "bbox_gold")  # the older release, images embedded
PARQUET_V1_COLUMNS = ("filename", "case_id", "scan_id", "caption_text", "image_path", "meta", "width", "height", "bboxes")
GOLD_SOURCES = ("gold",)  # ``bboxes[].source`` values that mark a gold box (case-insensitive); every other source is a rater
BENCHMARK_FOLDER = "benchmark"  # under data/nova/raw: the synthetic benchmark (or only SOURCE.json for a real one)
HEALTHY_FOLDER = "healthy"      # under data/nova/raw: the synthetic healthy slices (or only SOURCE.json)
MANIFEST_COLUMNS = ("image_id", "filename", "path", "case_id", "scan_id", "width", "height", "caption",
                    "clinical_history", "final_diagnosis", "n_gold", "frequency")
BOX_COLUMNS = ("image_id", "source", "x", "y", "width", "height")


@dataclass
class SliceRecord:
    """One slice as read from either layout, before validation."""

    filename: str
    case_id: str
    scan_id: Any
    caption: str
    gold: list[tuple[str, list[float]]]            # (where it was read, [x, y, w, h])
    raters: list[tuple[str, int, list[float]]]     # (where, rater number, [x, y, w, h])
    image_file: Path | None = None
    image_bytes: bytes | None = None
    where: str = ""
    problem: str | None = None   # a defect found while reading (reported when the slice is validated)
    declared_size: tuple[int | None, int | None] = (None, None)  # (width, height) the current parquet declares


@dataclass
class RawBenchmark:
    layout: str
    root: Path
    slices: list[SliceRecord]
    cases: dict[str, dict[str, Any]]   # case_id -> {"clinical_history", "final_diagnosis", "where"}
    orphan_boxes: list[tuple[str, str]] = field(default_factory=list)  # (where, filename) of boxes of unknown slices


# --------------------------------------------------------------------------- writing (synthetic)
def write_nova_csv_layout(root: Path, cases) -> None:
    """Write synthetic cases as NOVA's CSVs and PNG slices under ``root``."""
    captions, metadata, gold = [], [], []
    for case in cases:
        metadata.append({"case_id": case.case_id, "clinical_history": case.clinical_history,
                         "final_diagnosis": case.final_diagnosis})
        for item in case.slices:
            write_png(root / "images" / item.filename, item.image)
            captions.append({"filename": item.filename, "case_id": case.case_id, "scan_id": item.scan_id,
                             "caption": item.caption})
            for x, y, w, h in item.gold:
                gold.append({"filename": item.filename, "x": float(x), "y": float(y), "width": float(w), "height": float(h)})
    write_table(root / "captions.csv", pd.DataFrame(captions, columns=list(CAPTION_COLUMNS)))
    write_table(root / "case_metadata.csv", pd.DataFrame(metadata, columns=list(METADATA_COLUMNS)))
    write_table(root / "bboxes_gold.csv", pd.DataFrame(gold, columns=list(GOLD_COLUMNS)))


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _box_struct(boxes: np.ndarray, raters: list[int] | None = None) -> dict[str, list]:
    struct = {"x": [float(b[0]) for b in boxes], "y": [float(b[1]) for b in boxes],
              "width": [float(b[2]) for b in boxes], "height": [float(b[3]) for b in boxes]}
    if raters is not None:
        struct = {"rater": [int(r) for r in raters], **struct}
    return struct


def write_nova_parquet_v1(path: Path, cases, image_folder: str = "images") -> None:
    """Write synthetic cases as the current release's parquet (``image_path`` points at ``image_folder``'s PNGs).

    The PNGs themselves are the CSV layout's (:func:`write_nova_csv_layout` writes them);
    ``image_path`` is relative to the data set's folder, the one above ``data/``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for case in cases:
        for item in case.slices:
            height, width = item.image.shape[:2]
            boxes = [{"x": float(b[0]), "y": float(b[1]), "width": float(b[2]), "height": float(b[3]), "source": "gold"}
                     for b in item.gold]
            boxes += [{"x": float(b[0]), "y": float(b[1]), "width": float(b[2]), "height": float(b[3]), "source": f"rater{r}"}
                      for r, rater_boxes in item.raters for b in rater_boxes]
            rows.append({"filename": item.filename, "case_id": case.case_id, "scan_id": int(item.scan_id),
                         "caption_text": item.caption, "image_path": f"{image_folder}/{item.filename}",
                         "meta": {"clinical_history": case.clinical_history, "final_diagnosis": case.final_diagnosis},
                         "width": int(width), "height": int(height), "bboxes": boxes})
    box = pa.struct([("x", pa.float64()), ("y", pa.float64()), ("width", pa.float64()), ("height", pa.float64()),
                     ("source", pa.string())])
    schema = pa.schema([
        ("filename", pa.string()), ("case_id", pa.string()), ("scan_id", pa.int64()), ("caption_text", pa.string()),
        ("image_path", pa.string()),
        ("meta", pa.struct([("clinical_history", pa.string()), ("final_diagnosis", pa.string())])),
        ("width", pa.int64()), ("height", pa.int64()), ("bboxes", pa.list_(box)),
    ])
    with atomic_path(path) as temporary:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), temporary)


def write_nova_parquet_embedded(path: Path, cases) -> None:
    """Write synthetic cases as the older parquet: ``image`` bytes, ``bbox_gold``, ``bbox_raters`` (parallel lists)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for case in cases:
        for item in case.slices:
            rater_numbers = [r for r, boxes in item.raters for _ in boxes]
            rater_boxes = np.concatenate([boxes for _, boxes in item.raters]) if item.raters else np.zeros((0, 4))
            rows.append({
                "image": {"bytes": _png_bytes(item.image), "path": item.filename},
                "filename": item.filename, "case_id": case.case_id, "scan_id": int(item.scan_id),
                "caption": item.caption, "clinical_history": case.clinical_history,
                "final_diagnosis": case.final_diagnosis,
                "bbox_gold": _box_struct(item.gold),
                "bbox_raters": _box_struct(rater_boxes, rater_numbers) if len(rater_boxes) else None,
            })
    boxes = pa.struct([(k, pa.list_(pa.float64())) for k in ("x", "y", "width", "height")])
    schema = pa.schema([
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("filename", pa.string()), ("case_id", pa.string()), ("scan_id", pa.int64()), ("caption", pa.string()),
        ("clinical_history", pa.string()), ("final_diagnosis", pa.string()),
        ("bbox_gold", boxes),
        ("bbox_raters", pa.struct([("rater", pa.list_(pa.int64()))] + [(k, pa.list_(pa.float64())) for k in ("x", "y", "width", "height")])),
    ])
    with atomic_path(path) as temporary:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), temporary)


# --------------------------------------------------------------------------- reading
def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def scan_id_of(value: Any, filename: str) -> int | str:
    """The slice's scan id: its column's value, else the number after the last ``_`` of the file name.

    Never the row index: ``case0183_004.png`` is scan 4 wherever its row lies. Raises a
    BadInputError when neither gives one.
    """
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return int(value)  # a nullable integer column comes back from pandas as float
    text = _text(value)
    if text:
        return int(text) if text.lstrip("-").isdigit() else text
    stem = Path(filename).stem
    tail = stem.rsplit("_", 1)[-1] if "_" in stem else ""
    if tail.isdigit():
        return int(tail)
    raise BadInputError(f"slice {filename}: no scan_id, and none in its file name (expected like case0183_001.png)")


def parquet_schema(path: Path) -> tuple[str | None, str]:
    """(``"v1"``, ``"embedded"`` or None, a sentence naming the missing columns) from the parquet's schema alone."""
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
    except Exception as error:  # noqa: BLE001 - any reader failure is the file's problem
        raise FormatError(path, f"not a readable parquet ({error})") from error
    if all(column in names for column in PARQUET_V1_COLUMNS):
        return "v1", ""
    if all(column in names for column in PARQUET_COLUMNS):
        return "embedded", ""
    missing_v1 = [c for c in PARQUET_V1_COLUMNS if c not in names]
    missing_old = [c for c in PARQUET_COLUMNS if c not in names]
    return None, (f"{path.name}: columns match neither NOVA parquet schema (current release lacks "
                  f"{', '.join(missing_v1)}; embedded-image release lacks {', '.join(missing_old)}; "
                  f"present: {', '.join(sorted(names))})")


def find_layout(root: Path, layout: str = "auto") -> tuple[str, Path]:
    """(layout, file or folder to read).

    ``auto`` takes the first parquet whose columns match one of NOVA's parquet schemas, else the
    CSV layout when ``captions.csv`` is there; a parquet that matches neither schema is named in
    the error when nothing else is readable.
    """
    if root.is_file() and root.suffix == ".parquet":
        if layout == "csv":
            raise FormatError(root, "a .parquet file given as source with layout: csv")
        kind, why = parquet_schema(root)
        if kind is None:
            raise FormatError(root, why)
        return "parquet", root
    if not root.is_dir():
        raise FormatError(root, "not a folder or a .parquet file")
    parquets = sorted(root.glob("*.parquet")) + sorted((root / "data").glob("*.parquet"))
    reasons = []
    if layout in ("parquet", "auto"):
        for candidate in parquets:
            kind, why = parquet_schema(candidate)
            if kind is not None:
                return "parquet", candidate
            reasons.append(why)
        if layout == "parquet":
            raise FormatError(root, "; ".join(reasons) if reasons else "no .parquet file found (layout: parquet)")
    if not (root / "captions.csv").is_file():
        found = f" ({'; '.join(reasons)})" if reasons else ""
        raise FormatError(root / "captions.csv", f"file not found (neither the CSV layout nor a readable NOVA parquet is here){found}")
    return "csv", root


def _case_entry(cases: dict[str, dict[str, Any]], case_id: str, history: str, diagnosis: str, where: str) -> None:
    """Record a case's metadata; a second row for the same case with a different diagnosis or history is a conflict.

    The conflict is kept on the case (``problem``) so every slice of it is refused, or
    quarantined under ``on_bad_input: skip``, naming both rows (issue 19 item 6).
    """
    known = cases.get(case_id)
    if known is None:
        cases[case_id] = {"clinical_history": history, "final_diagnosis": diagnosis, "where": where, "problem": None}
        return
    if known["problem"]:
        return
    for field_name, value in (("final_diagnosis", diagnosis), ("clinical_history", history)):
        if value and known[field_name] and value != known[field_name]:
            known["problem"] = (f"{where}: case {case_id!r} has conflicting {field_name} rows: {value!r} here, "
                                f"{known[field_name]!r} at {known['where']}")
            return
        if value and not known[field_name]:
            known[field_name] = value


def _image_file(base: Path, relative: str, what: str, record: SliceRecord) -> Path | None:
    """``relative`` resolved inside ``base``; an escaping path becomes the record's problem (checked inside the guard)."""
    try:
        return resolve_inside(base, relative, what)
    except UnsafePathError as error:
        record.problem = f"{record.where}: slice {record.filename}: {error}"
        return None


def read_csv_layout(root: Path) -> RawBenchmark:
    """Read NOVA's CSV layout; missing columns are a FormatError naming the file and columns."""
    captions = read_table(root / "captions.csv", CAPTION_COLUMNS, dtype={"filename": str, "case_id": str}, keep_default_na=False)
    metadata = read_table(root / "case_metadata.csv", METADATA_COLUMNS, dtype={"case_id": str}, keep_default_na=False)
    gold = read_table(root / "bboxes_gold.csv", GOLD_COLUMNS, dtype={"filename": str})
    image_dir = root / "images" if (root / "images").is_dir() else root
    cases: dict[str, dict[str, Any]] = {}
    for line, row in enumerate(metadata.itertuples(index=False), start=2):
        _case_entry(cases, _text(row.case_id), _text(row.clinical_history), _text(row.final_diagnosis),
                    f"case_metadata.csv line {line}")
    boxes_by_file: dict[str, list[tuple[str, list[float]]]] = {}
    for line, row in enumerate(gold.itertuples(index=False), start=2):
        values = [pd.to_numeric(v, errors="coerce") for v in (row.x, row.y, row.width, row.height)]
        boxes_by_file.setdefault(_text(row.filename), []).append((f"bboxes_gold.csv line {line}", [float(v) for v in values]))
    slices = []
    for line, row in enumerate(captions.itertuples(index=False), start=2):
        filename = _text(row.filename)
        record = SliceRecord(filename, _text(row.case_id), None, _text(row.caption), boxes_by_file.pop(filename, []), [],
                             where=f"captions.csv line {line}")
        record.image_file = _image_file(image_dir, filename, "image filename", record)
        try:
            record.scan_id = scan_id_of(row.scan_id, filename)
        except BadInputError as error:
            record.problem = record.problem or f"{record.where}: {error}"
        slices.append(record)
    orphans = [(where, filename) for filename, boxes in boxes_by_file.items() for where, _ in boxes]
    return RawBenchmark("csv", root, slices, cases, orphans)


def _struct_boxes(struct: Any, where: str, with_rater: bool = False) -> list:
    if struct is None or (isinstance(struct, float) and np.isnan(struct)):
        return []
    if not isinstance(struct, dict):
        raise BadInputError(f"{where}: expected a struct of parallel lists, got {type(struct).__name__}")
    keys = ("x", "y", "width", "height")
    missing = [k for k in keys if k not in struct]
    if missing:
        raise BadInputError(f"{where}: missing list(s) {', '.join(missing)}")
    lists = [list(struct[k]) if struct[k] is not None else [] for k in keys]
    raters = list(struct["rater"]) if with_rater and struct.get("rater") is not None else []
    lengths = {len(values) for values in lists} | ({len(raters)} if with_rater else set())
    if len(lengths) > 1:
        raise BadInputError(f"{where}: parallel lists have different lengths {sorted(lengths)}")
    out = []
    for index in range(len(lists[0])):
        box = [float(lists[k][index]) if lists[k][index] is not None else float("nan") for k in range(4)]
        out.append((f"{where}[{index}]", int(raters[index]), box) if with_rater else (f"{where}[{index}]", box))
    return out


def rater_number(source: str, sources: list[str]) -> int:
    """A rater's number: the digits in its ``source`` name (``rater2`` -> 2), else its place among the sorted rater names."""
    digits = "".join(ch for ch in source if ch.isdigit())
    return int(digits) if digits else sources.index(source) + 1


def _box_list(entries: Any, where: str, sources: list[str]) -> tuple[list, list]:
    """(gold, raters) from the current release's ``bboxes`` list of ``{x, y, width, height, source}``."""
    if entries is None or (isinstance(entries, float) and np.isnan(entries)):
        return [], []
    if isinstance(entries, dict) or isinstance(entries, (str, bytes)) or not hasattr(entries, "__len__"):
        raise BadInputError(f"{where}: expected a list of {{x, y, width, height, source}}, got {type(entries).__name__}")
    gold, raters = [], []
    for index, entry in enumerate(entries):
        here = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise BadInputError(f"{here}: expected a struct {{x, y, width, height, source}}, got {type(entry).__name__}")
        missing = [k for k in ("x", "y", "width", "height", "source") if k not in entry]
        if missing:
            raise BadInputError(f"{here}: missing field(s) {', '.join(missing)}")
        box = [float(entry[k]) if entry[k] is not None else float("nan") for k in ("x", "y", "width", "height")]
        source = _text(entry["source"])
        if not source:
            raise BadInputError(f"{here}: box without a source (gold or a rater)")
        if source.lower() in GOLD_SOURCES:
            gold.append((here, box))
        else:
            raters.append((here, rater_number(source, sources), box))
    return gold, raters


def _dataset_folder(path: Path) -> Path:
    """The folder ``image_path`` is relative to: the parquet's, or the one above ``data/`` (``data/nova-v1.parquet``)."""
    return path.parent.parent if path.parent.name == "data" else path.parent


def read_parquet_v1(path: Path, root: Path | None = None) -> RawBenchmark:
    """Read the current release's parquet: one row per slice, the PNGs beside it (``image_path``)."""
    table = read_table(path, PARQUET_V1_COLUMNS)
    base = root if root is not None and root.is_dir() else _dataset_folder(path)
    records = table.to_dict("records")
    sources = sorted({_text(entry.get("source")) for row in records for entry in (row.get("bboxes") if row.get("bboxes") is not None else [])
                      if isinstance(entry, dict) and _text(entry.get("source")) and _text(entry.get("source")).lower() not in GOLD_SOURCES})
    slices, cases = [], {}
    for index, row in enumerate(records):
        where = f"{path.name} row {index}"
        filename = _text(row.get("filename")) or Path(_text(row.get("image_path"))).name
        case_id = _text(row.get("case_id")) or filename.split("_")[0]
        record = SliceRecord(filename, case_id, None, _text(row.get("caption_text")), [], [], where=where)
        image_path = _text(row.get("image_path")) or filename
        record.image_file = _image_file(base, image_path, "image_path", record)
        try:
            record.scan_id = scan_id_of(row.get("scan_id"), filename)
            record.gold, record.raters = _box_list(row.get("bboxes"), f"{where} bboxes", sources)
            record.declared_size = (_size(row.get("width"), f"{where} width"), _size(row.get("height"), f"{where} height"))
        except BadInputError as error:
            record.problem = record.problem or (str(error) if str(error).startswith(where) else f"{where}: {error}")
        slices.append(record)
        meta = row.get("meta")
        if meta is not None and not isinstance(meta, dict):
            record.problem = record.problem or f"{where} meta: expected a struct {{clinical_history, final_diagnosis}}"
            meta = None
        meta = meta or {}
        _case_entry(cases, case_id, _text(meta.get("clinical_history")), _text(meta.get("final_diagnosis")), where)
    return RawBenchmark("parquet", base, slices, cases)


def _size(value: Any, where: str) -> int | None:
    """A declared width/height (None when empty); anything else than a positive whole number is named."""
    text = _text(value)
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise BadInputError(f"{where}: not a number ({text!r})") from None
    if not number.is_integer() or number <= 0:
        raise BadInputError(f"{where}: expected a positive whole number of pixels, got {text}")
    return int(number)


def read_parquet_embedded(path: Path) -> RawBenchmark:
    """Read the older parquet: image bytes, ``bbox_gold`` and ``bbox_raters`` as parallel lists."""
    table = read_table(path, PARQUET_COLUMNS)
    slices, cases = [], {}
    for index, row in enumerate(table.to_dict("records")):
        where = f"{path.name} row {index}"
        image = row.get("image")
        image_bytes = image.get("bytes") if isinstance(image, dict) else image if isinstance(image, (bytes, bytearray)) else None
        image_path = image.get("path") if isinstance(image, dict) else None
        filename = _text(row.get("filename")) or Path(_text(image_path)).name
        case_id = _text(row.get("case_id")) or filename.split("_")[0]
        record = SliceRecord(filename, case_id, None, _text(row.get("caption")), [], [],
                             image_bytes=bytes(image_bytes) if image_bytes is not None else None, where=where)
        try:
            if not filename:
                raise BadInputError(f"{where}: no filename and no image path")
            resolve_inside(path.parent, filename, "filename")  # the PNG ingest writes must stay in its folder
            record.scan_id = scan_id_of(row.get("scan_id"), filename)
            record.gold = _struct_boxes(row.get("bbox_gold"), f"{where} bbox_gold")
            record.raters = _struct_boxes(row.get("bbox_raters"), f"{where} bbox_raters", with_rater=True)
        except (BadInputError, UnsafePathError) as error:
            record.problem = str(error) if str(error).startswith(where) else f"{where}: {error}"
        slices.append(record)
        _case_entry(cases, case_id, _text(row.get("clinical_history")), _text(row.get("final_diagnosis")), where)
    return RawBenchmark("parquet", path.parent, slices, cases)


def read_parquet_layout(path: Path, root: Path | None = None) -> RawBenchmark:
    """Read a NOVA parquet of either release, chosen by its columns."""
    kind, why = parquet_schema(path)
    if kind is None:
        raise FormatError(path, why)
    return read_parquet_v1(path, root) if kind == "v1" else read_parquet_embedded(path)


def read_benchmark(root: Path, layout: str = "auto") -> RawBenchmark:
    """Read any layout from ``root`` (a folder, or the parquet file itself)."""
    found, target = find_layout(root, layout)
    if found == "parquet":
        return read_parquet_layout(target, root if root.is_dir() else None)
    return read_csv_layout(target)


def decode_slice(record: SliceRecord) -> np.ndarray:
    """The slice's pixels as a 2-D array (RGB is averaged to grey); a FormatError names the file."""
    if record.image_file is not None:
        pixels = read_png(record.image_file)
        source: Any = record.image_file
    elif record.image_bytes is not None:
        from PIL import Image, UnidentifiedImageError

        source = f"{record.where} image ({record.filename})"
        try:
            with Image.open(io.BytesIO(record.image_bytes)) as image:
                bytes_per_band = 2 if image.mode.startswith("I;16") else 4 if image.mode in ("I", "F") else 1
                check_declared_size(source, (image.height, image.width, len(image.getbands())), bytes_per_band, "image")
                image.load()
                pixels = np.asarray(image)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
            raise FormatError(source, f"not a readable PNG ({error})") from error
    else:
        raise FormatError(record.where or record.filename, "no image data")
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=2).round().astype(np.uint8)
    if pixels.ndim != 2 or min(pixels.shape) < 2:
        raise FormatError(source, f"expected a 2-D grey slice, got shape {pixels.shape}")
    return pixels


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Integer pixels scaled to float32 in [0, 1] by their dtype's range."""
    if np.issubdtype(pixels.dtype, np.integer):
        return pixels.astype(np.float32) / float(np.iinfo(pixels.dtype).max)
    return np.clip(pixels.astype(np.float32), 0, 1)


# --------------------------------------------------------------------------- the ingest manifest
@dataclass
class Manifest:
    """What ingest wrote: one row per slice, the boxes, and the folder the paths are relative to."""

    images: pd.DataFrame
    boxes: pd.DataFrame
    root: Path

    def image_path(self, relative: str) -> Path:
        return resolve_inside(self.root, relative, "manifest path")

    def boxes_of(self, source: str = "gold") -> dict[str, np.ndarray]:
        """image id -> (k, 4) boxes of one source (gold, rater1, rater2), every image present."""
        chosen = self.boxes[self.boxes["source"] == source]
        grouped = {key: group[["x", "y", "width", "height"]].to_numpy(float) for key, group in chosen.groupby("image_id")}
        return {image_id: grouped.get(image_id, np.zeros((0, 4))) for image_id in self.images["image_id"]}


def ingest_info(folder: Path) -> dict[str, Any]:
    """``dataset.json`` of the ingest output ``folder``: where the slices and healthy slices are, source, layout."""
    path = folder / "dataset.json"
    if not path.is_file():
        raise FormatError(path, "file not found (run nova-ingest first)")
    return json.loads(path.read_text())


def load_manifest(folder: Path, repo: Path) -> Manifest:
    """The manifest, boxes and dataset root nova-ingest wrote into ``folder`` (its ``interim/ingest``)."""
    images = read_table(folder / "manifest.csv", MANIFEST_COLUMNS, dtype={"image_id": str, "case_id": str, "filename": str},
                        keep_default_na=False)
    boxes = read_table(folder / "boxes.csv", BOX_COLUMNS, dtype={"image_id": str})
    return Manifest(images, boxes, from_portable(ingest_info(folder)["root"], repo))


def declared_source(ctx: StageContext[Any], folder: Path, what: str) -> Path:
    """``folder`` (recorded by ingest), provided one of the stage's dvc.yaml deps holds it.

    The slices live in the ingest output (parquet), in ``raw/benchmark`` (synthetic CSV layout) or
    in the real source folder (CSV layout), the healthy slices in ``raw/healthy`` or the real
    healthy folder: a stage reading them must list that folder (``${nova.ingest.source}`` /
    ``${nova.ingest.healthy_source}`` for a real one), or DVC would not rerun it when they change.
    """
    resolved = Path(folder).resolve()
    for dep in ctx.spec.deps:
        holder = (ctx.root / dep).resolve()
        if resolved == holder or holder in resolved.parents:
            return Path(folder)
    raise UndeclaredPathError(f"dvc.yaml: stage {ctx.spec.name} reads {what} in {folder} but none of its deps holds it "
                              f"(deps: {', '.join(ctx.spec.deps)})")


def read_manifest_slice(manifest: Manifest, relative: str) -> np.ndarray:
    """A benchmark slice as float32 in [0, 1]."""
    pixels = read_png(manifest.image_path(relative))
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=2).round().astype(np.uint8)
    return to_unit(pixels)


def load_predictions(path) -> tuple[dict, dict, dict, dict]:
    """(image -> (boxes, scores), image -> caption, case -> diagnoses, image -> problems) of one model."""
    payload = json.loads(path.read_text())
    boxes, captions, diagnoses, problems = {}, {}, {}, {}
    for case in payload["cases"]:
        diagnoses[case["case_id"]] = case["diagnoses"]
        for item in case["slices"]:
            scores = item["scores"]
            boxes[item["image_id"]] = (np.asarray(item["boxes"], dtype=float).reshape(-1, 4),
                                       None if scores is None else np.asarray(scores, dtype=float))
            captions[item["image_id"]] = item["caption"]
            problems[item["image_id"]] = len(item["problems"])
    return boxes, captions, diagnoses, problems
