"""What every ``doorstep`` command gets: the config and the store, opened lazily.

It lives in the core so each package's commands (listeners/cli.py, responders/cli.py, ...) can
take it without importing the command line that composes them (commands/cli.py). The command
layer hands in what only it knows: each package's config checks and how to load a classifier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from doorstep.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from doorstep.store import Store


class Context:
    """Lazily opened store and config shared by the commands of one invocation."""

    def __init__(self, db: str, config: str | None, *, checks: Sequence[Callable[[Config], Any]] = (),
                 needs_database: Sequence[str] = (), load_classifier: Callable[[str], Any] | None = None):
        self.db_path = db
        self.config_path = config
        #: Each package's config section checks, run once when the config is first read.
        self.checks = list(checks)
        #: Commands (words after ``doorstep``) that must not create an empty database.
        self.needs_database = tuple(needs_database)
        #: How a classifier spec becomes a classifier (the classifiers package, given by the command layer).
        self.load_classifier = load_classifier
        self._store: Store | None = None
        self._config: Config | None = None
        #: --debug: let exceptions through with their traceback.
        self.debug = False

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
                for check in self.checks:
                    check(self._config)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            # Imported here, not at the top: the store brings sqlite-utils and pandas (~90 MB, 0.4 s),
            # which `doorstep classify` never needs (its peak memory is an issue-15 goal).
            from doorstep.store import DEFAULT_BUSY_TIMEOUT_S, Store, database_exists

            if _needs_database(self.needs_database) and not database_exists(self.db_path):
                raise click.ClickException(
                    f"no database at {self.db_path}: pass --db PATH (or set DOORSTEP_DB), or make one with "
                    "`doorstep demo --build-only` or `doorstep import mentions FILE`")
            try:
                busy_timeout_s = self.config.limits.busy_timeout_s
            except click.ClickException:  # a broken doorstep.toml must not stop `user list` and the like
                busy_timeout_s = DEFAULT_BUSY_TIMEOUT_S
            self._store = Store(self.db_path, busy_timeout_s=busy_timeout_s)
        return self._store

    def classifier(self, spec: str | None = None) -> Any:
        if self.load_classifier is None:
            raise click.ClickException("this command has no classifier loader (run it through the doorstep command)")
        return self.load_classifier(spec or self.config.classifier)

    def pipeline(self, classifier: str | None = None) -> Any:
        from doorstep.pipeline import Pipeline

        return Pipeline(self.store, self.config, self.classifier(classifier))


def _needs_database(names: Sequence[str]) -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return False
    words = " ".join(ctx.command_path.split()[1:])
    return any(words == name or words.startswith(name + " ") for name in names)


pass_ctx = click.make_pass_decorator(Context)
