"""Acquiring and releasing QPUs for a job, the same way whoever does it (the direct-mode
prolog, the broker): the pipeline (pipeline.py), resolving a request at the job's start
(resolve.py), asking vendors how their QPUs are (vendor_status.py)."""
