"""Settings, per role: leads see templates and alert rules; admins also brands, channels and users.

Brands, couriers and channels live in doorstep.toml (reviewed like code, validated at start-up);
the console shows what is in force and where to change it. Reply templates and alert rules start
from doorstep.toml too, and a lead may change them here: checked like the file, previewed on a
real case, kept with every earlier version and audited (doorstep/team_settings.py). Users live in
the store and are managed here by admins. Secrets (API tokens, SMTP password) are read from the
environment and only ever shown as "set" / "not set"; a password typed here is hashed and the
field is cleared.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from console.auth import ROLES, AuthError, add_user, can, list_users, lock_ends, remove_user, set_role, unlock_user
from console.login import acting_user
from console.words import template_name
from console.widgets import (
    current_user,
    escape_md,
    flash,
    get_config,
    get_store,
    imports_section,
    listener_rows,
    local_time,
    require,
    show_flashes,
)
from doorstep.config import ConfigError, brand_accounts, secret

#: Secrets each channel needs, by name only.
CHANNEL_SECRETS: dict[str, tuple[str, ...]] = {
    "x": ("X_BEARER_TOKEN", "X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"),
    "mastodon": ("MASTODON_ACCESS_TOKEN",),
    "bluesky": ("BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD"),
    "email": ("SMTP_USER", "SMTP_PASSWORD"),
}

_SECRET_WORDS = ("token", "secret", "password", "key")


def redact_settings(values: dict[str, Any]) -> dict[str, Any]:
    """A config section with anything secret-looking replaced, for display."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out[key] = redact_settings(value)
        elif any(word in key.lower() for word in _SECRET_WORDS):
            out[key] = "•••• (set)" if value else "(not set)"
        else:
            out[key] = value
    return out


def _brands(config: Any) -> None:
    st.subheader("Brands")
    st.dataframe([{"brand": b.name, "keywords": ", ".join(b.keywords), "handles": ", ".join(f"{c}: @{h}" for c, h in
                  b.handles.items()), "email": b.email or ""} for b in config.brands], hide_index=True)
    st.subheader("Couriers")
    st.dataframe([{"courier": c.name, "keywords": ", ".join(c.keywords), "tracking formats": ", ".join(c.tracking_formats),
                   "escalation": c.escalation_email or c.escalation_webhook or ""} for c in config.couriers], hide_index=True)
    st.caption("Edit brands and couriers in doorstep.toml (DOORSTEP_CONFIG); the console reloads it when it changes.")


def _channels(store: Any, config: Any) -> None:
    st.subheader("Channels")
    for name in sorted({*CHANNEL_SECRETS, *config.channels}):
        with st.container(border=True):
            st.markdown(f"**{escape_md(name)}**")
            states = [f"{s}: {'set' if secret(s) else 'not set'}" for s in CHANNEL_SECRETS.get(name, ())]
            if states and brand_accounts(config, name):
                # The shared variables alone read "not set" above brands whose own secrets were set (newcomer audit).
                states[0] = (f"Shared credentials, used only for a brand with no {name} account of its own (brand "
                             f"accounts: Accounts below): {states[0]}")
            if states:
                st.caption(escape_md(" · ".join(states)))
            if name in config.channels:
                st.json(redact_settings(config.channels[name]))
    _accounts(store, config)
    st.subheader("Listener health")
    try:
        from listeners.health import listener_health

        rows = listener_health(store)
    except ImportError:  # pragma: no cover
        rows = []
    if rows:
        st.dataframe(listener_rows(rows, config, detail=True), hide_index=True, width="stretch")
        st.caption(escape_md(f"Times in {config.timezone}."))
    else:
        st.caption("No listener has run yet.")
    imports_section(store, config)


#: Each account's own secrets, by suffix (the names shown are the account's own, e.g. FETTLE_X_ACCESS_TOKEN).
ACCOUNT_SECRET_SUFFIXES: dict[str, tuple[str, ...]] = {
    "x": ("ACCESS_TOKEN", "ACCESS_TOKEN_SECRET", "BEARER_TOKEN"),
    "mastodon": ("ACCESS_TOKEN",),
    "bluesky": ("APP_PASSWORD",),
    "email": ("USER", "PASSWORD"),
}


def account_rows(store: Any, config: Any) -> list[dict[str, Any]]:
    """One row per brand account: its secrets (set / shared / not set, names only) and today's usage."""
    from doorstep.accounts import account_usage
    from doorstep.config import brand_accounts

    rows = []
    for account in brand_accounts(config):
        states = []
        for suffix in ACCOUNT_SECRET_SUFFIXES.get(account.channel, ()):
            own, shared = account.secret_names(suffix)
            state = "set" if secret(own) else (f"shared {shared}" if secret(shared) else "not set")
            states.append(f"{own}: {state}")
        usage = account_usage(store, account.channel, account.handle)
        rate = usage.get("rate") or {}
        budget = "/".join(str(v) if v is not None else "∞" for v in (account.max_reads_per_day, account.max_posts_per_day))
        rows.append({
            "brand": account.brand, "channel": account.channel, "account": account.label,
            "secrets": " · ".join(states), "requests today": usage.get("requests", 0),
            "posts read today": usage.get("reads", 0), "sent today": usage.get("posts", 0),
            "budget reads/sent per day": budget,
            "rate limit left": f"{rate.get('remaining')}/{rate.get('limit')}" if rate.get("limit") else "",
        })
    return rows


def _accounts(store: Any, config: Any) -> None:
    st.subheader("Accounts")
    rows = account_rows(store, config)
    if rows:
        st.dataframe(rows, hide_index=True)
        st.caption("Each brand account replies and reads with its own credentials (secret names from "
                   "[[brands]] accounts in doorstep.toml). 'shared' means the channel's common secret is used: "
                   "replies are refused if it logs in as another account.")
    else:
        st.caption("No brand accounts: add handles or accounts to [[brands]] in doorstep.toml.")


def _template_check(config: Any, name: str, text: str) -> dict[str, str]:
    """Raise ConfigError (one line, naming the key) unless ``text`` may be saved as template ``name``:
    the file's check (syntax), then its variables and a fill with sample values on every kind of
    channel (responders.templates.check_template_source); returns the sample texts."""
    from responders.team_settings import check_template
    from responders.templates import TemplateError, check_template_source

    check_template(config, name, text)
    try:
        return check_template_source(config, name, text)
    except TemplateError as exc:
        raise ConfigError(" ".join(f"console: responders.templates.{exc}".split())) from None


def _over_limit(text: str, channel: str | None) -> str | None:
    """The case page's refusal of a filled template too long for ``channel``, or None."""
    from responders.channels import LIMITS

    limit = LIMITS.get(channel or "")
    if limit is None or len(text) <= limit:
        return None
    return (f"fills to {len(text)} characters, over the {channel} limit of {limit}: the case page would refuse it "
            "(shorten the template or answer on another channel)")


def _templates(store: Any, config: Any) -> None:
    """Reply templates: read by every lead; changed, previewed on a real case and versioned by leads."""
    from console.widgets import file_config
    from doorstep.team_settings import history, save_setting
    from responders.config import responders_settings
    from responders.templates import TemplateError, list_templates, render_template, rules_naming

    user = current_user()
    editable = can(user, "edit_templates")
    st.subheader("Reply templates")
    templates = list_templates(config)
    new = "(new template)"
    names = sorted(templates) + ([new] if editable else [])
    # Named as the case page's template box names them ("ask details privately"); the choice stays the key,
    # which doorstep.toml, the rules that name a template and the saved versions use (shown small below).
    name = st.selectbox("Template", names, key="tpl_name", format_func=lambda n: n if n == new else template_name(n))
    if name == new:
        name = st.text_input("Name of the new template (letters, digits and _)", key="tpl_new_name").strip()
    elif name:
        st.caption(escape_md(f"Key: {name} ([responders.templates] in doorstep.toml, and rules that name it)"))
    source = templates.get(name, "") if name else ""
    users = rules_naming(config, name) if name else []
    if users:
        st.caption(escape_md(f"Used by {', '.join(users)} in doorstep.toml: automatic messages are written with it."))
    spec = responders_settings(config).templates.get(name) if name else None
    if spec is not None and not isinstance(spec, str) and (spec.intents or spec.statuses):
        st.caption(escape_md("Suggested to agents for " + "; ".join(
            part for part in (f"intents {', '.join(spec.intents)}" if spec.intents else "",
                              f"statuses {', '.join(spec.statuses)}" if spec.statuses else "") if part)
            + " (doorstep.toml; kept when the text is saved here)."))
    text = st.text_area("Template text (Jinja: {{ first_name }}, {{ order_number }}...)", value=source,
                        key=f"tpl_text_{name}", height=140, disabled=not editable)
    case_id = st.number_input("Preview on case", min_value=1, step=1, value=None, key="tpl_preview_case",
                              placeholder="a case number", help="Rendered exactly as the case page would fill it, "
                              "including the public-reply rules.")
    if case_id and name and text.strip():
        candidate = config.model_copy(update={"responders": {**config.responders, "templates": {
            **(config.responders.get("templates") or {}), name: text}}})
        try:
            _template_check(config, name, text)
            filled = render_template(store, candidate, int(case_id), name, agent=user.username)
        except (TemplateError, ConfigError) as exc:
            st.warning(escape_md(f"On case {int(case_id)}: {exc}"))
        else:
            st.text(filled)
            case = store.get_case(int(case_id))
            too_long = _over_limit(filled, case.channel if case is not None else None)
            if too_long:
                st.warning(escape_md(f"On case {int(case_id)}: {name} {too_long}."))
    if editable and name:
        cols = st.columns([1, 1, 3])
        # Never disabled: the browser tells the server of typing only when the box loses focus, so the click
        # that takes the focus found the button still disabled and was lost (newcomer audit).
        saving = cols[0].button("Save template", key="tpl_save", type="primary")
        if saving and text == source:
            st.info("Nothing to save: the text is as saved.")
        elif saving:
            try:
                samples = _template_check(config, name, text)
            except ConfigError as exc:  # one line naming the key
                st.error(escape_md(" ".join(str(exc).split())))
            else:
                version = save_setting(store, "template", name, text, user.username,
                                       before=templates.get(name), after=text)
                flash("success", f"template {name} saved (version {version}); replies use it from now on")
                too_long = _over_limit(samples.get("public", ""), "x")
                if too_long:
                    flash("warning", f"With sample values {name} {too_long}; it still fits an e-mail.")
                st.rerun()
        versions = history(store, "template", name)
        if versions and versions[0].value is not None:
            # Back to the file removes a template created here: a rule that names it would have no text.
            file_text = list_templates(file_config()).get(name)
            removes = file_text is None
            label = f"Yes, put {name} back as doorstep.toml has it"
            if users:
                label += f" (used by {', '.join(users)})"
            sure = cols[2].checkbox(label, key="tpl_reset_sure")
            if cols[1].button("Back to file version", key="tpl_reset", disabled=not sure):
                if removes and users:
                    st.error(escape_md(f"{name} is not in doorstep.toml, so going back to the file would remove it, "
                                       f"but {', '.join(users)} names it: those messages would have no text. "
                                       "Point the rule at another template in doorstep.toml first."))
                else:
                    version = save_setting(store, "template", name, None, user.username,
                                           before=templates.get(name), after=file_text)
                    flash("success", f"template {name} is doorstep.toml's again (version {version})")
                    st.rerun()
        if versions:
            st.caption("Saved in the console")
            st.dataframe([{"version": v.id, "by": v.author, "when": local_time(v.created_at, config),
                           "text": "(doorstep.toml's)" if v.value is None else " ".join(str(v.value).split())[:80]}
                          for v in versions], hide_index=True)
    st.caption("Templates saved here are checked like doorstep.toml's (syntax, known variables, and a fill with "
               "sample values for e-mail, SMS and public replies), kept with every earlier version and audited; "
               "the file's templates are the base.")


def _rule_value(rules: Any, key: str) -> Any:
    """The value of alert rule ``key`` (``spike.min_count``) in an [alerts] model."""
    value: Any = rules
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def _alerts(store: Any, config: Any) -> None:
    """Alert rules: thresholds and switches a lead may change; destinations stay in doorstep.toml.

    A rule saved here overrides doorstep.toml until it is put back ("Back to file version", or an
    emptied number box), so the page names every such rule with the file's value beside it."""
    from console.widgets import file_config
    from doorstep.team_settings import current_settings, history, save_setting
    from responders.config import alert_settings
    from responders.team_settings import EDITABLE_ALERT_RULES, check_alert_rules

    user = current_user()
    editable = can(user, "edit_alerts")
    st.subheader("Alert rules")
    rules = alert_settings(config)
    from_file = alert_settings(file_config())
    current = {rule.key: _rule_value(rules, rule.key) for rule in EDITABLE_ALERT_RULES}
    in_file = {rule.key: _rule_value(from_file, rule.key) for rule in EDITABLE_ALERT_RULES}
    kinds = {rule.key: rule.kind for rule in EDITABLE_ALERT_RULES}
    overrides = {name: value for (kind, name), value in current_settings(store).items()
                 if kind == "alert_rule" and value is not None and name in current}
    # The boxes show the value in force. Streamlit keeps a keyed widget's own state across runs, so
    # when that value changes (a save, a reset, doorstep.toml edited) the box is set to it again;
    # number boxes start empty-able, so that emptying one can mean "doorstep.toml's value".
    shown = st.session_state.setdefault("alert_rules_shown", {})
    for key, value in current.items():
        if shown.get(key, ...) != value:
            st.session_state[f"alert_{key}"] = (bool(value) if kinds[key] is bool else value if value is None
                                               else int(value) if kinds[key] is int else float(value))
            shown[key] = value
    with st.form("alert_rules"):
        chosen: dict[str, Any] = {}
        for rule in EDITABLE_ALERT_RULES:
            key = f"alert_{rule.key}"
            if rule.kind is bool:
                chosen[rule.key] = st.checkbox(rule.label, key=key, disabled=not editable)
            else:
                base = _shown(in_file[rule.key])
                if in_file[rule.key] is None and rule.key == "followers_threshold":  # what the alert then uses
                    base = f"none: the priority setting, {config.priority.vip_followers:,}"
                chosen[rule.key] = st.number_input(rule.label, value=None, step=1 if rule.kind is int else None,
                                                   key=key, disabled=not editable,
                                                   placeholder=f"empty: doorstep.toml's ({base})",
                                                   help=f"Empty the box to go back to doorstep.toml's value ({base}).")
        submitted = st.form_submit_button("Save alert rules", disabled=not editable)
    if submitted:
        changes: dict[str, Any] = {}
        resets: list[str] = []
        for key, value in chosen.items():
            if value is None and kinds[key] is not bool:
                if key in overrides:
                    resets.append(key)  # an emptied box: back to doorstep.toml's (or the built-in) value
                continue
            if kinds[key] is int:
                value = int(value)
            if value != current[key]:
                changes[key] = value
        if not changes and not resets:
            st.info("Nothing changed.")
        else:
            try:
                check_alert_rules(config, changes)
            except ConfigError as exc:  # one line naming the key
                st.error(escape_md(str(exc)))
            else:
                for key, value in changes.items():
                    save_setting(store, "alert_rule", key, value, user.username, before=current[key], after=value)
                for key in resets:
                    save_setting(store, "alert_rule", key, None, user.username, before=current[key],
                                 after=in_file[key])
                flash("success", "alert rules saved: " + ", ".join(
                    [f"{k} = {v}" for k, v in changes.items()]
                    + [f"{k} back to doorstep.toml's ({_shown(in_file[k])})" for k in resets])
                      + " (the worker picks them up within a minute)")
                st.rerun()
    if overrides:
        st.caption("Saved in the console, in force instead of doorstep.toml's value (doorstep.toml edits to these "
                   "rules do not apply until they are put back):")
        for key in sorted(overrides, key=list(current).index):
            latest = history(store, "alert_rule", key, limit=1)[0]
            st.caption(escape_md(f"{key} = {_shown(overrides[key])} overrides doorstep.toml's "
                                 f"{_shown(in_file[key])} (saved by {latest.author}, "
                                 f"{local_time(latest.created_at, config)})"))
        if editable:
            cols = st.columns([2, 1, 3])
            back = cols[0].selectbox("Rule", sorted(overrides, key=list(current).index), key="alert_reset_rule")
            sure = cols[2].checkbox(f"Yes, put {back} back as doorstep.toml has it ({_shown(in_file[back])})",
                                    key="alert_reset_sure")
            if cols[1].button("Back to file version", key="alert_reset", disabled=not sure):
                version = save_setting(store, "alert_rule", back, None, user.username, before=current[back],
                                       after=in_file[back])
                st.session_state.pop("alert_reset_sure", None)
                flash("success", f"alert rule {back} is doorstep.toml's again: {_shown(in_file[back])} "
                                 f"(version {version}; the worker picks it up within a minute)")
                st.rerun()
    destinations = {"slack": "set" if rules.slack_webhook_url else "not set", "e-mail": len(rules.email),
                    "apprise": len(rules.apprise)}
    st.caption(escape_md("Where alerts go (doorstep.toml and the environment only): "
                         + " · ".join(f"{k}: {v}" for k, v in destinations.items())))


def _users(store: Any) -> None:
    user = current_user()
    st.subheader("Users")
    config = get_config()
    locks = {u.username: lock_ends(store, u.username) for u in list_users(store)}
    st.dataframe([{"username": u.username, "name": u.name, "role": u.role, "e-mail (single sign-on)": u.email,
                   "locked until": local_time(locks[u.username], config) if locks[u.username] else ""}
                  for u in list_users(store)], hide_index=True)
    if any(locks.values()):
        st.caption(escape_md(f"Times in {config.timezone}."))
    boxes = ("ua_username", "ua_name", "ua_email", "ua_password")

    def add() -> None:
        # A callback, so the boxes are emptied only once the user is added: a refusal ("user 'bob'
        # already exists") keeps what the admin typed (the form does not clear itself on submit).
        get = st.session_state.get
        actor = acting_user(store, "manage_users")
        if actor is None:
            return  # removed, demoted or signed out since this page was drawn: the next run shows the login
        try:
            if not get("ua_password") and not get("ua_email"):
                raise AuthError("give a password, or an e-mail for single sign-on")
            add_user(store, get("ua_username") or "", get("ua_password") or None, role=get("ua_role") or "agent",
                     name=get("ua_name") or None, email=get("ua_email") or None, actor=actor.username)
        except (AuthError, PermissionError) as exc:
            st.session_state["ua_error"] = str(exc)
            return
        flash("success", f"added {get('ua_username')} ({get('ua_role')})")
        for key in boxes:
            st.session_state[key] = ""

    with st.form("user_add"):
        st.markdown("**Add a user**")
        st.text_input("Username", key="ua_username")
        st.text_input("Name", key="ua_name")
        st.selectbox("Role", ROLES, key="ua_role")
        st.text_input("E-mail (for single sign-on; optional)", key="ua_email")
        st.text_input("Password (leave empty for single sign-on only)", type="password", key="ua_password")
        st.form_submit_button("Add user", on_click=add)
        if st.session_state.get("ua_error"):
            st.error(escape_md(st.session_state.pop("ua_error")))
    others = [u.username for u in list_users(store) if u.username != user.username]
    if others:
        with st.form("user_change"):
            st.markdown("**Change a user**")
            who = st.selectbox("User", others, key="uc_user")
            role = st.selectbox("New role", ROLES, key="uc_role")
            c1, c2, c3 = st.columns(3)
            # The actions check the role again themselves (doorstep.permissions): a role taken away since
            # this page was drawn, or the last admin, is refused in one line here, never a traceback.
            try:
                if c1.form_submit_button("Set role"):
                    set_role(store, who, role, actor=user.username)
                    flash("success", f"{who} is now {role}")
                    st.rerun()
                sure = st.checkbox("Yes, remove this user (their open logins end at once, and their open cases go "
                                   "back to the queue, unassigned)", key="uc_remove_sure")
                if c2.form_submit_button("Remove user"):
                    if not sure:
                        st.error("Tick \"Yes, remove this user\" first: removing a user cannot be undone here.")
                    else:
                        handed_back = remove_user(store, who, actor=user.username)
                        flash("success", f"removed {who}" + (
                            f"; their {len(handed_back)} open case{'' if len(handed_back) == 1 else 's'} went back to "
                            "the queue, unassigned" if handed_back else ""))
                        st.rerun()
                if c3.form_submit_button("Unlock", help="Lift the lock after too many wrong passwords (audited)."):
                    was_locked = unlock_user(store, who, actor=user.username)
                    flash("success", f"unlocked {who}" if was_locked else f"{who} was not locked")
                    st.rerun()
            except (AuthError, PermissionError) as exc:
                st.error(escape_md(str(exc)))


def render() -> None:
    user = require("view_settings")
    store, config = get_store(), get_config()
    show_flashes()
    st.title("Settings")
    sections = ["Templates", "Alert rules"]
    if can(user, "manage_brands"):
        sections = ["Brands and couriers", "Channels", *sections, "Users"]
    # Keyed: after a save (a rerun) the lead stays on the tab they were working in.
    tabs = dict(zip(sections, st.tabs(sections, key="settings_tab", on_change="rerun")))
    with tabs["Templates"]:
        _templates(store, config)
    with tabs["Alert rules"]:
        _alerts(store, config)
    if "Users" in tabs:
        with tabs["Brands and couriers"]:
            _brands(config)
        with tabs["Channels"]:
            _channels(store, config)
        with tabs["Users"]:
            _users(store)
