import os

import pytest
import torch

import slimnn

# Tests check results, not speed; keep them deterministic and light on the 2-core CI machine.
torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_state():
    """Every test starts with no ISA cap and the default thread count."""
    yield
    slimnn.isa.force(None)
    slimnn.set_num_threads(None)


def available_isas():
    return slimnn.isa.available()


def pytest_report_header(config):
    info = slimnn.cpu_info()
    return [
        f"slimnn {slimnn.__version__} from {os.path.dirname(slimnn.__file__)}",
        f"cpu: {info['brand']} isa: {info['isa_available']} threads: {info['threads']}",
    ]
