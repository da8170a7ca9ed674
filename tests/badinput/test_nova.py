"""nova's rows of the bad-input catalogue (issue 19 item 16).

Two tiny trees, each written here from the layout's public description (not by nova's writers):
NOVA's current release (``data/nova-v1.parquet`` with ``image_path`` pointing at ``images/*.png``,
``meta`` and ``bboxes`` structs; :mod:`tests.nova.release`) and the CSV layout (``captions.csv``,
``case_metadata.csv``, ``bboxes_gold.csv``, ``images/``).
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stages.nova.ingest import ingest
from tests.badinput.harness import Corruption, StudyIngest, check, make_baseline
from tests.nova.release import SCHEMA, release_rows

SMALL = {"nova.ingest.healthy_slices": 2, "nova.ingest.image_size": 32}
TARGET = "case0007_005.png"   # row 1 of the parquet, a slice without a box
BOXED = "case0012_001.png"    # row 2, two gold boxes


def grey(seed: int, shape=(40, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def write_parquet_tree(root: Path, rows: list[dict] | None = None) -> None:
    rows = release_rows() if rows is None else rows
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    for seed, row in enumerate(rows):
        Image.fromarray(grey(seed)).save(root / row["image_path"])
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), root / "data" / "nova-v1.parquet")


def rewrite(change):
    """Apply ``change(rows)`` to the parquet's rows and write it back (same schema)."""
    def corrupt(root: Path) -> None:
        path = root / "data" / "nova-v1.parquet"
        rows = pq.read_table(path).to_pylist()
        change(rows)
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return corrupt


def set_field(index: int, **values):
    def change(rows):
        rows[index].update(values)
    return rewrite(change)


def set_box(index: int, box: int, **values):
    def change(rows):
        rows[index]["bboxes"][box].update(values)
    return rewrite(change)


def png(name: str = TARGET) -> str:
    return f"images/{name}"


def write_bytes(content: bytes, name: str = TARGET):
    def corrupt(root: Path) -> None:
        (root / png(name)).write_bytes(content)
    return corrupt


def truncate_png(root: Path) -> None:
    path = root / png()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def remove_png(root: Path) -> None:
    (root / png()).unlink()


def bomb_png(root: Path) -> None:
    """A PNG whose header declares 100,000 x 100,000 pixels (CRC fixed, so only the size is wrong)."""
    path = root / png()
    data = bytearray(path.read_bytes())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", 100_000, 100_000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def save_image(array: np.ndarray, name: str = TARGET):
    def corrupt(root: Path) -> None:
        Image.fromarray(array).save(root / png(name))
    return corrupt


def symlink_outside(root: Path) -> None:
    outside = root.parent / "elsewhere" / TARGET
    outside.parent.mkdir(exist_ok=True)
    os.replace(root / png(), outside)
    (root / png()).symlink_to(outside)


def symlink_inside(root: Path) -> None:
    inside = root / "store" / TARGET
    inside.parent.mkdir()
    os.replace(root / png(), inside)
    (root / png()).symlink_to(inside)


def outside_file(root: Path) -> str:
    outside = root.parent / "outside.png"
    Image.fromarray(grey(9)).save(outside)
    return str(outside)


def absolute_outside(root: Path) -> None:
    set_field(1, image_path=outside_file(root))(root)


def rename_target(new: str, **values):
    def corrupt(root: Path) -> None:
        os.replace(root / png(), root / png(new))
        set_field(1, filename=new, image_path=png(new), **values)(root)
    return corrupt


def duplicate_row(rows):
    rows.append(dict(rows[1]))


def conflicting_diagnosis(rows):
    rows[1]["meta"] = {**rows[1]["meta"], "final_diagnosis": "Primary CNS lymphoma"}


def garbage_parquet(content: bytes):
    def corrupt(root: Path) -> None:
        (root / "data" / "nova-v1.parquet").write_bytes(content)
    return corrupt


def drop_column(name: str):
    def corrupt(root: Path) -> None:
        path = root / "data" / "nova-v1.parquet"
        pq.write_table(pq.read_table(path).drop([name]), path)
    return corrupt


def empty_parquet(root: Path) -> None:
    pq.write_table(pa.Table.from_pylist([], schema=SCHEMA), root / "data" / "nova-v1.parquet")


def every_png_missing(root: Path) -> None:
    for path in (root / "images").iterdir():
        path.unlink()


def unrelated_parquet_beside(root: Path) -> None:
    pd.DataFrame({"notes": ["x"]}).to_parquet(root / "notes.parquet")


PARQUET = StudyIngest(step=ingest, source_key="nova.ingest.source", write_source=write_parquet_tree, overrides=SMALL,
                      id_columns=("image_id",))

PARQUET_ROWS = [
    Corruption("missing PNG", remove_png, "quarantined", TARGET),
    Corruption("zero-byte PNG", write_bytes(b""), "quarantined", TARGET),
    Corruption("truncated PNG", truncate_png, "quarantined", TARGET),
    Corruption("HTML page saved as PNG", write_bytes(b"<html>404 not found</html>"), "quarantined", TARGET),
    Corruption("PNG header declaring 100,000 x 100,000", bomb_png, "quarantined", TARGET),
    Corruption("one-pixel-high PNG", save_image(grey(3, (1, 48))), "quarantined", TARGET),
    Corruption("declared width differs from the PNG", set_field(1, width=480), "quarantined", "declares 480x40"),
    Corruption("gold box outside the image", set_box(2, 0, x=40.0, width=30.0), "quarantined", "outside the 48x40 image"),
    Corruption("gold box of zero width", set_box(2, 0, width=0.0), "quarantined", "non-positive size"),
    Corruption("gold box of negative height", set_box(2, 1, height=-3.0), "quarantined", "non-positive size"),
    Corruption("gold box with a null coordinate", set_box(2, 0, x=None), "quarantined", "non-finite"),
    Corruption("rater box outside the image", set_box(0, 1, y=39.0), "quarantined", "rater box"),
    Corruption("box without a source", set_box(2, 0, source=""), "quarantined", "without a source"),
    Corruption("image_path with ../", set_field(1, image_path="../outside.png"), "quarantined", "resolves to"),
    Corruption("absolute image_path outside the root", absolute_outside, "quarantined", "outside.png"),
    Corruption("PNG symlinked outside the root", symlink_outside, "quarantined", "elsewhere"),
    Corruption("the same slice twice", rewrite(duplicate_row), "quarantined", "a second row for image 'case0007_005'"),
    Corruption("one case, two diagnoses", rewrite(conflicting_diagnosis), "quarantined", "conflicting final_diagnosis"),
    Corruption("case without a history", set_field(2, meta={"clinical_history": "", "final_diagnosis": "Meningioma"}),
               "quarantined", "has no clinical_history"),
    Corruption("case without a diagnosis", set_field(2, meta={"clinical_history": "Headache.", "final_diagnosis": None}),
               "quarantined", "has no final_diagnosis"),
    Corruption("meta null", set_field(2, meta=None), "quarantined", "case0012"),
    Corruption("no scan_id, none in the file name", rename_target("slice.png", scan_id=None), "quarantined", "no scan_id"),
    Corruption("not a parquet", garbage_parquet(b"PAR1 this is not a parquet file"), "refused", "nova-v1.parquet"),
    Corruption("zero-byte parquet", garbage_parquet(b""), "refused", "nova-v1.parquet"),
    Corruption("parquet without bboxes", drop_column("bboxes"), "refused", "bboxes"),
    Corruption("parquet without meta", drop_column("meta"), "refused", "meta"),
    Corruption("parquet with no rows", empty_parquet, "refused", "no slice to ingest"),
    Corruption("every PNG missing", every_png_missing, "refused", "case0007_002.png"),
    Corruption("scan_id null, the file name has it", set_field(1, scan_id=None), "accepted"),
    Corruption("width and height null", set_field(1, width=None, height=None), "accepted"),
    Corruption("RGB PNG", save_image(np.stack([grey(1)] * 3, axis=2)), "accepted"),
    Corruption("16-bit PNG", save_image(grey(1).astype(np.uint16) * 257), "accepted"),
    Corruption("PNG symlinked inside the root", symlink_inside, "accepted"),
    Corruption("unicode file name", rename_target("cäse0007_005.png"), "accepted"),
    Corruption("an unrelated parquet beside the release", unrelated_parquet_beside, "accepted"),
]


# --------------------------------------------------------------------------- the CSV layout
CSV_TARGET = "case0002_001.png"


def write_csv_tree(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    captions, metadata, gold = [], [], []
    for number in (1, 2, 3):
        case = f"case{number:04d}"
        filename = f"{case}_001.png"
        Image.fromarray(grey(number)).save(root / "images" / filename)
        captions.append({"filename": filename, "case_id": case, "scan_id": 1, "caption": f"Axial FLAIR, case {number}."})
        metadata.append({"case_id": case, "clinical_history": f"History {number}.", "final_diagnosis": "Meningioma"})
        gold.append({"filename": filename, "x": 5.0 * number, "y": 4.0, "width": 10.0, "height": 8.0})
    pd.DataFrame(captions).to_csv(root / "captions.csv", index=False)
    pd.DataFrame(metadata).to_csv(root / "case_metadata.csv", index=False)
    pd.DataFrame(gold).to_csv(root / "bboxes_gold.csv", index=False)


def edit_csv(name: str, change):
    def corrupt(root: Path) -> None:
        table = pd.read_csv(root / name, dtype=str, keep_default_na=False)
        table = change(table)
        table.to_csv(root / name, index=False)
    return corrupt


def csv_escape(root: Path) -> None:
    Image.fromarray(grey(8)).save(root.parent / "outside.png")
    for name in ("captions.csv", "bboxes_gold.csv"):
        edit_csv(name, lambda t: t.replace({CSV_TARGET: "../../outside.png"}))(root)


def csv_symlink(root: Path) -> None:
    outside = root.parent / "elsewhere" / CSV_TARGET
    outside.parent.mkdir(exist_ok=True)
    os.replace(root / "images" / CSV_TARGET, outside)
    (root / "images" / CSV_TARGET).symlink_to(outside)


def with_bom(root: Path) -> None:
    path = root / "captions.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


CSV = StudyIngest(step=ingest, source_key="nova.ingest.source", write_source=write_csv_tree, overrides=SMALL,
                  id_columns=("image_id",))

CSV_ROWS = [
    Corruption("CSV filename with ../", csv_escape, "quarantined", "resolves to"),
    Corruption("CSV slice symlinked outside", csv_symlink, "quarantined", "elsewhere"),
    Corruption("CSV case listed twice with two diagnoses",
               edit_csv("case_metadata.csv", lambda t: pd.concat([t, t.iloc[[1]].assign(final_diagnosis="Lymphoma")])),
               "quarantined", "case 'case0002' has conflicting final_diagnosis"),
    Corruption("CSV box for a slice captions.csv does not list",
               edit_csv("bboxes_gold.csv", lambda t: pd.concat([t, t.iloc[[0]].assign(filename="case0099_001.png")])),
               "quarantined", "case0099_001.png"),
    Corruption("CSV box coordinate not a number", edit_csv("bboxes_gold.csv", lambda t: t.assign(x=["5", "abc", "15"])),
               "quarantined", "non-finite"),
    Corruption("CSV caption column missing", edit_csv("captions.csv", lambda t: t.drop(columns=["caption"])),
               "refused", "captions.csv: missing column(s) caption"),
    Corruption("CSV identical duplicate case row",
               edit_csv("case_metadata.csv", lambda t: pd.concat([t, t.iloc[[1]]])), "accepted"),
    Corruption("CSV with a UTF-8 byte-order mark", with_bom, "accepted"),
]


@pytest.fixture(scope="module")
def parquet_baseline(tmp_path_factory):
    return make_baseline(PARQUET, tmp_path_factory.mktemp("nova_parquet_clean"))


@pytest.fixture(scope="module")
def csv_baseline(tmp_path_factory):
    return make_baseline(CSV, tmp_path_factory.mktemp("nova_csv_clean"))


def test_the_catalogue_has_enough_rows():
    assert len(PARQUET_ROWS) + len(CSV_ROWS) >= 30


@pytest.mark.parametrize("row", PARQUET_ROWS, ids=lambda row: row.name)
def test_current_release_catalogue(row, parquet_baseline, tmp_path):
    check(PARQUET, row, parquet_baseline, tmp_path)


@pytest.mark.parametrize("row", CSV_ROWS, ids=lambda row: row.name)
def test_csv_layout_catalogue(row, csv_baseline, tmp_path):
    check(CSV, row, csv_baseline, tmp_path)
