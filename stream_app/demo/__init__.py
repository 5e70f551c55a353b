"""`make run`'s demo: the whole spine on one machine (``run``), judged live against planted truth (``live``)."""
