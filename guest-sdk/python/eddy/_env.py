"""Where the SDK runs: inside a component built by `eddy build` (componentize-py's CPython
runs on WASI), or in plain CPython, where `eddy.testing` runs operators against an
in-memory host."""

import sys

IN_COMPONENT = sys.platform == "wasi"
