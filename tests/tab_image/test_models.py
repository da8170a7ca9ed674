"""TIP's networks and losses against hand-computed references (numpy) and the properties the paper relies on."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from stages.tab_image.downstream import impute, nested_subsets, score
from stages.tab_image.losses import clip_loss, hard_negatives, mtr_loss
from stages.tab_image.models import TIP, NetworkConfig, TabularTransformer, attention_bias, one_hot

CONFIG = NetworkConfig("cnn", 3, 8, 16, 2, 1, 2, 2.0, 8, (3, 2, 1, 1))


def numpy_cross_entropy(logits, targets):
    shifted = logits - logits.max(1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return -log_probabilities[np.arange(len(targets)), targets].mean()


def test_clip_loss_matches_a_numpy_computation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    an, bn = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = an @ bn.T / 0.1
    expected = 0.5 * numpy_cross_entropy(logits, np.arange(5)) + 0.5 * numpy_cross_entropy(logits.T, np.arange(5))
    loss, _ = clip_loss(torch.tensor(a), torch.tensor(b), 0.1)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_hard_negatives_never_pick_the_matching_pair_and_favour_similar_ones():
    logits = torch.zeros(4, 4)
    logits[0, 2] = 20.0  # image 0 is most similar to table 2
    table_for_image, image_for_table = hard_negatives(logits, torch.Generator().manual_seed(0))
    assert (table_for_image != torch.arange(4)).all() and (image_for_table != torch.arange(4)).all()
    assert table_for_image[0] == 2 and image_for_table[2] == 0


def test_mtr_loss_is_ce_plus_mse_over_masked_cells_only():
    offsets = torch.tensor([0, 3])
    original = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 0.0, 2.0, 3.0]])
    masked = torch.tensor([[True, False, True, False], [False, True, False, False]])
    logits = torch.randn(2, 2, 5, generator=torch.Generator().manual_seed(1))
    continuous = torch.tensor([[0.0, 9.0], [7.0, 7.0]])
    loss = mtr_loss(logits, continuous, original, masked, offsets)
    # masked categorical cells: (row 0, col 0) target 2 + 0; (row 1, col 1) target 0 + 3
    ce = numpy_cross_entropy(np.stack([logits[0, 0].numpy(), logits[1, 1].numpy()]), np.array([2, 3]))
    mse = (0.0 - 0.5) ** 2  # only (row 0, col 2) is a masked continuous cell
    assert float(loss) == pytest.approx((ce + mse) / 2, rel=1e-5)


def test_masked_cells_are_invisible_to_every_other_token():
    torch.manual_seed(0)
    encoder = TabularTransformer(CONFIG).eval()
    table = torch.tensor([[2.0, 1.0, 0.3, -0.7]])
    masked = torch.tensor([[False, False, True, False]])
    changed = table.clone()
    changed[0, 2] = 50.0
    with torch.no_grad():
        assert torch.allclose(encoder(table, masked), encoder(changed, masked))
        assert not torch.allclose(encoder(table, ~masked & False), encoder(changed, ~masked & False))
    bias = attention_bias(masked)[0, 0]
    assert bias[0, 3] == -1e9 and bias[3, 3] == 0 and bias[3, 0] == 0 and (bias[:, 0] == 0).all()


def test_categorical_codes_index_one_shared_embedding_with_column_offsets():
    encoder = TabularTransformer(CONFIG)
    assert encoder.offsets.tolist() == [0, 3] and encoder.num_categories == 5
    table = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    tokens = encoder.category_embedding(table[:, :2].long() + encoder.offsets)
    assert torch.equal(tokens[0, 1], encoder.category_embedding.weight[4])


def test_tip_reconstructs_one_logit_row_per_categorical_token_and_one_value_per_continuous_token():
    model = TIP(CONFIG).eval()
    images, table = torch.rand(3, 3, 12, 12), torch.tensor([[2.0, 1.0, 0.1, 0.2]] * 3)
    masked = torch.zeros(3, 4, dtype=torch.bool)
    _, patches = model.image_encoder(images)
    logits, continuous = model.reconstruct(model.multimodal(patches, table, masked))
    assert logits.shape == (3, 2, 5) and continuous.shape == (3, 2)
    assert model.features(images, table, masked).shape == (3, 16)


def test_one_hot_encoding_and_imputation_against_hand_computed_values():
    lengths = torch.tensor([3, 1])
    encoded = one_hot(torch.tensor([[2.0, 0.5], [0.0, -1.0]]), lengths)
    assert encoded.tolist() == [[0, 0, 1, 0.5], [1, 0, 0, -1.0]]
    reference = np.array([[1.0, 1.0], [1.0, 3.0], [2.0, 100.0]])
    reference_missing = np.array([[False, False], [False, False], [False, True]])
    table, missing = np.array([[0.0, 0.0]]), np.array([[True, True]])
    assert impute(table, missing, reference, reference_missing, np.array([3, 1])).tolist() == [[1.0, 2.0]]


def test_label_subsets_are_nested_and_hold_every_class():
    labels = np.repeat(np.arange(8), 20)
    subsets = nested_subsets(labels, [0.01, 0.1, 1.0], seed=2022)
    assert len(subsets[0.01]) == 8 and set(labels[subsets[0.01]]) == set(range(8))
    assert set(subsets[0.01]) <= set(subsets[0.1]) <= set(subsets[1.0]) and len(subsets[1.0]) == 160
    # AUC by hand: one of the four (positive, negative) pairs is mis-ordered.
    assert score("auc", np.array([0, 1, 0, 1]), np.array([[0, 0.1], [0, 0.4], [0, 0.5], [0, 0.8]])) == pytest.approx(0.75)
    assert score("acc", np.array([1, 0]), F.one_hot(torch.tensor([1, 1]), 2).numpy().astype(float)) == 0.5
