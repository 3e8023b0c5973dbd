"""The GPU suite (tests/gpu/conftest.py): a package, so that its conftest is gpu.conftest and
tests/conftest.py stays the one ``conftest`` the other test modules import from."""
