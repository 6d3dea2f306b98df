"""pytest integration of the storage-driver conformance suite (:mod:`pydock.testing.conformance`).

Installed with pydock as a ``pytest11`` entry point, so every pytest in an environment holding
pydock knows ``--pydock-driver``; the suite itself runs only where its test module is collected::

    pytest --pyargs pydock.testing --pydock-driver mydriver [--pydock-driver other ...]

Without the option the three built-in drivers are checked. Any test function that takes the
arguments ``pydock_driver_name`` and ``conformance_case`` is parametrized over the chosen
drivers and every case, with ids like ``overlay-layer_file_update``; it runs a case with
:func:`run_conformance_case`. Nothing heavier than pytest is imported until then, because this
module is loaded into every pytest session of the environment.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pydock.testing.conformance import Case, DriverFactory

_SHIPPED_MODULE = "pydock.testing.test_conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pydock", "pydock storage-driver conformance suite")
    group.addoption("--pydock-driver", action="append", dest="pydock_drivers", default=[],
                    metavar="NAME",
                    help="storage driver to check, built-in or from a plugin (repeatable; "
                         "default: overlay, copy and bind)")


def pytest_configure(config: pytest.Config) -> None:
    names: list[str] = config.getoption("pydock_drivers")
    if not names:
        return
    # An unknown name is a usage error, said once, rather than one error per case.
    from pydock.core.errors import PydockError
    from pydock.core.plugins import DriverRegistry

    registry = DriverRegistry()
    for name in names:
        try:
            registry.driver_class(name)
        except PydockError as exc:
            raise pytest.UsageError(f"--pydock-driver: {exc}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not {"pydock_driver_name", "conformance_case"} <= set(metafunc.fixturenames):
        return
    from pydock.testing.conformance import BUILTIN_DRIVERS, CASES

    names = list(dict.fromkeys(metafunc.config.getoption("pydock_drivers"))) or BUILTIN_DRIVERS
    pairs = [(name, case) for name in names for case in CASES]
    metafunc.parametrize(("pydock_driver_name", "conformance_case"), pairs,
                         ids=[f"{name}-{case.name}" for name, case in pairs])


def pytest_pycollect_makemodule(module_path: Path,
                                parent: pytest.Collector) -> pytest.Module | None:
    # pytest would import the shipped test module by its file path, as "testing.test_conformance"
    # with pydock's source (or site-packages/pydock) put on sys.path: a top-level "testing"
    # that can clash with the author's own package. Import it by its real name instead.
    if module_path.name == "test_conformance.py" and module_path.parent == _package_dir():
        return _ShippedModule.from_parent(parent, path=module_path)
    return None


def _package_dir() -> Path:
    import pydock.testing

    return Path(pydock.testing.__file__).parent


class _ShippedModule(pytest.Module):
    def _getobj(self) -> ModuleType:  # documented as the method for subclasses to override
        return importlib.import_module(_SHIPPED_MODULE)


def run_conformance_case(case: Case, driver_name: str, work: Path,
                         factory: DriverFactory | None = None) -> None:
    """:func:`pydock.testing.conformance.run_case`, with an unavailable driver as a skip."""
    from pydock.testing.conformance import DriverUnavailable, run_case

    try:
        run_case(case, driver_name, work, factory)
    except DriverUnavailable as exc:
        pytest.skip(str(exc))
