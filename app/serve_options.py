"""Options of `python -m app.main` about who may connect, how many sessions live and how many jobs run at once.

Network: the playground listens on 127.0.0.1 (this machine only) unless `--listen ADDRESS` is given
(`--listen 0.0.0.0`: every interface). Listening beyond loopback (or `--share`) asks for a login,
Gradio's auth: `--auth user:password` (several separated by commas), `--auth-file FILE` (one
user:password a line; `#` comments) or the HMR_PLAYGROUND_AUTH variable (same form as --auth). Without
one it still serves, but prints a loud warning: anyone who can reach the port can use the app and
download what others upload while their session lives.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from app.ui.lifecycle import IDLE_TIMEOUT_S, MAX_SESSIONS

AUTH_ENV = "HMR_PLAYGROUND_AUTH"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class Access:
    """Where the server listens and whom it lets in."""

    host: str
    """The address to listen on."""
    auth: list[tuple[str, str]] | None
    """(user, password) pairs Gradio asks for; None: no login."""
    public: bool
    """Reachable from other machines (a non-loopback address, or a share link)."""
    warnings: list[str] = field(default_factory=list)
    """Loud notes to print before serving."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The network, session and load options (app.main adds them to its parser)."""
    parser.add_argument("--listen", metavar="ADDRESS", default=None,
                        help="listen on this address instead of --host, e.g. 0.0.0.0 for every interface "
                             f"(asks for a login: --auth, --auth-file or ${AUTH_ENV})")  # fmt: skip
    parser.add_argument("--auth", metavar="USER:PASSWORD", default=None,
                        help="ask for this login (several separated by commas)")  # fmt: skip
    parser.add_argument("--auth-file", metavar="FILE", type=Path, default=None,
                        help="ask for one of the logins in FILE (one user:password a line)")  # fmt: skip
    parser.add_argument("--max-sessions", type=int, default=MAX_SESSIONS,
                        help=f"live sessions at most; new ones are refused with a message (default {MAX_SESSIONS})")
    parser.add_argument("--idle-minutes", type=float, default=IDLE_TIMEOUT_S / 60,
                        help=f"a session idle this long ends, freeing its memory and files "
                             f"(default {IDLE_TIMEOUT_S / 60:g})")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=None,
                        help="heavy jobs (runs) at once, each with its own copy of the models "
                             "(default: one per core, two at most)")  # fmt: skip


def parse_auth(text: str, source: str = "--auth") -> list[tuple[str, str]]:
    """'user:password[,user2:password2]' as pairs; ValueError with a sentence naming `source` when malformed."""
    pairs = []
    for item in (t.strip() for t in text.replace("\n", ",").split(",")):
        if not item or item.startswith("#"):
            continue
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            got = f"{user.strip() or '(empty)'!r}" + (":..." if sep else " without a colon")
            raise ValueError(f"{source}: each login must be user:password with a non-empty user and password "
                             f"(got {got}).")  # fmt: skip
        pairs.append((user.strip(), password))
    if not pairs:
        raise ValueError(f"{source} holds no user:password login.")
    return pairs


def _banner(lines: list[str]) -> str:
    width = max(len(line) for line in lines) + 4
    bar = "!" * width
    return "\n".join([bar, *(f"! {line.ljust(width - 4)} !" for line in lines), bar])


def resolve_access(host: str, listen: str | None = None, auth: str | None = None, auth_file: Path | None = None,
                   share: bool = False, env: dict[str, str] | None = None) -> Access:  # fmt: skip
    """The address and login from the options (`env`: os.environ by default); ValueError for a bad login."""
    env = os.environ if env is None else env
    address = listen or host
    pairs: list[tuple[str, str]] | None = None
    if auth:
        pairs = parse_auth(auth)
    elif auth_file is not None:
        try:
            pairs = parse_auth(Path(auth_file).read_text(encoding="utf-8"), f"the login file {auth_file}")
        except OSError as err:
            raise ValueError(f"The login file {auth_file} could not be read ({err.strerror or err}).") from err
    elif env.get(AUTH_ENV):
        pairs = parse_auth(env[AUTH_ENV], f"${AUTH_ENV}")
    public = address not in LOOPBACK_HOSTS or share
    access = Access(host=address, auth=pairs, public=public)
    if public and pairs is None:
        where = "through a public share link" if share and address in LOOPBACK_HOSTS else f"on {address}"
        access.warnings.append(_banner([
            f"WARNING: the playground is reachable from other machines {where} WITHOUT A LOGIN.",
            "Anyone who can reach the port can use it and run jobs on this machine.",
            f"Ask for one: --auth user:password, --auth-file FILE or ${AUTH_ENV}=user:password.",
        ]))  # fmt: skip
    elif public:
        access.warnings.append(f"Listening on {address}, reachable from other machines; a login is required.")
    return access
