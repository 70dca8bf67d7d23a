"""The request: what a job asked for with ``--qpu`` and what it may ask.

``names`` (what a QPU name is; a ``--qpu`` value as names and filters), ``selection``
(``--qpu=any:FILTER``: picking QPUs by criteria, and where the pick is made), ``catalog``
(the public list of QPU names and types every user's ``sbatch`` checks against) and
``overrides`` (the settings a user may set from the submitting environment). They run in
every user's ``sbatch``, so this folder is standard library only (tests/unit/
test_import_cost.py keeps it so); the acquisition (``slurm_qpu.acquire``) checks a request
again where it is honoured, because a user controls everything ``sbatch`` sends.
"""
