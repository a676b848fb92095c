"""Worker jobs of the responders: the outbox sender, alerts, SLA escalations, follow-ups, proactive cases.

Each runs on its own worker thread (commands/worker.py), so alerts and escalations never wait
for a slow channel's sends, and the sender's channels do not wait for each other either.
Each job is cheap when there is nothing to do (one indexed query), so short intervals are fine.
A job that raises is logged by the worker and retried on its next tick; the outbox's rows and
the alert state live in the store, so a restart loses nothing.
"""

from __future__ import annotations

from typing import Any

from doorstep.config import Config
from doorstep.store import Store
from doorstep.jobs import FunctionJob, Job
from responders.config import alert_settings, responders_settings


def jobs(store: Store, config: Config, pipeline: Any) -> list[Job]:
    from responders.alerts import AlertEngine
    from responders.escalation import auto_escalate_sla
    from responders.followup import run_followups, run_proactive
    from responders.outbox import Outbox

    settings = responders_settings(config)
    alerts = alert_settings(config)
    outbox = Outbox(store, config)
    # wait=False: the job starts one lane per channel and returns; a slow channel's lane keeps
    # going on its own thread while the next round sends everything else (see Outbox).
    out: list[Job] = [FunctionJob("outbox", settings.outbox_interval_s, lambda: outbox.send_due(wait=False),
                                  close=outbox.close)]
    if alerts.enabled:
        out.append(FunctionJob("alerts", alerts.interval_s, AlertEngine(store, config).run_once))
    if settings.escalation.auto_sla_minutes is not None:
        out.append(FunctionJob("sla-escalation", 60.0, lambda: auto_escalate_sla(store, config)))
    if settings.followup.enabled or settings.followup.brands:
        out.append(FunctionJob("follow-up", 300.0, lambda: run_followups(store, config)))
    if settings.proactive.enabled:
        out.append(FunctionJob("proactive", 900.0, lambda: run_proactive(store, config)))
    from responders.dialogue import run_callback_rules, run_housekeeping, scan_mentions

    # Answers by DM or public reply, expired questions, call-back SLA breaches. Always: with
    # [responders.dialogue] enabled = false no question is asked or acted on, but a DM saying STOP
    # is still an opt-out.
    out.append(FunctionJob("dialogue", settings.dialogue.interval_s,
                           lambda: (scan_mentions(store, config), run_housekeeping(store, config))))
    if settings.callback.enabled:  # (which needs the dialogue on: responders/config.py)
        out.append(FunctionJob("callback-rules", 300.0, lambda: run_callback_rules(store, config)))
    return out
