"""The adaptation core: SAM's proportions, LoRA, the frozen decoder, EMA 0.95, and the losses against scipy."""
import copy

import numpy as np
import pytest
import torch
from scipy.special import rel_entr, softmax

from stages.sam_tta.data import Case, case_prompts
from stages.sam_tta.model import SamConfig, inject_lora
from stages.sam_tta.training import prompt_tensors
from stages.sam_tta.tta import Adapter, Settings, adapt_stream, binary_entropy, dpc_weight, spatial_softmax_kl, stream_order

CONFIG = SamConfig(64, 16, 1, 2, 16, 1, 2, 2.0)
SETTINGS = Settings(4, 0.95, 0.9999, 1e-4, 1e-4, 0.999, 0.1, 0.5)


def toy_case(index: int) -> Case:
    labels = np.zeros((64, 64), np.int32)
    labels[10 + index : 30 + index, 20:40] = 1
    image = np.repeat((0.2 + 0.5 * labels + 0.05 * np.random.default_rng(index).random((64, 64)))[None], 3, 0).astype(np.float32)
    return Case("toy", f"c{index}", image, 1, labels, labels)


def test_sam_proportions():
    torch.manual_seed(0)
    out = CONFIG.build()(torch.rand(1, 3, 64, 64), boxes=torch.tensor([[4.0, 4, 30, 30], [10, 10, 50, 60]]))
    assert out.embedding.shape == (1, 16, 4, 4)         # 1/16 of the side
    assert out.low_res.shape == (2, 1, 16, 16)          # 1/4 of the side
    assert out.iou.shape == (2,)


def test_lora_starts_as_the_identity_and_trains_only_q_and_v():
    torch.manual_seed(0)
    model = CONFIG.build()
    x = torch.rand(1, 3, 64, 64)
    before = model.image_encoder(x)
    lora = inject_lora(copy.deepcopy(model), 4)
    adapted = copy.deepcopy(model)
    parameters = inject_lora(adapted, 4)
    torch.testing.assert_close(adapted.image_encoder(x), before)
    assert len(lora) == 4 * CONFIG.encoder_depth and all(p.shape[0] == 4 or p.shape[1] == 4 for p in parameters)
    qkv = adapted.image_encoder.blocks[0].attn.qkv
    with torch.no_grad():
        qkv.b_q.weight.fill_(1.0)
    tokens = torch.rand(1, 5, CONFIG.encoder_dim)
    delta = qkv(tokens) - qkv.qkv(tokens)
    d = CONFIG.encoder_dim
    assert delta[..., :d].abs().sum() > 0 and delta[..., d : 2 * d].abs().sum() == 0 and delta[..., 2 * d :].abs().sum() == 0


def test_sam_tta_keeps_the_decoder_frozen_and_the_teacher_an_ema_of_the_student():
    torch.manual_seed(0)
    model = CONFIG.build().eval()
    adapter = Adapter("sam_tta", model, SETTINGS, 1337)
    case = toy_case(0)
    prompts = prompt_tensors(case_prompts(case, "box", np.random.default_rng(0)), "cpu")
    decoder_before = copy.deepcopy(adapter.student.mask_decoder.state_dict())
    student_before = {n: p.detach().clone() for n, p in adapter.student.named_parameters() if p.requires_grad}
    curves_before = adapter.curves.raw_points.detach().clone()
    adapter.step(torch.as_tensor(case.image[None]), prompts)
    for name, value in adapter.student.mask_decoder.state_dict().items():
        torch.testing.assert_close(value, decoder_before[name])
    teacher = dict(adapter.teacher.named_parameters())
    changed = 0
    for name, parameter in adapter.student.named_parameters():
        if parameter.requires_grad:
            expected = 0.95 * student_before[name] + 0.05 * parameter.detach()
            torch.testing.assert_close(teacher[name], expected)
            changed += int(not torch.equal(parameter, student_before[name]))
    assert changed > 0 and not torch.equal(adapter.curves.raw_points, curves_before)


def test_frozen_methods_change_nothing_and_predict_the_same():
    torch.manual_seed(0)
    model = CONFIG.build().eval()
    cases = [toy_case(i) for i in range(3)]
    prompts = [case_prompts(c, "box", np.random.default_rng(0)) for c in cases]
    first, _ = adapt_stream("source_only", model, cases, prompts, SETTINGS, 1337, "cpu")
    second, _ = adapt_stream("source_only", model, cases, prompts, SETTINGS, 1337, "cpu")
    assert [r.case for r in first] == [cases[i].case for i in stream_order(3, 1337)]
    assert all(np.array_equal(a.prediction, b.prediction) for a, b in zip(first, second))


def test_spatial_softmax_kl_matches_scipy():
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(1, 3, 4, 4)), rng.normal(size=(1, 3, 4, 4))
    temperature = 0.7
    p = softmax(teacher.reshape(3, -1) / temperature, axis=1)
    q = softmax(student.reshape(3, -1) / temperature, axis=1)
    expected = rel_entr(p, q).sum(axis=1).mean()
    value = spatial_softmax_kl(torch.tensor(teacher), torch.tensor(student), torch.tensor(temperature, dtype=torch.float64))
    assert float(value) == pytest.approx(expected, rel=1e-9)


def test_binary_entropy_and_dpc_weight_by_hand():
    logits = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    p = 1 / (1 + np.exp(-logits.numpy()))
    assert float(binary_entropy(logits)) == pytest.approx(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))
    scale, running = dpc_weight(torch.tensor(0.5), 0.0)
    assert (scale, running) == (pytest.approx(1.0), pytest.approx(np.log(2)))
    scale, running = dpc_weight(torch.tensor(0.2), running)
    assert scale == pytest.approx(-np.log(0.8) / np.log(2)) and running == pytest.approx(np.log(2))
