"""pytest plugins of the project (loaded through `pytest_plugins` in tests/conftest.py)."""
