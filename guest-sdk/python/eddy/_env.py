"""Where the SDK runs: inside a component built by `eddy build` (componentize-py), or in
plain CPython, where `eddy.testing` runs operators against an in-memory host."""

try:
    import componentize_py_types  # noqa: F401

    IN_COMPONENT = True
except ImportError:
    IN_COMPONENT = False
