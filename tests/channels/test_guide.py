"""docs/writing-a-channel.md shows the example channel's files literally: each block marked
``<!-- file: PATH -->`` must be the tested file, and every file of tests/channels/acme that matters is shown."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "writing-a-channel.md"
BLOCK_RE = re.compile(r"<!-- file: (?P<path>[\w./-]+) -->\n```python\n(?P<code>.*?)```\n", re.DOTALL)


def test_the_guides_code_is_the_tested_code():
    blocks = {m["path"]: m["code"] for m in BLOCK_RE.finditer(GUIDE.read_text())}
    assert blocks, "no marked code block in the guide"
    for path, code in blocks.items():
        assert code == (ROOT / path).read_text(), f"the guide's copy of {path} differs from the file"
    shown = {Path(path).name for path in blocks}
    files = {p.name for p in (ROOT / "tests" / "channels" / "acme").glob("*.py")} - {"__init__.py"}
    assert shown == files


def test_every_python_block_of_the_guide_is_a_tested_file():
    text = GUIDE.read_text()
    assert text.count("```python") == len(BLOCK_RE.findall(text))
