"""One wrapper for every playground callback: what reaches the page is a sentence, never raw exception text.

`guarded` wraps a handler (plain function or generator): gr.Error passes as it is; a UserFacingError
becomes gr.Error with its sentence; anything else is logged on the server with its traceback under a
short error id, and the page shows one generic sentence with that id to quote (GENERIC). The checks of
event values (`index`, `number`, `text`) raise gr.Error with a sentence naming the input, for payloads
a crafted request may send (a list where an index is due, a string where a number is).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import secrets
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gradio as gr

from pipelines.errors import UserFacingError

log = logging.getLogger("app.ui")
GENERIC = ("Something went wrong on the server (error {id}); nothing you did caused it. Try again, and quote "
           "error {id} if you report it.")  # fmt: skip
"""What the page shows for an unexpected exception (its traceback is in the server's log under the id)."""

F = TypeVar("F", bound=Callable[..., Any])


def user_error(err: BaseException, where: str) -> gr.Error:
    """The gr.Error to show for `err`, raised in handler `where` (logged with its traceback when unexpected)."""
    if isinstance(err, gr.Error):
        return err
    if isinstance(err, UserFacingError):
        return gr.Error(str(err))
    error_id = secrets.token_hex(4)
    log.error("error %s in %s: %s: %s", error_id, where, type(err).__name__, err, exc_info=err)
    return gr.Error(GENERIC.format(id=error_id))


def guarded(fn: F) -> F:
    """`fn` whose exceptions reach the page as one sentence (see the module docstring)."""
    where = f"{fn.__module__}.{fn.__qualname__}"
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as err:  # noqa: BLE001 - the point of the wrapper
                raise user_error(err, where) from None

        return gen  # type: ignore[return-value]

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001 - the point of the wrapper
            raise user_error(err, where) from None

    return call  # type: ignore[return-value]


# ------------------------------------------------------------------------------ event payload values


def _bad(what: str, value: Any, expected: str) -> gr.Error:
    simple = value is None or isinstance(value, str | int | float)
    shown = repr(value)[:40] if simple else f"a {type(value).__name__}"
    return gr.Error(f"The {what} could not be read: expected {expected}, got {shown}. Try again from the page.")


def index(value: Any, count: int, what: str) -> int:
    """A selection index (a gr.SelectData's .index, or the value itself) in 0..count-1."""
    raw = getattr(value, "index", value)
    if isinstance(raw, list | tuple) and len(raw) == 1:  # some components send [i]
        raw = raw[0]
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _bad(what, raw, f"a number from 0 to {count - 1}")
    if not 0 <= raw < count:
        raise gr.Error(f"There is no {what} number {raw}; pick one from 0 to {count - 1}.")
    return raw


def number(value: Any, what: str, default: float | None = None, *, integer: bool = False,
           minimum: float | None = None, maximum: float | None = None) -> float | None:  # fmt: skip
    """A number field's value: None or "" give `default`; anything but a finite number is refused."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad(what, value, "a number")
    try:
        x = float(value)
    except ValueError:
        raise _bad(what, value, "a number") from None
    if not math.isfinite(x):
        raise gr.Error(f"The {what} must be a finite number; got {value}.")
    if integer and x != int(x):
        raise gr.Error(f"The {what} must be a whole number; got {value}.")
    if (minimum is not None and x < minimum) or (maximum is not None and x > maximum):
        lo = "" if minimum is None else f"at least {minimum:g}"
        hi = "" if maximum is None else f"at most {maximum:g}"
        raise gr.Error(f"The {what} must be {' and '.join(p for p in (lo, hi) if p)}; got {value}.")
    return int(x) if integer else x


def text(value: Any, what: str, allowed: Any = None) -> str | None:
    """A text / choice field's value (None stays None); `allowed`: the accepted values, if limited."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(what, value, "a text")
    if allowed is not None and value not in allowed:
        raise gr.Error(f"The {what} {value[:40]!r} is not one of the choices.")
    return value
