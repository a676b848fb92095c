"""The reply box's live count on networks that do not count as the browser does (Mastodon, Bluesky, X with links on).

The browser's own count (``max_chars``) counts UTF-16 units and drops a whole paste beyond the limit, so boxes for
these networks set it no limit (``console.case_view.box_limit``) and the page counted the words only as last sent:
an agent typing a long Bluesky reply saw no count until Queue reply refused it (left open by the languages audit).
This small component counts the box as the network does while the agent types, in the browser, with the server's
own patterns (``responders.channels``); Queue reply still checks the exact count. ``COUNT_JS`` is a plain function
so that a test can compare it with :func:`responders.channels.weighted_length` on the same texts.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

#: ``doorstepCount(rules, text)``: the length ``rules.channel`` counts for ``text`` (see weighted_length), and its
#: UTF-8 bytes. Written to the page's text only through ``textContent``: the words are never read as HTML.
COUNT_JS = r"""
function doorstepCount(rules, text) {
  const seg = new Intl.Segmenter(undefined, {granularity: 'grapheme'});
  const graphemes = (t) => Array.from(seg.segment(t), (s) => s.segment);
  const link = 'x'.repeat(rules.link_weight);
  let length;
  if (rules.channel === 'bluesky' || rules.channel === 'bluesky_dm') {
    length = graphemes(text).length;
  } else if (rules.channel === 'x') {
    const emoji = new RegExp('^(?:' + rules.emoji + ')', 'u');
    length = 0;
    for (const g of graphemes(text.replace(new RegExp(rules.url, 'giu'), link).normalize('NFC'))) {
      if (emoji.test(g)) { length += 2; continue; }
      for (const ch of g) {
        const code = ch.codePointAt(0);
        length += rules.light.some(([low, high]) => low <= code && code <= high) ? 1 : 2;
      }
    }
  } else if (rules.channel === 'mastodon' || rules.channel === 'mastodon_dm') {
    let words = text;
    if ((rules.channel === 'mastodon' || rules.channel === 'mastodon_dm') && rules.recipient) {
      const mention = '@' + rules.recipient.trim().replace(/^@+/, '');
      if (!words.toLowerCase().includes(mention.toLowerCase())) { words = mention + ' ' + words; }
    }
    words = words.replace(new RegExp(rules.mastodon_url, 'giu'), link);
    words = words.replace(new RegExp(rules.mention, 'giu'), (_m, user) => '@' + user);
    length = graphemes(words).length;
  } else {
    length = text.length;
  }
  return {length: length, bytes: new TextEncoder().encode(text).length};
}
"""

_COMPONENT_JS = COUNT_JS + r"""
export default function(component) {
  const { data, parentElement } = component;
  let out = parentElement.querySelector('.doorstep-count');
  if (!out) {
    out = document.createElement('div');
    out.className = 'doorstep-count';
    out.setAttribute('aria-live', 'polite');
    parentElement.appendChild(out);
  }
  const selector = '.st-key-draft_' + data.case_id + ' textarea';
  const show = () => {
    const box = document.querySelector(selector);
    const text = box ? box.value : '';
    if (!text.trim()) { out.textContent = ''; out.classList.remove('over'); return; }
    const n = doorstepCount(data, text);
    let words = n.length + '/' + data.limit + ' ' + data.unit + ' as ' + data.network + ' counts them';
    let over = n.length > data.limit;
    if (data.byte_limit) {
      words += ' · ' + n.bytes + '/' + data.byte_limit + ' bytes';
      over = over || n.bytes > data.byte_limit;
    }
    out.textContent = over ? words + ' · too long' : words;
    out.classList.toggle('over', over);
  };
  document.addEventListener('input', show, true);
  const timer = setInterval(show, 1000);
  show();
  return () => {
    document.removeEventListener('input', show, true);
    clearInterval(timer);
  };
}
"""
_CSS = """
.doorstep-count { font-size: 0.875rem; min-height: 1.25rem; }
.doorstep-count.over { color: var(--st-red-color, #bd4043); font-weight: 600; }
"""
_component: Any = None


def count_rules(channel: str, limit: int, network: str, recipient: str | None = None) -> dict[str, Any]:
    """What the browser needs to count as ``channel`` does: the server's own patterns and weights."""
    from responders.channels import (_EMOJI, _X_LIGHT_RANGES, BYTE_LIMITS, LINK_WEIGHT, MASTODON_URL_RE, URL_RE)

    def js(pattern: str) -> str:  # Python's inline "(?i)" is the JavaScript flag "i"
        return pattern.removeprefix("(?i)")

    return {
        "channel": channel, "limit": limit, "network": network, "recipient": recipient,
        "unit": "characters" if channel == "x" else "graphemes", "byte_limit": BYTE_LIMITS.get(channel),
        "link_weight": LINK_WEIGHT, "url": js(URL_RE.pattern), "mastodon_url": js(MASTODON_URL_RE.pattern),
        # Mastodon's mention (MASTODON_MENTION_RE) with Python's Unicode \w spelled out: JavaScript's is ASCII.
        "mention": r"(?<![=/\p{L}\p{N}_])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@[\p{L}\p{N}_.-]+[\p{L}\p{N}_])?",
        "emoji": _EMOJI.pattern, "light": [list(r) for r in _X_LIGHT_RANGES],
    }


def live_count(case_id: int, channel: str, limit: int, network: str, recipient: str | None = None) -> bool:
    """Show the reply box's count as ``channel`` counts it, updated as the agent types; False where this
    Streamlit has no components v2 (the page then counts the words as last sent)."""
    global _component
    components = getattr(getattr(st, "components", None), "v2", None)
    if components is None:
        return False
    if _component is None:
        _component = components.component("doorstep_reply_count", js=_COMPONENT_JS, css=_CSS, isolate_styles=False)
    data = {"case_id": case_id, **count_rules(channel, limit, network, recipient)}
    _component(key=f"reply_count_{case_id}_{channel}", data=json.loads(json.dumps(data)))
    return True
