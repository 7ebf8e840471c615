# Fixtures shared by every test module. (Its place at the root also puts the checkout on sys.path, for `tests.*`.)

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures("single_thread")``): tiny tensors
    gain nothing from threads, on a busy 2-core machine OpenMP spinning costs seconds, and CPU reductions are then
    summed in one order."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
