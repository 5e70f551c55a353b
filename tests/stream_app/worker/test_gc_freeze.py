import subprocess
import sys

# In a child process: freezing the test runner's own objects would keep them for its whole run.
PROBE = """
import gc, weakref
from stream_app.worker.engine import _freeze_long_lived

class Model:
    def __init__(self):
        self.me = self  # a model held only by a reference cycle once it is replaced

serving = Model()
_freeze_long_lived()  # start: the serving model is frozen
assert gc.get_freeze_count() > 0
assert all(o is not serving for o in gc.get_objects()), "the serving model is still scanned"

replaced, serving = weakref.ref(serving), Model()
_freeze_long_lived()  # a hot-swap: the frozen, replaced model is freed, the new one frozen
assert replaced() is None, "the replaced model was kept"
assert all(o is not serving for o in gc.get_objects()), "the new model is still scanned"
print("ok")
"""


def test_freezing_keeps_the_serving_model_out_of_collections_and_frees_a_replaced_one():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
