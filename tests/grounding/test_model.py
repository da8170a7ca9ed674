"""The tiny grounder: incremental greedy decoding equals the full causal forward; loss falls on a fixed batch."""
import torch

from stages.grounding.model import BOS, EOS, PAD, GrounderConfig, TinyGrounder
from stages.grounding.train import answer_loss


def tiny_model(seed: int = 0) -> TinyGrounder:
    torch.manual_seed(seed)
    return TinyGrounder(GrounderConfig(vocabulary_size=1030, first_location=5, bins=1000, input_size=32, width=16, heads=2,
                                       encoder_layers=1, decoder_layers=2, max_prompt_tokens=12, max_answer_tokens=20)).eval()


def test_incremental_decoder_step_equals_the_full_forward():
    model = tiny_model()
    images, prompts = torch.rand(3, 1, 32, 32), torch.randint(5, 1030, (3, 12))
    prompts[0, 7:] = PAD
    answer = torch.randint(5, 1030, (3, 9))
    answer[:, 0] = BOS
    with torch.no_grad():
        memory, padding = model.encode(images, prompts)
        full = model.decode_logits(memory, padding, answer)
        cache, steps = [None, None], []
        for position in range(answer.shape[1]):
            logits, cache = model._decoder_step(answer[:, position], position, cache, memory, padding)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_greedy_generation_follows_argmax_of_the_full_forward_and_stops_at_eos():
    model = tiny_model(1)
    images, prompts = torch.rand(2, 1, 32, 32), torch.randint(5, 1030, (2, 12))
    generated = model.generate(images, prompts, max_new_tokens=6)
    memory, padding = model.encode(images, prompts)
    sequence = torch.full((2, 1), BOS)
    for _ in range(generated.shape[1]):
        with torch.no_grad():
            sequence = torch.cat([sequence, model.decode_logits(memory, padding, sequence)[:, -1].argmax(-1, keepdim=True)], 1)
    reference = sequence[:, 1:]
    for row in range(2):
        stop = (reference[row] == EOS).nonzero()
        end = int(stop[0]) + 1 if len(stop) else reference.shape[1]
        assert torch.equal(generated[row, :end], reference[row, :end])
        assert (generated[row, end:] == PAD).all()


def test_cross_entropy_training_fits_a_fixed_batch():
    model = tiny_model(2).train()
    images, prompts = torch.rand(4, 1, 32, 32), torch.randint(5, 1030, (4, 12))
    answers = torch.tensor([[BOS, 1020, 105, 205, 305, 405, EOS]] * 4)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = answer_loss(model(images, prompts, answers[:, :-1]), answers)
        first = first if first is not None else float(loss)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(loss) < 0.2 * first
