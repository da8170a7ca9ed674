"""The synthetic generator: lesions sit in white matter and their fates define the four labels."""
import numpy as np

from stages.ms_lesion.synthetic import Style, draw_lesions, lesion_truth, load_template, scan


def test_template_comes_from_the_wheel_at_the_asked_spacing():
    template = load_template(6.0)
    assert 20 < template.t1.shape[0] < 40 and template.brain.any() and template.spacing_mm == 6.0


def test_fates_define_new_and_vanishing_and_lesions_brighten_white_matter():
    template = load_template(6.0)
    rng = np.random.default_rng(0)
    lesions = draw_lesions(template, {"persistent": 2, "new": 2, "vanishing": 2}, (1.2, 2.0), rng)
    assert sorted(lesion.fate for lesion in lesions) == ["new", "new", "persistent", "persistent", "vanishing", "vanishing"]
    for lesion in lesions:
        assert template.white_matter[tuple(int(c) for c in lesion.centre)] > 0.9
    truth = lesion_truth(template.t1.shape, lesions, template.brain)
    assert np.array_equal(truth.new, truth.all_t2 & ~truth.all_t1)
    assert np.array_equal(truth.vanishing, truth.all_t1 & ~truth.all_t2)
    assert truth.new.any() and truth.vanishing.any()
    style = Style(gamma=1.0, scale=100.0, bias=0.0, noise=0.0, lesion_contrast=0.6)
    t1, t2 = scan(template, truth.all_t1, style, rng), scan(template, truth.all_t2, style, rng)
    assert t2[truth.new].mean() > t1[truth.new].mean() + 20  # new lesions are hyperintense at t2 only
    assert t1[truth.vanishing].mean() > t2[truth.vanishing].mean() + 20
