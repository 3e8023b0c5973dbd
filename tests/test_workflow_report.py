"""Static checks of the report rules' captions.

Snakemake reads a ``report(caption=...)`` file only when it builds the HTML report, so a
missing caption would pass every run and fail the user's ``--report``. The report rules
themselves run, with the HTML report, in test_pipeline.py; the tables and figures they
write are tested on synthetic recoveries in test_tables.py and test_plots.py.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_report_caption_exists() -> None:
    """Snakemake reads captions only when it builds the report: check them all here."""
    captions = {
        REPO / "Snakefile": re.findall(
            r'^report:\s*"([^"]+)"', (REPO / "Snakefile").read_text(), re.M
        )
    }
    for rules_file in sorted((REPO / "rules").glob("*.smk")):
        captions[rules_file] = re.findall(r'caption="([^"]+)"', rules_file.read_text())
    assert sum(len(names) for names in captions.values()) >= 5
    for rules_file, names in captions.items():
        for name in names:
            assert (rules_file.parent / name).is_file(), f"{rules_file.name}: no caption {name}"
