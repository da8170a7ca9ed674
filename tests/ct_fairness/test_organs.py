"""Label mapping of both dataset styles to the organ table, per-organ masks, organ volumes."""
import numpy as np
import pytest

from stages.ct_fairness.organs import (
    AMOS_CLASSES,
    ORGAN_IDS,
    TOTALSEG_MERGED_DEFAULT,
    amos_to_organ_table,
    map_labels,
    merge_binary_masks,
    merged_to_organ_table,
    organ_volumes_ml,
)


def test_amos_ids_map_to_the_organ_table_and_others_to_background():
    amos = np.arange(16).reshape(4, 4, 1)
    mapped = map_labels(amos, amos_to_organ_table())
    expected = np.zeros(16, dtype=np.uint8)
    expected[[6, 2, 3, 10]] = [1, 2, 3, 4]                 # liver 6, right kidney 2, left kidney 3, pancreas 10
    assert np.array_equal(mapped.ravel(), expected)
    assert AMOS_CLASSES[1] == "spleen" and mapped.ravel()[1] == 0
    assert mapped.dtype == np.uint8


def test_unknown_label_value_is_named():
    with pytest.raises(ValueError, match=r"unknown label value\(s\) \[16, 99\]"):
        map_labels(np.array([[[0, 6, 16, 99]]]), amos_to_organ_table())
    with pytest.raises(ValueError, match="non-integer"):
        map_labels(np.array([[[0.0, 1.5]]]), amos_to_organ_table())


def test_merged_totalsegmentator_labels_use_the_authors_order():
    table = merged_to_organ_table(TOTALSEG_MERGED_DEFAULT)
    merged = np.array([[[0, 1, 2, 3, 4]]])
    assert map_labels(merged, table).ravel().tolist() == [0, ORGAN_IDS["kidney_right"], ORGAN_IDS["kidney_left"],
                                                          ORGAN_IDS["liver"], ORGAN_IDS["pancreas"]]
    with pytest.raises(ValueError, match=r"unknown label value\(s\) \[5\]"):
        map_labels(np.array([[[5]]]), table)
    with pytest.raises(ValueError, match="unknown organ"):
        merged_to_organ_table({"spleen": 1})


def test_per_organ_masks_merge_and_reject_non_binary_values():
    shape = (4, 4, 2)
    masks = {name: np.zeros(shape, dtype=np.uint8) for name in ORGAN_IDS}
    masks["liver"][0, :, :] = 1
    masks["kidney_left"][3, 0, 0] = 1
    masks["pancreas"][0, 0, 0] = 1                          # overlaps the liver: the later organ wins
    merged = merge_binary_masks(masks)
    assert merged[0, 1, 0] == 1 and merged[3, 0, 0] == 3 and merged[0, 0, 0] == 4 and merged[2, 2, 1] == 0
    masks["kidney_right"][1, 1, 1] = 2
    with pytest.raises(ValueError, match=r"unknown label value\(s\) \[2\] in the kidney_right mask"):
        merge_binary_masks(masks)


def test_organ_volumes_in_ml():
    label = np.zeros((10, 10, 10), dtype=np.uint8)
    label[:5, :4, :2] = 1                                   # 40 voxels
    label[9, 9, 9] = 4
    volumes = organ_volumes_ml(label, (2.0, 1.5, 3.0))      # 9 mm^3 per voxel
    assert volumes == {"liver": pytest.approx(0.36), "kidney_right": 0.0, "kidney_left": 0.0, "pancreas": pytest.approx(0.009)}
