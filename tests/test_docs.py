"""The README stands on its own: every file it links to is in the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_links_resolve_inside_the_repository():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?:|#)[^)\s]+)\)", text)
    assert "docs/paper-architecture.md" in links
    missing = [link for link in links if not (ROOT / link.split("#")[0]).exists()]
    assert not missing, f"README.md links to files not in the repository: {missing}"
    # nothing outside the clone is cited (the spec used to live in ../shared)
    for path in [ROOT / "README.md", *sorted((ROOT / "equignnmd").rglob("*.py"))]:
        assert "shared/spec" not in path.read_text(), path


def test_readme_and_quickstart_help_state_one_wall_time():
    from equignnmd.cli import build_parser
    from equignnmd.quickstart import QUICKSTART_TIME

    text = (ROOT / "README.md").read_text()
    quick = text[text.index("## Quick start") : text.index("## Module map")]
    assert QUICKSTART_TIME in quick
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert QUICKSTART_TIME in sub.choices["quickstart"].format_help()
    assert "15 min" not in sub.choices["quickstart"].format_help()
