"""Resolve an APP spec (``module``, ``module:name``, ``module:factory(args)``) to a callable.

Called by the native entry point after ``--chdir``/``--pythonpath`` are applied. Failures raise
:class:`AppLoadError` whose message is the one line the user sees.
"""

from __future__ import annotations

import ast
import importlib
from typing import Any, Callable


class AppLoadError(Exception):
    """The APP spec cannot be turned into a WSGI callable; ``str()`` is the user-facing line."""


def _parse_expression(spec: str, expr: str) -> tuple[str, list[Any], dict[str, Any], bool]:
    """Split ``name`` or ``name(literal, key=literal)`` into its parts; nothing is evaluated."""
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise AppLoadError(f"invalid APP {spec!r}: {expr!r} is not a name or a call") from None
    if isinstance(node, ast.Name):
        return node.id, [], {}, False
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            args = [ast.literal_eval(arg) for arg in node.args]
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except ValueError:
            raise AppLoadError(
                f"invalid APP {spec!r}: factory arguments must be Python literals"
            ) from None
        if len(kwargs) != len(node.keywords):
            raise AppLoadError(f"invalid APP {spec!r}: **kwargs are not supported")
        return node.func.id, args, kwargs, True
    raise AppLoadError(f"invalid APP {spec!r}: {expr!r} is not a name or a call")


def _from_the_app(exc: BaseException) -> BaseException:
    """``exc`` with its traceback starting at the app's own frames: the loader's frame and
    importlib's are left out of what the user reads."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename != __file__ and "importlib" not in filename:
            break
        tb = tb.tb_next
    return exc.with_traceback(tb)


def load(spec: str) -> Callable[..., Any]:
    """Import the module named by ``spec`` and return its WSGI callable."""
    module_name, _, expr = spec.partition(":")
    module_name = module_name.strip()
    if not module_name:
        raise AppLoadError(f"invalid APP {spec!r}: expected MODULE or MODULE:NAME")
    name, args, kwargs, is_call = _parse_expression(spec, expr or "application")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            # the spec names a module that is not there: the one line says all
            raise AppLoadError(
                f"cannot import {module_name!r}: no module named {exc.name!r}"
            ) from None
        raise AppLoadError(
            f"error importing {module_name!r}: {type(exc).__name__}: {exc}"
        ) from _from_the_app(exc)
    except BaseException as exc:  # the app's own import-time error: a line, then its traceback
        raise AppLoadError(
            f"error importing {module_name!r}: {type(exc).__name__}: {exc}"
        ) from _from_the_app(exc)
    try:
        obj = getattr(module, name)
    except AttributeError:
        raise AppLoadError(f"module {module_name!r} has no attribute {name!r}") from None
    if is_call:
        try:
            obj = obj(*args, **kwargs)
        except Exception as exc:
            raise AppLoadError(
                f"error calling factory {module_name}:{name}: {type(exc).__name__}: {exc}"
            ) from _from_the_app(exc)
    if not callable(obj):
        raise AppLoadError(f"{module_name}:{name} is not callable (got {type(obj).__name__})")
    return obj


def load_script(path: str, index: int) -> Callable[..., Any] | None:
    """Import the script at ``path`` (``--scripts``) and return its ``application``, or None
    when it defines none (a helper module beside the scripts)."""
    import importlib.util
    import os
    import re
    import sys

    stem = os.path.basename(path)[: -len(".py")]
    module_name = f"_wizgy_script_{index}_{re.sub(r'[^0-9A-Za-z_]', '_', stem)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # the script's own error: a line, then its traceback
        sys.modules.pop(module_name, None)
        raise AppLoadError(
            f"error importing script {path}: {type(exc).__name__}: {exc}"
        ) from _from_the_app(exc)
    app = getattr(module, "application", None)
    if app is None:
        return None
    if not callable(app):
        raise AppLoadError(f"script {path}: application is not callable (got {type(app).__name__})")
    return app
