"""The live half of `make run`: hold back each user's newest events, and judge the recommendations
the worker emits for them against the generator's planted truth.

Plain functions on JSON dicts (events, recommendations, the truth file of `istream generate
--out-truth`), so the demo's steps stay short; nothing here imports torch or Faust.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

TOP_K = 10


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def split_held_back(events: list[dict], per_user: int) -> tuple[list[dict], list[dict]]:
    """(history, held back): each user's last ``per_user`` events are held back, in stream order.

    Users with too few events keep at least two for history, so training still sees them.
    """
    by_user: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append(event)
    held_ids = set()
    for user_events in by_user.values():
        n = min(per_user, max(0, len(user_events) - 2))
        held_ids.update(e["event_id"] for e in user_events[len(user_events) - n :])
    history = [e for e in events if e["event_id"] not in held_ids]
    held = [e for e in events if e["event_id"] in held_ids]
    return history, held


@dataclass
class LiveScore:
    recommendations: int
    held_back: int
    judged: int  # held-back events after each user's first one
    hits: int
    judged_new: int  # of those, events on an item the user had not touched yet (history included)
    hits_new: int
    planted_share: float  # recommended items on one of the user's planted topics
    chance_share: float  # the same share for items drawn at random from the topics
    n_items: int

    def lines(self) -> list[str]:
        def rate(hits: int, n: int) -> str:
            return f"{hits / n:.2f} ({hits} of {n})" if n else "n/a (none judged)"

        return [
            f"live: {self.recommendations} recommendations for {self.held_back} held-back events",
            f"live HR@{TOP_K}: {rate(self.hits_new, self.judged_new)} on events of items the user had not touched "
            f"yet, {rate(self.hits, self.judged)} on all judged events; random {TOP_K / self.n_items:.2f}",
            f"planted-topic share of the recommended items: {self.planted_share:.2f} (chance {self.chance_share:.2f})",
        ]


def planted_topics(truth: dict, user_id: str) -> set[int]:
    user = truth["users"][user_id]
    burst = user["current_burst"]
    return set(user["long_term_topics"]) | ({burst} if burst is not None else set())


def latest_by_event(recs: list[dict]) -> dict[str, list[str]]:
    """event_id -> recommended item ids (the last record wins should one be repeated)."""
    return {rec["event_id"]: [item["item_id"] for item in rec["items"]] for rec in recs}


def touched_items(history: list[dict]) -> dict[str, set[str]]:
    """user -> the items of its events."""
    touched: dict[str, set[str]] = defaultdict(set)
    for event in history:
        touched[event["user_id"]].add(event["item_id"])
    return touched


def score(held: list[dict], recs: list[dict], truth: dict, history: list[dict] = ()) -> LiveScore:
    """HR@10 of each held-back event against the recommendation that followed the user's previous
    one, and the share of recommended items on the user's planted topics. Items the user touched in
    ``history`` (the worker's bootstrapped states know them) count as touched."""
    by_event = latest_by_event(recs)
    last: dict[str, str] = {}  # user -> previous held-back event id
    touched = touched_items(history)
    judged = hits = judged_new = hits_new = 0
    for event in held:
        user, item = event["user_id"], event["item_id"]
        previous = last.get(user)
        if previous is not None and previous in by_event:
            hit = item in by_event[previous][:TOP_K]
            judged, hits = judged + 1, hits + hit
            # the worker never recommends an item the user already touched, so a return to one
            # cannot be a hit; judge the new items apart
            if item not in touched[user]:
                judged_new, hits_new = judged_new + 1, hits_new + hit
        last[user] = event["event_id"]
        touched[user].add(item)
    on_planted = shown = 0
    chance = 0.0
    n_topics = len(truth["topics"])
    for rec in recs:
        planted = planted_topics(truth, rec["user_id"])
        topics_of = [truth["items"].get(item["item_id"]) for item in rec["items"][:TOP_K]]
        on_planted += sum(topic in planted for topic in topics_of)
        shown += len(topics_of)
        chance += len(topics_of) * len(planted) / n_topics
    return LiveScore(
        recommendations=len(by_event),
        held_back=len(held),
        judged=judged,
        hits=hits,
        judged_new=judged_new,
        hits_new=hits_new,
        planted_share=on_planted / shown if shown else 0.0,
        chance_share=chance / shown if shown else 0.0,
        n_items=len(truth["items"]),
    )


def describe_users(held: list[dict], recs: list[dict], truth: dict, n_users: int) -> list[str]:
    """For a few users (with and without a current burst): planted topics, the last live event
    and the topics of the items recommended after it."""
    names = truth["topics"]
    by_event = latest_by_event(recs)
    last_event = {e["user_id"]: e for e in held}
    bursty = [u for u in last_event if truth["users"][u]["current_burst"] is not None]
    steady = [u for u in last_event if truth["users"][u]["current_burst"] is None]
    chosen = [u for pair in zip(bursty, steady, strict=False) for u in pair][:n_users]
    lines = []
    for user in chosen:
        planted = truth["users"][user]
        burst = planted["current_burst"]
        event = last_event[user]
        items = by_event.get(event["event_id"], [])[:TOP_K]
        topics = Counter(names[truth["items"][i]] for i in items if i in truth["items"])
        lines += [
            f"{user}: long-term {', '.join(names[t] for t in planted['long_term_topics'])}; "
            f"current burst {names[burst] if burst is not None else '-'}",
            f"  last live event: {event['type']} {event['item_id']} ({names[truth['items'][event['item_id']]]})",
            "  top-10 after it: " + ", ".join(f"{topic} x{n}" for topic, n in topics.most_common()),
        ]
    return lines


def warm_start_lines(first: dict[str, dict], answers: dict, cold, history: list[dict]) -> list[str]:
    """HR@10 of each user's first live event against what the worker answered before it (``answers``:
    user -> ``UserRecommendations``): the user's own top 10 from its bootstrapped state, beside the
    cold-start list (``cold``) a worker without the history would answer everyone. Judged on first
    events of items new to the user: the state's answer leaves out the items of the user's history."""
    touched = touched_items(history)
    new = {user: event for user, event in first.items() if event["item_id"] not in touched[user]}
    n = len(new)
    warm = sum(new[user]["item_id"] in {i.item_id for i in answers[user].items} for user in new)
    cold_items = {i.item_id for i in cold.items}
    trending = sum(event["item_id"] in cold_items for event in new.values())
    warm_users = sum(not answer.cold_start for answer in answers.values())

    def rate(hits: int) -> str:
        return f"{hits / n:.2f} ({hits} of {n})" if n else "n/a (none judged)"

    return [
        f"warm start: {warm_users} of {len(first)} users answered from their bootstrapped state before any live event",
        f"first live event of each user on an item new to it, HR@{TOP_K} against the answer before it: {rate(warm)} "
        f"from the bootstrapped states, {rate(trending)} from the cold-start list (what a worker without the "
        "history answers)",
    ]
