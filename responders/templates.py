"""Reply templates: Jinja2 in a sandbox, with the case's order, shipment and tracking as variables.

Why strict: a template that names ``{{ promised_date }}`` on an order without one must stop the
agent with "promised_date is not known for this case", never send "due on  ." to a customer.
So the environment uses ``StrictUndefined`` and unknown values (None) are left *out* of the
context, which makes them undefined too.

Why sandboxed: templates come from doorstep.toml and from agents typing ``{{ ... }}`` in the
reply box; the sandbox stops them reaching Python internals.

Privacy: while a case's link rests on a number alone (``link_confirmed`` false), the order may be
someone else's; a template that uses any order, customer or shipment variable is then refused
with a message naming those variables (see :data:`PRIVATE_VARIABLES`).
"""

from __future__ import annotations

import contextvars
import functools
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from doorstep.cases import INTENT_LABELS
from doorstep.config import Config
from doorstep.models import DELIVERY_INTENTS, Case, Mention, Shipment
from doorstep.store import Store


class TemplateError(ValueError):
    """A template cannot be rendered for this case; the message is meant for the agent."""


#: Variables that reveal an order, its customer or its parcel.
PRIVATE_VARIABLES: frozenset[str] = frozenset({
    "first_name", "customer_name", "order_number", "items", "item_list", "promised_date", "order_total",
    "courier", "tracking_number", "tracking_status", "tracking_location", "tracking_time",
    "tracking_description", "tracking_url", "delivered_at",
})
PUBLIC_VARIABLES: frozenset[str] = frozenset({"handle", "brand", "agent", "case_id", "author_name"})

#: Variables a *public* reply may use: what the author shows publicly themselves (their handle and
#: display name), who we are, and the parcel's state without where it is. Everything else (the
#: order record's name, items, totals, locations, the courier's free-text description) goes by DM
#: or e-mail: the renderer refuses it on a public channel.
PUBLIC_SAFE_VARIABLES: frozenset[str] = frozenset({
    "handle", "author_name", "author_first_name", "brand", "agent", "case_id", "channel_name", "intent",
    "courier", "tracking_status", "tracking_time", "promised_date", "delivered_at",
})
#: Public only when the author posted the number publicly themselves (in this case's posts);
#: otherwise they are left out of a public reply's values.
PUBLIC_IF_POSTED: frozenset[str] = frozenset({"order_number", "tracking_number", "tracking_url"})

STATUS_WORDS: dict[str, str] = {
    "info_received": "label created, waiting for the courier",
    "in_transit": "in transit",
    "out_for_delivery": "out for delivery",
    "attempt_failed": "delivery attempted, nobody available",
    "exception": "held up by the courier",
    "delivered": "delivered",
    "returned": "on its way back to us",
}


@dataclass(frozen=True)
class BuiltIn:
    text: str
    intents: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    #: True when the template only makes sense with a confirmed order.
    needs_order: bool = True


#: Short enough for X (280) with typical values; no URLs, so they are cheap to post on X.
BUILT_IN: dict[str, BuiltIn] = {
    "ask_details_privately": BuiltIn(
        "Hi @{{ handle }}, sorry to hear this. Please send us a DM with your order number and the email "
        "address you ordered with, and we'll look into it straight away.",
        needs_order=False,
    ),
    "thank_you": BuiltIn(
        "Thank you @{{ handle }}, that's lovely to hear! We'll pass it on to the team.",
        intents=("praise",), needs_order=False,
    ),
    "in_transit": BuiltIn(
        "Hi {{ author_first_name }}, your order{% if order_number is defined %} {{ order_number }}{% endif %} is "
        "{{ tracking_status }} with {{ courier }} (last scan {{ tracking_time }}). It's due by {{ promised_date }}.",
        intents=("where_is_my_order",), statuses=("in_transit", "info_received"),
    ),
    "out_for_delivery": BuiltIn(
        "Good news {{ author_first_name }}: {{ courier }} has your order{% if order_number is defined %} "
        "{{ order_number }}{% endif %} out for delivery today ({{ tracking_time }}).",
        intents=("where_is_my_order", "late_delivery"), statuses=("out_for_delivery",),
    ),
    "late": BuiltIn(
        "Hi {{ author_first_name }}, we're sorry your order{% if order_number is defined %} {{ order_number }}"
        "{% endif %} is late: it was due {{ promised_date }}. {{ courier }} last scanned it at {{ tracking_time }}. "
        "We're chasing them now.",
        intents=("late_delivery", "where_is_my_order"), statuses=("in_transit", "info_received"),
    ),
    "failed_attempt": BuiltIn(
        "Hi {{ author_first_name }}, {{ courier }} tried to deliver your order{% if order_number is defined %} "
        "{{ order_number }}{% endif %} at {{ tracking_time }} but couldn't. They'll try again next working day; reply here if you'd like a safe place.",
        intents=("failed_delivery", "where_is_my_order", "late_delivery"), statuses=("attempt_failed",),
    ),
    "exception": BuiltIn(
        "Hi {{ author_first_name }}, sorry: {{ courier }} reports a problem with your order"
        "{% if order_number is defined %} {{ order_number }}{% endif %} ({{ tracking_status }}, {{ tracking_time }}). "
        "We've raised it with them and will update you.",
        intents=("late_delivery", "where_is_my_order", "lost_or_missing"), statuses=("exception",),
    ),
    "delivered_but_missing": BuiltIn(
        "Hi {{ author_first_name }}, {{ courier }} shows your order{% if order_number is defined %} "
        "{{ order_number }}{% endif %} delivered {{ tracking_time }}. Could you check with neighbours or a safe "
        "place? If it's not there, we'll open a claim today.",
        intents=("lost_or_missing", "where_is_my_order", "late_delivery"), statuses=("delivered",),
    ),
    "refund": BuiltIn(
        "Hi {{ author_first_name }}, sorry about your order{% if order_number is defined %} {{ order_number }}"
        "{% endif %}. We've started your refund; it usually shows on your statement within 5 working days.",
        intents=("refund_or_return", "damaged_or_wrong", "lost_or_missing"),
    ),
    "tracking_link": BuiltIn(
        "Hi {{ author_first_name }}, you can follow your parcel with {{ courier }} here: {{ tracking_url }}",
        intents=("where_is_my_order",),
    ),
    "follow_up_unsent": BuiltIn(
        "Hi {{ first_name }}, we saw your message on {{ channel_name }} about order {{ order_number }} but could not "
        "answer you there, so we're writing here.{% if tracking_status is defined %} {{ courier }} shows it "
        "{{ tracking_status }} ({{ tracking_time }}).{% endif %} Just reply to this message if you still need help.",
    ),
    "follow_up": BuiltIn(
        "Hi {{ first_name }}, we replied to you on {{ channel_name }} about order {{ order_number }} and wanted "
        "to make sure you saw it.{% if tracking_status is defined %} {{ courier }} shows it {{ tracking_status }} "
        "({{ tracking_time }}).{% endif %} Just reply to this message if you still need help.",
    ),
    "proactive": BuiltIn(
        "Hi {{ first_name }}, a heads-up about order {{ order_number }}. {{ courier }}'s latest update: "
        "{{ tracking_description }} ({{ tracking_time }}). We're on it and will keep you posted; no need to do anything.",
    ),
}

@dataclass
class _Budget:
    """What one render may still build (see ``responders.config.TemplateLimits``)."""

    max_output_chars: int = 20_000
    loop_items_left: int = 10_000
    max_loop_iterations: int = 10_000


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("template_budget", default=_Budget())
_SEQUENCES = (str, list, tuple, bytes)


def _too_big(size: int, what: str) -> SecurityError:
    limit = _BUDGET.get().max_output_chars
    return SecurityError(f"{what} would build {size:,} characters or items; a template may build at most "
                         f"{limit:,} (responders.template_limits.max_output_chars)")


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox, with bounds on size: the stock sandbox stops reaching Python internals, not
    ``'a' * 10**8`` (100 MB) or ``10 ** 10 ** 8``, and its own ``range`` limit raises OverflowError."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = _BUDGET.get().max_output_chars
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, _SEQUENCES) and isinstance(count, int) and len(seq) * count > limit:
                    raise _too_big(len(seq) * count, "'*'")
        elif operator == "**":
            if (isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
                    and abs(left).bit_length() * right > 4 * limit):
                raise _too_big(abs(left).bit_length() * right // 3, "'**'")
        elif operator == "+":
            if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES) and len(left) + len(right) > limit:
                raise _too_big(len(left) + len(right), "'+'")
        elif operator == "%" and isinstance(left, str):
            widths = [int(w) for w in re.findall(r"%[-+ #0]*(\d+)", left)] + [0]
            if max(widths) > limit:
                raise _too_big(max(widths), "a '%' format width")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, _SEQUENCES) and len(result) > limit:
            raise _too_big(len(result), f"'{operator}'")
        return result


def _bounded_range(*args: Any) -> range:
    """``range`` that counts against the render's loop budget (instead of the sandbox's OverflowError)."""
    items = range(*args)
    budget = _BUDGET.get()
    if len(items) > budget.loop_items_left:
        raise SecurityError(f"range() of {len(items):,} items takes the template's loops past their limit of "
                            f"{budget.max_loop_iterations:,} items (responders.template_limits.max_loop_iterations)")
    budget.loop_items_left -= len(items)
    return items


def _bounded_filter(name: str, function: Any) -> Any:
    """A filter whose width-like arguments and whose result are held to max_output_chars
    (``center(10**8)``, ``join`` of a huge list, ``replace`` that multiplies a string)."""

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        limit = _BUDGET.get().max_output_chars
        extra = [a for a in args[1:] if isinstance(a, int) and not isinstance(a, bool)]
        extra += [a for a in kwargs.values() if isinstance(a, int) and not isinstance(a, bool)]
        if any(a > limit for a in extra):
            raise _too_big(max(extra), f"the {name} filter")
        result = function(*args, **kwargs)
        if isinstance(result, _SEQUENCES) and len(result) > limit:
            raise _too_big(len(result), f"the {name} filter")
        return result

    return bounded


_ENV = _BoundedSandbox(undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)
_ENV.globals["range"] = _bounded_range
_ENV.filters = {name: _bounded_filter(name, f) for name, f in _ENV.filters.items()}


def _render_bounded(template: Any, values: dict[str, Any], limits: Any = None) -> str:
    """Render ``template`` within ``limits`` (a ``TemplateLimits``; default: its defaults), streaming
    the output so a loop that writes too much stops at the limit instead of filling memory."""
    max_chars = getattr(limits, "max_output_chars", _Budget.max_output_chars)
    max_loops = getattr(limits, "max_loop_iterations", _Budget.max_loop_iterations)
    token = _BUDGET.set(_Budget(max_chars, max_loops, max_loops))
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(**values):
            size += len(chunk)
            if size > max_chars:
                raise _too_big(size, "the template's output")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _BUDGET.reset(token)


def compile_source(source: str) -> Any:
    """Parse a template (syntax errors become :class:`TemplateError` with the line)."""
    try:
        return _ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from None


def variables_of(source: str) -> set[str]:
    try:
        return set(meta.find_undeclared_variables(_ENV.parse(source)))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from None


def list_templates(config: Config) -> dict[str, str]:
    """Every template an agent can pick: built-in ones, overridden or extended by doorstep.toml."""
    from responders.config import responders_settings

    out = {name: t.text for name, t in BUILT_IN.items()}
    for name, spec in responders_settings(config).templates.items():
        out[name] = spec if isinstance(spec, str) else spec.text
    return out


#: What a template *name* looks like (``[responders.templates]`` keys, ``template = "late_apology"``).
_NAME = re.compile(r"^\w+$")


def resolve_template(config: Config, name_or_source: str, *,
                     defaults: dict[str, str] | None = None) -> tuple[str, str]:
    """``(name, source)`` of a setting or choice that is a template's name or its source.

    The one place where "name or source" is decided, for the case page, ``doorstep reply``, the
    follow-up, proactive and courier-update messages: a known name (``defaults``, e.g. the courier
    link's own wording, then the built-in and configured templates) gives that template; text
    with Jinja markup, or text that cannot be a name (words, punctuation), is the source itself.
    A name that is no template (misspelled, or removed in the console) raises
    :class:`TemplateError`: it is never sent to a customer as the message.
    """
    templates = {**(defaults or {}), **list_templates(config)}
    if name_or_source in templates:
        return name_or_source, templates[name_or_source]
    if "{{" in name_or_source or "{%" in name_or_source or not _NAME.match(name_or_source.strip()):
        return "template", name_or_source
    raise TemplateError(f"unknown template {name_or_source.strip()!r}: no template has that name (misspelled, or "
                        f"removed in the console?); known: {', '.join(sorted(templates))}")


def rules_naming(config: Config, name: str) -> list[str]:
    """The automatic rules whose message is the template ``name`` (the keys, as doorstep.toml spells them)."""
    from responders.config import responders_settings

    settings = responders_settings(config)
    out = []
    if settings.followup.template == name or (name == "follow_up_unsent" and settings.followup.template == "follow_up"):
        out.append("[responders.followup] template")
    for brand, override in settings.followup.brands.items():
        template = override.get("template") if isinstance(override, dict) else None
        if template == name or (name == "follow_up_unsent" and template == "follow_up"):
            out.append(f'[responders.followup.brands."{brand}"] template')
    if settings.courier_link.template == name:
        out.append("[responders.courier_link] template")
    if name == "proactive" and settings.proactive.message:
        out.append("[responders.proactive] message")
    return out


def suggest_templates(case: Case, shipment: Shipment | None, config: Config | None = None) -> list[str]:
    """Templates that fit the case's intent and the parcel's latest tracking state, best first.

    Without a confirmed order only templates that need none can fit (a thank-you; else the
    safe answer, asking for details privately). A tracking-state template is offered for a
    post about something other than a parcel only when it names that post's intent, so
    "love my boots!" on a delivered order is thanked, not answered "check with your neighbours".
    """
    confirmed = bool(case.link_confirmed and case.order_number)
    status = parcel_status(shipment)
    catalogue: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        name: (t.intents, t.statuses) for name, t in BUILT_IN.items()
        if (t.intents or t.statuses) and (confirmed or not t.needs_order)
    }
    if config is not None and confirmed:
        from responders.config import responders_settings

        for name, spec in responders_settings(config).templates.items():
            if not isinstance(spec, str) and (spec.intents or spec.statuses):
                catalogue[name] = (tuple(spec.intents), tuple(spec.statuses))
    scored: list[tuple[int, str]] = []
    for name, (intents, statuses) in catalogue.items():
        if intents and case.intent and case.intent not in DELIVERY_INTENTS and case.intent not in intents:
            continue
        score = 0
        if status and status in statuses:
            score += 2
        elif statuses and status is not None:
            continue  # written for another tracking state: would say something untrue
        if case.intent and case.intent in intents:
            score += 1
        if score:
            scored.append((-score, name))
    names = [name for _, name in sorted(scored)]
    return names or ["ask_details_privately"]


def parcel_status(shipment: Shipment | None) -> str | None:
    """The parcel's tracking state as the courier last scanned it (else as the shipment record says)."""
    if shipment is None:
        return None
    return shipment.events[-1].status if shipment.events else shipment.status


def template_statuses(config: Config, name: str) -> tuple[str, ...]:
    """The tracking states a template is written for (none: any): a configured template's own, else the
    built-in's of that name (a configured text that rewords a built-in says the same thing)."""
    from responders.config import responders_settings

    spec = responders_settings(config).templates.get(name)
    if spec is not None and not isinstance(spec, str):
        return tuple(spec.statuses)
    built_in = BUILT_IN.get(name)
    return built_in.statuses if built_in is not None else ()


def _tracking_state_refusal(config: Config, name: str, shipment: Shipment | None) -> TemplateError | None:
    """Why ``name`` may not be filled for this parcel: it is written for other tracking states, and filled it
    would say something untrue ("UPS shows your order delivered" on a parcel in transit, at its last scan's
    time: the two-brand browser audit). None where it fits, or where the parcel's state is not known."""
    statuses, status = template_statuses(config, name), parcel_status(shipment)
    if not statuses or status is None or status in statuses:
        return None
    written_for = " or ".join(STATUS_WORDS.get(s, s.replace("_", " ")) for s in statuses)
    scanned = f" (last scan {_fmt_time(shipment.events[-1].time, config)})" if shipment and shipment.events else ""
    return TemplateError(f"{name} is written for a parcel {written_for}; {shipment.courier} shows it "  # type: ignore[union-attr]
                         f"{STATUS_WORDS.get(status, status.replace('_', ' '))}{scanned}: choose another template or "
                         "write the reply")


def _fmt_time(value: datetime, config: Config) -> str:
    local = value.astimezone(config.tz)
    return f"{local:%a} {local.day} {local:%b} {local:%H:%M}"


def _fmt_date(value: date) -> str:
    return f"{value:%a} {value.day} {value:%b}"


#: Words before a name that are not a first name (a greeting by them read "Hi Dr.").
TITLES = frozenset({"dr", "mr", "mrs", "ms", "miss", "mx", "prof", "sir", "dame", "rev", "fr"})


def _first_name(display_name: str | None, handle: str | None) -> str | None:
    """The author's first name as they show it publicly (their display name), else their @handle."""
    words = [w for w in (display_name or "").split() if any(c.isalpha() for c in w)]
    named = [w for w in words if w.rstrip(".").casefold() not in TITLES]  # "Dr. Zofia Łęcka" is Zofia
    if named or words:
        return (named or words)[0]
    return f"@{handle.lstrip('@')}" if handle else None


def case_variables(store: Store, config: Config, case: Case, *, agent: str | None = None,
                   shipment: Shipment | None = None, parent: Mention | None = None) -> dict[str, Any]:
    """The values a template can use for ``case``; unknown values are absent (so strictly undefined).

    ``parent`` is the post being answered: its author's handle and display name are used. A post by
    someone other than the case's customer gets no order, customer or parcel values at all.
    """
    from responders.config import responders_settings

    values: dict[str, Any] = {"case_id": case.id, "handle": case.author_handle, "brand": case.brand, "agent": agent}
    from responders.outbox import customers_peak, is_customers_post

    peak = parent or customers_peak(store, case)  # no post answered: the customer's own, never a stranger's
    if peak is not None:
        values["author_name"] = peak.author_name
        if parent is not None:
            values["handle"] = parent.author_handle
        values.setdefault("handle", peak.author_handle)
    values["author_first_name"] = _first_name(values.get("author_name"), values.get("handle"))
    if parent is not None:
        if not is_customers_post(store, case, parent):
            case = case.model_copy(update={"order_number": None, "customer_id": None, "tracking_number": None})
    values["channel_name"] = {"x": "X", "mastodon": "Mastodon", "bluesky": "Bluesky", "email": "email"}.get(
        case.channel or "", case.channel)
    order = store.get_order(case.order_number) if case.order_number else None
    customer = store.get_customer(case.customer_id or (order.customer_id if order else "")) if (
        case.customer_id or order) else None
    if customer is not None:
        values["customer_name"] = customer.name
        values["first_name"] = customer.name.split()[0] if customer.name.strip() else None
    if order is not None:
        values["order_number"] = order.number
        items = [{**i, "quantity": item_quantity(i)} for i in order.items]  # ``quantity`` whichever key it came in
        names = [f"{i.get('name') or i.get('sku') or 'item'}" + (f" x{i['quantity']}" if i["quantity"] != 1 else "")
                 for i in items]
        values["items"] = ", ".join(names) if names else None
        values["item_list"] = items or None
        values["promised_date"] = _fmt_date(order.promised_date) if order.promised_date else None
        values["order_total"] = f"{order.total:.2f} {order.currency}"
        values["brand"] = values["brand"] or order.brand
    if shipment is None and case.tracking_number:
        shipment = store.get_shipment(case.tracking_number)
    if shipment is None and order is not None and order.shipments:
        shipment = order.shipments[0]
    if shipment is not None:
        values["courier"] = shipment.courier
        values["tracking_number"] = shipment.tracking_number
        pattern = responders_settings(config).tracking_urls.get(shipment.courier)
        values["tracking_url"] = pattern.format(tracking_number=shipment.tracking_number) if pattern else None
        if shipment.events:
            last = shipment.events[-1]
            values["tracking_status"] = STATUS_WORDS.get(last.status, last.status.replace("_", " "))
            values["tracking_location"] = last.location
            values["tracking_time"] = _fmt_time(last.time, config)
            values["tracking_description"] = last.description or values["tracking_status"]
            delivered = [e for e in shipment.events if e.status == "delivered"]
            if delivered:
                values["delivered_at"] = _fmt_time(delivered[-1].time, config)
    values["intent"] = INTENT_LABELS.get(case.intent or "", case.intent)
    return {k: v for k, v in values.items() if v not in (None, "")}


def item_quantity(item: dict[str, Any]) -> Any:
    """How many of an order's item: its ``qty`` (the README's orders format, ``{"sku": "MUG", "qty": 2}``) or its
    ``quantity``; 1 when it has neither. One helper for the case page and ``{{ items }}``: each read only
    ``quantity``, so "qty": 2 showed 1 and the reply lost its "x2" (orders audit, finding 6)."""
    for key in ("qty", "quantity"):
        value = item.get(key)
        if value not in (None, ""):
            return value
    return 1


def posted_as_a_whole(number: str, text: str) -> bool:
    """Whether ``number`` stands in ``text`` (casefolded) on its own, not inside a longer run of letters and digits:
    "reference 5104233" does not post order 104233, and "1Z...840" does not post parcel "1Z...84" (orders audit,
    finding 7: the substring test filled a public reply with an order number its author never wrote)."""
    pattern = r"(?<![0-9a-z])" + re.escape(number.casefold()) + r"(?![0-9a-z])"
    return re.search(pattern, text) is not None


def posted_numbers(store: Store, case: Case, parent: Mention | None = None) -> set[str]:
    """Order and tracking numbers the answered author posted publicly themselves in this case, each as a
    whole number (:func:`posted_as_a_whole`)."""
    from responders.outbox import customers_text

    joined = customers_text(store, case, (parent.author_handle or "") if parent is not None else None)
    numbers = {n for n in (case.order_number, case.tracking_number) if n}
    order = store.get_order(case.order_number) if case.order_number else None
    if order is not None:
        numbers |= {s.tracking_number for s in order.shipments}
    return {n for n in numbers if posted_as_a_whole(n, joined)}


def public_values(values: dict[str, Any], posted: set[str]) -> dict[str, Any]:
    """The values a public reply may carry: public-safe ones, and numbers the author posted."""
    out = {k: v for k, v in values.items() if k in PUBLIC_SAFE_VARIABLES}
    if values.get("order_number") in posted:
        out["order_number"] = values["order_number"]
    if values.get("tracking_number") in posted:
        out["tracking_number"] = values["tracking_number"]
        if "tracking_url" in values:
            out["tracking_url"] = values["tracking_url"]
    return out


def render_source(source: str, values: dict[str, Any], *, confirmed: bool, name: str = "template",
                  public: bool = False, posted: set[str] | None = None, limits: Any = None) -> str:
    """Render ``source`` with ``values``.

    ``public``: the reply goes to a public channel. A template that uses a variable outside
    :data:`PUBLIC_SAFE_VARIABLES` (and :data:`PUBLIC_IF_POSTED`) is refused, naming it; order and
    tracking numbers are only filled when the author posted them (``posted``), so a template that
    needs one says so instead of revealing it.
    """
    used = variables_of(source)
    private = sorted(used & PRIVATE_VARIABLES)
    if private and not confirmed:
        raise TemplateError(
            f"{name} uses order details ({', '.join(private)}) but this case's link to an order is not "
            "confirmed: the number may belong to someone else. Confirm the order on the case, or ask for "
            "details privately."
        )
    if public:
        refused = sorted(used - PUBLIC_SAFE_VARIABLES - PUBLIC_IF_POSTED - {"intent"} - _LOCAL_NAMES)
        if refused:
            raise TemplateError(
                f"{name} uses {', '.join(refused)}, which a public reply may not contain (personal data the customer "
                "did not post publicly). Send it by DM or e-mail, or use a public-safe variable such as "
                "author_first_name.")
        for var in sorted(used & PUBLIC_IF_POSTED - set(values)):  # not known at all: say so, not "not posted"
            if f"{var} is defined" not in source:
                raise TemplateError(f"{name}: {var} is not known for this case")
        values = public_values(values, posted or set())
        for var in sorted(used & PUBLIC_IF_POSTED):
            if var not in values and f"{var} is defined" not in source:
                raise TemplateError(
                    f"{name}: {var} is not public: the customer did not post it themselves. Send it by DM or e-mail.")
    try:
        text = _render_bounded(compile_source(source), values, limits)
    except UndefinedError as exc:
        match = re.match(r"'([^']+)' is undefined", exc.message or "")
        what = match.group(1) if match else (exc.message or "a variable")
        raise TemplateError(f"{name}: {what} is not known for this case") from None
    except SecurityError as exc:
        raise TemplateError(f"{name}: not allowed in a template: {exc}") from None
    except (OverflowError, MemoryError, RecursionError) as exc:  # what the sandbox itself raises at its limits
        raise TemplateError(f"{name}: the template builds too much ({type(exc).__name__}); "
                            "see responders.template_limits") from None
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - {{ order_total + 5 }}, {{ x / 0 }}: the template's fault, not ours
        raise TemplateError(f"{name}: the template fails while filling: {_one_line(exc)}") from None
    text = " ".join(text.split()) if "\n" not in source else text.strip()
    return text


#: Names a template may set or loop over itself (not case data).
_LOCAL_NAMES: frozenset[str] = frozenset({"loop", "range", "true", "false", "none"})


def render_template(store: Store, config: Config, case_id: int, name_or_source: str, *, agent: str | None = None,
                    channel: str | None = None, parent_id: int | None = None) -> str:
    """Render a named template (or template source typed by an agent) for a case.

    ``channel`` (default: the case's) decides whether the public-safe rule applies; ``parent_id``
    is the post being answered (its author is greeted; a stranger's post gets no order values).
    Raises :class:`TemplateError` naming the missing variable, the private variables that an
    unconfirmed case may not use, or the variables a public reply may not contain.
    """
    from responders.channels import PUBLIC_CHANNELS

    case = store.get_case(case_id)
    if case is None:
        raise TemplateError(f"no case {case_id}")
    name, source = resolve_template(config, name_or_source)
    shipment = store.get_shipment(case.tracking_number) if case.tracking_number else None
    refusal = _tracking_state_refusal(config, name, shipment)
    if refusal is not None:
        raise refusal
    parent = store.get_mention(parent_id) if parent_id is not None else None
    channel = channel or (parent.channel if parent is not None else case.channel)
    public = channel in PUBLIC_CHANNELS
    if public and parent is None:
        from responders.outbox import default_parent

        parent = default_parent(store, case, channel)  # type: ignore[arg-type]
    values = case_variables(store, config, case, agent=agent, parent=parent)
    if not public and values.get("first_name"):
        values["author_first_name"] = values["first_name"]  # a private message may use the order record's name
    confirmed = case.link_confirmed
    if parent is not None:
        from responders.outbox import is_customers_post

        confirmed = confirmed and is_customers_post(store, case, parent)
    from responders.config import responders_settings

    return render_source(source, values, confirmed=confirmed, name=name, public=public,
                         posted=posted_numbers(store, case, parent) if public else None,
                         limits=responders_settings(config).template_limits)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


#: Every variable a template may use: the case's values (see :func:`case_variables`).
KNOWN_VARIABLES: frozenset[str] = PRIVATE_VARIABLES | PUBLIC_SAFE_VARIABLES | PUBLIC_VARIABLES | PUBLIC_IF_POSTED
#: Only in the courier update's message (``[responders.courier_link] template``).
COURIER_UPDATE_VARIABLES: frozenset[str] = frozenset({"courier_update", "courier_status"})

#: Made-up values of the right types, for filling a template when it is saved (no case needed).
SAMPLE_VALUES: dict[str, Any] = {
    "case_id": 4242, "handle": "jane_doe", "author_name": "Jane Doe", "author_first_name": "Jane",
    "brand": "Larkspur", "agent": "Sam", "channel_name": "X", "intent": "where is my order",
    "first_name": "Jane", "customer_name": "Jane Doe", "order_number": "LS-100234",
    "items": "Linen shirt, Canvas tote x2",
    "item_list": [{"name": "Linen shirt", "sku": "LS-1", "quantity": 1}, {"name": "Canvas tote", "sku": "CT-2",
                                                                          "quantity": 2}],
    "promised_date": "Sat 14 Nov", "order_total": "60.00 GBP", "courier": "UPS",
    "tracking_number": "1Z999AA10123456784", "tracking_status": "in transit", "tracking_location": "Leeds hub",
    "tracking_time": "Thu 12 Nov 10:30", "tracking_description": "Arrived at the Leeds hub",
    "tracking_url": "https://tracking.example/1Z999AA10123456784", "delivered_at": "Fri 13 Nov 14:02",
    "courier_update": "Redelivery booked for Friday morning", "courier_status": "a new delivery is booked",
}
#: Values every case has, whatever is linked to it.
_ALWAYS: frozenset[str] = frozenset({"case_id", "handle", "brand", "agent", "channel_name", "author_first_name"})


def template_variables(config: Config, name: str) -> frozenset[str]:
    """The variables the template ``name`` may use (the courier update's template also has its own two)."""
    from responders.config import responders_settings

    known = KNOWN_VARIABLES | _LOCAL_NAMES | frozenset(_ENV.globals)
    if name in ("courier_update", responders_settings(config).courier_link.template):
        known |= COURIER_UPDATE_VARIABLES
    return known


def check_template_source(config: Config, name: str, source: str) -> dict[str, str]:
    """Raise :class:`TemplateError` (one line, naming the template) unless ``source`` can be saved as ``name``.

    Checked as the README promises: the syntax, the variables (each must be a known one), and a
    trial fill with :data:`SAMPLE_VALUES` as a private message (e-mail, SMS, DM: every value), as a
    public reply (X, Mastodon, Bluesky: only public-safe values, with and without the numbers the
    author posted) and for a case that knows nothing but itself. A value a case lacks is not an
    error here (the case page says so for that case); an expression that fails on a value of the
    right type (``{{ order_total + 5 }}``) is. Returns the sample texts by kind ("private", "public").
    """
    from responders.config import responders_settings

    limits = responders_settings(config).template_limits
    used = variables_of(source)
    unknown = sorted(used - template_variables(config, name))
    if unknown:
        raise TemplateError(f"{name}: unknown variable{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(KNOWN_VARIABLES))})")
    values = {k: v for k, v in SAMPLE_VALUES.items() if k in template_variables(config, name)}
    samples: dict[str, str] = {}
    trials = (
        ("private", "an e-mail, SMS or DM", values, False),
        ("public", "a public reply (X, Mastodon, Bluesky)", public_values(values, {"LS-100234", "1Z999AA10123456784"}),
         True),
        ("public", "a public reply (X, Mastodon, Bluesky)", public_values(values, set()), True),
        ("bare", "a case with no order", {k: v for k, v in values.items() if k in _ALWAYS}, True),
    )
    for kind, where, trial, may_lack in trials:
        try:
            text = _render_bounded(compile_source(source), trial, limits)
        except UndefinedError:
            if may_lack:
                continue  # that case lacks a value: the case page names it for that case
            raise TemplateError(f"{name}: fails when filled with sample values for {where}: "
                                "a value has no such attribute or item") from None
        except TemplateError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the template's own expressions
            raise TemplateError(f"{name}: fails when filled with sample values for {where}: {_one_line(exc)}") from None
        samples.setdefault(kind, " ".join(text.split()) if "\n" not in source else text.strip())
    return samples
