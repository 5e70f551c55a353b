"""README's `make run` figures, written from what the demo printed (never typed in by hand).

The demo writes its live scores to ``<run dir>/live-summary.txt``; ``python -m stream_app.demo.readme``
(``make readme-figures`` runs the demo first) copies them into README.md between the
``demo-figures`` markers, and the demo's test fails when README's block differs from a fresh run's.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

SUMMARY_FILE = "live-summary.txt"
BLOCK = re.compile(
    r"(?P<head><!-- demo-figures:begin -->\n(?P<indent>[ \t]*)```\n)(?P<body>.*?)"
    r"(?P<tail>\n[ \t]*```\n[ \t]*<!-- demo-figures:end -->)",
    re.S,
)


def _block(text: str) -> re.Match[str]:
    match = BLOCK.search(text)
    if match is None:
        raise ValueError("README.md has no <!-- demo-figures:begin/end --> block around a code fence")
    return match


def readme_figures(text: str) -> list[str]:
    """The figure lines of README's block (indent removed)."""
    return [line.strip() for line in _block(text)["body"].splitlines()]


def with_figures(text: str, lines: list[str]) -> str:
    """``text`` with the block's lines replaced by ``lines``, at the block's indent."""
    match = _block(text)
    body = "\n".join(match["indent"] + line for line in lines)
    return text[: match.start()] + match["head"] + body + match["tail"] + text[match.end() :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream_app.demo.readme", description=__doc__.splitlines()[0])
    parser.add_argument("--summary", type=Path, default=Path("var/run") / SUMMARY_FILE, help="What the demo wrote.")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args(argv)
    lines = args.summary.read_text().splitlines()
    args.readme.write_text(with_figures(args.readme.read_text(), lines))
    print(f"{args.readme}: `make run` figures from {args.summary}:", *lines, sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
