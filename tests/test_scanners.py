"""The doctor against the published pickle scanners, picklescan (also --strict) and fickling, on
the same corpora: the malicious pickles (tests/malicious_pickles.py, tests/advisory_pickles.py with
the evasions a cold review found)
and the benign ones (the committed test pickles and tests/benign_pickles.py, made here).
docs/doctor.md's comparison table is this run's result: the test fails when it is stale and prints
the table (UPDATE_DOCS=1, or UPDATE_README=1 as before, writes it there).
"""

from __future__ import annotations

import glob
import io
import os
import re
import tempfile

import pytest
from advisory_pickles import advisory_corpus, evasions, second_evasions
from benign_pickles import benign_corpus
from conftest import ROOT
from malicious_pickles import corpus

from numerai_predict.pickles import scan_bytes

PAGE = os.path.join(ROOT, "docs", "doctor.md")  # the doctor's page, where the table is
TABLE = re.compile(r"^\| corpus \| pickles \|.*?\n(?=\n)", re.MULTILINE | re.DOTALL)


def doctor(data: bytes) -> bool:
    """Refused?"""
    try:
        return bool(scan_bytes(data).unsafe)
    except Exception:  # unreadable: refused (exit 11)
        return True


def picklescan(data: bytes, strict: bool = False) -> bool:
    from picklescan.scanner import scan_pickle_bytes

    try:
        result = scan_pickle_bytes(io.BytesIO(data), "model.pkl", strict=strict)
    except Exception:
        return True
    return bool(result.infected_files or result.scan_err)


def fickling(data: bytes) -> bool:
    import fickling as fickling_

    with tempfile.NamedTemporaryFile(suffix=".pkl") as handle:
        handle.write(data)
        handle.flush()
        try:
            return not fickling_.is_likely_safe(handle.name)
        except Exception:  # it raises on some opcodes (BYTEARRAY8): a user gets a traceback, no verdict
            return True


SCANNERS = {"the doctor": doctor, "picklescan": picklescan,
            "picklescan --strict": lambda data: picklescan(data, strict=True), "fickling": fickling}


def corpora() -> dict[str, list[bytes]]:
    marker = os.path.join("/nonexistent", "MARKER")
    committed = sorted(glob.glob(os.path.join(ROOT, "tests", "models", "**", "*.pkl"), recursive=True))
    benign, _ = benign_corpus()
    return {
        "malicious (refused)": [e.data for e in corpus(marker)] + [e.data for e in advisory_corpus(marker)]
        + [e.data for e in evasions(marker) + second_evasions(marker)],
        "benign (passed)": [open(path, "rb").read() for path in committed] + list(benign.values()),
    }


def table(counts: dict[str, dict[str, int]], sizes: dict[str, int]) -> str:
    header = "| corpus | pickles | " + " | ".join(SCANNERS) + " |\n"
    header += "|---|---|" + "---|" * len(SCANNERS) + "\n"
    return header + "".join(f"| {name} | {sizes[name]} | " + " | ".join(str(counts[name][s]) for s in SCANNERS)
                            + " |\n" for name in sizes)


@pytest.mark.slow
def test_readme_compares_the_doctor_with_the_scanners_as_measured():
    counts: dict[str, dict[str, int]] = {}
    sizes = {}
    for name, pickles in corpora().items():
        sizes[name] = len(pickles)
        want_refused = name.startswith("malicious")
        counts[name] = {scanner: sum(judge(data) == want_refused for data in pickles)
                        for scanner, judge in SCANNERS.items()}
    # The doctor itself: every malicious pickle refused, every benign one passed.
    assert all(counts[name]["the doctor"] == sizes[name] for name in sizes), counts
    measured = table(counts, sizes)
    with open(PAGE) as handle:
        page = handle.read()
    shown = TABLE.search(page)
    if (os.environ.get("UPDATE_DOCS") or os.environ.get("UPDATE_README")) and shown:
        with open(PAGE, "w") as handle:
            handle.write(page[:shown.start()] + measured + page[shown.end():])
        return
    assert shown and shown.group(0) == measured, f"docs/doctor.md's scanner table is stale; measured:\n{measured}"
