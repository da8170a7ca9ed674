"""One torch thread in ecg_text's tests: on the shared 2-core machine more threads ran many times slower."""
import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
