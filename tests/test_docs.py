"""docs/statistics.md stays true to ovfdlr.stats: every public name's current signature is on the
page, and every ``python example`` block on it runs and prints what the page says."""

from __future__ import annotations

import doctest
import inspect
import re
from pathlib import Path

import pytest

import ovfdlr.stats

DOC = Path(__file__).resolve().parents[1] / "docs" / "statistics.md"
BLOCK = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.DOTALL | re.MULTILINE)


def example_blocks(text: str) -> list[tuple[int, str]]:
    """(line of the first code line, code) of each block whose info string is ``python
    example``, in page order."""
    return [
        (text.count("\n", 0, m.start("body")) + 1, m["body"])
        for m in BLOCK.finditer(text)
        if m["info"].strip() == "python example"
    ]


@pytest.mark.parametrize("name", ovfdlr.stats.__all__)
def test_every_public_name_is_documented_with_its_signature(name):
    text = DOC.read_text(encoding="utf-8")
    obj = getattr(ovfdlr.stats, name)
    assert f"### `{name}`" in text, f"docs/statistics.md has no section for {name}"
    try:
        signature = f"{name}{inspect.signature(obj)}"
    except ValueError:  # an exception class: no signature of its own
        assert issubclass(obj, Exception)
        return
    assert f"```text\n{signature}\n```" in text, f"stale or missing signature: {signature}"


def test_the_examples_run_and_print_what_the_page_says():
    blocks = example_blocks(DOC.read_text(encoding="utf-8"))
    documented = [n for n in ovfdlr.stats.__all__ if n != "StatsError"]
    assert len(blocks) >= len(documented) + 1  # the shared data, then one per name at least
    namespace: dict = {}
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for line, body in blocks:
        if ">>>" not in body:  # plain code: the data the examples share
            exec(compile("\n" * (line - 1) + body, str(DOC), "exec"), namespace)
            continue
        test = parser.get_doctest(
            body, namespace, f"the example at line {line}", str(DOC), line - 1
        )
        runner.run(test, clear_globs=False)
    summary = runner.summarize(verbose=False)
    assert summary.attempted > len(documented)
    assert summary.failed == 0, f"{summary.failed} example(s) of {DOC.name} failed (see above)"
