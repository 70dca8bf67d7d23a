#!/bin/bash
# Entry point of every slurm-qpu cluster container: start the daemons of one role, in the
# foreground of the last one, logging under /var/log/slurm (a host directory per node).
#   entrypoint.sh mariadb|controller|compute|login|front|broker|emulator
set -euo pipefail
role=${1:?role}
log=/var/log/slurm
install -d -m 0755 "$log"
logfile() {  # name owner: a log file the daemon, running as owner, may write
    touch "$log/$1" && chown "$2" "$log/$1"
}

start_munge() {
    install -d -o munge -g munge -m 0755 /run/munge
    logfile munged.log munge
    runuser -u munge -- /usr/sbin/munged --log-file="$log/munged.log"
    for _ in $(seq 50); do munge -n | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
    echo "munged does not answer" >&2; exit 1
}

wait_port() {  # host port seconds
    for _ in $(seq $(($3 * 10))); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return; sleep 0.1
    done
    echo "$1:$2 does not answer after $3 s" >&2; exit 1
}

case "$role" in
mariadb)
    install -d -o mysql -g mysql /run/mysqld
    logfile mariadb.log mysql
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >"$log/mariadb-install.log"
    mariadbd --user=mysql --bind-address=0.0.0.0 --skip-name-resolve \
        --log-error="$log/mariadb.log" &
    for _ in $(seq 300); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
    mariadb <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'%' IDENTIFIED BY 'slurmdbpass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'%';
-- the brokers' journal, in the server accounting already needs (docs/operations.md)
CREATE DATABASE IF NOT EXISTS slurm_qpu CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'slurmqpu'@'%' IDENTIFIED BY 'slurmqpupass';
GRANT ALL ON slurm_qpu.* TO 'slurmqpu'@'%';
SQL
    wait
    ;;
controller)
    start_munge
    install -d -o slurm -g slurm /var/spool/slurmctld
    chmod 0600 /etc/slurm/slurmdbd.conf && chown slurm:slurm /etc/slurm/slurmdbd.conf
    logfile slurmctld.log slurm; logfile slurmdbd.log slurm
    wait_port mariadb 3306 120
    slurmdbd
    wait_port localhost 6819 60
    # the cluster, an account and the users, as an admin sets them up once
    sacctmgr -i add cluster qpucluster >/dev/null || true
    sacctmgr -i add account quantum Description="quantum users" Organization=lab >/dev/null || true
    sacctmgr -i add account physics Description="physics group" Organization=lab >/dev/null || true
    for u in alice bob; do sacctmgr -i add user "$u" Account=quantum >/dev/null || true; done
    sacctmgr -i add user bob Account=physics >/dev/null || true
    # the broker holds jobs for a QPU in maintenance with a reservation: a Slurm operator
    sacctmgr -i add user slurmqpu Account=root AdminLevel=Operator >/dev/null || true
    exec slurmctld -D
    ;;
compute)
    start_munge
    install -d /var/spool/slurmd /var/lib/slurm-qpu
    exec slurmd -D
    ;;
login)
    start_munge
    exec sleep infinity
    ;;
broker)
    start_munge  # node calls are authenticated with MUNGE
    # the credentials arrive as a secret; the broker wants them its own and private
    install -d -m 0755 /etc/slurm-qpu
    install -o slurmqpu -g slurmqpu -m 0600 /run/secrets/qrmi_config.json \
        /run/secrets/journal.password /etc/slurm-qpu/
    logfile broker.log slurmqpu; logfile broker-audit.log slurmqpu
    wait_port mariadb 3306 120
    # jobs reach both brokers as http://broker:8291, HAProxy's address: its
    # X-Forwarded-For names each node
    front=$(getent hosts broker | awk '{print $1; exit}')
    exec runuser -u slurmqpu -- /usr/local/bin/slurm-qpu broker \
        --config /etc/slurm-qpu/qrmi_config.json --host 0.0.0.0 --port 8291 \
        --public-url http://broker:8291 --trusted-proxy "$front" \
        --journal "mysql://slurmqpu@mariadb/slurm_qpu?password_file=/etc/slurm-qpu/journal.password" \
        --audit-log "$log/broker-audit.log" --reap-interval "${REAP_INTERVAL:-60}" \
        --status-interval "${STATUS_INTERVAL:-60}" >>"$log/broker.log" 2>&1
    ;;
front)
    logfile haproxy.log root
    exec haproxy -db -f /etc/haproxy/haproxy.cfg >>"$log/haproxy.log" 2>&1
    ;;
emulator)
    exec /usr/local/bin/slurm-qpu-emulator --host 0.0.0.0 --port 8290 \
        --public-url http://emulator:8290 >>"$log/emulator.log" 2>&1
    ;;
*)
    echo "unknown role $role (mariadb|controller|compute|login|front|broker|emulator)" >&2; exit 2
    ;;
esac
