"""The files of ``DEFINITION_FILES`` checked together and registered."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from ..conf import get_setting
from ..definitions import Registry, registry
from .checker import load_file
from .errors import E_CONFLICT, E_SETTING, E_UNEXPECTED, LoadError
from .reader import describe
from .specs import YamlWorkflow, yaml_workflow

logger = logging.getLogger(__name__)


def configured_files() -> tuple[list[Path], list[LoadError]]:
    """The paths of ``DJANGO_WORKFLOWS["DEFINITION_FILES"]``, relative ones under BASE_DIR."""
    value = get_setting("DEFINITION_FILES")
    where = 'settings.DJANGO_WORKFLOWS["DEFINITION_FILES"]'
    if isinstance(value, str | Path) or not isinstance(value, list | tuple):
        return [], [
            LoadError(
                id=E_SETTING,
                file=where,
                message=f"must be a list of file paths, got {describe(value)}.",
            )
        ]
    base = Path(getattr(settings, "BASE_DIR", None) or Path.cwd())
    paths, errors = [], []
    for i, item in enumerate(value):
        if not isinstance(item, str | Path) or not str(item):
            errors.append(
                LoadError(
                    id=E_SETTING,
                    file=where,
                    message=f"item {i} must be a file path, got {describe(item)}.",
                )
            )
            continue
        path = Path(item).expanduser()
        paths.append(path if path.is_absolute() else base / path)
    return paths, errors


def check_files(
    paths: Iterable[str | Path] | None = None, into: Registry | None = None
) -> tuple[list[YamlWorkflow], list[LoadError]]:
    """Check files (default: the setting's) together; nothing is registered.

    A name already registered by a ``workflows.py`` module, or defined by
    an earlier file, is an error of the later file.
    """
    into = registry if into is None else into
    errors: list[LoadError] = []
    if paths is None:
        paths, errors = configured_files()
    workflows: list[YamlWorkflow] = []
    seen: dict[str, YamlWorkflow] = {}
    for path in paths:
        result = load_file(path)
        file_errors = list(result.errors)
        for workflow in result.workflows:
            earlier = seen.get(workflow.name)
            registered = workflow.name in into and into.get(workflow.name)
            if earlier is not None:
                where = f"{earlier.file}, line {earlier.line}"
            elif registered and yaml_workflow(registered) is None:
                where = f"{registered.factory.__module__}.{registered.factory.__qualname__}"
            else:
                seen[workflow.name] = workflow
                continue
            file_errors.append(
                LoadError(
                    id=E_CONFLICT,
                    file=str(workflow.file),
                    path=workflow.name,
                    line=workflow.line,
                    message=f"this workflow is already defined in {where}.",
                    hint="Give one of them another name.",
                )
            )
        errors.extend(file_errors)
        if all(e.is_warning for e in file_errors):
            workflows.extend(result.workflows)
    return workflows, errors


@dataclass
class _State:
    workflows: dict[str, YamlWorkflow] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)


_state = _State()


def load_definition_files(
    paths: Iterable[str | Path] | None = None, into: Registry | None = None
) -> list[LoadError]:
    """Register every workflow of valid files (default: the setting's); return the problems.

    Called at startup, after the ``workflows.py`` modules; calling it again
    replaces what the previous call registered. Never raises.
    """
    into = registry if into is None else into
    for name, workflow in _state.workflows.items():
        if name in into and yaml_workflow(into.get(name)) is workflow:
            into.unregister(name)
    _state.workflows = {}
    try:
        workflows, errors = check_files(paths, into=into)
        for workflow in workflows:
            into.register(workflow.definition())
            _state.workflows[workflow.name] = workflow
    except Exception as exc:  # noqa: BLE001 - startup must not fail on the loader's bug
        logger.exception("Could not load the YAML workflow definitions")
        errors = [LoadError(id=E_UNEXPECTED, file="DEFINITION_FILES", message=repr(exc))]
    _state.errors = errors
    for error in errors:
        (logger.warning if error.is_warning else logger.error)("%s", error)
    return errors


def loaded_workflows() -> list[YamlWorkflow]:
    """The YAML workflows registered by the last :func:`load_definition_files`."""
    return list(_state.workflows.values())


def load_errors() -> list[LoadError]:
    """The problems found by the last :func:`load_definition_files`."""
    return list(_state.errors)
