"""Jobs the remote-server tests send (importable on the server: its PYTHONPATH has this dir)."""
import os
import time


def pid_and_parent(n):
    """(n squared, this worker's pid): where a job ran."""
    return n * n, os.getpid()


def pid_to_file_then_sleep(path, seconds):
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(seconds)
    return os.getpid()


def sleep_then_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def echo(value):
    return value


def shout_and_fail(text):
    print(f"about to fail: {text}")
    raise ValueError(f"remote failure: {text}")
