"""The documentation stays a reference: every relative link and anchor resolves, the README stays short,
and the configuration page lists every setting a service reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from visionloop.server.catalog import SERVICES

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    [
        REPO / "README.md",
        REPO / "CHANGELOG.md",
        REPO / "benchmarks" / "README.md",
        REPO / "clients" / "python" / "README.md",
        *(REPO / "docs").glob("*.md"),
        *(REPO / "benchmarks" / "results").glob("*.md"),
    ]
)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub makes for a Markdown file: lower case, punctuation dropped, spaces to hyphens."""
    text = _FENCE.sub("", path.read_text())
    slugs = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def links(path: Path) -> list[str]:
    return [target for target in _LINK.findall(_FENCE.sub("", path.read_text())) if "://" not in target]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_anchors_resolve(document: Path) -> None:
    broken = []
    for target in links(document):
        name, _, anchor = target.partition("#")
        path = (document.parent / name).resolve() if name else document
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, broken


def test_the_readme_is_short_and_links_every_reference_page() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    linked = {Path(target.partition("#")[0]).name for target in links(REPO / "README.md") if target.startswith("docs/")}
    assert linked == {path.name for path in (REPO / "docs").glob("*.md")}


def test_the_configuration_page_lists_every_setting() -> None:
    page = (REPO / "docs" / "configuration.md").read_text()
    missing = set()
    for service in SERVICES:
        settings = SERVICES[service].load().SETTINGS
        names = {field.alias or name.upper() for name, field in settings.model_fields.items()}
        missing |= {name for name in names if f"`{name}`" not in page}
    assert not missing, sorted(missing)


def test_the_anchor_rule_matches_githubs() -> None:
    """Headings with code and punctuation, as GitHub spells their anchors."""
    page = REPO / "benchmarks" / "README.md"
    assert "hub_benchmarkpy-the-hub-next-to-its-raw-storage-back-end" in anchors(page)
    assert "the-images-proven-deploypodmanprove" in anchors(REPO / "docs" / "deployment.md")
