"""The video command's prompt flags: --point F:x,y[,1|0], --box F:x0,y0,x1,y1, --keypoint F:NAME=x,y.

Parsing only (into pipelines.tracking.prompts.VideoPrompts); coordinates are pixels of the source video,
origin at the top-left corner; F is the frame index in the video (0-based, before the stride).
"""

from __future__ import annotations

import argparse

from app.cli import parse_box, parse_keypoint, parse_point
from pipelines.tracking.prompts import VideoPrompts


def _frame_and_rest(text: str, form: str) -> tuple[int, str]:
    frame, sep, rest = text.partition(":")
    try:
        index = int(frame)
    except ValueError:
        index = -1
    if not sep or index < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {form}, with F the frame index (0, 1, ...)")
    return index, rest


def parse_frame_point(text: str) -> tuple[int, list[float]]:
    index, rest = _frame_and_rest(text, "F:x,y[,1|0], e.g. 0:412,630")
    return index, parse_point(rest)


def parse_frame_box(text: str) -> tuple[int, list[float]]:
    index, rest = _frame_and_rest(text, "F:x0,y0,x1,y1, e.g. 0:100,80,420,900")
    return index, parse_box(rest)


def parse_frame_keypoint(text: str) -> tuple[int, tuple[str, tuple[float, float]]]:
    index, rest = _frame_and_rest(text, "F:NAME=x,y, e.g. 12:left_wrist=412,630")
    return index, parse_keypoint(rest)


def add_prompt_arguments(vid: argparse.ArgumentParser) -> None:
    vid.add_argument("--point", type=parse_frame_point, action="append", default=[], metavar="F:X,Y[,1|0]",
                     help="on frame F, the person at (X, Y) (source pixels): 1 (default) = track only the people "
                          "clicked, from F on; 0 = stop tracking this person from F on. More than one point (or a "
                          "box and a point) on one person on frame F corrects their mask there and on the "
                          "following frames (the points move with the person's box): 1 = this is the person, "
                          "0 = this is not (then 0 does not stop tracking them); the masks go to result.rrd "
                          "(repeatable)")  # fmt: skip
    vid.add_argument("--box", type=parse_frame_box, action="append", default=[], metavar="F:X0,Y0,X1,Y1",
                     help="on frame F, track the person in this box (as a point with 1; repeatable)")
    vid.add_argument("--keypoint", type=parse_frame_keypoint, action="append", default=[], metavar="F:NAME=X,Y",
                     help="on frame F, this joint (e.g. left_wrist) is at (X, Y); the correction carries to the "
                          "following frames, fading out over 1 s (repeatable)")  # fmt: skip


def prompts_from_args(args: argparse.Namespace) -> VideoPrompts:
    prompts = VideoPrompts()
    for index, (x, y, label) in args.point:
        prompts.add_point(index, x, y, int(label))
    for index, box in args.box:
        prompts.add_box(index, *box)
    for index, (name, (x, y)) in args.keypoint:
        prompts.add_keypoint(index, name, x, y)
    return prompts
