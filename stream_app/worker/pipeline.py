"""One micro-batch through the hot path: decode -> route -> event-time policy -> encode -> step -> rank -> judge
-> records.

``process_batch`` is a plain function of the raw records, a state lookup and the serving model; it
returns what to write (user states per partition) and what to emit (vectors, recommendations,
tombstones, dead letters, misrouted records forwarded), so the Faust agent only moves bytes.
Events of one user are applied in order: the step runs in waves, wave k holding every user's k-th
action, each wave one batched ONNX call. A state written by another model version is first rebuilt
by replaying its recent window on the serving model. Each new event then judges the list its user
was served before it (``online_eval``), and its own list becomes the one the next event judges.

With a challenger beside the serving model (``trial``), the batch's new events run a second time, on
the challenger and on each user's challenger columns (``UserState.shadow``, rebuilt from the window
like a state of another model when missing), over twins of the users' states that hold copies of
their windows and seen items: the same code, waves and ranking, and nothing of the users' own lists
moves twice. A canary user's outputs are the challenger's. When CURRENT becomes the challenger, a
state's columns swap places instead of being rebuilt.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Protocol

import numpy as np

from stream_app import topics
from stream_app.contracts import EVENT_TYPES, Event, Recommendation, ScoredItem, encode, encode_interest_vectors
from stream_app.worker.decode import Incoming, RawRecord, Rejected, dead_letter, decode_records, group_by_user
from stream_app.worker.event_time import EventTimePolicy, Reject, Verdict, decide, forget, remember
from stream_app.worker.item_index import ItemEmbedder, ItemIndex
from stream_app.worker.online_eval import Judgements, Lineup, OnlineConfig, ShadowLists, judge
from stream_app.worker.ranking import cold, recommend
from stream_app.worker.routing import partition_of, split_misrouted
from stream_app.worker.state_cache import NOT_CACHED, StateCache
from stream_app.worker.state_codec import (
    RecentEvent,
    ShadowColumns,
    StateCodecError,
    UserState,
    as_stored,
    decode_state,
    encode_state,
)
from stream_app.worker.trending import Trending
from stream_app.worker.trial import Challenger

log = logging.getLogger(__name__)
TYPE_INDEX = {name: i for i, name in enumerate(EVENT_TYPES)}


class StepOutput(Protocol):
    new_state: np.ndarray
    interest: np.ndarray
    long_term: np.ndarray
    short_term: np.ndarray


class Runtime(ItemEmbedder, Protocol):
    """What the hot path needs of ``export.runtime.ModelRuntime``."""

    version: str
    text_dim: int
    dim: int
    state_dim: int

    def step(self, state, item_vec, event_type, comment_emb, has_text, rating, gap_s) -> StepOutput: ...


@dataclass(frozen=True)
class Serving:
    """The model that serves right now and its item index; a hot-swap replaces the whole object."""

    runtime: Runtime
    index: ItemIndex

    @property
    def version(self) -> str:
        return self.runtime.version


@dataclass(frozen=True)
class PipelineConfig:
    top_k: int = 10
    window: int = 32
    seen: int = 100
    cold_start_events: int = 0
    event_time: EventTimePolicy = field(default_factory=EventTimePolicy)
    partitions: int = 0  # of the events topic: records off their user's partition are misrouted (0: no check)
    misrouted: str = "forward"  # or "deadletter"
    emit: bool = True  # False: states only, no outputs, no ranking, no trending (a bootstrap from history)
    online: OnlineConfig | None = None  # online evaluation (None: off, and states keep no list served)


@dataclass(frozen=True, slots=True)
class Output:
    kind: str  # topics.VECTORS / RECOMMENDATIONS / DEADLETTER, or EVENTS (a misrouted record forwarded)
    key: bytes | None
    value: bytes | None
    partition: int = -1  # -1: the producer's partitioner picks


@dataclass(frozen=True, slots=True)
class StateWrite:
    user_id: str
    partition: int
    value: bytes  # a forgotten user's state is a marker, never deleted


@dataclass
class BatchResult:
    outputs: list[Output] = field(default_factory=list)
    writes: list[StateWrite] = field(default_factory=list)
    # every user of the batch as it ends: (user_id, partition, state or None), for the state cache
    states: list[tuple[str, int, UserState | None]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    dead_letter_reasons: Counter = field(default_factory=Counter)
    timings: dict[str, float] = field(default_factory=dict)
    judgements: Judgements | None = None  # online evaluation's counts
    # canary users' events: id(champion's _Emitted) -> (the challenger's _Emitted, its list), emitted instead
    shown: dict[int, tuple] = field(default_factory=dict)


@dataclass(slots=True)
class _Step:
    """One step of one user: a new ``event``, or (``event`` None) a replay of ``recent`` from the window."""

    owner: UserState  # the state this step advances (a forget mid-batch starts a new one)
    recent: RecentEvent | None = None
    event: Event | None = None
    text: str | None = None
    gap_s: float = 0.0
    applied: int = 0  # the owner's applied-event count after this step
    text_slot: int = -1


_FORGET = object()
_ITEM_ID = attrgetter("item_id")


@dataclass(slots=True)
class ItemRows:
    """A state's seen and window items as rows of one item index (``token``), beside their ids."""

    token: object
    seen: list[int]
    window: list[int]

    def copy(self) -> ItemRows:
        return ItemRows(self.token, list(self.seen), list(self.window))


def item_rows(state: UserState, index: ItemIndex) -> ItemRows:
    """The state's ``ItemRows`` for ``index``, looked up only when the state has none for it yet."""
    rows = state.item_rows
    if not isinstance(rows, ItemRows) or rows.token is not index.token:
        rows = state.item_rows = ItemRows(index.token, index.rows(state.seen), index.rows(map(_ITEM_ID, state.window)))
    return rows


@dataclass(slots=True)
class _Emitted:
    """A stepped new event, waiting for its recommendations.

    Its seen items and window are its owner state's lists as they were right after the event:
    the live lists while no later event of the batch changed them (the user's last event in a
    batch, most of them), a copy taken just before one does (``freeze``)."""

    user_id: str
    event: Event
    interest: np.ndarray
    long_term: np.ndarray
    short_term: np.ndarray
    owner: UserState
    cold: bool
    known: bool  # its item has a row in the index
    new: bool  # its item was not among the user's seen items
    applied: int  # the owner's applied events after it
    gap_s: float
    seen: list[str] | None = None
    window: list[RecentEvent] | None = None
    rows: ItemRows | None = None

    def freeze(self) -> None:
        self.seen, self.window = list(self.owner.seen), list(self.owner.window)  # RecentEvents are immutable
        self.rows = self.owner.item_rows.copy()

    def seen_items(self) -> list[str]:
        return self.owner.seen if self.seen is None else self.seen

    def window_events(self) -> list[RecentEvent]:
        return self.owner.window if self.window is None else self.window

    def item_rows(self) -> ItemRows:
        return self.owner.item_rows if self.rows is None else self.rows


@dataclass(slots=True)
class _User:
    user_id: str
    partition: int
    state: UserState | None
    actions: list = field(default_factory=list)  # _Step or _FORGET, in order
    outputs: list = field(default_factory=list)  # Output or _Emitted, in order
    dirty: bool = False


def _rating(event: Event) -> float:
    return -1.0 if event.rating is None else float(event.rating)


def _load(users: dict[str, list[Incoming]], load_state, cache: StateCache | None, result: BatchResult) -> list[_User]:
    loaded = []
    for user_id, items in users.items():
        partition = items[0].record.partition
        cached = cache.take(user_id) if cache is not None else NOT_CACHED
        if cached is not NOT_CACHED:
            result.counts["state_cached"] += 1
            loaded.append(_User(user_id, partition, cached))
            continue
        state = None
        raw = load_state(user_id, partition)
        result.counts["state_loaded"] += 1
        if raw is not None:
            try:
                state = decode_state(raw)
            except StateCodecError as exc:
                log.error("user %r: unreadable state, starting it afresh: %s", user_id, exc)
                result.counts["state_corrupt"] += 1
        loaded.append(_User(user_id, partition, state))
    return loaded


def _plan(
    user: _User, items: list[Incoming], serving: Serving, config: PipelineConfig, now_ms: int, result: BatchResult
) -> None:
    """Decide each of the user's records in order (``event_time``) and list the steps to run (window replays first)."""
    state = user.state
    if (
        state is not None
        and not state.is_marker
        and (state.model_version != serving.version or state.state.shape != (serving.runtime.state_dim,))
        and not _promoted(state, serving, result)
    ):
        # Rebuild: replay the window on the serving model from a zero state.
        result.counts["rebuilt"] += 1
        user.actions.extend(_Step(state, recent) for recent in state.window)
        state.model_version = serving.version
        state.state = np.zeros(serving.runtime.state_dim, dtype=np.float32)
        user.dirty = True
    policy = config.event_time
    for item in items:
        event, offset = item.event, item.record.offset
        verdict = decide(state, event, offset, now_ms, policy)
        if verdict is Verdict.DUPLICATE:
            result.counts["duplicates"] += 1
            continue
        if isinstance(verdict, Reject):
            user.outputs.append(dead_letter_output(dead_letter(item.record, verdict.reason, verdict.error)))
            result.dead_letter_reasons[verdict.reason] += 1
            continue
        user.dirty = True
        if item.is_forget:
            result.counts["forgets"] += 1
            user.actions.append(_FORGET)
            state = forget(state, event, offset, item.record.timestamp, now_ms)
            continue
        if state is None or state.is_marker:
            fresh = UserState.empty(serving.version, serving.runtime.state_dim)
            if state is not None:  # a forgotten user comes back: the marker's marks stay
                fresh.last_offset, fresh.forgotten_at, fresh.history_ts = (
                    state.last_offset,
                    state.forgotten_at,
                    state.history_ts,
                )
                fresh.id_floor_ts, fresh.id_hashes, fresh.id_ts = state.id_floor_ts, state.id_hashes, state.id_ts
            state = fresh
        gap = remember(state, event, offset, policy)
        state.applied += 1
        state.active_at = now_ms
        user.actions.append(_Step(state, None, event, event.text or None, gap, state.applied))
        result.counts["applied"] += 1
    user.state = state


def _promoted(state: UserState, serving: Serving, result: BatchResult) -> bool:
    """When the state's challenger columns belong to the serving model (it was promoted), swap the columns:
    the champion's become the challenger's (the trial that watches a promotion runs it there)."""
    shadow = state.shadow
    if shadow is None or shadow.model_version != serving.version or shadow.state.shape != (serving.runtime.state_dim,):
        return False
    state.shadow = ShadowColumns(state.model_version, state.state, state.served)
    state.model_version, state.state, state.served, state.vectors = (
        shadow.model_version,
        shadow.state,
        shadow.served,
        None,
    )
    result.counts["columns_swapped"] += 1
    return True


def _twins(users: list[_User], challenger: Challenger, result: BatchResult) -> tuple[list[_User], list[tuple]]:
    """The batch's new events again, on each owner state's challenger columns: users whose actions step
    twins of the owners (the challenger's recurrent state, copies of the owner's window and seen items as
    they are before this batch), a rebuild from the window first where the columns are missing or of
    another model. Also (owner, twin, the columns' last list) to put the twins' states back."""
    version, state_dim = challenger.version, challenger.serving.runtime.state_dim
    twins: dict[int, UserState] = {}
    pairs: list[tuple[UserState, UserState, object]] = []
    out: list[_User] = []
    for user in users:
        actions: list[_Step] = []
        for action in user.actions:
            if action is _FORGET or action.event is None:
                continue
            owner = action.owner
            twin = twins.get(id(owner))
            if twin is None:
                columns = owner.shadow
                kept = columns is not None and columns.model_version == version and columns.state.shape == (state_dim,)
                state = columns.state if kept else np.zeros(state_dim, dtype=np.float32)
                twin = twins[id(owner)] = UserState(version, state, seen=list(owner.seen), window=list(owner.window))
                if not kept and owner.window:
                    result.counts["shadow_rebuilt"] += 1
                    actions += [_Step(twin, recent) for recent in owner.window]
                pairs.append((owner, twin, columns.served if kept else None))
            actions.append(_Step(twin, None, action.event, action.text, action.gap_s, action.applied, action.text_slot))
        if actions:
            out.append(_User(user.user_id, user.partition, None, actions))
    return out, pairs


def _run_challenger(
    twins: tuple[list[_User], list[tuple]],
    emitted: list[_Emitted],
    challenger: Challenger,
    recommendations: dict[int, list[ScoredItem]],
    trending: Trending,
    config: PipelineConfig,
    embs: np.ndarray,
    result: BatchResult,
) -> ShadowLists:
    """Step and rank the batch's new events on the challenger; its lists by ``id`` of the champion's event.
    A cold-start list is the trending one whichever model serves."""
    twin_users, pairs = twins
    theirs = _run_waves(twin_users, challenger.serving, config, embs)
    for owner, twin, served in pairs:
        owner.shadow = ShadowColumns(challenger.version, twin.state, served)
    ranked = _rank([e for e in theirs if not e.cold], challenger.serving, trending, config)
    by_event = {id(e.event): e for e in theirs}
    known, lists, exposed, shown = {}, {}, set(), {}
    for e in emitted:
        twin_event = by_event[id(e.event)]
        key = id(e)
        known[key] = twin_event.known
        lists[key] = recommendations[key] if e.cold else ranked[id(twin_event)]
        if challenger.serves(e.user_id):
            exposed.add(key)
            shown[key] = (twin_event, lists[key])
    result.shown = shown
    return ShadowLists(challenger.version, known, lists, frozenset(exposed))


def dead_letter_output(rejected: Rejected) -> Output:
    """The dead-letter topic record of a rejected input record."""
    return Output(topics.DEADLETTER, rejected.key, encode(rejected.letter))


def _run_waves(users: list[_User], serving: Serving, config: PipelineConfig, embs: np.ndarray) -> list[_Emitted]:
    """Run every user's actions in order, one batched step per wave; returns the new events' results."""
    rt, index = serving.runtime, serving.index
    emitted: list[_Emitted] = []
    unfrozen: dict[int, _Emitted] = {}  # id(owner state) -> its newest emitted event, still on the live lists
    by_depth = sorted(users, key=lambda u: len(u.actions), reverse=True)
    active = len(by_depth)
    for k in range(len(by_depth[0].actions) if by_depth else 0):
        while len(by_depth[active - 1].actions) <= k:
            active -= 1
        wave: list[tuple[_User, _Step]] = []
        for user in by_depth[:active]:
            action = user.actions[k]
            if action is _FORGET:
                key = user.user_id.encode()
                user.outputs += [Output(topics.VECTORS, key, None), Output(topics.RECOMMENDATIONS, key, None)]
            else:
                wave.append((user, action))
        if not wave:
            continue
        n = len(wave)
        comment = np.zeros((n, rt.text_dim), dtype=np.float32)
        has_text = np.zeros(n, dtype=np.float32)
        items, types, ratings, gaps = [], [], [], []
        for i, (_, s) in enumerate(wave):
            recent = s.recent
            if recent is not None:  # a window replay
                items.append(recent.item_id)
                types.append(recent.event_type)
                ratings.append(recent.rating)
                gaps.append(recent.gap_s)
                if recent.comment_emb is not None:
                    comment[i], has_text[i] = recent.comment_emb, 1.0
            else:
                items.append(s.event.item_id)
                types.append(TYPE_INDEX[s.event.type])
                ratings.append(_rating(s.event))
                gaps.append(s.gap_s)
                if s.text_slot >= 0:
                    comment[i], has_text[i] = embs[s.text_slot], 1.0
        rows = index.row_array(items)
        out = rt.step(
            np.stack([s.owner.state for _, s in wave]).astype(np.float32, copy=False),
            index.vectors_at(rows),
            np.array(types, dtype=np.int64),
            comment,
            has_text,
            np.array(ratings, dtype=np.float32),
            np.array(gaps, dtype=np.float32),
        )
        new_state = np.asarray(out.new_state, dtype=np.float32)
        vectors = np.stack([out.interest, out.long_term, out.short_term], axis=1).astype(np.float32, copy=False)
        for i, (user, s), row in zip(range(n), wave, rows.tolist(), strict=True):
            s.owner.state = new_state[i].copy()
            s.owner.vectors = vectors[i].copy()
            if s.event is None:
                continue
            emb = as_stored(comment[i]) if has_text[i] else None
            recent = RecentEvent(s.event.event_id, items[i], types[i], ratings[i], gaps[i], emb)
            owner_rows = item_rows(s.owner, index)
            if not config.emit:  # states only: nothing reads the lists as they were after this event
                _remember(s.owner, owner_rows, recent, row, config)
                continue
            earlier = unfrozen.get(id(s.owner))
            if earlier is not None:
                earlier.freeze()  # _remember is about to change the lists it reads
            new = _remember(s.owner, owner_rows, recent, row, config)
            e = _Emitted(
                user.user_id,
                s.event,
                out.interest[i],
                out.long_term[i],
                out.short_term[i],
                s.owner,
                cold=s.applied < config.cold_start_events,
                known=row >= 0,
                new=new,
                applied=s.applied,
                gap_s=s.gap_s,
            )
            unfrozen[id(s.owner)] = e
            user.outputs.append(e)
            emitted.append(e)
    return emitted


def current_vectors(state: UserState, serving: Serving, config: PipelineConfig) -> np.ndarray | None:
    """The state's [3, D] vectors (interest, long-, short-term) under the serving model, without changing
    ``state``: its stored ones when the serving model stepped them, else its window replayed on the
    serving model from a zero state (what its next event's rebuild starts from; a state of another
    model, or of a codec that kept no vectors). None when there is nothing to replay."""
    if state.model_version == serving.version and state.vectors is not None:
        return state.vectors
    if not state.window:
        return None
    zeros = np.zeros(serving.runtime.state_dim, dtype=np.float32)
    replay = replace(state, model_version=serving.version, state=zeros, vectors=None, item_rows=None)
    user = _User(state.model_version, -1, replay, [_Step(replay, recent) for recent in state.window])
    _run_waves([user], serving, config, np.zeros((0, serving.runtime.text_dim), dtype=np.float32))
    return replay.vectors


def _remember(state: UserState, rows: ItemRows, recent: RecentEvent, row: int, config: PipelineConfig) -> bool:
    """Add the event to the state's window and seen items, and its item ``row`` to their ``rows``; whether
    its item was new to the state (not among the seen items)."""
    state.window.append(recent)
    rows.window.append(row)
    cut = len(state.window) - config.window
    if cut > 0:
        del state.window[:cut], rows.window[:cut]
    seen = state.seen
    new = recent.item_id not in seen
    if not new:
        at = seen.index(recent.item_id)
        del seen[at], rows.seen[at]
    seen.append(recent.item_id)
    rows.seen.append(row)
    cut = len(seen) - config.seen  # not seen[:-n]: n = 0 keeps none
    if cut > 0:
        del seen[:cut], rows.seen[:cut]
    return new


def _rank(
    emitted: list[_Emitted], serving: Serving, trending: Trending, config: PipelineConfig
) -> dict[int, list[ScoredItem]]:
    index = serving.index
    warm = [e for e in emitted if not e.cold]
    ranked: dict[int, list[ScoredItem]] = {}
    if warm:
        item_rows = [e.item_rows() for e in warm]
        lists = recommend(
            index,
            np.stack([e.interest for e in warm]),
            [r.seen for r in item_rows],
            [e.window_events() for e in warm],
            [r.window for r in item_rows],
            config.top_k,
        )
        ranked.update(zip(map(id, warm), lists, strict=True))
    for e in emitted:
        if e.cold:
            ranked[id(e)] = cold(trending, index, config.top_k, e.item_rows().seen)
    return ranked


def process_batch(
    records: Sequence[RawRecord],
    load_state: Callable[[str, int], bytes | None],
    serving: Serving,
    trending: Trending,
    config: PipelineConfig,
    cache: StateCache | None = None,
    now_ms: int | None = None,
    challenger: Challenger | None = None,
) -> BatchResult:
    """``cache``: decoded states to use before ``load_state``; the batch takes its users' out of it.
    ``now_ms``: the worker's clock for the event-time policy (default: now). ``challenger``: the model
    run beside ``serving`` (``trial``)."""
    result = BatchResult()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    clock = time.perf_counter
    t0 = clock()
    accepted, rejected = decode_records(list(records))
    result.counts["in"] = len(records)
    accepted, misrouted = split_misrouted(accepted, config.partitions)
    for item in misrouted:
        key, partition = item.record.key, item.record.partition
        home = partition_of(key, config.partitions)
        if config.misrouted == "forward":
            result.outputs.append(Output(topics.EVENTS, key, item.record.value, home))
        else:
            error = f"user {item.user_id!r} belongs to partition {home} (murmur2 of the key), not {partition}"
            rejected.append(dead_letter(item.record, "misrouted", error))
        result.counts["misrouted"] += 1
    for r in rejected:
        result.dead_letter_reasons[r.letter.reason] += 1
    groups = group_by_user(accepted)
    t1 = clock()
    users = _load(groups, load_state, cache, result)
    t2 = clock()
    for user in users:
        _plan(user, groups[user.user_id], serving, config, now_ms, result)
    texts: list[str] = []
    for user in users:
        for action in user.actions:
            if action is not _FORGET and action.text is not None:
                action.text_slot = len(texts)
                texts.append(action.text)
    t3 = clock()
    embs = serving.runtime.encode(texts) if texts else np.zeros((0, serving.runtime.text_dim), dtype=np.float32)
    t4 = clock()
    # the challenger's twins copy the users' lists as they are before the champion's steps change them
    twins = _twins(users, challenger, result) if challenger is not None and config.emit else None
    emitted = _run_waves(users, serving, config, embs)
    t5 = clock()
    shadow = None
    if config.emit:
        home = {user.user_id: user.partition for user in users}
        events = [e.event for e in emitted]
        trending.add([ev.item_id for ev in events], [ev.ts for ev in events], [home[ev.user_id] for ev in events])
        recommendations = _rank(emitted, serving, trending, config)
        if challenger is not None:
            t = clock()
            shadow = _run_challenger(twins, emitted, challenger, recommendations, trending, config, embs, result)
            result.timings["challenger"] = clock() - t
        else:
            _drop_challenger_columns(emitted)
    t6 = clock()
    if config.emit and config.online is not None:
        items = [e.event.item_id for e in emitted]
        lineup = Lineup(serving.version)
        if challenger is not None:
            lineup = Lineup(serving.version, challenger.version, challenger.mode, challenger.share)
        result.judgements = judge(emitted, items, recommendations, lineup, config.online, shadow)
    t7 = clock()
    if config.emit:
        shown_version = challenger.version if challenger is not None else ""
        _serialize(users, emitted, recommendations, serving.version, result, shown_version)
        result.outputs.extend(dead_letter_output(r) for r in rejected)
    else:
        _states_only(users, result)
    result.counts["late"] = result.dead_letter_reasons["late"]
    result.counts["emitted"] = len(emitted)
    challenger_s = result.timings.pop("challenger", None)
    result.timings = {
        "decode": t1 - t0,
        "load": t2 - t1,
        "dedupe": t3 - t2,
        "encode": t4 - t3,
        "step": t5 - t4,
        "rank": t6 - t5 - (challenger_s or 0.0),
        "judge": t7 - t6,
        "serialize": clock() - t7,
    }
    if challenger_s is not None:
        result.timings["challenger"] = challenger_s
    return result


def _drop_challenger_columns(emitted: list[_Emitted]) -> None:
    """No challenger runs: the columns of one that ran are dead weight in the states the batch writes."""
    for e in emitted:
        e.owner.shadow = None


def _vectors(emitted: list[_Emitted], version: str) -> list[bytes]:
    return encode_interest_vectors(
        [(e.user_id, e.event.event_id, e.event.ts) for e in emitted],
        version,
        np.stack([(e.interest, e.long_term, e.short_term) for e in emitted])
        if emitted
        else np.zeros((0, 3, 0), dtype=np.float32),
    )


def _serialize(
    users: list[_User],
    emitted: list[_Emitted],
    recs: dict[int, list[ScoredItem]],
    version: str,
    result: BatchResult,
    shown_version: str = "",
) -> None:
    """The outputs of every user in order; a canary user's event (``result.shown``) gets the challenger's
    (``shown_version``) vectors and list."""
    shown = result.shown
    mine = [e for e in emitted if id(e) not in shown] if shown else emitted
    vectors = dict(zip(map(id, mine), _vectors(mine, version), strict=True))
    if shown:
        canary = [e for e in emitted if id(e) in shown]
        twins = [shown[id(e)][0] for e in canary]
        vectors.update(zip(map(id, canary), _vectors(twins, shown_version), strict=True))
    for user in users:
        key = user.user_id.encode()
        for out in user.outputs:
            if isinstance(out, Output):
                result.outputs.append(out)
                continue
            ev, served_by, items = out.event, version, recs[id(out)]
            if shown and id(out) in shown:
                served_by, items = shown_version, shown[id(out)][1]
            rec = Recommendation(
                user_id=user.user_id, event_id=ev.event_id, ts=ev.ts, model_version=served_by, items=items
            )
            result.outputs += [
                Output(topics.VECTORS, key, vectors[id(out)]),
                Output(topics.RECOMMENDATIONS, key, encode(rec)),
            ]
        if user.dirty:
            value = encode_state(user.state)
            result.writes.append(StateWrite(user.user_id, user.partition, value))
        result.states.append((user.user_id, user.partition, user.state))


def _states_only(users: list[_User], result: BatchResult) -> None:
    for user in users:
        if user.dirty:
            result.writes.append(StateWrite(user.user_id, user.partition, encode_state(user.state)))
        result.states.append((user.user_id, user.partition, user.state))
