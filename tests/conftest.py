import os

import pytest
import torch

import slimnn
import slimnn.ops.q8

import helpers

# Tests check results, not speed; keep them deterministic and light on the 2-core CI machine.
torch.manual_seed(0)

# Covered paths (ruy's LogCoveredPathsOnDestruction): every kernel that runs through the op entry point is
# recorded, so test_dispatch.py can fail when this CPU's best path never ran. The wrapper calls the real op;
# modules, torch.ops.slimnn.q8_linear and torch.compile all reach it through this one module attribute.
_q8_linear_with_kernel = slimnn.ops.q8.q8_linear_with_kernel


def _recording_q8_linear_with_kernel(*args, **kwargs):
    y, name = _q8_linear_with_kernel(*args, **kwargs)
    helpers.COVERED.add(name)
    return y, name


slimnn.ops.q8.q8_linear_with_kernel = _recording_q8_linear_with_kernel
slimnn.ops.q8_linear_with_kernel = _recording_q8_linear_with_kernel  # the package re-export too

COVERAGE_TEST = "test_best_isa_paths_were_exercised"


def pytest_collection_modifyitems(session, config, items):
    """The covered-paths check runs after every other test of the session."""
    last = [it for it in items if it.name == COVERAGE_TEST]
    rest = [it for it in items if it.name != COVERAGE_TEST]
    items[:] = rest + last


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
