from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.pydeploy.stack.plugins.filter.cron import (
    FilterModule,
    cron_schedule_error,
    cron_to_oncalendar,
)


@pytest.mark.parametrize(
    "schedule",
    [
        "* * * * *",
        "*/6 * * * *",
        "0 3 * * *",
        "30 2 * * 1-5",
        "*/15 9-17 * * *",
        "10-50/20 * * * *",
        "0,15,30,45 * * * *",
        "1-5,10-20/5,*/30 * * * *",
        "0 0 1 jan *",
        "0 0 * JAN-Mar,oct *",
        "0 0 * * sun",
        "0 0 * * Mon-FRI",
        "0 0 * * 7",
        "0 0 * * 0-7",
        "0 0 * * 5-7/2",
        "59 23 31 12 6",
        "  0   3 * * *  ",
        "*/59 */23 */31 */12 */7",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@DAILY",
    ],
)
def test_valid_schedules_have_no_error(schedule):
    assert cron_schedule_error(schedule) == ""


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("61 * * * *", 'minute field "61" is out of range 0-59'),
        ("1,61 * * * *", 'minute field "1,61": "61" is out of range 0-59'),
        ("* 24 * * *", 'hour field "24" is out of range 0-23'),
        ("* * 0 * *", 'day-of-month field "0" is out of range 1-31'),
        ("* * 32 * *", 'day-of-month field "32" is out of range 1-31'),
        ("* * * 13 *", 'month field "13" is out of range 1-12'),
        ("* * * * 8", 'day-of-week field "8" is out of range 0-7'),
        ("* * * foo *", 'month field "foo" is not a number or a month name (jan-dec)'),
        ("* * * * monday", 'day-of-week field "monday" is not a number or a weekday name (sun-sat)'),
        ("* mon * * *", 'hour field "mon" is not a number'),
        ("*/0 * * * *", 'minute field "*/0" has a step of 0'),
        ("0-30/0 * * * *", 'minute field "0-30/0" has a step of 0'),
        ("*/60 * * * *", 'minute field "*/60" has a step out of range 1-59'),
        ("*/x * * * *", 'minute field "*/x" has a step that is not a number'),
        ("5/10 * * * *", 'minute field "5/10" has a step without a range (use */n or a-b/n)'),
        ("30-10 * * * *", 'minute field "30-10" is a reversed range'),
        ("* * * * fri-mon", 'day-of-week field "fri-mon" is a reversed range'),
        (
            "* * * * mon-sun",
            'day-of-week field "mon-sun" is a reversed range (a range ending on Sunday ends with 7)',
        ),
        ("1,,2 * * * *", 'minute field "1,,2" has an empty list item'),
        ("-5 * * * *", 'minute field "-5" is not a number'),
        ("1-x * * * *", 'minute field "1-x": "x" is not a number'),
        ("1- * * * *", 'minute field "1-" is not a number'),
        ("1-60 * * * *", 'minute field "1-60": "60" is out of range 0-59'),
        ("L * * * *", 'minute field "L" is not a number'),
        ("* * ? * *", 'day-of-month field "?" is not a number'),
        ("* * * *", "a schedule has 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 0 * * * *", "a schedule has 5 fields (minute hour day-of-month month day-of-week), got 6"),
        ("", "the schedule is empty"),
        ("   ", "the schedule is empty"),
        (None, "a schedule must be a string, not NoneType"),
        (5, "a schedule must be a string, not int"),
        (["0", "3", "*", "*", "*"], "a schedule must be a string, not list"),
        ("@reboot", "@reboot is not supported for jobs of a release"),
        (
            "@fortnightly",
            'unknown macro "@fortnightly" (use @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually)',
        ),
        (
            "@daily 0",
            'unknown macro "@daily 0" (use @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually)',
        ),
    ],
)
def test_invalid_schedules_say_why(schedule, reason):
    assert cron_schedule_error(schedule) == reason


@pytest.mark.parametrize(
    ("schedule", "calendar"),
    [
        ("*/6 * * * *", "*-*-* *:00/6:00"),
        ("0 3 * * *", "*-*-* 03:00:00"),
        ("30 2 * * 1-5", "Mon..Fri *-*-* 02:30:00"),
        ("*/15 9-17 * * *", "*-*-* 09..17:00/15:00"),
        ("* * * * *", "*-*-* *:*:00"),
        ("*/1 0-23 1-31 1-12 0-6", "*-*-* *:*:00"),
        ("*,5 * * * *", "*-*-* *:*:00"),
        ("10-50/20 * * * *", "*-*-* *:10,30,50:00"),
        ("0,30 8-18/2 * * *", "*-*-* 08,10,12,14,16,18:00,30:00"),
        ("1-5,10-20/5,*/30 * * * *", "*-*-* *:01..05,10,15,20,00/30:00"),
        ("5,5,5 * * * *", "*-*-* *:05:00"),
        ("7-7 * * * *", "*-*-* *:07:00"),
        ("0 0 * */3 *", "*-01/3-* 00:00:00"),
        ("0 0 */2 * *", "*-*-01/2 00:00:00"),
        ("0 12 15 jun *", "*-06-15 12:00:00"),
        ("0 0 * 2-10/3 *", "*-02,05,08-* 00:00:00"),
        ("0 0 */31 */12 *", "*-01-01 00:00:00"),
        ("0 0 * * 0", "Sun *-*-* 00:00:00"),
        ("0 0 * * 7", "Sun *-*-* 00:00:00"),
        ("0 0 * * 5-7", "Fri..Sun *-*-* 00:00:00"),
        ("0 0 * * sat,sun", "Sat,Sun *-*-* 00:00:00"),
        ("0 0 * * 0,1,3,4,5", "Mon,Wed..Fri,Sun *-*-* 00:00:00"),
        ("0 0 * * */2", "Tue,Thu,Sat,Sun *-*-* 00:00:00"),
        ("0 0 * * 0-7", "*-*-* 00:00:00"),
        ("@hourly", "*-*-* *:00:00"),
        ("@daily", "*-*-* 00:00:00"),
        ("@midnight", "*-*-* 00:00:00"),
        ("@weekly", "Sun *-*-* 00:00:00"),
        ("@monthly", "*-*-01 00:00:00"),
        ("@yearly", "*-01-01 00:00:00"),
        ("@annually", "*-01-01 00:00:00"),
    ],
)
def test_one_calendar_expression(schedule, calendar):
    assert cron_to_oncalendar(schedule) == [calendar]


@pytest.mark.parametrize(
    ("schedule", "calendars"),
    [
        ("0 0 1 * mon", ["*-*-01 00:00:00", "Mon *-*-* 00:00:00"]),
        ("0 0 13 * 5", ["*-*-13 00:00:00", "Fri *-*-* 00:00:00"]),
        ("0 12 1,15 jan-mar 0", ["*-01..03-01,15 12:00:00", "Sun *-01..03-* 12:00:00"]),
        ("0 4 1-7 * 1-5", ["*-*-01..07 04:00:00", "Mon..Fri *-*-* 04:00:00"]),
        ("0 0 1-31 * 1", ["*-*-* 00:00:00"]),
        ("0 0 1 * 0-6", ["*-*-* 00:00:00"]),
    ],
)
def test_both_day_fields_restricted_fire_on_either(schedule, calendars):
    assert cron_to_oncalendar(schedule) == calendars


def test_a_day_field_starting_with_a_star_is_unrestricted_as_in_cron():
    # Cron then requires both days: every other day of the month that is a Monday.
    assert cron_to_oncalendar("0 0 */2 * mon") == ["Mon *-*-01/2 00:00:00"]
    assert cron_to_oncalendar("0 0 1 * */2") == ["Tue,Thu,Sat,Sun *-*-01 00:00:00"]


@pytest.mark.parametrize("schedule", ["61 * * * *", "@reboot", "", None, "* * * *"])
def test_an_invalid_schedule_fails_with_its_reason(schedule):
    with pytest.raises(AnsibleFilterError) as raised:
        cron_to_oncalendar(schedule)
    assert cron_schedule_error(schedule) in str(raised.value)


def test_both_filters_are_registered():
    assert FilterModule().filters() == {
        "cron_schedule_error": cron_schedule_error,
        "cron_to_oncalendar": cron_to_oncalendar,
    }
