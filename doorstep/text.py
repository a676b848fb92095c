"""Someone's words made shorter for a quote, a snippet or a preview, without breaking a letter or an emoji.

Why not ``text[:n]``: a code point is not a letter. The family emoji 👩‍👩‍👧‍👦 is seven code points, a flag two,
a keycap three, a thumbs-up with a skin tone two; Hindi writes a vowel sign or a virama after its consonant and
"é" may be "e" plus a combining accent. A cut between them left a lone "👩", a bare consonant or a stray accent
in alerts and inbox rows (languages audit). Cuts here fall between grapheme clusters (Unicode's "user-perceived
characters", UAX #29, the ``\\X`` of the ``regex`` package, a declared dependency already used to count a post's
length in ``responders/channels.py``).
"""

from __future__ import annotations

import regex

#: What ends a shortened text, so the reader knows there was more.
ELLIPSIS = "…"

_CLUSTER = regex.compile(r"\X")
#: The last run of spaces in a text, searched from its end (``(?r)``): where its last word ends.
_LAST_SPACE = regex.compile(r"(?r)\s+")


def shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters (code points, as the networks and our columns count them),
    ellipsis included: whole when it fits, else cut after a word when a word ends in the second half of the room,
    else after the last whole letter or emoji that fits. Chinese and Japanese have no spaces between words: they
    are cut between letters, which their readers accept as a line break too."""
    if len(text) <= limit:
        return text
    room = limit - len(ELLIPSIS)
    if room <= 0:
        return ELLIPSIS[:limit]
    end = 0
    for cluster in _CLUSTER.finditer(text):
        if cluster.end() > room:
            break
        end = cluster.end()
    head = text[:end]
    if not text[end:end + 1].isspace():  # the cut is inside a word: end at the word before it when that is near
        last = _LAST_SPACE.search(head)
        if last is not None and last.start() > limit // 2:
            head = head[:last.start()]
    return head.rstrip() + ELLIPSIS
