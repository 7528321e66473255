"""The links of an HTML page (the status page's tests): every href of an <a>, or with
with_sources also every src, in page order, as written."""

from __future__ import annotations

from html.parser import HTMLParser


class _Links(HTMLParser):
    def __init__(self, attributes: tuple[str, ...], anchors_only: bool) -> None:
        super().__init__()
        self.attributes, self.anchors_only = attributes, anchors_only
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a" or not self.anchors_only:
            self.links += [value for name, value in attrs if name in self.attributes and value]


def page_links(html: str, with_sources: bool = False) -> list[str]:
    """The <a href>s of html, or with_sources every element's href and src."""
    parser = _Links(("href", "src") if with_sources else ("href",), anchors_only=not with_sources)
    parser.feed(html)
    parser.close()
    return parser.links
