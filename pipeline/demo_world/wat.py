"""Common Crawl WAT files (``*.warc.wat.gz``) whose image links point at the demo image server.

A WAT file is a WARC file of ``metadata`` records, each gzip-compressed as its own member, after a
``warcinfo`` record. Each record's JSON envelope describes one record of the crawl's WARC file; for
an HTML response it carries ``HTML-Metadata`` with ``Head`` (``Title``, ``Base``, ``Metas``,
``Link``, ``Scripts``) and ``Links`` (``{"path": "IMG@/src", "url", "alt"}``, ``A@/href``...),
exactly the shape Common Crawl publishes. The links hold what real pages hold: relative and
protocol-relative URLs, ``<base>`` hrefs, empty and missing alts, duplicates, data: URIs, vector
and icon images, private addresses, and a share of URLs routed through the server's fault modes;
and the planted truths of :mod:`pipeline.demo_world.plant` (copies of earlier images at other
URLs, a few captions in other languages).
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field

from warcio.warcwriter import WARCWriter

from pipeline import fs
from pipeline.demo_world import scene, urls
from pipeline.demo_world.plant import Planter
from pipeline.demo_world.wiki import Article, cached_scene

CRAWL = "CC-MAIN-2024-01"
UNMATCHED_ALTS = (
    "IMG_{n:04d}.JPG",
    "DSC{n:05d}",
    "spacer",
    "banner_300x250_{n}",
    "thumb-{n}-v2",
    "pic{n}",
)
PRIVATE_URLS = (
    "http://10.1.2.3/photos/{n}.jpg",
    "http://169.254.169.254/latest/meta-data/{n}.jpg",
    "http://192.168.0.10/cam/{n}.jpg",
    "http://localhost/img/{n}.jpg",
)
PLAIN_FORMS = ("absolute", "root", "dotdot", "protocol", "base")  # demo URLs without a fault mode
MOJIBAKE = ("cafÃ©", "naÃ¯ve", "Ã¼ber", "â€œquotedâ€\x9d", "piÃ±ata")


def file_name(i: int) -> str:
    """Common Crawl's WAT file naming, for segment file ``i``."""
    return f"CC-MAIN-20240101000000-20240101010000-{i:05d}.warc.wat.gz"


class Captioner:
    """Alt texts and captions: a description of the image's scene, often joined to wiki titles."""

    def __init__(self, articles: list[Article], seed: int):
        self.seed = seed
        self.titles = [a.title for a in articles]
        self.cum = list(itertools.accumulate(a.weight for a in articles))

    def title(self, rng: random.Random) -> str:
        """An article title drawn by popularity."""
        return rng.choices(self.titles, cum_weights=self.cum)[0]

    def scene_of(self, image_id: int) -> scene.Scene:
        """What image ``image_id`` shows (cached: captions and URLs ask for the same ids)."""
        return cached_scene(image_id, self.seed)

    def caption(self, image_id: int, rng: random.Random) -> str:
        """A clean caption that says what image ``image_id`` shows."""
        base = scene.describe(self.scene_of(image_id), rng)
        title = self.title(rng)
        r = rng.random()
        if r < 0.35:
            return base
        if r < 0.65:
            return f"{base} - {title}"
        if r < 0.8:
            return f"{title}: {base}"
        return f"{base.capitalize()} at the {title.lower()}"

    def unmatched(self, image_id: int, rng: random.Random) -> str:
        """An alt text that names nothing (camera file names, ad slots)."""
        return rng.choice(UNMATCHED_ALTS).format(n=image_id)

    def noisy(self, text: str, rng: random.Random) -> str:
        """Web noise: HTML entities, stray whitespace, mojibake, and the odd endless alt."""
        r = rng.random()
        if r < 0.04:
            return text.replace(" - ", " &amp; ", 1) if " - " in text else f"{text} &amp; more"
        if r < 0.08:
            return f"  {text.replace(' ', '   ', 2)} \n"
        if r < 0.1:
            return f"{text} {rng.choice(MOJIBAKE)}"
        if r < 0.11:
            return " ".join([text] * 80)  # longer than any caption filter allows
        return text


@dataclass
class LinkStats:
    """Counts of what the WAT files hold (for the manifest and for tests)."""

    pages: int = 0
    records: int = 0
    img_links: int = 0
    demo_img_links: int = 0
    with_alt: int = 0
    kinds: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)

    def summary(self) -> dict:
        """Plain JSON data (``dataclasses.asdict`` would turn a Counter's items into keys)."""
        out = {k: v for k, v in vars(self).items() if not isinstance(v, Counter)}
        return {
            **out,
            "kinds": dict(sorted(self.kinds.items())),
            "faults": dict(sorted(self.faults.items())),
        }


class LinkMaker:
    """Makes the IMG@/src links of pages, numbering demo images from ``first_id``."""

    def __init__(
        self,
        cap: Captioner,
        port: int,
        fault_rate: float,
        first_id: int,
        rng: random.Random,
        planter: Planter,
    ):
        self.cap, self.port, self.fault_rate, self.rng = cap, port, fault_rate, rng
        self.planter = planter
        self.next_id = first_id
        self.recent: list[dict] = []
        self.stats = LinkStats()

    def _special(self, n: int) -> tuple[str, str]:
        kind = self.rng.choice(("data", "svg", "gif", "ico", "private"))
        base = urls.base_url(self.port)
        url = {
            "data": "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7",
            "svg": f"{base}/static/icons/{n}.svg",
            "gif": f"/static/anim/{n}.gif",
            "ico": f"{base}/favicon.ico",
            "private": self.rng.choice(PRIVATE_URLS).format(n=n),
        }[kind]
        return kind, url

    def _demo_url(self, image_id: int, ext: str, page_path: str, has_base: bool) -> tuple[str, str]:
        if self.rng.random() < self.fault_rate:
            mode = urls.FAULT_MODES[sum(self.stats.faults.values()) % len(urls.FAULT_MODES)]
            self.stats.faults[mode] += 1
            return f"fault:{mode}", urls.image_url(self.port, image_id, ext, fault=mode)
        form = self.rng.choice(("absolute", "absolute", "root", "dotdot", "protocol", "base"))
        path = f"img/{image_id}.{ext}"
        if form == "root":
            return form, "/" + path
        if form == "dotdot":  # climbs from the page's folder (or the <base> folder) to the root
            return form, "../" * (1 if has_base else page_path.count("/") - 1) + path
        if form == "protocol":
            return form, f"//{urls.HOST}:{self.port}/{path}"
        if form == "base" and has_base:
            return form, path
        return "absolute", urls.image_url(self.port, image_id, ext)

    def image_link(self, page_path: str, has_base: bool) -> dict:
        """One IMG@/src entry of a page's ``Links``."""
        rng, st = self.rng, self.stats
        st.img_links += 1
        if self.recent and rng.random() < 0.08:  # the same image and alt on another page
            link = dict(rng.choice(self.recent))
            st.kinds["duplicate"] += 1
            st.demo_img_links += 1
            st.with_alt += bool(link.get("alt", "").strip())
            return link
        copy = self.planter.next_copy()
        if copy is not None:  # a planted copy of an earlier image, with an alt text of its own
            st.kinds["planted_copy"] += 1
            st.demo_img_links += 1
            st.with_alt += 1
            alt = self.cap.noisy(self.cap.caption(copy.image_id, rng), rng)
            return {"path": "IMG@/src", "url": copy.url, "alt": alt}
        image_id, self.next_id = self.next_id, self.next_id + 1
        if rng.random() < 0.03:
            kind, url = self._special(image_id)
        else:
            kind, url = self._demo_url(
                image_id, self.cap.scene_of(image_id).fmt, page_path, has_base
            )
            st.demo_img_links += 1
        st.kinds[kind] += 1
        link = {"path": "IMG@/src", "url": url}
        r = rng.random()
        if r < 0.05:
            st.kinds["alt_missing"] += 1
        elif r < 0.1:
            link["alt"] = rng.choice(("", " "))
            st.kinds["alt_empty"] += 1
        elif r < 0.14:
            link["alt"] = self.cap.noisy(self.cap.unmatched(image_id, rng), rng)
            st.with_alt += 1
        else:
            plain = kind in PLAIN_FORMS  # at the image's own URL: a planted truth can use it
            foreign = plain and self.planter.maybe_foreign(image_id, self.cap)
            if foreign:
                link["alt"] = foreign
                st.kinds["planted_foreign"] += 1
            else:
                link["alt"] = self.cap.noisy(self.cap.caption(image_id, rng), rng)
                if plain:
                    self.planter.maybe_group(image_id)
            st.with_alt += 1
        if rng.random() < 0.05:
            link["title"] = self.cap.caption(image_id, rng)
        if kind in ("absolute", "protocol") and "alt" in link:  # remembered for duplicates
            absolute = urls.image_url(self.port, image_id, url.rsplit(".", 1)[1])
            self.recent = [*self.recent[-49:], {**link, "url": absolute}]
        return link


def _record_id(seed: int, *parts) -> str:
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return f"<urn:uuid:{uuid.UUID(bytes=digest[:16], version=4)}>"


def _sha1(text: str) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(text.encode()).digest()).decode()


def _date(n: int) -> str:
    return f"2024-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z"


def page_path(n: int) -> str:
    """Path of demo web page ``n``: mostly ``/page/n.html``, some deeper blog posts."""
    return f"/blog/2023/{n % 12 + 1:02d}/post-{n}.html" if n % 5 == 4 else f"/page/{n}.html"


def page_links(n: int, maker: LinkMaker, cap: Captioner, n_images: int) -> tuple[dict, list[dict]]:
    """``Head`` and ``Links`` of page ``n``'s HTML-Metadata."""
    rng, port = maker.rng, maker.port
    has_base = rng.random() < 0.15
    title = cap.title(rng)
    head: dict = {
        "Title": f"{title} | Demo site",
        "Metas": [
            {"name": "viewport", "content": "width=device-width"},
            {"name": "description", "content": f"All about {title.lower()}"},
        ],
        "Link": [
            {
                "path": "LINK@/href",
                "url": "/static/site.css",
                "rel": "stylesheet",
                "type": "text/css",
            }
        ],
        "Scripts": [{"path": "SCRIPT@/src", "url": "/static/app.js", "type": "text/javascript"}],
    }
    if has_base:
        head["Base"] = f"{urls.base_url(port)}/"
    links: list[dict] = [{"path": "A@/href", "url": "/", "text": "Home"}]
    for _ in range(n_images):
        links.append(maker.image_link(page_path(n), has_base))
        if rng.random() < 0.4:
            other = rng.randrange(max(1, n * 2))
            links.append(
                {"path": "A@/href", "url": page_path(other), "text": rng.choice(cap.titles)}
            )
    if rng.random() < 0.3:
        links.append(
            {"path": "LINK@/href", "url": f"{urls.base_url(port)}/feed.xml", "rel": "alternate"}
        )
        links.append({"path": "SCRIPT@/src", "url": "//cdn.example.com/lib.js"})
    if rng.random() < 0.1:
        links.append({"path": "FORM@/action", "url": "/search", "method": "get"})
    return head, links


def envelope(page_url: str, rec_n: int, seed: int, warc_name: str, payload: dict, msg: str) -> dict:
    """The WAT JSON envelope around one original WARC record's metadata."""
    # Sizes and digests describe an original WARC record that the demo never writes: keep them
    # plausible and deterministic rather than computed.
    size = 4000 + int.from_bytes(hashlib.sha1(page_url.encode()).digest()[:2], "big")
    blob = f"{seed}:{warc_name}:{rec_n}"
    return {
        "Container": {
            "Filename": warc_name,
            "Compressed": True,
            "Offset": str(rec_n * 20011),
            "Gzip-Metadata": {
                "Header-Length": "10",
                "Footer-Length": "8",
                "Inflated-Length": str(size + 600),
            },
        },
        "Envelope": {
            "Format": "WARC",
            "WARC-Header-Length": "540",
            "Block-Digest": _sha1(blob),
            "Actual-Content-Length": str(size + 300),
            "WARC-Header-Metadata": {
                "WARC-Type": msg,
                "WARC-Date": _date(rec_n),
                "WARC-Record-ID": _record_id(seed, warc_name, rec_n, msg),
                "Content-Type": f"application/http; msgtype={msg}",
                "WARC-Target-URI": page_url,
                "WARC-IP-Address": urls.HOST,
                "WARC-Payload-Digest": _sha1(page_url),
            },
            "Payload-Metadata": {
                "Actual-Content-Type": f"application/http; msgtype={msg}",
                **payload,
            },
        },
    }


def response_payload(
    head: dict | None, links: list[dict], content_type: str = "text/html; charset=UTF-8"
) -> dict:
    """``HTTP-Response-Metadata``; HTML pages carry ``HTML-Metadata``, other documents do not."""
    meta: dict = {
        "Response-Message": {"Version": "HTTP/1.1", "Status": "200", "Reason": "OK"},
        "Headers": {
            "Date": "Mon, 01 Jan 2024 00:00:00 GMT",
            "Server": "nginx",
            "Content-Type": content_type,
        },
        "Headers-Length": "212",
        "Entity-Length": "18034",
        "Entity-Trailing-Slop-Length": "0",
    }
    if head is not None:
        meta["HTML-Metadata"] = {"Head": head, "Links": links}
    return {"HTTP-Response-Metadata": meta}


def request_payload(path: str, port: int) -> dict:
    """``HTTP-Request-Metadata`` of the crawler's GET."""
    return {
        "HTTP-Request-Metadata": {
            "Request-Message": {"Method": "GET", "Path": path, "Version": "HTTP/1.1"},
            "Headers": {
                "Host": f"{urls.HOST}:{port}",
                "User-Agent": "CCBot/2.0 (https://commoncrawl.org/faq/)",
                "Accept": "text/html",
            },
            "Headers-Length": "180",
            "Entity-Length": "0",
        }
    }


def page_envelope(page_url: str, links: list[dict], base: str | None = None) -> dict:
    """The WAT JSON of one HTML page's response with these links (and ``<base href>``)."""
    head: dict = {"Title": "a page"}
    if base is not None:
        head["Base"] = base
    return envelope(page_url, 1, 0, "x.warc.gz", response_payload(head, links), "response")


def write_records(path: str, name: str, records: list[tuple[str, bytes]], seed: int = 0) -> None:
    """A WAT file of a warcinfo record, then one metadata record per ``(target URI, body)``;
    a body is the JSON envelope (:func:`page_envelope`) or any bytes at all (hostile input)."""
    with fs.open_write_atomic(path) as f:
        writer = WARCWriter(f, gzip=True, warc_version="WARC/1.0")
        _warcinfo(writer, name, seed)
        for rec_n, (uri, body) in enumerate(records, start=1):
            _write_metadata(writer, uri, body, seed, name, rec_n, None)


def _metadata_record(
    writer: WARCWriter, page_url: str, env: dict, seed: int, name: str, rec_n: int
) -> None:
    data = json.dumps(env, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    refers = env["Envelope"]["WARC-Header-Metadata"]["WARC-Record-ID"]
    _write_metadata(writer, page_url, data, seed, name, rec_n, refers)


def _write_metadata(
    writer: WARCWriter, page_url: str, data: bytes, seed: int, name: str, rec_n: int, refers
) -> None:
    headers = {
        "WARC-Date": _date(rec_n),
        "WARC-Record-ID": _record_id(seed, name, rec_n, "wat"),
    }
    if refers:
        headers["WARC-Refers-To"] = refers
    record = writer.create_warc_record(
        page_url,
        "metadata",
        payload=io.BytesIO(data),
        length=len(data),
        warc_content_type="application/json",
        warc_headers_dict=headers,
    )
    writer.write_record(record)


def _warcinfo(writer: WARCWriter, name: str, seed: int) -> None:
    fields = (
        "Software-Info: ia-web-commons.1.1.10-SNAPSHOT-20231215022137\r\n"
        "Extracted-Date: Mon, 01 Jan 2024 02:00:00 GMT\r\n"
        f"robots: checked via crawler-commons 1.5-SNAPSHOT\r\nisPartOf: {CRAWL}\r\n"
        "operator: Common Crawl Admin (info@commoncrawl.org)\r\n"
        "description: Demo crawl of the offline demo web\r\npublisher: Common Crawl\r\n"
    ).encode()
    headers = {
        "WARC-Date": _date(0),
        "WARC-Filename": name,
        "WARC-Record-ID": _record_id(seed, name, "warcinfo"),
    }
    record = writer.create_warc_record(
        "",
        "warcinfo",
        payload=io.BytesIO(fields),
        length=len(fields),
        warc_content_type="application/warc-fields",
        warc_headers_dict=headers,
    )
    writer.write_record(record)


def write_file(
    path: str,
    name: str,
    pages: range,
    maker: LinkMaker,
    cap: Captioner,
    seed: int,
    images_per_page: float,
) -> None:
    """One WAT file: warcinfo, then request/response metadata records of ``pages``."""
    warc_name = name.replace(".warc.wat.gz", ".warc.gz")
    rng = maker.rng
    with fs.open_write_atomic(path) as f:
        writer = WARCWriter(f, gzip=True, warc_version="WARC/1.0")
        _warcinfo(writer, name, seed)
        rec_n = 1
        for n in pages:
            url = urls.base_url(maker.port) + page_path(n)
            if rng.random() < 0.2:  # the crawler's request, which holds no links
                _metadata_record(
                    writer,
                    url,
                    envelope(
                        url,
                        rec_n,
                        seed,
                        warc_name,
                        request_payload(page_path(n), maker.port),
                        "request",
                    ),
                    seed,
                    name,
                    rec_n,
                )
                rec_n += 1
            if rng.random() < 0.02:  # a PDF: a response without HTML-Metadata
                payload = response_payload(None, [], "application/pdf")
            else:
                k = max(0, round(rng.gauss(images_per_page, images_per_page / 3)))
                payload = response_payload(*page_links(n, maker, cap, k))
            _metadata_record(
                writer,
                url,
                envelope(url, rec_n, seed, warc_name, payload, "response"),
                seed,
                name,
                rec_n,
            )
            rec_n += 1
            maker.stats.pages += 1
        maker.stats.records += rec_n


def write_wat(
    out_dir: str,
    articles: list[Article],
    seed: int,
    port: int,
    fault_rate: float,
    n_pages: int,
    n_files: int,
    images_per_page: float,
    planter: Planter,
) -> tuple[dict[str, int], LinkStats, int]:
    """All WAT files; returns {file name: IMG@/src links}, the link counts and the next image id."""
    cap = Captioner(articles, seed)
    rng = random.Random(f"wat:{seed}")
    maker = LinkMaker(cap, port, fault_rate, 0, rng, planter)
    per_file = -(-n_pages // n_files)
    links = {}
    for i in range(n_files):
        name, before = file_name(i), maker.stats.img_links
        pages = range(i * per_file, min(n_pages, (i + 1) * per_file))
        write_file(fs.join(out_dir, name), name, pages, maker, cap, seed, images_per_page)
        links[name] = maker.stats.img_links - before
    return links, maker.stats, maker.next_id
