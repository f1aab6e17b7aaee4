"""What the checks in this folder share: waiting for a job without ever hanging the check."""
import concurrent.futures


def wait_for(job, bound):
    """job(), but a job not finished within `bound` s fails the check instead of hanging it."""
    try:
        job.future.result(timeout=bound)
    except concurrent.futures.TimeoutError:
        raise AssertionError(f"{job} did not finish within {bound} s") from None
    except BaseException:
        pass  # job() raises it
    return job()
