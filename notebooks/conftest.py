"""nbval runs each notebook in a kernel that writes nothing into the user's home or Jupyter dirs.

The kernel inherits the environment it starts in, so while a notebook item sets up (when nbval
starts its kernel) HOME, the Jupyter dirs and IPYTHONDIR point into one temp dir for the session.
The kernel is the pytest interpreter's own (``--nbval-current-env``), so no kernelspec is looked
up in those dirs. Exercises are left for learners to finish, so they are not collected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import nbval.kernel
import pytest

collect_ignore = ["exercises"]

_start_kernel = nbval.kernel.start_new_kernel


def _start_kernel_once_more(*args: object, **kwargs: object) -> object:
    """nbval's kernel start, tried a second time if the kernel dies before it answers: seen once
    in a parallel run, where another process may take a port the kernel picked before it binds
    it (nbval sends the kernel's stderr to /dev/null, so the cause was not shown)."""
    try:
        return _start_kernel(*args, **kwargs)
    except RuntimeError as e:
        if "died before replying" not in str(e):
            raise
        return _start_kernel(*args, **kwargs)


nbval.kernel.start_new_kernel = _start_kernel_once_more

# Each variable and its directory under the session's temp home ("" is the home itself).
_ISOLATED = {
    "HOME": "",
    "JUPYTER_CONFIG_DIR": "config",
    "JUPYTER_DATA_DIR": "data",
    "JUPYTER_RUNTIME_DIR": "runtime",
    "IPYTHONDIR": "ipython",
}
_home: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Resolve a relative ``--nbval-sanitize-with`` against the rootdir, so any cwd works."""
    option = getattr(config.option, "nbval_sanitize_with", None)
    if option and not Path(option).exists() and (config.rootpath / option).exists():
        config.option.nbval_sanitize_with = str(config.rootpath / option)


def _session_home() -> Path:
    global _home
    if _home is None:
        _home = Path(tempfile.mkdtemp(prefix="eventsource-lab-nbval-"))
        for subdir in _ISOLATED.values():
            (_home / subdir).mkdir(exist_ok=True)
    return _home


@contextmanager
def _isolated_env() -> Iterator[None]:
    home = _session_home()
    saved = {name: os.environ.get(name) for name in _ISOLATED}
    os.environ.update({name: str(home / subdir) for name, subdir in _ISOLATED.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Start notebook kernels (nbval does it in setup) inside the isolated environment."""
    with _isolated_env():
        return (yield)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the session's temp home."""
    if _home is not None:
        shutil.rmtree(_home, ignore_errors=True)
