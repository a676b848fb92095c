"""``doorstep user add/remove/set-role/set-email/set-password/unlock/list``: console users from the command line.

Passwords come from ``--password-stdin`` (first line of standard input, for scripts) or an
interactive prompt with confirmation; they are never a command-line option (shell history,
``ps``) and never echoed or logged.
"""

from __future__ import annotations

import sys

import click

from doorstep.context import Context, pass_ctx


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group()
def user() -> None:
    """Manage console users (roles: agent, lead, admin)."""


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["agent", "lead", "admin"]), default="agent", show_default=True)
@click.option("--name", default=None, help="Display name (default: the username).")
@click.option("--email", default=None, help="E-mail address; single sign-on logs the user in by it.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--no-password", is_flag=True, help="Single sign-on only: no password login for this user.")
@pass_ctx
def add(ctx: Context, username: str, role: str, name: str | None, email: str | None, password_stdin: bool,
        no_password: bool) -> None:
    """Add a console user."""
    from console.auth import AuthError, add_user

    if no_password and not email:
        raise click.ClickException("--no-password needs --email: single sign-on finds the user by it")
    password = None if no_password else _read_password(password_stdin)
    try:
        created = add_user(ctx.store, username, password, role=role, name=name, email=email, actor="cli")
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {created.username} ({created.role})")


@user.command("remove")
@click.argument("username")
@pass_ctx
def remove(ctx: Context, username: str) -> None:
    """Remove a console user: their logins end and their open cases go back to the queue, unassigned."""
    from console.auth import AuthError, remove_user

    try:
        handed_back = remove_user(ctx.store, username, actor="cli")
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    n = len(handed_back)
    click.echo(f"removed {username}" + (f"; {n} open case{'' if n == 1 else 's'} back in the queue, unassigned "
                                        f"({', '.join(f'#{c}' for c in handed_back)})" if n else ""))


@user.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(["agent", "lead", "admin"]))
@pass_ctx
def set_role_cmd(ctx: Context, username: str, role: str) -> None:
    """Change a user's role."""
    from console.auth import AuthError, set_role

    try:
        updated = set_role(ctx.store, username, role, actor="cli")
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{updated.username} is now {updated.role}")


@user.command("set-email")
@click.argument("username")
@click.argument("email")
@pass_ctx
def set_email_cmd(ctx: Context, username: str, email: str) -> None:
    """Set the e-mail address single sign-on knows a user by ("" removes it)."""
    from console.auth import AuthError, set_email

    try:
        updated = set_email(ctx.store, username, email, actor="cli")
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{updated.username}: {updated.email or 'no e-mail'}")


@user.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_ctx
def set_password_cmd(ctx: Context, username: str, password_stdin: bool) -> None:
    """Set a user's password."""
    from console.auth import AuthError, set_password

    password = _read_password(password_stdin)
    try:
        set_password(ctx.store, username, password, actor="cli")
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"password changed for {username}")


@user.command("unlock")
@click.argument("username")
@pass_ctx
def unlock_cmd(ctx: Context, username: str) -> None:
    """Lift a user's lock after too many wrong passwords (as Settings → Users → Unlock; audited)."""
    from console.auth import AuthError, unlock_user

    try:
        was_locked = unlock_user(ctx.store, username, actor="cli")
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"unlocked {username.strip().lower()}" if was_locked else f"{username.strip().lower()} was not locked")


@user.command("list")
@pass_ctx
def list_cmd(ctx: Context) -> None:
    """List console users: username, role, name, e-mail (tab-separated)."""
    from console.auth import list_users

    users = list_users(ctx.store)
    if not users:
        click.echo(f"no users in {ctx.db_path}: add one with `doorstep user add NAME --role agent|lead|admin`", err=True)
    for u in users:
        click.echo(f"{u.username}\t{u.role}\t{u.name}\t{u.email or ''}")


commands: list[click.Command] = [user]
