import subprocess
import sys


def test_import_is_lean():
    """Importing slimnn detects the CPU lazily and starts no threads."""
    code = (
        "import threading, slimnn; "
        "assert threading.active_count() == 1, threading.active_count(); "
        "assert slimnn._C.pool_worker_count() == 0; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_public_api():
    import slimnn

    for name in slimnn.__all__:
        assert hasattr(slimnn, name), name
    assert slimnn.isa.best() in slimnn.isa.NAMES
