"""The readers against fixtures written from the public descriptions, not from our generator.

- VinDr-CXR's box table: columns of Kaggle's ``train.csv`` / PhysioNet 1.0.0
  ``annotations_train.csv`` (image_id, class_name, class_id, rad_id, x_min, y_min, x_max, y_max),
  ``No finding`` rows with empty boxes; rows copied from the Kaggle competition's first rows.
- AG-KD's annotation CSV (image_id, class_name, bboxes, split) and knowledge YAML as the
  official config and training script name them.
"""
import numpy as np
import pytest
import yaml

from stages.common.badinput import BadInputError
from stages.common.io import FormatError, write_png
from stages.grounding.formats import BoxRow, check_box, parse_bboxes, read_annotations, read_image, read_knowledge

VINDR_ROWS = """image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max,split
50a418190bc3fb1ef1633bf9678929b3,No finding,14,R11,,,,,train
21a10246a5ec7af151081d0cd6d65dc9,No finding,14,R7,,,,,train
9a5094b2563a1ef3ff50dc5c7ff71345,Cardiomegaly,3,R10,691.0,1375.0,1653.0,1831.0,train
051132a778e61a86eb147c7c6f564dfe,Aortic enlargement,0,R10,1264.0,743.0,1611.0,1019.0,test
063319de25ce7edb9b1c6b8881290140,Pleural thickening,11,R9,1160.0,424.0,1331.0,529.0,train
"""


def test_vindr_box_table_reads_one_box_per_row_and_skips_no_finding(tmp_path):
    path = tmp_path / "annotations_train.csv"
    path.write_text(VINDR_ROWS)
    boxes = read_annotations(path)
    assert [(b.image_id[:6], b.class_name, b.split) for b in boxes] == [
        ("9a5094", "cardiomegaly", "train"), ("051132", "aortic enlargement", "test"), ("063319", "pleural thickening", "train")]
    assert (boxes[0].x_min, boxes[0].y_min, boxes[0].x_max, boxes[0].y_max, boxes[0].row) == (691.0, 1375.0, 1653.0, 1831.0, 4)


def test_ag_kd_layout_with_several_boxes_per_row(tmp_path):
    path = tmp_path / "vindr_dataset.csv"
    path.write_text('image_id,class_name,bboxes,split\n'
                    'abc,Nodule or Mass,"[[10, 20, 30, 40], [50.5, 60, 70, 80]]",train\n'
                    'abd,Lung Opacity,"[100.0, 110.0, 200.0, 210.0]",test\n'
                    "abe,ILD,\"[(1, 2, 3, 4)]\",validate\n")
    boxes = read_annotations(path)
    assert [(b.image_id, b.class_name, b.x_min, b.y_max) for b in boxes] == [
        ("abc", "nodule or mass", 10, 40), ("abc", "nodule or mass", 50.5, 80), ("abd", "lung opacity", 100, 210), ("abe", "ild", 1, 4)]


def test_missing_column_and_bad_cells_name_the_file_and_row(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("image_id,class_name,bboxes\nabc,ILD,\"[[1,2,3,4]]\"\n")
    with pytest.raises(FormatError, match="a.csv.*missing column.*split"):
        read_annotations(path)
    path.write_text("image_id,class_name,bboxes,split\nabc,ILD,\"[[1,2,3,4]]\",train\nabd,ILD,\"[[1,2,3]]\",train\n")
    with pytest.raises(BadInputError, match="a.csv row 3"):
        read_annotations(path)
    path.write_text("image_id,class_name,bboxes,split\nabc,ILD,\"[[1,2,3,4]]\",holdout\n")
    with pytest.raises(BadInputError, match="row 2: split 'holdout'"):
        read_annotations(path)
    assert parse_bboxes("[]", "x") == []


@pytest.mark.parametrize(("corners", "problem"), [
    ((10, 10, 10, 20), "non-positive size"), ((10, 30, 20, 20), "non-positive size"),
    ((-1, 0, 5, 5), "outside"), ((0, 0, 513, 5), "outside"), ((0, 0, float("nan"), 5), "not finite")])
def test_boxes_must_be_inside_the_image_with_positive_size(corners, problem):
    with pytest.raises(BadInputError, match=problem):
        check_box(BoxRow("img", "edema", "train", *corners, row=7), 512, 512, "f.csv row 7")
    check_box(BoxRow("img", "edema", "train", 0, 0, 512, 512, row=7), 512, 512, "f.csv row 7")


def test_knowledge_yaml_is_a_mapping_of_strings(tmp_path):
    path = tmp_path / "definition_shorter.yaml"
    path.write_text(yaml.safe_dump({"Cardiomegaly": "Enlarged heart silhouette at the cardiac area.", "ILD": "Reticular pattern."}))
    assert read_knowledge(path) == {"cardiomegaly": "Enlarged heart silhouette at the cardiac area.", "ild": "Reticular pattern."}
    for bad in ("- a\n- b\n", "edema: 3\n", "edema:\n", "{edema: [a]}\n"):
        path.write_text(bad)
        with pytest.raises(FormatError, match="definition_shorter.yaml"):
            read_knowledge(path)


def test_png_reader_scales_8_and_16_bit_and_refuses_garbage(tmp_path):
    eight = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    write_png(tmp_path / "a.png", eight)
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), eight / 255.0, atol=1e-7)
    sixteen = np.array([[0, 65535], [1000, 30000]], dtype=np.uint16)
    write_png(tmp_path / "b.png", sixteen)
    np.testing.assert_allclose(read_image(tmp_path / "b.png"), sixteen / 65535.0, atol=1e-7)
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(FormatError, match="c.png"):
        read_image(tmp_path / "c.png")
