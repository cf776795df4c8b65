"""corral-runc's _preload: modules loaded straight from their bytecode look exactly as the
import system makes them, and stale bytecode is left to the import system."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import corral

SRC = os.path.dirname(os.path.dirname(corral.__file__))

DESCRIBE = """
import json, sys
sys.path[:0] = [%(src)r]
from corral.oci import cli
names = list(dict.fromkeys(n for v in cli._HOT.values() for n in v))
if %(preload)r:
    cli._preload(names)
loaded_by_preload = sorted(n for n in names if "corral.oci." + n in sys.modules)
import importlib
for n in names:
    importlib.import_module("corral.oci." + n)
out = {}
for n in names:
    m = sys.modules["corral.oci." + n]
    s = m.__spec__
    out[n] = [m.__name__, m.__file__, m.__cached__, m.__package__, getattr(m, "__path__", None),
              s.name, s.origin, s.cached, s.submodule_search_locations, s.has_location, s.parent,
              type(m.__loader__).__name__, m.__loader__.name, m.__loader__.path, m.__doc__,
              sorted(k for k in vars(m) if k not in ("__spec__", "__loader__"))]
print(json.dumps({"loaded": loaded_by_preload, "modules": out}))
"""


def _describe(src, preload):
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(src, "corral", "oci")],
                   check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-S", "-c", DESCRIBE % {"src": src, "preload": preload}],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_preloaded_modules_match_imported_ones():
    plain = _describe(SRC, False)
    fast = _describe(SRC, True)
    assert plain["loaded"] == []
    # every module of the lists was loaded by _preload itself (the bytecode is fresh)
    assert len(fast["loaded"]) == len(fast["modules"])
    assert fast["modules"] == plain["modules"]


def test_stale_bytecode_is_left_to_the_import_system():
    tmp = tempfile.mkdtemp(prefix="corral-preload-")
    try:
        shutil.copytree(os.path.join(SRC, "corral"), os.path.join(tmp, "corral"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(tmp, "corral", "oci")],
                       check=True, capture_output=True)
        stale = os.path.join(tmp, "corral", "oci", "linux", "paths.py")
        with open(stale, "a") as f:
            f.write("\nSTALE_MARK = 1\n")  # newer than its bytecode, which compileall does not redo here
        out = subprocess.run([sys.executable, "-S", "-c", f"""
import sys
sys.path[:0] = [{tmp!r}]
from corral.oci import cli
cli._preload(cli._HOT["run"])
before = "corral.oci.linux.paths" in sys.modules
from corral.oci.linux import paths, rootfs
print(before, paths.STALE_MARK, rootfs.paths is paths)
"""], check=True, capture_output=True, text=True).stdout.split()
        assert out == ["False", "1", "True"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
