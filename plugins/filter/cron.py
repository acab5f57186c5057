# Copyright: pydeploy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cron schedules of the stack's jobs: validation and the systemd OnCalendar= equivalent."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, lowest value, highest value, value of each name (first name = lowest value)
FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 7, WEEKDAYS),
)
SYSTEMD_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # cron 1..6, then 0 (and 7)
EVERY_DAY = [(1, 31, 1, True)]
EVERY_WEEKDAY = [(0, 7, 1, True)]
NUMBER = re.compile(r"[0-9]+")


class _Invalid(Exception):
    pass


def _value(text, item, field, low, high, names):
    if NUMBER.fullmatch(text):
        value = int(text)
    elif text.lower() in names:
        value = low + names.index(text.lower())
    else:
        kind = {"month": " or a month name (jan-dec)", "day-of-week": " or a weekday name (sun-sat)"}.get(field, "")
        raise _Invalid(text or item, f"is not a number{kind}")
    if not low <= value <= high:
        raise _Invalid(text, f"is out of range {low}-{high}")
    return value


def _item(text, field, low, high, names):
    """One list item as (start, end, step, star)."""
    if not text:
        raise _Invalid(None, "has an empty list item")
    base, slash, step_text = text.partition("/")
    step = 1
    if slash:
        if not NUMBER.fullmatch(step_text):
            raise _Invalid(text, "has a step that is not a number")
        step = int(step_text)
        if step == 0:
            raise _Invalid(text, "has a step of 0")
        if step > high:
            raise _Invalid(text, f"has a step out of range 1-{high}")
    if base == "*":
        return low, high, step, True
    start_text, dash, end_text = base.partition("-")
    start = _value(start_text, text, field, low, high, names)
    if not dash:
        if slash:
            raise _Invalid(text, "has a step without a range (use */n or a-b/n)")
        return start, start, 1, False
    end = _value(end_text, text, field, low, high, names)
    if start > end:
        sunday = " (a range ending on Sunday ends with 7)" if field == "day-of-week" and end == 0 else ""
        raise _Invalid(text, f"is a reversed range{sunday}")
    return start, end, step, False


def _parse(schedule):
    """The five fields as lists of items, or _Invalid with the reason as its only argument."""
    if not isinstance(schedule, str):
        raise _Invalid(f"a schedule must be a string, not {type(schedule).__name__}")
    text = schedule.strip()
    if not text:
        raise _Invalid("the schedule is empty")
    if text.startswith("@"):
        if text.lower() == "@reboot":
            raise _Invalid("@reboot is not supported for jobs of a release")
        if text.lower() not in MACROS:
            raise _Invalid(f'unknown macro "{text}" (use {", ".join(MACROS)})')
        text = MACROS[text.lower()]
    fields = text.split()
    if len(fields) != len(FIELDS):
        raise _Invalid(
            f"a schedule has {len(FIELDS)} fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    parsed = []
    for field_text, (field, low, high, names) in zip(fields, FIELDS, strict=True):
        try:
            parsed.append([_item(part, field, low, high, names) for part in field_text.split(",")])
        except _Invalid as exc:
            part, problem = exc.args
            subject = f'{field} field "{field_text}"'
            if part is not None and part != field_text:
                subject += f': "{part}"'
            raise _Invalid(f"{subject} {problem}") from None
    # Cron's own rule: a day field that starts with "*" (even "*/2") is unrestricted; when neither
    # is, a day matching either field fires the job.
    return parsed, [not field_text.startswith("*") for field_text in fields[2:5:2]]


def cron_schedule_error(schedule):
    """The empty string when ``schedule`` is a valid 5-field cron schedule or macro, else why it is not."""
    try:
        _parse(schedule)
    except _Invalid as exc:
        return exc.args[0]
    return ""


def _values(items):
    return {value for start, end, step, _star in items for value in range(start, end + 1, step)}


def _calendar_field(items, low, high):
    if _values(items) == set(range(low, high + 1)):
        return "*"
    rendered = []
    for start, end, step, star in items:
        if star:
            rendered.append(f"{start:02d}/{step}" if step <= high - low else f"{start:02d}")
        elif start == end:
            rendered.append(f"{start:02d}")
        elif step == 1:
            rendered.append(f"{start:02d}..{end:02d}")
        else:
            rendered.extend(f"{value:02d}" for value in range(start, end + 1, step))
    return ",".join(dict.fromkeys(rendered))


def _calendar_weekdays(items):
    days = sorted({(value - 1) % 7 for value in _values(items)})  # Monday 0 .. Sunday 6
    if len(days) == 7:
        return ""
    runs = []
    for day in days:
        if runs and runs[-1][1] == day - 1:
            runs[-1][1] = day
        else:
            runs.append([day, day])
    parts = []
    for first, last in runs:
        names = [SYSTEMD_WEEKDAYS[day] for day in range(first, last + 1)]
        parts.append(f"{names[0]}..{names[-1]}" if len(names) > 2 else ",".join(names))
    return ",".join(parts) + " "


def cron_to_oncalendar(schedule):
    """The systemd OnCalendar= expressions a timer needs to fire when cron would: one, or two when
    both day fields are restricted (cron fires on either; within one expression systemd needs both)."""
    try:
        (minute, hour, dom, month, dow), (dom_restricted, dow_restricted) = _parse(schedule)
    except _Invalid as exc:
        raise AnsibleFilterError(f"invalid cron schedule {schedule!r}: {exc.args[0]}") from None
    time = f"{_calendar_field(hour, 0, 23)}:{_calendar_field(minute, 0, 59)}:00"
    months = _calendar_field(month, 1, 12)

    def expression(days, weekdays):
        return f"{_calendar_weekdays(weekdays)}*-{months}-{_calendar_field(days, 1, 31)} {time}"

    if not (dom_restricted and dow_restricted):
        return [expression(dom, dow)]
    either = [expression(dom, EVERY_WEEKDAY), expression(EVERY_DAY, dow)]
    every_day = expression(EVERY_DAY, EVERY_WEEKDAY)
    return [every_day] if every_day in either else either


class FilterModule:
    def filters(self):
        return {"cron_schedule_error": cron_schedule_error, "cron_to_oncalendar": cron_to_oncalendar}
