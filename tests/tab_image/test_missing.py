"""The four missing-data protocols against the official notebook's own draws and hand-computed cases."""
import numpy as np
import pytest

from stages.tab_image.missing import importance_order, make_missing_mask, mask_file_name, random_forest_importances


def notebook_mask(n_rows, n_cols, seed, strategy, rate):
    """create_missing_mask of siyi-wind/TIP data/create_missing_mask.ipynb, as written there."""
    np.random.seed(seed)
    if strategy == "value":
        mask = np.zeros((n_rows * n_cols), dtype=bool)
        mask[np.random.choice(n_rows * n_cols, size=int(n_rows * n_cols * rate), replace=False)] = True
        return mask.reshape((n_rows, n_cols))
    mask = np.zeros((n_rows, n_cols), dtype=bool)
    mask[:, np.random.choice(n_cols, size=int(n_cols * rate), replace=False)] = True
    return mask


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("seed", [2021, 2022, 2023])
def test_random_protocols_reproduce_the_official_notebook(rate, seed):
    ours = make_missing_mask(37, 17, rate, "random_values", seed=seed)
    assert np.array_equal(ours, notebook_mask(37, 17, seed, "value", rate))
    assert ours.sum() == int(37 * 17 * rate)
    ours = make_missing_mask(37, 17, rate, "random_features", seed=seed)
    assert np.array_equal(ours, notebook_mask(37, 17, seed, "feature", rate))
    assert (ours == ours[0]).all() and ours[0].sum() == int(17 * rate)


def test_importance_protocols_mask_the_top_or_bottom_columns():
    importances = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
    most = make_missing_mask(4, 5, 0.5, "most_important", importances)   # int(5 * 0.5) = 2 columns
    least = make_missing_mask(4, 5, 0.5, "least_important", importances)
    assert most.all(axis=0).tolist() == [False, True, False, True, False]
    assert least.all(axis=0).tolist() == [True, False, True, False, False]
    assert importance_order([0.2, 0.2, 0.1], most_first=True).tolist() == [0, 1, 2]  # ties keep column order


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="importance"):
        make_missing_mask(3, 4, 0.5, "most_important")
    with pytest.raises(ValueError, match="unknown"):
        make_missing_mask(3, 4, 0.5, "columns")
    with pytest.raises(ValueError, match="rate"):
        make_missing_mask(3, 4, 1.5, "random_values")


def test_forest_ranks_the_informative_column_first_and_names_follow_the_loader():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(200, 4))
    labels = (table[:, 2] > 0).astype(int)
    assert np.argmax(random_forest_importances(table, labels, 2022)) == 2
    assert mask_file_name("dvm_features_train.csv", "dvm", "most_important", 0.3) == "dvm_features_train_dvm_MI_0.3.npy"
    assert mask_file_name("cardiac_features_val.csv", "CAD", "random_values", 0.0) == "cardiac_features_val_CAD_value_0.0.npy"
