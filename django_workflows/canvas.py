"""Celery canvas -> DAG of nodes, and a node back to a signature.

Each node is one task call. Besides its parents (the edges that order it),
a node records its *input*: what Celery itself would prepend to its args.
An input is ``None`` (nothing: a root, or an immutable signature), a node
index (that node's result, as a chain passes it), or a list of inputs (a
chord body's list of header results, nested as Celery nests them). The
canvas's own result is described the same way, so the tracked run returns
what ``AsyncResult.get()`` of the native canvas would.
"""

from collections.abc import Callable, Iterable
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
from celery.utils.functional import _regen
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

#: Node options of the engine's own (never sent, never shown) start with this.
ENGINE_OPTION = "django_workflows_"

#: Node option: the chord bodies whose header this node is in and whose
#: errbacks Celery calls when the header fails (``chord_error_from_stack``).
CHORD_BODIES = f"{ENGINE_OPTION}chord_bodies"

#: Node option: the first nodes of the body of the chord this node is a header
#: task of (a last task of a header member, Celery's ``request.chord``):
#: ``add_to_chord`` makes them wait for the new member too.
CHORD = f"{ENGINE_OPTION}chord"

#: Engine options holding node indexes (moved with the node when a canvas
#: compiled at run time joins a run).
NODE_OPTIONS = (CHORD, CHORD_BODIES)


def public_options(options: dict) -> dict:
    """A node's options without the engine's own: what Celery is given, and people see."""
    return {k: v for k, v in options.items() if not k.startswith(ENGINE_OPTION)}


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
    #: The body of a chord whose header is read after launch (:class:`LazyHeader`):
    #: it also waits for the header to be read to its end.
    held: bool = False


@dataclass
class LazyHeader:
    """A chord's header given as a generator, left unread by the compiler.

    Celery sends such a header task by task as it reads it; the launch does
    too, after the run is saved: each member joins the run like a member
    added with ``add_to_chord``, and the body (its first nodes, ``held``)
    waits for the end of the generator as well.
    """

    tasks: Iterable
    #: Each member as the chord gives it (its partial args and options).
    member: "_Member"
    #: The body's first nodes.
    entries: list[int]
    #: What each member's nodes' :data:`CHORD_BODIES` option is (``[]``: none).
    errback_bodies: list[int]


@dataclass
class Graph:
    """A canvas compiled: its nodes in canvas order, and how its result is read."""

    nodes: list[Node]
    #: How the canvas's result is read from its nodes' results.
    result: Ref | None
    #: Shapes of this canvas that native Celery is known to run wrong.
    native_warnings: list[str] = field(default_factory=list)
    #: Nodes in the header of one of its chords (their failure is that chord's).
    in_header: set[int] = field(default_factory=set)
    #: Chord headers left to read after launch (``compile_canvas(lazy=True)``).
    lazy_headers: list[LazyHeader] = field(default_factory=list)


def compile_canvas(
    canvas: Any,
    app: Any = None,
    *,
    lazy: bool = False,
    emit: Callable[[Node], None] | None = None,
) -> Graph:
    """Flatten any Celery canvas (signature, chain, group, chord, nested) into a DAG.

    With ``lazy`` (a launch), a chord whose header is a generator and is sent
    at launch (it follows no task) keeps it unread, as Celery does
    (:class:`LazyHeader`): the launch reads it once the run is saved.

    With ``emit``, each node is handed to it once final, in index order, and
    not kept: a launch saves a 100,000-task chain as it compiles without
    holding it whole. The graph returned then has no nodes.
    """
    app = app or current_app
    nodes: list[Node] = []
    compiler = _Compiler(app, emit or nodes.append, lazy=lazy)
    result, _ = compiler.add(canvas, parents=(), input=None)
    sig = maybe_signature(canvas, app=app)
    if isinstance(sig, group) and not isinstance(sig, _chord) and _lone_list(sig, result):
        # Celery's special case: a group whose only member gives a group's
        # result (a chain ending in a group) returns that result, unwrapped.
        result = result[0]
    return Graph(
        nodes=nodes,
        result=result,
        native_warnings=compiler.warnings,
        in_header=compiler.in_header,
        lazy_headers=compiler.lazy_headers,
    )


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

    A node is final when made, except inside a chord: its header's last tasks
    name its body's first tasks (:data:`CHORD`), and its header tasks the body
    whose errbacks a failure calls (:data:`CHORD_BODIES`), both known once the
    body is compiled. So a chord *holds* the nodes made meanwhile, and they go
    out, in order, when no chord holds any more: a chain or a group streams, a
    chord's header is held until its body is compiled.
    """

    def __init__(self, app: Any, emit: Callable[[Node], None], lazy: bool = False) -> None:
        self.app = app
        self.emit = emit
        self.lazy = lazy
        #: Nodes made so far: the next node's index.
        self.count = 0
        #: Chords holding their nodes, and the nodes held (consecutive indexes).
        self.holds = 0
        self.held: list[Node] = []
        self.warnings: list[str] = []
        #: Nodes of a chord's header (compiled inner chords first).
        self.in_header: set[int] = set()
        self.lazy_headers: list[LazyHeader] = []

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
            if self.lazy and not parents and input is None and isinstance(sig.tasks, _regen):
                return self._lazy_chord(sig)
            self._check_header(sig)
            start = self.count
            self.holds += 1
            member = _Member(sig.args, _header_options(sig), self.app)
            header = [member.of(m) for m in _header(sig)]
            header_ref, header_ends = self._group(header, parents, input)
            body = _given(sig.body, _body_options(_own_options(sig)), self.app)
            return self._body(body, start, header_ends, header_ref)
        if isinstance(sig, group):
            tasks = sig.tasks
            if own := _own_options(sig):  # Celery gives them to each member's apply_async
                tasks = [_given(m, own, self.app) for m in tasks]
            return self._group(tasks, parents, input)
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

    def _body(self, body: Any, start: int, header_ends: tuple, header_ref: Ref) -> tuple:
        """Add a chord's body after its header (the nodes from ``start`` on).

        When the header fails, Celery calls the body's errbacks (a task's, or a
        chain's) with the body's id: each header node names the body for that.
        Each last task of the header names the body's first tasks
        (:data:`CHORD`), for ``add_to_chord``.
        """
        at = self.count
        ref, ends = self.add(body, header_ends, header_ref)
        ours = {end for end in header_ends if end >= start}  # not the chord's parents
        entries = [node.index for node in self._held(at) if ours.intersection(node.parents)]
        for end in sorted(ours):
            self._node(end).options[CHORD] = entries
        # A failure calls the errbacks of the innermost chord whose header it
        # is in (the chord it fails does not fail the one around it, natively).
        innermost = [node for node in self._held(start, at) if node.index not in self.in_header]
        self.in_header.update(node.index for node in innermost)
        if bodies := self._errback_bodies(body, at, header_ends):
            for node in innermost:
                node.options[CHORD_BODIES] = bodies
        self._unhold()
        return ref, ends

    def _made(self, node: Node) -> None:
        self.count += 1
        if self.holds:
            self.held.append(node)
        else:
            self.emit(node)

    def _held(self, start: int, stop: int | None = None) -> list[Node]:
        """The held nodes of indexes ``start`` (to ``stop``)."""
        first = self.held[0].index if self.held else self.count
        return self.held[max(start - first, 0) : None if stop is None else max(stop - first, 0)]

    def _node(self, index: int) -> Node | None:
        """A held node, by index (None if it is not held: made before the hold)."""
        held = self._held(index, index + 1)
        return held[0] if held else None

    def _unhold(self) -> None:
        """A chord is done: once no chord holds, the held nodes are final."""
        self.holds -= 1
        if not self.holds:
            for node in self.held:
                self.emit(node)
            self.held.clear()

    def _errback_bodies(self, body: Any, at: int, header_ends: tuple) -> list[int]:
        """The body whose errbacks a header failure calls, if it has any: a
        task's, or a chain's first task's (``[at]``); else ``[]``."""
        body = maybe_signature(body, app=self.app)
        entry = self._node(at)
        if (
            not isinstance(body, (group, _chord))
            and entry is not None
            and entry.options.get("link_error")
            and entry.parents == sorted(set(header_ends))
        ):
            return [at]
        return []

    def _lazy_chord(self, sig: _chord) -> tuple[Ref, tuple]:
        """A chord sent at launch whose header is a generator: its body now,
        held; its header members as the launch reads them (:class:`LazyHeader`)."""
        at = self.count
        self.holds += 1
        body = _given(sig.body, _body_options(_own_options(sig)), self.app)
        ref, ends = self.add(body, (), [])
        entries = [node.index for node in self._held(at) if not node.parents]
        for node in self._held(at):
            node.held = node.index in entries
        self.lazy_headers.append(
            LazyHeader(
                tasks=sig.tasks,
                member=_Member(sig.args, _header_options(sig), self.app),
                entries=entries,
                errback_bodies=self._errback_bodies(body, at, ()),
            )
        )
        self._unhold()
        return ref, ends

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
        if own := _own_options(sig):  # Celery gives them to its first step's apply_async
            if isinstance(steps[0], group) and len(steps) > 1:  # upgraded: a chord's body too
                steps[1] = _given(steps[1], _body_options(own), self.app)
            steps[0] = _given(steps[0], own, self.app)
        callbacks = maybe_list(sig.options.get("link")) or []
        if callbacks:  # a chain's callbacks are its last step's, as Celery links them
            steps[-1] = steps[-1].clone()
            for callback in callbacks:
                steps[-1].link(maybe_signature(callback, app=self.app).clone())
        header_start = None
        for position, step in enumerate(steps):
            # A group followed by a step is a chord (Celery upgrades it): a
            # chain's errbacks reach its header only as chord.link_error's do.
            upgraded = isinstance(step, group) and position + 1 < len(steps)
            if errbacks and not (upgraded and not self._header_errbacks()):
                step = step.clone()
                for errback in errbacks:
                    step.link_error(maybe_signature(errback, app=self.app).clone())
            start = self.count
            if upgraded:  # the group is a chord's header: held until its body is compiled
                self.holds += 1
            if header_start is None:
                ref, ends = self.add(step, ends, ref)
            else:
                ref, ends = self._body(step, header_start, ends, ref)
            header_start = start if upgraded else None
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


def _own_options(sig: Signature) -> dict:
    """A canvas's own options (``chain(...).set(queue=...)``), which Celery
    gives the tasks it sends: not its wiring, nor its callbacks (compiled apart)."""
    return {
        k: v
        for k, v in sig.options.items()
        if k not in _WIRING_OPTIONS and k not in ("link", "link_error")
    }


def _body_options(options: dict) -> dict:
    """What of a chord's options its body gets: Celery delays only the header."""
    return {k: v for k, v in options.items() if k not in ("countdown", "eta")}


def _header_options(sig: _chord) -> dict:
    """What each header task of a chord gets: the header group's own options,
    then the chord's."""
    header = sig.tasks
    own = _own_options(header) if isinstance(header, group) else {}
    return {**own, **_own_options(sig)}


def _given(sig: Any, options: dict, app: Any) -> Any:
    """``sig`` with a canvas's ``options`` over its own, as Celery's
    ``apply_async(**options)`` merges them."""
    if not options:
        return sig
    sig = maybe_signature(sig, app=app).clone()
    sig.options.update(options)
    return sig


@dataclass
class _Member:
    """How a chord gives its header members its partial args and options."""

    args: tuple
    options: dict
    app: Any

    def of(self, sig: Any) -> Any:
        sig = maybe_signature(sig, app=self.app)
        if self.args:  # a chord's partial args are each header task's
            sig = sig.clone(args=tuple(self.args))
        return _given(sig, self.options, self.app)


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
