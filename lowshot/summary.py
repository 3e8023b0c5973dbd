"""Print where the pipeline's tables and figures are, the PSNR summary and the claims.

Usage: ``python -m lowshot.summary [RESULTS]`` (default ``results``); the last step of
``make demo``. Exits with status 1 when the PSNR summary has not been built yet.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

OUTPUTS: tuple[str, ...] = (
    "tables/metrics.csv",
    "tables/psnr_summary.csv",
    "tables/psnr_summary.md",
    "tables/psnr_summary.tex",
    "tables/claims.csv",
    "tables/claims.md",
    "figures/figure1.pdf",
    "figures/figure1.png",
    "figures/figure2.pdf",
    "figures/figure2.png",
    "figures/figure3.pdf",
    "figures/figure3.png",
)

# Printed in full after the list of outputs, in this order, when they exist.
MARKDOWN_TABLES: tuple[str, ...] = ("tables/psnr_summary.md", "tables/claims.md")


def describe(results: str | Path) -> str:
    """The text printed by the command: output paths (or "missing"), then the Markdown
    PSNR summary and the claims table (``MARKDOWN_TABLES``), each where it exists."""
    results = Path(results)
    lines = [f"Outputs under {results}/:"]
    for name in OUTPUTS:
        path = results / name
        lines.append(f"  {path}" if path.is_file() else f"  {path}  (missing)")
    for name in MARKDOWN_TABLES:
        markdown = results / name
        if markdown.is_file():
            lines += ["", markdown.read_text(encoding="utf-8").rstrip()]
    lines += [
        "",
        "HTML report with both figures: snakemake --report report.html (same --configfile)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowshot.summary", description=__doc__)
    parser.add_argument("results", nargs="?", default="results", help="results folder")
    args = parser.parse_args(argv)
    print(describe(args.results))
    return 0 if (Path(args.results) / "tables" / "psnr_summary.md").is_file() else 1


if __name__ == "__main__":
    sys.exit(main())
