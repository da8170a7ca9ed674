"""The U-Net config: saved with a model and read back, refused when its levels do not match."""
import pytest
import torch

from stages.ct_fairness.model import NetworkConfig, load_network, predict_labels
from stages.ct_fairness.organs import NUM_CLASSES


def test_network_config_round_trips():
    config = NetworkConfig((4, 8, 16), (2, 2), 1, (32, 32, 28))
    assert NetworkConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="strides"):
        NetworkConfig((4, 8), (2, 2)).build()


def test_a_saved_model_predicts_the_argmax_of_its_output(tmp_path):
    torch.manual_seed(0)
    config = NetworkConfig((4, 8), (2,), 0, (16, 16, 12))
    network = config.build()
    torch.save({"state_dict": network.state_dict(), "config": config.to_dict()}, tmp_path / "m.pt")
    loaded, loaded_config, _ = load_network(tmp_path / "m.pt", torch.device("cpu"))
    assert loaded_config == config and not loaded.training
    image = torch.rand(1, 16, 16, 12)                       # one window: the argmax of the network's own output
    with torch.no_grad():
        direct = torch.argmax(network.eval()(image[None]), dim=1)[0]
    assert torch.equal(predict_labels(loaded, image, config.patch, 0.25, 2), direct)
    larger = predict_labels(loaded, torch.rand(1, 30, 20, 14), config.patch, 0.25, 2)   # sliding windows
    assert larger.shape == (30, 20, 14) and 0 <= int(larger.min()) and int(larger.max()) < NUM_CLASSES
