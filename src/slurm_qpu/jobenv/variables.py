"""The variables of the job environment contract, spelled once: what the prolog (or the
broker) exports into every task of a ``--qpu`` job (contract.py) and what a job's program
reads back (the package, ``slurm_qpu.jobenv``) both use these names. They are spank_qrmi's
and QRMI's, so programs written for either work unchanged.

Job-wide, for the job's QPUs in the order requested:
  QRMI_JOB_QPU_RESOURCES=a,b   QRMI_JOB_QPU_TYPES=t1,t2   (+ legacy SLURM_JOB_QPU_*)
  QRMI_LIST_DELIMITER          the list separator a reader uses (default ",")
  QRMI_JOB_ID, QRMI_JOB_UID
  SLURM_QPU_REQUEST            the --qpu value as given (say any:ibm_*, which
                               QRMI_JOB_QPU_RESOURCES then resolves to the QPU picked)
Per QPU N, as N_<KEY>: every key of its settings, and
  QRMI_JOB_ACQUISITION_TOKEN   what acquiring it returned (an IBM session id, say)
  QRMI_JOB_TIMEOUT_SECONDS     how long the job may use it
With an https broker and broker_ca= on the plugstack line, as defaults (a job's own
export wins), the CA bundle that verifies the broker, where the clients look for one:
  SSL_CERT_FILE                OpenSSL, Python's ssl, httpx, qrmi (rustls' native roots)
  REQUESTS_CA_BUNDLE           requests (the IBM and Pasqal SDKs), which ignores the above
"""

RESOURCES = "QRMI_JOB_QPU_RESOURCES"
TYPES = "QRMI_JOB_QPU_TYPES"
LEGACY_RESOURCES = "SLURM_JOB_QPU_RESOURCES"
LEGACY_TYPES = "SLURM_JOB_QPU_TYPES"
DELIMITER = "QRMI_LIST_DELIMITER"
JOB_ID = "QRMI_JOB_ID"
JOB_UID = "QRMI_JOB_UID"
REQUEST = "SLURM_QPU_REQUEST"
TOKEN_KEY = "QRMI_JOB_ACQUISITION_TOKEN"
TIMEOUT_KEY = "QRMI_JOB_TIMEOUT_SECONDS"
CA_BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
