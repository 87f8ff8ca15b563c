"""Celery canvas -> DAG of nodes, and a node back to a signature.

Each node is one task call. Besides its parents (the edges that order it),
a node records its *input*: what Celery itself would prepend to its args.
An input is ``None`` (nothing: a root, or an immutable signature), a node
index (that node's result, as a chain passes it), or a list of inputs (a
chord body's list of header results, nested as Celery nests them). The
canvas's own result is described the same way, so the tracked run returns
what ``AsyncResult.get()`` of the native canvas would.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import current_app
from celery.canvas import (
    Signature,
    _chain,
    _chord,
    chunks,
    group,
    maybe_signature,
    maybe_unroll_group,
)
from kombu.utils.functional import maybe_list

from .exceptions import CanvasError

Ref = int | list  # a node index, or a (nested) list of node indexes

#: Signature options that describe Celery's own wiring of a canvas: the
#: engine replaces that wiring, so they are not kept on the node.
#: ``link_error`` is kept and sent with the task: Celery calls the errbacks of
#: a failed task itself, old-style (``errback(task_id)``, as a task) and
#: new-style (``errback(request, exc, traceback)``, in the worker), as it would.
_WIRING_OPTIONS = frozenset(
    {
        "task_id",
        "link",
        "chord",
        "chain",
        "group_id",
        "group_index",
        "parent_id",
        "root_id",
        "reply_to",
        "subtask_type",
        "immutable",
    }
)


FOREACH_TASK = "django_workflows.foreach"

#: Node option (never sent): the chord bodies whose header this node is in and
#: whose errbacks Celery calls when the header fails (``chord_error_from_stack``).
CHORD_BODIES = "django_workflows_chord_bodies"


@Signature.register_type(name=FOREACH_TASK)
class foreach(Signature):  # noqa: N801 - named like Celery's group, chain, chord
    """Run ``task`` once for each item of the previous step's result.

    ``chain(list_files.s(), foreach(process.s()), merge.s())``: in a workflow
    each item becomes its own tracked task run (``process(item)``), and the
    next step receives their results as a list, in order; an empty list goes
    straight on as ``[]``. Run natively by Celery, the ``django_workflows.foreach``
    task calls ``task`` for each item in turn, in one worker, with the same result.
    """

    def __init__(self, task: Any, **options: Any) -> None:
        if isinstance(task, dict) and not isinstance(task, Signature):
            task = Signature.from_dict(task)
        super().__init__(FOREACH_TASK, (), {"task": task}, subtask_type=FOREACH_TASK, **options)

    @classmethod
    def from_dict(cls, d: dict, app: Any = None) -> "foreach":
        return cls(d["kwargs"]["task"], app=app, **d["options"])

    @property
    def item_task(self) -> Signature:
        return maybe_signature(self.kwargs["task"], app=self._app)


@dataclass(slots=True)  # a 100,000-task canvas compiles to 100,000 of them
class Node:
    index: int
    task: str
    args: list
    kwargs: dict
    options: dict
    immutable: bool
    input: Ref | None
    parents: list[int] = field(default_factory=list)
    #: A foreach node: expands at run time into one task run per item of its input.
    map: bool = False


@dataclass
class Graph:
    """A canvas compiled: its nodes in canvas order, and how its result is read."""

    nodes: list[Node]
    #: How the canvas's result is read from its nodes' results.
    result: Ref | None
    #: Shapes of this canvas that native Celery is known to run wrong.
    native_warnings: list[str] = field(default_factory=list)


def compile_canvas(
    canvas: Any, app: Any = None, emit: Callable[[Node], None] | None = None
) -> Graph:
    """Flatten any Celery canvas (signature, chain, group, chord, nested) into a DAG.

    With ``emit``, each node is handed to it once final, in index order, and
    not kept: a launch saves a 100,000-task canvas as it compiles without
    holding it whole. The graph returned then has no nodes.
    """
    app = app or current_app
    nodes: list[Node] = []
    compiler = _Compiler(app, emit or nodes.append)
    result, _ = compiler.add(canvas, parents=(), input=None)
    sig = maybe_signature(canvas, app=app)
    if isinstance(sig, group) and not isinstance(sig, _chord) and _lone_list(sig, result):
        # Celery's special case: a group whose only member gives a group's
        # result (a chain ending in a group) returns that result, unwrapped.
        result = result[0]
    return Graph(nodes=nodes, result=result, native_warnings=compiler.warnings)


def _lone_list(sig: group, result: Ref | None) -> bool:
    members = list(sig.tasks)
    return (
        len(members) == 1
        and not isinstance(maybe_signature(members[0]), group)
        and isinstance(result, list)
        and len(result) == 1
        and isinstance(result[0], list)
    )


class _Compiler:
    """Compiles a canvas node by node, handing each to ``emit`` once final.

    A node is final when made, except in a chord's header when the body may
    need naming there (``CHORD_BODIES``, known once the body is compiled):
    such a chord *holds* the nodes made meanwhile, and they go out, in
    order, when no chord holds any more.
    """

    def __init__(self, app: Any, emit: Callable[[Node], None]) -> None:
        self.app = app
        self.emit = emit
        #: Nodes made so far: the next node's index.
        self.count = 0
        self.warnings: list[str] = []
        #: Chords holding their nodes, and the nodes held (consecutive indexes).
        self.holds = 0
        self.held: list[Node] = []
        #: Held nodes of a chord's header (compiled inner chords first).
        self.in_header: set[int] = set()

    def add(self, sig: Any, parents: tuple[int, ...], input: Ref | None) -> tuple[Ref, tuple]:
        """Add ``sig`` after ``parents``, fed ``input``.

        Returns its result reference and its terminal nodes (what a step
        after it must wait for).
        """
        sig = maybe_signature(sig, app=self.app)
        if sig is None:
            raise CanvasError("A workflow needs a Celery signature or canvas, got None.")
        if not isinstance(sig, Signature):
            raise CanvasError(f"Not a Celery signature or canvas: {sig!r}")
        if isinstance(sig, chunks):
            sig = sig.group()
        if sig.task == FOREACH_TASK:
            return self._foreach(sig, parents, input)
        if isinstance(sig, _chain):
            return self._chain(sig, parents, input)
        if isinstance(sig, _chord):
            self._check_header(sig)
            start = self.count
            hold = self._hold(sig.body)
            header = _header(sig)
            if sig.args:  # a chord's partial args are each header task's
                header = [
                    maybe_signature(m, app=self.app).clone(args=tuple(sig.args)) for m in header
                ]
            header_ref, header_ends = self._group(header, parents, input)
            return self._body(sig.body, start, header_ends, header_ref, hold)
        if isinstance(sig, group):
            return self._group(sig.tasks, parents, input)
        return self._task(sig, parents, input)

    def _check_header(self, sig: _chord) -> None:
        members = [maybe_signature(m, app=self.app) for m in _header(sig)]
        if any(isinstance(m, group) for m in members):
            self.warnings.append(
                "a group nested in a chord's header: native Celery may hand the body "
                "the header's results out of order "
                "(seen with Celery 5.x on the django-db and Redis backends). "
                "The engine runs it with the results in header order."
            )

    def _hold(self, body: Any, errbacks: list | None = None) -> bool:
        """Whether a chord with ``body`` holds its nodes until the body is
        compiled (and start holding if so). Its header names the body only
        if the body has errbacks: a group or chord body, or a plain task
        without errbacks (the usual chord of a wide header), holds nothing."""
        body = maybe_signature(body, app=self.app)
        hold = not isinstance(body, (group, _chord)) and (
            type(body) is not Signature
            or body.task == FOREACH_TASK
            or bool(errbacks)
            or bool(body.options.get("link_error"))
        )
        self.holds += hold
        return hold

    def _body(
        self, body: Any, start: int, header_ends: tuple, header_ref: Ref, hold: bool
    ) -> tuple:
        """Add a chord's body after its header (the nodes from ``start`` on).

        When the header fails, Celery calls the body's errbacks (a task's, or a
        chain's) with the body's id: each header node names the body for that.
        ``hold`` says whether this chord held its nodes for it (:meth:`_hold`).
        """
        at = self.count
        ref, ends = self.add(body, header_ends, header_ref)
        body = maybe_signature(body, app=self.app)
        first = self.held[0].index if self.held else at
        entry = self.held[at - first] if 0 <= at - first < len(self.held) else None
        # A failure calls the errbacks of the innermost chord whose header it
        # is in (the chord it fails does not fail the one around it, natively).
        header = self.held[max(start - first, 0) : max(at - first, 0)]
        innermost = [node for node in header if node.index not in self.in_header]
        self.in_header.update(node.index for node in innermost)
        if (
            hold
            and not isinstance(body, (group, _chord))
            and entry is not None
            and entry.options.get("link_error")
            and entry.parents == sorted(set(header_ends))
        ):
            for node in innermost:
                node.options[CHORD_BODIES] = [at]
        self.holds -= hold
        if not self.holds:
            self._release()
        return ref, ends

    def _made(self, node: Node) -> None:
        self.count += 1
        if self.holds:
            self.held.append(node)
        else:
            self.emit(node)

    def _release(self) -> None:
        """No chord holds: the held nodes are final."""
        for node in self.held:
            self.emit(node)
        self.held.clear()
        self.in_header.clear()

    def _chain(self, sig: _chain, parents: tuple, input: Ref | None) -> tuple[Ref, tuple]:
        ref, ends = input, parents
        if not sig.tasks:
            raise CanvasError("An empty chain has nothing to run.")
        errbacks = maybe_list(sig.options.get("link_error")) or []
        steps = [maybe_signature(step, app=self.app) for step in sig.tasks]
        # Celery runs a one-task group in a chain as that task (no list).
        steps = [
            maybe_unroll_group(step) if isinstance(step, group) and not isinstance(step, _chord)
            else step
            for step in steps
        ]  # fmt: skip
        if sig.args:  # a chain's partial args are its first step's, as Celery gives them
            steps[0] = _with_args(steps[0], sig.args)
        callbacks = maybe_list(sig.options.get("link")) or []
        if callbacks:  # a chain's callbacks are its last step's, as Celery links them
            steps[-1] = steps[-1].clone()
            for callback in callbacks:
                steps[-1].link(maybe_signature(callback, app=self.app).clone())
        header_start, held = None, False
        for position, step in enumerate(steps):
            # A group followed by a step is a chord (Celery upgrades it): a
            # chain's errbacks reach its header only as chord.link_error's do.
            upgraded = isinstance(step, group) and position + 1 < len(steps)
            if errbacks and not (upgraded and not self._header_errbacks()):
                step = step.clone()
                for errback in errbacks:
                    step.link_error(maybe_signature(errback, app=self.app).clone())
            start = self.count
            hold = upgraded and self._hold(steps[position + 1], errbacks)
            if header_start is None:
                ref, ends = self.add(step, ends, ref)
            else:
                ref, ends = self._body(step, header_start, ends, ref, held)
            header_start, held = (start, hold) if upgraded else (None, False)
        return ref, ends

    def _header_errbacks(self) -> bool:
        """Celery's ``task_allow_error_cb_on_chord_header``: a chord's errbacks
        are its header tasks' too (else only its body's)."""
        return bool(self.app.conf.task_allow_error_cb_on_chord_header)

    def _group(self, tasks: Any, parents: tuple, input: Ref | None) -> tuple[list, tuple]:
        refs: list = []
        ends: list[int] = []
        for member in tasks:
            member = maybe_signature(member, app=self.app)
            ref, member_ends = self.add(member, parents, input)
            # Celery unrolls a group nested in a group into one flat list.
            if isinstance(member, group):
                refs.extend(ref)
            else:
                refs.append(ref)
            ends.extend(member_ends)
        # An empty group passes its parents on: what follows waits for them.
        return refs, tuple(ends) if tasks else parents

    def _foreach(self, sig: Signature, parents: tuple, input: Ref | None) -> tuple[int, tuple]:
        item = maybe_signature(sig.kwargs.get("task"), app=self.app)
        if not isinstance(item, Signature) or isinstance(item, (_chain, group, _chord)):
            raise CanvasError(f"foreach takes one task signature, got {item!r}.")
        if input is None or item.immutable:
            raise CanvasError(
                f"foreach({item.task}) needs a step before it and a mutable signature: "
                "it runs its task once for each item of the previous step's result."
            )
        return self._task(item, parents, input, map=True)

    def _task(
        self, sig: Signature, parents: tuple, input: Ref | None, map: bool = False
    ) -> tuple[int, tuple]:
        options = {
            k: v
            for k, v in sig.options.items()
            if k not in _WIRING_OPTIONS and not (k == "link_error" and not v)
        }
        node = Node(
            index=self.count,
            task=sig.task,
            args=list(sig.args),
            kwargs=dict(sig.kwargs),
            options=options,
            immutable=bool(sig.immutable),
            input=None if sig.immutable else input,
            parents=sorted(set(parents)),
            map=map,
        )
        self._made(node)
        # link callbacks run after the task with its result, outside the chain.
        for callback in sig.options.get("link") or ():
            self.add(callback, (node.index,), node.index)
        return node.index, (node.index,)


def _with_args(sig: Signature, args: Any) -> Signature:
    """``sig`` given partial ``args`` (prepended), as Celery gives a canvas's
    own args to its first task (``clone`` drops a chain's)."""
    if isinstance(sig, _chain):
        sig = sig.clone()
        sig.args = (*args, *sig.args)
        return sig
    return sig.clone(args=tuple(args))


def _header(sig: _chord) -> Any:
    """A chord's header tasks: a list, or a group when Celery built the chord
    itself (``group | task``, as ``Task.replace`` does with a group)."""
    header = sig.tasks
    return header.tasks if isinstance(header, group) else header


def resolve(ref: Ref | None, results: dict[int, Any]) -> Any:
    """Build the value an input or result reference stands for."""
    if isinstance(ref, list):
        return [resolve(item, results) for item in ref]
    return results[ref]


def referenced(ref: Ref | None) -> set[int]:
    """The node indexes a reference reads."""
    if ref is None:
        return set()
    if isinstance(ref, list):
        return set().union(*map(referenced, ref)) if ref else set()
    return {ref}
