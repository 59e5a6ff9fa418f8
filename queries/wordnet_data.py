"""Find WordNet 3.0 for nltk: nltk's own data, else Debian's ``wordnet-base`` files, else a clear error.

nltk 3.9+ reads a WordNet directory only if it sits at ``<dir>/corpora/wordnet`` under a path in
``nltk.data.path`` and holds a ``lexnames`` file. Debian's package has the data files but no
``lexnames`` (its 45 lines are in the lexnames(5WN) man page, reproduced below), and nltk does not
follow symlinked copies, so the files are copied.

Run ``python -m queries.wordnet_data`` (``make install`` does) to arrange it once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DEBIAN_DIR = Path("/usr/share/wordnet")
REQUIRED = (
    "data.noun",
    "data.verb",
    "data.adj",
    "data.adv",
    "index.noun",
    "index.verb",
    "index.adj",
    "index.adv",
)
OPTIONAL = ("index.sense", "noun.exc", "verb.exc", "adj.exc", "adv.exc", "cntlist.rev")

LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute
noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group
noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession
noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body
verb.change verb.cognition verb.communication verb.competition verb.consumption verb.contact
verb.creation verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative
verb.weather adj.ppl""".split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

REMEDY = (
    "WordNet 3.0 was not found. Either run `python -c \"import nltk; nltk.download('wordnet')\"` "
    "(needs network), or install Debian's files (`apt-get install wordnet-base wordnet-sense-index`) "
    "and run `python -m queries.wordnet_data` (make install does both when it can)."
)


class WordNetMissing(RuntimeError):
    """Raised when no WordNet data can be found; the message names both remedies."""


def lexnames_text() -> str:
    """The ``lexnames`` file: number, name and syntactic category, tab separated."""
    assert len(LEXNAMES) == 45
    return "".join(
        f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def default_target() -> Path:
    """``<sys.prefix>/nltk_data``: on nltk's search path inside the active virtualenv."""
    return Path(sys.prefix) / "nltk_data"


def install_from_debian(target_root: Path, source: Path = DEBIAN_DIR) -> Path:
    """Copy Debian's WordNet files into ``<target_root>/corpora/wordnet`` with a lexnames file."""
    missing = [name for name in REQUIRED if not (source / name).is_file()]
    if missing:
        raise WordNetMissing(f"{source} lacks {', '.join(missing)}. {REMEDY}")
    dest = target_root / "corpora" / "wordnet"
    dest.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED + OPTIONAL:
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)  # real copies: nltk skips symlinks
    (dest / "lexnames").write_text(lexnames_text())
    (dest / "LICENSE").write_text(
        "WordNet 3.0 (c) Princeton University; copied from Debian's wordnet-base.\n"
    )
    return dest


def try_nltk_download(timeout: float = 20.0) -> bool:
    """``nltk.download('wordnet')`` in a child process; False (quietly) when there is no network."""
    code = "import sys, nltk; sys.exit(0 if nltk.download('wordnet', quiet=True, raise_on_error=True) else 1)"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def wordnet_available() -> bool:
    """Whether nltk can load WordNet now."""
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        try:
            nltk.data.find("corpora/wordnet.zip")
        except LookupError:
            return False
    return True


def load_wordnet():
    """nltk's WordNet corpus reader, arranging Debian's files on the fly if needed."""
    if not wordnet_available() and DEBIAN_DIR.is_dir():
        install_from_debian(
            default_target() if os.access(sys.prefix, os.W_OK) else Path.home() / "nltk_data"
        )
    if not wordnet_available():
        raise WordNetMissing(REMEDY)
    from nltk.corpus import wordnet

    wordnet.ensure_loaded()
    return wordnet


def main() -> int:
    """Arrange WordNet for nltk (then cache the names the query builder derives from it)."""
    code = arrange()
    if code == 0:
        from queries.sources import wordnet_entries

        print(f"wordnet: {len(wordnet_entries('all'))} lemma names cached for the query builder")
    return code


def arrange() -> int:
    """Arrange WordNet for nltk: already there, else nltk.download, else Debian's files."""
    if wordnet_available():
        print("wordnet: found by nltk")
        return 0
    if os.environ.get("WIT_OFFLINE") != "1" and try_nltk_download():
        print("wordnet: downloaded with nltk.download('wordnet')")
        return 0
    if DEBIAN_DIR.is_dir():
        dest = install_from_debian(default_target())
        print(
            f"wordnet: no network for nltk.download; copied Debian's wordnet-base files to {dest}"
        )
        return 0
    print(f"wordnet: {REMEDY}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
