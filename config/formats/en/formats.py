"""Dates as traders read them, everywhere Django formats one (the admin above all):
24-hour, ISO order, and the zone said once. TIME_ZONE is UTC, so "UTC" is always true."""

DATETIME_FORMAT = r"Y-m-d H:i \U\T\C"
SHORT_DATETIME_FORMAT = r"Y-m-d H:i"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
