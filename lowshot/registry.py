"""Registries of the things a user adds: recovery methods and inverse problems.

A method or a problem is one class in one file that registers itself with a decorator
(``lowshot.methods.register``, ``lowshot.problems.register``). The built-in ones live in
the packages ``lowshot/methods/`` and ``lowshot/problems/``, whose modules are all
imported on first use of the registry (``discover``), so adding a file there is enough.
Files outside the package are *plugins*: the config key ``plugins`` lists Python files
(or importable module names) that ``load_plugins`` imports before the config is
validated, so their classes take part in the schema, the workflow, the tables and the
figures like the built-in ones.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes by their ``kind`` attribute; ``what`` names them in error messages,
    ``package`` holds the built-in ones."""

    def __init__(self, what: str, package: str) -> None:
        self.what = what
        self.package = package
        self._classes: dict[str, T] = {}
        self._discovered = False

    def register(self, cls: T) -> T:
        """Class decorator: register ``cls`` under ``cls.kind``.

        A second class under a taken name is an error, unless it is the same class loaded
        again (same module and qualified name, e.g. a plugin file imported twice).
        """
        name = getattr(cls, "kind", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__qualname__}: a registered {self.what} needs a kind")
        known = self._classes.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise ValueError(
                f"{self.what} {name!r} is registered twice: by {_where(known)} and {_where(cls)}"
            )
        self._classes[name] = cls
        return cls

    def discover(self) -> None:
        """Import every module of the built-in package once (they register themselves)."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")

    def __getitem__(self, name: str) -> T:
        self.discover()
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.what} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._classes

    def __iter__(self) -> Iterator[T]:
        """The classes sorted by kind (not by import order, which depends on the caller)."""
        self.discover()
        return iter([self._classes[name] for name in sorted(self._classes)])

    def names(self) -> list[str]:
        """The kinds, sorted."""
        self.discover()
        return sorted(self._classes)

    def parse(self, name: str) -> Any:
        """The spec of an instance name: the first registered class whose ``parse`` takes
        it. ``ValueError`` listing the known kinds when none does."""
        for cls in self:
            spec = cls.parse(name)  # type: ignore[attr-defined]
            if spec is not None:
                return spec
        raise ValueError(f"unknown {self.what} name {name!r}; known {self.what}s: {self.names()}")

    def family(self, spec_or_name: Any) -> T:
        """The registered class of a spec (anything with a ``kind``) or an instance name."""
        if isinstance(spec_or_name, str):
            spec_or_name = self.parse(spec_or_name)
        return self[spec_or_name.kind]

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a throw-away class clean up with this)."""
        self._classes.pop(name, None)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def resolve_plugins(
    plugins: Iterable[str], root: str | os.PathLike[str] | None = None
) -> list[str]:
    """Plugin files as absolute paths (relative ones against ``root``, default the current
    folder); module names unchanged. A plugin is a file when it ends in ``.py`` or holds a
    path separator."""
    resolved = []
    for plugin in plugins:
        if plugin.endswith(".py") or "/" in plugin or os.sep in plugin:
            path = Path(os.path.expanduser(plugin))
            resolved.append(str((Path(root or ".") / path).resolve()))
        else:
            resolved.append(plugin)
    return resolved


def load_plugins(plugins: Iterable[str], root: str | os.PathLike[str] | None = None) -> None:
    """Import each plugin (``resolve_plugins``): a ``.py`` file or a module name.

    A file is imported under a name derived from its absolute path, so loading the same
    file again (every job does) reuses the module instead of registering its classes twice.
    Raises ``ValueError`` naming a plugin that does not exist.
    """
    for plugin in resolve_plugins(plugins, root):
        if os.path.isabs(plugin):
            _import_file(Path(plugin))
            continue
        try:
            importlib.import_module(plugin)
        except ModuleNotFoundError as error:
            raise ValueError(f"plugins: cannot import module {plugin!r} ({error})") from None


def _import_file(path: Path) -> None:
    if not path.is_file():
        raise ValueError(f"plugins: no such file {path}")
    digest = hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:12]
    name = f"lowshot_plugin_{path.stem}_{digest}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"plugins: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
