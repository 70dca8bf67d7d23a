# every login shell: the job SDKs (qiskit, pasqal-cloud, qrmi) and slurm_qpu.client in
# python3, and OpenMPI set up for containers on one bridge network
export PATH=/usr/local/lib/slurm-qpu/venv/bin:$PATH
export OMPI_MCA_btl_tcp_if_include=eth0
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export PYTHONWARNINGS=ignore::DeprecationWarning
