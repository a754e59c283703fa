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
