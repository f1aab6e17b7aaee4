"""How long the Python side waits, in one place (server.py, _completions.py and job.py wait)."""

# Waits happen in slices so that Ctrl-C reaches the driver within one slice.
WAIT_SLICE_S = 0.25
# A control call into the dispatcher thread (cancel, resize, stats, destroy) answers within
# this bound or raises; the dispatcher answers in microseconds unless it is stuck.
CONTROL_TIMEOUT_S = 120.0
