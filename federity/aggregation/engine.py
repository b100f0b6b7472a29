"""The streaming aggregation engine: every strategy runs chunk by chunk over weights read in pieces.

An aggregation combines K updates, each trained on a base model, into the next version of the current model::

    new = model + combine(update_i - base_i)

The engine never holds a whole update in memory. It walks the model's tensors in the order the output file
stores them, cuts each into chunks of coordinates, and gives the strategy one :class:`Chunk` at a time: that
coordinate range of every update, of the model and of every distinct base (read from their files only when the
strategy asks for them, see :class:`~federity.weights.tensor_file.TensorFile`), and of the strategy's previous
server state. What the strategy returns is written straight to the output file, so memory holds one chunk per
input, whatever the model's size.

Strategies that need a whole-model statistic (an update's norm for clipping, pairwise distances for Krum) ask
:class:`Round` for it; the engine computes it in one extra pass over the chunks, accumulated chunk by chunk in
float64 in a fixed order. Results are deterministic: the same inputs give the same bytes, so ``verify``
recomputes an aggregate bit for bit through this same code.

Update-norm clipping (Sun et al. 2019, "Can You Really Backdoor Federated Learning?") is done here, under any
strategy that has a ``clip_norm`` C: update i's change over the floating-point tensors is scaled by
``s_i = min(1, C / ||u_i - b_i||)`` before the strategy sees it (see :meth:`Round.clip_factors`). Without
``clip_norm``, or when no update's change is longer than C, the chunks are exactly those of an unclipped round.

Integer tensors (e.g. BatchNorm's ``num_batches_tracked``) are combined in float64 and rounded to the nearest
integer; floating tensors are combined in their own precision (float32 for float16 and float32), float64 tensors
in float64. Results that are not finite in the stored dtype (NaN, infinity, overflow) or integers out of range are
refused, naming the tensor.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property, partial
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from federity.errors import UpdateError
from federity.sealing.objects import Sealing
from federity.weights.files import Layout, canonical_order, describe_mismatch, stored_values
from federity.weights.tensor_file import CanonicalWriter

Tensors = dict[str, np.ndarray]

CHUNK_ELEMENTS = 1 << 18
"""Coordinates per chunk, at most (1 MiB of float32 per input): small enough to stay in the processor's cache."""
STACK_BYTES = 16 << 20
"""Budget for one chunk of all K updates' float64 deltas stacked, which bounds the chunk when K is large."""
MIN_CHUNK = 1 << 10
MAX_THREADS = 4
"""Threads that compute chunks at once, at most (no more than the cores the process may use): each holds its own
chunk of every input, so memory grows with them."""
AHEAD = 16
"""Chunks per thread submitted ahead of the result read last. Enough that the threads never wait for the reader to
submit more (a FedAvg chunk takes about 0.5 ms, and the reader may wait 5 ms for the GIL: with 2 ahead, aggregating
10 updates of 100 MB took 0.47 s instead of 0.35 s); few enough that results waiting to be read stay small (Krum's
distances: a K x K matrix per chunk; with every chunk submitted at once, 100 updates of 100 MB peaked at 2.4 times
one model's memory)."""
DEFAULT_MEMORY_LIMIT = 2 << 30
"""Default ceiling on :meth:`Round.memory_estimate` (federity.yaml's ``aggregation.max_memory_bytes``)."""


class TensorSource(Protocol):
    """Named tensors the engine reads: a file (:class:`~federity.weights.tensor_file.TensorFile`) or tensors in
    memory (:class:`InMemory`)."""

    @property
    def layout(self) -> Layout:
        """Each tensor's shape and dtype."""
        ...

    def read(self, name: str, start: int, stop: int, into: np.ndarray | None = None) -> np.ndarray:
        """Elements ``start`` to ``stop`` of tensor ``name``, flattened (never written to by the engine). A source
        that copies them (a file) copies them into ``into`` when given (bytes, large enough) and returns a view
        of it."""
        ...


class InMemory:
    """A :class:`TensorSource` over tensors already in memory."""

    def __init__(self, tensors: Tensors) -> None:
        self._flat = {name: np.ascontiguousarray(t).reshape(-1) for name, t in tensors.items()}
        self._layout = {name: (tuple(t.shape), str(t.dtype)) for name, t in tensors.items()}

    @property
    def layout(self) -> Layout:
        """Each tensor's shape and dtype."""
        return self._layout

    def read(self, name: str, start: int, stop: int, into: np.ndarray | None = None) -> np.ndarray:
        """A view of elements ``start`` to ``stop`` of tensor ``name`` (``into`` is not needed)."""
        return self._flat[name][start:stop]


@dataclass(frozen=True)
class Contribution:
    """What a strategy knows of one update beyond its weights: its sample count and how many rounds behind the
    current model it was trained (its staleness)."""

    n_samples: int
    staleness: int = 0

    @property
    def weight(self) -> Fraction:
        """Its FedAvg weight, exactly: ``n_samples / (1 + staleness)``, the sample count discounted by the
        polynomial staleness function of FedAsync (Xie et al. 2019)."""
        return Fraction(self.n_samples, 1 + self.staleness)


def work_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a tensor of ``dtype`` is combined in: its own precision for float32 and float64, float32 for
    half precision, float64 for integers and booleans (then rounded back)."""
    if dtype == np.float64 or not np.issubdtype(dtype, np.floating):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


@dataclass
class Chunk:
    """One range of coordinates of one tensor, in every input: what a strategy combines at a time.

    ``updates``, :attr:`model` and :attr:`bases` are read-only arrays (``bases[base_of[i]]`` is update i's base;
    a base that is the current model is :attr:`model` itself); the model and the bases are read only when a
    strategy asks for them. The arrays read from files are buffers the engine reuses for a later chunk: they
    are valid while the chunk is being combined (copy what must outlive it). ``state`` holds the previous
    server state of this range for each of the strategy's :attr:`Strategy.state` names (zeros when there is
    none yet); a stateful strategy fills ``new_state`` with the same names.

    When the round clips (``scales`` is set: update i's clip factor ``s_i``, see :meth:`Round.clip_factors`),
    ``updates[i]`` of a clipped update (``s_i < 1``) is ``b_i + s_i (u_i - b_i)``, computed in the work dtype,
    and :meth:`deltas` gives ``s_i (u_i - b_i)`` computed in its own dtype from the update as trained
    (``trained[i]``). Integer tensors are never clipped (``scales`` is then ``None``).
    """

    name: str
    start: int
    stop: int
    dtype: np.dtype
    updates: list[np.ndarray]
    base_of: list[int]
    state: dict[str, np.ndarray]
    read_model: Callable[[], np.ndarray]
    read_bases: Callable[[np.ndarray], list[np.ndarray]]
    """Reads the distinct bases, given the model's array (which stands for a base that is the model)."""
    new_state: dict[str, np.ndarray] = field(default_factory=dict)
    scales: list[float] | None = None
    trained: list[np.ndarray] | None = None
    """The updates as trained, before clipping (``None`` when ``scales`` is: ``updates`` are then as trained)."""

    @cached_property
    def model(self) -> np.ndarray:
        """This range of the current model."""
        return self.read_model()

    @cached_property
    def bases(self) -> list[np.ndarray]:
        """This range of each distinct base."""
        return self.read_bases(self.model)

    @property
    def work(self) -> np.dtype:
        """The dtype this chunk is combined in (:func:`work_dtype`)."""
        return work_dtype(self.dtype)

    @property
    def is_float(self) -> bool:
        """Whether the tensor holds floating-point values (statistics such as norms count only those)."""
        return bool(np.issubdtype(self.dtype, np.floating))

    def linear(self, terms: Sequence[tuple[float, np.ndarray]]) -> np.ndarray:
        """``sum(c * x for c, x in terms)`` in the work dtype, accumulated in the order given, without temporary
        arrays larger than the chunk."""
        out = np.empty(self.stop - self.start, self.work)
        scratch = np.empty_like(out)
        (first, source), *rest = terms
        np.multiply(source, first, out=out, casting="unsafe")
        for coefficient, source in rest:
            np.multiply(source, coefficient, out=scratch, casting="unsafe")
            out += scratch
        return out

    def deltas(self, dtype: np.dtype | type = np.float64) -> np.ndarray:
        """Every update's change from its base, stacked: shape ``(K, n)``, in ``dtype`` (clipped: row i is
        ``s_i (u_i - b_i)``)."""
        out = np.empty((len(self.updates), self.stop - self.start), dtype)
        if self.scales is None:
            for row, (update, base) in zip(out, zip(self.updates, (self.bases[b] for b in self.base_of),
                                                     strict=True), strict=True):
                np.subtract(update, base, out=row, dtype=dtype)
            return out
        assert self.trained is not None
        for row, update, base, scale in zip(out, self.trained, (self.bases[b] for b in self.base_of),
                                            self.scales, strict=True):
            np.subtract(update, base, out=row, dtype=dtype)
            if scale < 1:
                row *= scale
        return out


Plan = Callable[[Chunk], np.ndarray]
"""What a strategy computes per chunk: the chunk's new values (any floating dtype; the engine rounds and casts)."""


class Strategy(Protocol):
    """An aggregation strategy: a registered plugin (``name``, ``version``) with parameters.

    A strategy may also have a ``clip_norm`` attribute (a positive float, or ``None``): the engine then clips
    every update's change to that L2 norm before the strategy sees it (:meth:`Round.clip_factors`).
    """

    name: str
    version: int
    state: tuple[str, ...]
    """The names of its server-state tensors (e.g. ``("m", "v")`` for FedAdam); empty for a stateless one."""

    def parameters(self) -> dict[str, float | int | str]:
        """The parameters it was made with, as the aggregate commit signs them."""
        ...

    def plan(self, round: Round) -> Plan:
        """What to compute per chunk, decided once per aggregation from ``round`` (its contributions, and any
        whole-model statistics the strategy asks it for). The engine calls the plan from several threads at
        once, one chunk each: it must depend on nothing but its chunk and what ``plan`` decided."""
        ...


class Round:
    """The inputs of one aggregation, as strategies see them: the contributions and whole-model statistics.

    ``clip_norm`` C, when given, clips every update's change to L2 norm at most C (over the floating-point tensors
    together): :meth:`chunks`, :meth:`delta_gram` and :meth:`squared_distances` then describe the clipped
    changes, while :meth:`delta_norms` stays the norms of the changes as trained (the clip factors come from them).
    """

    def __init__(self, model: TensorSource, updates: list[TensorSource], bases: list[TensorSource],
                 base_of: list[int], contributions: list[Contribution], state: TensorSource | None,
                 state_names: tuple[str, ...], clip_norm: float | None = None,
                 workers: Workers | None = None) -> None:
        self.model = model
        self.updates = updates
        self.bases = bases
        self.base_of = base_of
        self.contributions = contributions
        self._state = state
        self._state_names = state_names
        self.layout = model.layout
        count = max(len(updates), 1)
        self.chunk_elements = max(MIN_CHUNK, min(CHUNK_ELEMENTS, _floor_pow2(STACK_BYTES // (8 * count))))
        """Coordinates per chunk: a function of K alone, so whole-model statistics (summed chunk by chunk) are
        the same bits on any machine, whatever its number of threads."""
        self.clip_norm = clip_norm
        self.workers = workers or Workers(1)
        self._norms: np.ndarray | None = None
        self._gram: np.ndarray | None = None
        self._factors: np.ndarray | None = None

    @property
    def k(self) -> int:
        """The number of updates."""
        return len(self.updates)

    def memory_estimate(self) -> int:
        """Bytes the engine may hold at once beyond its inputs' page cache, at most: on each of its threads, for
        every update a chunk of float64 change, a sorted copy and a scratch row (what the coordinate-wise
        strategies stack), a read chunk of each input and the output chunk; and the K x K statistics.
        Independent of the model's size; it grows with K only once the chunk is at its smallest
        (:data:`MIN_CHUNK`) or through the K x K matrix."""
        inputs = len(self.updates) + len(self.bases) + 2 + len(self._state_names)
        per_thread = (3 * self.k + inputs + 4) * self.chunk_elements * 8
        return self.workers.count * per_thread + 2 * self.k * self.k * 8

    def base_is_model(self, index: int) -> bool:
        """Whether base ``index`` is the current model itself."""
        return self.bases[index] is self.model

    def clip_factors(self) -> np.ndarray:
        """Each update's clip factor ``s_i = min(1, C / ||u_i - b_i||)`` (float64), from :meth:`delta_norms` (so one
        pass over the inputs); all ones when the round does not clip. A change of norm 0 keeps factor 1."""
        if self._factors is None:
            if self.clip_norm is None:
                self._factors = np.ones(self.k)
            else:
                with np.errstate(divide="ignore"):
                    self._factors = np.minimum(1.0, self.clip_norm / self.delta_norms())
        return self._factors

    def chunks(self) -> Iterator[Chunk]:
        """Every chunk of every tensor, in the output file's order, as the strategy sees it (clipped when the round
        clips), one after another in this thread."""
        return (make() for make in self._walk(self._scales()))

    def map_chunks(self, work: Callable[[Chunk], R]) -> Iterator[R]:
        """``work(chunk)`` for every chunk of :meth:`chunks`, computed on the round's :class:`Workers`; the results
        come in the chunks' order."""
        return self.workers.map(lambda make: work(make()), self._walk(self._scales()))

    def _scales(self) -> list[float] | None:
        factors = self.clip_factors()
        return None if (factors >= 1).all() else [float(s) for s in factors]

    def _walk(self, scales: list[float] | None) -> Iterator[Callable[[], Chunk]]:
        """For every chunk, in order, what reads it (with floating-point updates clipped by ``scales``, none when
        ``None``): each thread that reads chunks of this walk reads them into its own buffers."""
        buffers = _ReadBuffers(self.chunk_elements * 8)
        for name, (shape, dtype_name) in canonical_order(self.layout):
            dtype = np.dtype(dtype_name)
            size = int(np.prod(shape, dtype=np.int64))
            for start in range(0, size, self.chunk_elements) if size else [0]:
                yield partial(self._chunk, buffers, name, dtype, start, min(start + self.chunk_elements, size),
                              scales if _float(dtype) else None)

    def _chunk(self, buffers: _ReadBuffers, name: str, dtype: np.dtype, start: int, stop: int,
               scales: list[float] | None) -> Chunk:
        states = self._state_names if _float(dtype) else ()
        state = {s: buffers.read(self._state, state_tensor_name(s, name), start, stop, slot=s)
                 if self._state is not None else np.zeros(stop - start, np.float32) for s in states}
        trained = [buffers.read(u, name, start, stop) for u in self.updates]
        chunk = Chunk(name, start, stop, dtype, trained, self.base_of, state,
                      partial(buffers.read, self.model, name, start, stop),
                      partial(self._read_bases, buffers, name, start, stop),
                      scales=scales, trained=trained if scales is not None else None)
        if scales is not None:
            chunk.updates = [_clip(u, chunk.bases[b], s, chunk.work) if s < 1 else u
                             for u, b, s in zip(trained, self.base_of, scales, strict=True)]
        return chunk

    def _read_bases(self, buffers: _ReadBuffers, name: str, start: int, stop: int,
                    model: np.ndarray) -> list[np.ndarray]:
        return [model if base is self.model else buffers.read(base, name, start, stop) for base in self.bases]

    def delta_norms(self) -> np.ndarray:
        """Each update's L2 norm of its change from its base over every floating-point tensor (float64; one pass
        over the inputs, computed once). These are the changes as trained, never clipped."""
        if self._norms is None:
            squares = np.zeros(self.k)
            for part in self.workers.map(lambda make: _float_statistic(make(), _row_squares), self._walk(None)):
                if part is not None:
                    squares += part  # summed in the chunks' order: the same bits on any number of threads
            self._norms = np.sqrt(squares)
        return self._norms

    def delta_gram(self) -> np.ndarray:
        """The K x K Gram matrix of the updates' changes (clipped, if the round clips) over every floating-point
        tensor (float64; one pass over the inputs, computed once): ``squared distance(i, j) = G[i,i] + G[j,j] -
        2 G[i,j]``."""
        if self._gram is None:
            gram = np.zeros((self.k, self.k))
            for part in self.map_chunks(partial(_float_statistic, statistic=_gram)):
                if part is not None:
                    gram += part
            self._gram = gram
        return self._gram

    def squared_distances(self) -> np.ndarray:
        """The K x K squared L2 distances between the updates' changes (from :meth:`delta_gram`; never negative)."""
        gram = self.delta_gram()
        diagonal = np.diag(gram)
        return np.maximum(diagonal[:, None] + diagonal[None, :] - 2 * gram, 0.0)

    def fedavg_terms(self, weights: Sequence[Fraction] | None = None,
                     selected: Sequence[int] | None = None) -> list[tuple[Fraction, int]]:
        """The exact coefficients of the weighted mean of the selected updates' changes applied to the model,
        ``model + sum(w_i (u_i - b_i)) / sum(w_i)``, as a linear combination of the distinct inputs: pairs
        ``(coefficient, index)`` where index ``i < K`` is update i, ``K + j`` is base j and ``-1`` the model.
        Coefficients are exact fractions, so a model term that cancels (every update trained on the current
        model) is dropped and the result is then exactly the weighted mean of the updates' weights."""
        chosen = list(range(self.k)) if selected is None else list(selected)
        weights = [self.contributions[i].weight for i in chosen] if weights is None else list(weights)
        total = sum(weights, Fraction(0))
        if total <= 0:
            raise UpdateError("the updates' aggregation weights sum to zero (no samples)",
                              "every aggregated update must report a positive n_samples in update.json")
        coefficients: dict[int, Fraction] = {-1: Fraction(1)}
        for index, weight in zip(chosen, weights, strict=True):
            share = weight / total
            coefficients[index] = coefficients.get(index, Fraction(0)) + share
            base = -1 if self.base_is_model(self.base_of[index]) else self.k + self.base_of[index]
            coefficients[base] = coefficients.get(base, Fraction(0)) - share
        return [(c, i) for i, c in sorted(coefficients.items()) if c != 0]

    @staticmethod
    def source(chunk: Chunk, index: int) -> np.ndarray:
        """The chunk's view of input ``index`` as :meth:`fedavg_terms` numbers them."""
        if index < 0:
            return chunk.model
        k = len(chunk.updates)
        return chunk.updates[index] if index < k else chunk.bases[index - k]


def state_tensor_name(state: str, tensor: str) -> str:
    """The name of server-state ``state`` of model tensor ``tensor`` in the state file (e.g. ``fc.weight:m``)."""
    return f"{tensor}:{state}"


def state_layout(layout: Layout, names: tuple[str, ...]) -> Layout:
    """The layout of a strategy's state file: float32 tensors, one per state name per floating model tensor."""
    return {state_tensor_name(s, name): (shape, "float32") for name, (shape, dtype) in layout.items()
            if _float(np.dtype(dtype)) for s in names}


R = TypeVar("R")
T = TypeVar("T")
_IN_WORKER = threading.local()


class Workers:
    """The threads an aggregation computes its chunks on: ``count`` of them, or the caller's thread alone when
    ``count`` is 1. Use it as a context manager: inside, BLAS (numpy's matrix products, e.g. Krum's distances)
    runs on one thread per call when there are several of ours, so their calls do not compete for the cores
    (measured: Krum of 100 updates of 100 MB took 60 s and 2.6 times one model's memory with OpenBLAS's own
    threads under two of ours); leaving it waits for the threads to finish."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._pool: Executor | None = None
        self._blas: threadpool_limits | None = None
        if count > 1:
            self._pool = ThreadPoolExecutor(count, thread_name_prefix="aggregate", initializer=_mark_worker)

    @staticmethod
    def available() -> int:
        """As many threads as the process may use cores, at most :data:`MAX_THREADS`."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(MAX_THREADS, cores))

    def map(self, work: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``work(item)`` for every item, the results in the items' order, at most :data:`AHEAD` per thread
        submitted ahead of the one read last. When it stops (an error, or the caller stops reading), no ``work`` is
        left running. Called from one of the threads, it runs in that thread."""
        if self._pool is None or getattr(_IN_WORKER, "active", False):
            yield from map(work, items)
            return
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(self._pool.submit(work, item))
                if len(pending) > AHEAD * self.count:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            wait(pending)

    def __enter__(self) -> Workers:
        if self._pool is not None:
            self._blas = threadpool_limits(1, user_api="blas")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._blas is not None:
            self._blas.restore_original_limits()


def _mark_worker() -> None:
    _IN_WORKER.active = True


class _ReadBuffers:
    """Where one walk over the chunks reads its inputs: a buffer per input per thread, read into again for each
    chunk (reading into fresh memory for every chunk pays its page faults: about 3 times the time of the reads
    themselves, measured on 10 files of 100 MB in the page cache)."""

    def __init__(self, nbytes: int) -> None:
        self._nbytes = nbytes
        self._local = threading.local()

    def read(self, source: TensorSource, name: str, start: int, stop: int, slot: str = "") -> np.ndarray:
        """``source.read`` into this thread's buffer for ``source`` (and ``slot``, for a source read more than once
        per chunk), overwriting what the thread's previous chunk read there."""
        buffers: dict[tuple[int, str], np.ndarray] = self._local.__dict__.setdefault("buffers", {})
        buffer = buffers.get((id(source), slot))
        if buffer is None:
            buffer = buffers[id(source), slot] = np.empty(self._nbytes, np.uint8)
        return source.read(name, start, stop, buffer)


def _float_statistic(chunk: Chunk, statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray | None:
    """``statistic`` of the chunk's float64 changes, or ``None`` for an integer tensor's chunk."""
    return statistic(chunk.deltas()) if chunk.is_float else None


def _row_squares(deltas: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", deltas, deltas)


def _gram(deltas: np.ndarray) -> np.ndarray:
    return deltas @ deltas.T


def _clip(update: np.ndarray, base: np.ndarray, scale: float, work: np.dtype) -> np.ndarray:
    """``base + scale (update - base)`` in ``work``."""
    out = np.subtract(update, base, dtype=work)
    out *= work.type(scale)
    out += base
    return out


def _float(dtype: np.dtype) -> bool:
    return bool(np.issubdtype(dtype, np.floating))


def _floor_pow2(value: int) -> int:
    return 1 << max(value, 1).bit_length() - 1


@dataclass(frozen=True)
class Output:
    """What an aggregation wrote: the weights file's sha256 and md5, and the state file's when the strategy has
    state (``None`` for results kept in memory)."""

    weights_sha256: str | None
    state_sha256: str | None = None
    weights_md5: str | None = None
    state_md5: str | None = None


def aggregate_into(strategy: Strategy, model: TensorSource, updates: list[TensorSource],
                   bases: list[TensorSource], base_of: list[int], contributions: list[Contribution],
                   out: Path | ArraySink, *, state: TensorSource | None = None,
                   state_out: Path | ArraySink | None = None, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                   sealing: Sealing | None = None, threads: int | None = None) -> Output:
    """Run ``strategy`` over the inputs and write the new model to ``out`` (and its state to ``state_out``): the
    canonical safetensors file at a path (sealed with ``sealing``, when given, as it is written: see
    :class:`~federity.weights.tensor_file.CanonicalWriter`), or an :class:`ArraySink` in memory (no hash then).

    ``bases`` are the distinct models the updates were trained on (``model`` itself among them when an update
    was trained on the current model) and ``base_of[i]`` the index of update i's base. Every input must have the
    model's tensors (names, shapes, dtypes); a mismatch, a non-finite result or a strategy error is an
    :class:`~federity.errors.UpdateError`, and nothing is left at ``out``. An aggregation whose
    :meth:`Round.memory_estimate` exceeds ``memory_limit`` bytes is refused before it starts, with the figure.

    Chunks are computed on ``threads`` threads at once (default :meth:`Workers.available`) and written in place;
    the result is the same bytes whatever their number.
    """
    if not updates:
        raise UpdateError("there is no update to aggregate", "approve at least one update")
    layout = model.layout
    for what, source in [*((f"update {i + 1}", u) for i, u in enumerate(updates)),
                         *((f"base {j + 1}", b) for j, b in enumerate(bases))]:
        mismatch = describe_mismatch(layout, source.layout)
        if mismatch:
            raise UpdateError(f"{what}'s tensors do not fit the model: {'; '.join(mismatch[:5])}",
                              "reject the update: it was not trained from this repository's model")
    names = tuple(strategy.state)
    if state is not None and describe_mismatch(state_layout(layout, names), state.layout):
        state = None  # a state file of another model or strategy: start afresh
    with Workers(Workers.available() if threads is None else threads) as workers:
        round = Round(model, updates, bases, base_of, contributions, state, names,
                      clip_norm=getattr(strategy, "clip_norm", None), workers=workers)
        return _aggregate(round, strategy, names, layout, out, state_out, memory_limit, sealing)


def _aggregate(round: Round, strategy: Strategy, names: tuple[str, ...], layout: Layout, out: Path | ArraySink,
               state_out: Path | ArraySink | None, memory_limit: int, sealing: Sealing | None) -> Output:
    estimate = round.memory_estimate()
    if estimate > memory_limit:
        raise UpdateError(f"aggregating {round.k} updates would hold about {estimate / 2**20:.0f} MiB at once, above "
                          f"the limit of {memory_limit / 2**20:.0f} MiB",
                          "aggregate fewer updates per round, or raise aggregation.max_memory_bytes in "
                          "federity.yaml if the machine has the memory")
    plan = strategy.plan(round)
    if names and state_out is None:
        raise UpdateError(f"strategy {strategy.name} keeps server state, but no state file was given",
                          "aggregate through `federity aggregate`, which keeps it in the repository")
    writer = _sink(out, layout, sealing, round.workers.count)
    state_writer = _sink(state_out, state_layout(layout, names), sealing, round.workers.count) if names else None
    try:
        _run(round, plan, writer, state_writer, names)
    except BaseException:
        for unfinished in (writer, state_writer):
            if unfinished is not None:
                unfinished.abort()
        raise
    weights_sha256 = writer.finish()
    if state_writer is None:
        return Output(weights_sha256, weights_md5=writer.md5)
    return Output(weights_sha256, state_writer.finish(), writer.md5, state_writer.md5)


class Sink(Protocol):
    """Where the engine writes a result: a :class:`~federity.weights.tensor_file.CanonicalWriter` or an
    :class:`ArraySink`."""

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Tensor ``name``'s elements from ``start`` on."""
        ...

    md5: str | None
    """Once finished, the result's md5, if it is a file."""

    def finish(self) -> str | None:
        """Done: the result's sha256, if it is a file."""
        ...

    def abort(self) -> None:
        """Failed: drop what was written."""
        ...


class ArraySink:
    """A result kept in memory as arrays of the layout's shapes and dtypes (:attr:`tensors`)."""

    md5 = None

    def __init__(self, layout: Layout) -> None:
        self.tensors = {name: np.empty(shape, dtype) for name, (shape, dtype) in layout.items()}

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Copy ``values`` (cast to the tensor's dtype) into tensor ``name`` from element ``start``."""
        flat = self.tensors[name].reshape(-1)
        flat[start:start + len(values)] = values

    def finish(self) -> None:
        """Nothing to hash."""

    def abort(self) -> None:
        """Nothing to remove."""


def _sink(target: Path | ArraySink | None, layout: Layout, sealing: Sealing | None, writers: int) -> Sink:
    if isinstance(target, ArraySink):
        return target
    assert target is not None
    return CanonicalWriter(target, layout, sealing, writers=writers)


def _run(round: Round, plan: Plan, writer: Sink, state_writer: Sink | None,
         names: tuple[str, ...]) -> None:
    for _ in round.map_chunks(partial(_combine, plan=plan, writer=writer, state_writer=state_writer, names=names)):
        pass


def _combine(chunk: Chunk, plan: Plan, writer: Sink, state_writer: Sink | None, names: tuple[str, ...]) -> None:
    """Compute one chunk and write its values (and new state) in place."""
    if chunk.stop > chunk.start:
        values = plan(chunk)
    else:  # an empty tensor: nothing for the strategy to compute, and empty state
        values = np.zeros(0, chunk.work)
        chunk.new_state.update({s: np.zeros(0, np.float32) for s in names})
    writer.write(chunk.name, chunk.start, _stored(values, chunk.dtype, chunk.name, "aggregate"))
    if state_writer is not None and chunk.is_float:
        missing = [s for s in names if s not in chunk.new_state]
        if missing:
            raise UpdateError(f"strategy state {', '.join(missing)} was not computed for {chunk.name!r}",
                              "this is a bug in the strategy plugin: report it to its authors")
        for s in names:
            state_writer.write(state_tensor_name(s, chunk.name), chunk.start,
                               _stored(chunk.new_state[s], np.dtype(np.float32), chunk.name, f"state {s}"))


def _stored(values: np.ndarray, dtype: np.dtype, name: str, what: str) -> np.ndarray:
    """``values`` as ``dtype`` (:func:`~federity.weights.files.stored_values`); a NaN, an infinity or an overflow
    never reaches the file."""
    stored = stored_values(values, dtype)
    if stored is None:
        raise UpdateError(f"the {what} of tensor {name!r} has values that are not finite {dtype} numbers (NaN, "
                          "infinity or overflow)", "reject the update that causes it, then aggregate again")
    return stored


def aggregate_tensors(strategy: Strategy, model: Tensors, updates: list[Tensors], bases: list[Tensors],
                      contributions: list[Contribution], work_dir: Path,
                      state: Tensors | None = None) -> tuple[Tensors, Tensors]:
    """:func:`aggregate_into` for tensors in memory (tests and experiments): each update i was trained on
    ``bases[i]`` (pass ``model`` itself for the current model). Returns the new model and the strategy's new
    state (empty for a stateless strategy)."""
    from federity.weights.files import read_tensors

    model_source = InMemory(model)
    sources: dict[int, TensorSource] = {id(model): model_source}  # one source per distinct base object
    distinct: list[TensorSource] = []
    base_of = []
    for base in bases:
        source = sources.setdefault(id(base), InMemory(base))
        if source not in distinct:
            distinct.append(source)
        base_of.append(distinct.index(source))
    out, state_out = work_dir / "aggregate.safetensors", work_dir / "state.safetensors"
    aggregate_into(strategy, model_source, [InMemory(u) for u in updates], distinct, base_of, contributions, out,
                   state=InMemory(state) if state else None, state_out=state_out if strategy.state else None)
    new_state = read_tensors(state_out.read_bytes(), "the state") if strategy.state else {}
    return read_tensors(out.read_bytes(), "the aggregate"), new_state
