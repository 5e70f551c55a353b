"""Online evaluation: each user's next event judges the last list the user was served, before the state moves on.

*The list served* after an event is the top-K of the recommendations record the worker emitted for that
event (cold-start lists included); the state keeps its item ids (``state_codec.Served``). The user's
next *applied* event (duplicates and dead letters judge nothing) judges it: a hit when the event's item
is in the list (hit@K, K = ISTREAM_TOP_K), its reciprocal rank, its NDCG@K (one relevant item: 1 /
log2(rank + 1)), and whether the item was new to the user (not among the recently seen items the
ranking excludes; only such an item can be a hit). An event that judges no list is counted by reason,
never guessed: the user's first event (``first_event``), a state that kept no list (``no_list``: written
before online evaluation or by a bootstrap, or a challenger's first event for the user), or an item the
model's index does not know (``unknown_item``: no list could have held it).

A judged list falls in one cohort, by the user's events before the judging one, as ``istream evaluate``
buckets history lengths (1-2, 3-5, 6-10, 11-50, >50), except ``returning`` (the event came more than
ISTREAM_ONLINE_SESSION_GAP_S after the user's previous one: a new session judging the list its last
session ended with) and ``cold_start`` (the list was the trending one, ISTREAM_COLD_START_EVENTS).

While a challenger runs beside the serving model (the champion), its own list for the same event is
judged on the same next event; an event that judges both (cold-start lists left out) is also counted
as a pair, which is what the guard compares. A list is ``served`` when its record was emitted and
``shadow`` when it was only ranked (a shadow challenger's, or the champion's for a canary user).

A batch's counts (``Judgements``) reach the ``OnlineWindow`` only once the batch's writes are done, so a
batch replayed after a crash (its events then dropped as duplicates) is never judged twice; a worker
killed without stopping loses the counts of its open window, at most ISTREAM_ONLINE_WINDOW_S.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stream_app.contracts import OnlineMetrics, ScoredItem
from stream_app.contracts.float_json import DECIMALS
from stream_app.contracts.records import JudgedCounts, PairedCounts, UnjudgedCounts
from stream_app.worker.state_codec import Served, UserState

# history lengths (events before the judged one, inclusive), as models/ranking.py BUCKETS
BUCKETS = ((2, "1-2"), (5, "3-5"), (10, "6-10"), (50, "11-50"))
LAST_BUCKET = ">50"
COLD_START = "cold_start"
RETURNING = "returning"
SERVED, SHADOW = "served", "shadow"
_JUDGED, _HITS, _RR, _NDCG, _NEW, _NEW_HITS = range(6)
_N, _BOTH, _CHAMPION_ONLY, _CHALLENGER_ONLY, _NDCG_DIFF, _NDCG_DIFF_SQ = range(6)


@dataclass(frozen=True)
class Lineup:
    """The models a batch ran: the serving one, and a challenger beside it (``mode`` shadow or canary)."""

    champion: str
    challenger: str | None = None
    mode: str | None = None
    share: float = 0.0


@dataclass(frozen=True)
class OnlineConfig:
    k: int = 10
    cold_start_events: int = 0
    session_gap_s: float = 1800.0


class Judging(Protocol):
    """What judging needs of a stepped event (``pipeline._Emitted``)."""

    owner: UserState
    known: bool  # its item has a row in the champion's index
    new: bool  # its item was not among the user's recently seen items
    applied: int  # the owner's applied events after it
    gap_s: float  # seconds since the user's previous event


@dataclass(frozen=True)
class ShadowLists:
    """The challenger's side of a batch, by ``id`` of the champion's stepped event."""

    version: str
    known: Mapping[int, bool]
    lists: Mapping[int, list[ScoredItem]]
    exposed: frozenset[int] = frozenset()  # events whose challenger list was emitted (canary users)


@dataclass
class Judgements:
    """One batch's (or window's) counts under one lineup."""

    lineup: Lineup
    judged: dict[tuple[str, str, str], list] = field(default_factory=dict)  # (version, exposure, cohort) -> row
    unjudged: Counter = field(default_factory=Counter)  # (version, reason) -> events
    paired: dict[tuple[str, str], list] = field(default_factory=dict)  # (champion, challenger) -> row

    def __bool__(self) -> bool:
        return bool(self.judged or self.unjudged or self.paired)

    def add(self, other: Judgements) -> None:
        for mine, theirs in ((self.judged, other.judged), (self.paired, other.paired)):
            for key, row in theirs.items():
                into = mine.get(key)
                if into is None:
                    mine[key] = list(row)
                else:
                    for i, value in enumerate(row):
                        into[i] += value
        self.unjudged.update(other.unjudged)


def cohort(prior: int, gap_s: float, cold: bool, session_gap_s: float) -> str:
    """The cohort of a list judged by an event with ``prior`` applied events before it (module docstring)."""
    if cold:
        return COLD_START
    if gap_s > session_gap_s:
        return RETURNING
    for top, name in BUCKETS:
        if prior <= top:
            return name
    return LAST_BUCKET


def _gain(k: int) -> list[float]:
    """NDCG of a hit at rank r (index r, 1-based; index 0 unused)."""
    return [0.0, *(1.0 / math.log2(rank + 1) for rank in range(1, k + 1))]


def _rank(served: Served, item_id: str) -> int:
    """1-based rank of ``item_id`` in the list, 0 when it is not there."""
    try:
        return served.items.index(item_id) + 1
    except ValueError:
        return 0


def _judge(
    j: Judgements,
    served: Served | None,
    version: str,
    item_id: str,
    e: Judging,
    known: bool,
    group: str,
    gain: list[float],
) -> int | None:
    """Count ``item_id`` judging ``served``, the last list of ``version``'s columns: its rank (0: a miss),
    or None when it judges nothing (counted by reason)."""
    if served is None:
        j.unjudged[(version, "first_event" if e.applied == 1 else "no_list")] += 1
        return None
    if not known:
        j.unjudged[(served.model_version, "unknown_item")] += 1
        return None
    rank = _rank(served, item_id)
    key = (served.model_version, SERVED if served.exposed else SHADOW, group)
    row = j.judged.get(key)
    if row is None:
        row = j.judged[key] = [0, 0, 0.0, 0.0, 0, 0]
    row[_JUDGED] += 1
    if e.new:
        row[_NEW] += 1
    if rank:
        row[_HITS] += 1
        row[_RR] += 1.0 / rank
        row[_NDCG] += gain[rank]
        if e.new:
            row[_NEW_HITS] += 1
    return rank


def _pair(j: Judgements, key: tuple[str, str], champion_rank: int, challenger_rank: int, gain: list[float]) -> None:
    row = j.paired.get(key)
    if row is None:
        row = j.paired[key] = [0, 0, 0, 0, 0.0, 0.0]
    row[_N] += 1
    if champion_rank and challenger_rank:
        row[_BOTH] += 1
    elif champion_rank:
        row[_CHAMPION_ONLY] += 1
    elif challenger_rank:
        row[_CHALLENGER_ONLY] += 1
    diff = gain[challenger_rank] - gain[champion_rank]
    row[_NDCG_DIFF] += diff
    row[_NDCG_DIFF_SQ] += diff * diff


def judge(
    emitted: Sequence[Judging],
    items: Sequence[str],
    lists: Mapping[int, list[ScoredItem]],
    lineup: Lineup,
    config: OnlineConfig,
    shadow: ShadowLists | None = None,
) -> Judgements:
    """Judge the list each owner was served last by each event of ``emitted`` (in the order they were
    stepped; ``items[i]`` is the item of ``emitted[i]``, ``lists`` the new lists by ``id``), then keep the
    event's new lists (the champion's, and the challenger's in ``shadow``) as the owner's last ones."""
    j = Judgements(lineup)
    gain = _gain(config.k)
    champion = lineup.champion
    for e, item_id in zip(emitted, items, strict=True):
        owner = e.owner
        prior = e.applied - 1
        group = cohort(prior, e.gap_s, prior < config.cold_start_events, config.session_gap_s)
        key = id(e)
        exposed = shadow is not None and key in shadow.exposed
        before = owner.served
        rank = _judge(j, before, champion, item_id, e, e.known, group, gain)
        owner.served = Served(champion, not exposed, [s.item_id for s in lists[key]])
        if shadow is None:
            continue
        columns = owner.shadow
        theirs = columns.served
        challenger_rank = _judge(j, theirs, shadow.version, item_id, e, shadow.known[key], group, gain)
        columns.served = Served(shadow.version, exposed, [s.item_id for s in shadow.lists[key]])
        if rank is not None and challenger_rank is not None and group != COLD_START:
            _pair(j, (before.model_version, theirs.model_version), rank, challenger_rank, gain)
    return j


class OnlineWindow:
    """The counts of one worker since its last ``OnlineMetrics`` record, under one lineup."""

    def __init__(self, worker: str, k: int, window_s: float, clock=time.time) -> None:
        self.worker, self.k, self.window_s, self._clock = worker, k, window_s, clock
        self._open: Judgements | None = None
        self._start_ms = 0

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def add(self, batch: Judgements) -> OnlineMetrics | None:
        """Count a batch whose writes are done; the record of the window it closes, when its lineup differs."""
        closed = None
        if self._open is not None and self._open.lineup != batch.lineup:
            closed = self.close()
        if self._open is None:
            self._open, self._start_ms = Judgements(batch.lineup), self._now_ms()
        self._open.add(batch)
        return closed

    def due(self) -> OnlineMetrics | None:
        """The record of the open window once it is ISTREAM_ONLINE_WINDOW_S old (None before, or empty)."""
        if self._open is None or self._now_ms() - self._start_ms < self.window_s * 1000:
            return None
        return self.close()

    def close(self) -> OnlineMetrics | None:
        """The record of the open window now (None when nothing was counted since the last)."""
        counts, self._open = self._open, None
        if not counts:
            return None
        return record(self.worker, self._start_ms, self._now_ms(), self.k, counts)


def record(worker: str, start_ms: int, end_ms: int, k: int, counts: Judgements) -> OnlineMetrics:
    lineup = counts.lineup
    return OnlineMetrics(
        worker=worker,
        window_start=start_ms,
        window_end=end_ms,
        k=k,
        champion=lineup.champion,
        challenger=lineup.challenger,
        trial_mode=lineup.mode,
        canary_share=lineup.share,
        judged=[
            JudgedCounts(
                model_version=version,
                exposure=exposure,
                cohort=group,
                judged=row[_JUDGED],
                hits=row[_HITS],
                reciprocal_rank=round(row[_RR], DECIMALS),
                ndcg=round(row[_NDCG], DECIMALS),
                new_items=row[_NEW],
                new_item_hits=row[_NEW_HITS],
            )
            for (version, exposure, group), row in sorted(counts.judged.items())
        ],
        unjudged=[
            UnjudgedCounts(model_version=version, reason=reason, events=n)
            for (version, reason), n in sorted(counts.unjudged.items())
        ],
        paired=[
            PairedCounts(
                champion=champion,
                challenger=challenger,
                judged=row[_N],
                both_hit=row[_BOTH],
                champion_only=row[_CHAMPION_ONLY],
                challenger_only=row[_CHALLENGER_ONLY],
                ndcg_diff=round(row[_NDCG_DIFF], DECIMALS),
                ndcg_diff_sq=round(row[_NDCG_DIFF_SQ], DECIMALS),
            )
            for (champion, challenger), row in sorted(counts.paired.items())
        ],
    )
