"""Amazon review files (McAuley et al., one JSON object per line, optionally .gz) -> events and items.

A review -> a ``comment`` event: user_id = reviewerID, item_id = asin, ts = unixReviewTime * 1000,
rating = overall, text = summary + ". " + reviewText (whichever parts are non-blank), cut at a
word boundary to the contract's 32,768 characters. A review with neither summary nor text becomes
a ``rating`` event. event_id is ``az-<line number>``, deterministic and unique for one file.

Item text is the product ``title`` when the file carries one (metadata-joined dumps do), else the
asin itself: the 5-core review files have no titles.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from models.datasets.exceptions import DatasetError
from models.datasets.jsonl import open_text
from models.datasets.records import Dataset, sort_events, truncate_text

REQUIRED = ("reviewerID", "asin", "unixReviewTime")


def review_text(summary: str, body: str) -> str:
    """Comment text of a review: summary and body joined by ". " (either may be blank)."""
    parts = [p.strip() for p in (summary, body) if p and p.strip()]
    return truncate_text(". ".join(parts))


def _event(path: Path, lineno: int, review: dict) -> dict:
    missing = [k for k in REQUIRED if k not in review]
    if missing:
        raise DatasetError(f"{path}:{lineno}: review lacks {', '.join(missing)}; is this an Amazon reviews file?")
    try:
        ts = int(review["unixReviewTime"]) * 1000
        rating = float(review["overall"]) if review.get("overall") is not None else None
    except (TypeError, ValueError):
        raise DatasetError(f"{path}:{lineno}: unixReviewTime/overall are not numbers") from None
    event = {
        "event_id": f"az-{lineno}",
        "user_id": str(review["reviewerID"]),
        "item_id": str(review["asin"]),
        "type": "comment",
        "ts": ts,
    }
    text = review_text(review.get("summary") or "", review.get("reviewText") or "")
    if text:
        event["text"] = text
    else:
        event["type"] = "rating"
    if rating is not None:
        event["rating"] = rating
    return event


def read_amazon(reviews: str | Path, *, progress: bool = False) -> Dataset:
    """Events (one per review, sorted by ts, user_id) and items (one per asin, first title seen)."""
    reviews = Path(reviews)
    events: list[dict] = []
    asins: dict[str, None] = {}  # insertion-ordered set
    titles: dict[str, str] = {}
    try:
        with open_text(reviews) as fh:
            for lineno, line in enumerate(tqdm(fh, desc=reviews.name, unit=" reviews", disable=not progress), 1):
                if not line.strip():
                    continue
                try:
                    review = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{reviews}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(review, dict):
                    raise DatasetError(f"{reviews}:{lineno}: expected a JSON object per line")
                event = _event(reviews, lineno, review)
                events.append(event)
                asins[event["item_id"]] = None
                title = (review.get("title") or "").strip()
                if title:
                    titles.setdefault(event["item_id"], truncate_text(title))
    except OSError as exc:  # includes gzip.BadGzipFile
        raise DatasetError(f"cannot read {reviews}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{reviews}: not UTF-8 text (a .gz file must end in .gz)") from None
    items = [{"item_id": asin, "text": titles.get(asin, asin)} for asin in asins]
    return Dataset(sort_events(events), items)
