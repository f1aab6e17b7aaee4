"""Auto-discovery (pp's ppservers=("*",) and ppserver -a) on simulated hosts: three network
namespaces joined by a bridge (scripts/sim_hosts.sh; 10.231.7.x exists only inside them, and
the broadcast address is that segment's, 10.231.7.255). Hosts 1 and 2 run `ppmpi-server -a`,
host 0 a client with ppservers=("10.231.7.*:PORT",) that must find both and run jobs on each.
Host 3 runs one with another secret: it is found too but not used, and it logs the refusal
(an announcement proves nothing). Every process is stopped by pid and the namespaces are removed, also on failure.

    discovery_check.py BUILD_DIR SOURCE_DIR      (root; prints "discovery: OK")"""
import os
import signal
import subprocess
import sys
import time

BUILD, SRC = (os.path.abspath(p) for p in sys.argv[1:3])
PREFIX = "ppdisc"
HOSTS = [SRC + "/scripts/sim_hosts.sh"]
RUN_ON = SRC + "/scripts/sim_run.sh"
PORT = 35000
CLIENT = r'''
import socket, time, ppmpi
def where(x):
    import socket, time
    time.sleep(0.05)
    return socket.gethostname()
s = ppmpi.Server(0, ppservers=("10.231.7.*:%d",), secret="mys")
deadline = time.monotonic() + 30
want = {"10.231.7.2:%d", "10.231.7.3:%d"}
while not want <= set(s.get_active_nodes()):
    assert time.monotonic() < deadline, s.get_active_nodes()
    time.sleep(0.05)
hosts = [j() for j in [s.submit(where, (i,)) for i in range(40)]]
print("NODES", s.get_active_nodes())
print("HOSTS", sorted(set(hosts)))
assert set(hosts) == {"%s1", "%s2"}, hosts
s.destroy()
print("CLIENT OK")
''' % (PORT, PORT, PORT, PREFIX, PREFIX)


def env():
    e = dict(os.environ, PPMPI_SIM_PREFIX=PREFIX, PYTHONPATH=BUILD + "/python",
             PYTHONDONTWRITEBYTECODE="1")
    # Open MPI inside a host uses its loopback only (the singleton and its spawned workers).
    e.update(OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_oob_tcp_if_include="lo")
    return e


def start_server(host, secret, log, port=PORT):
    argv = [RUN_ON, f"{PREFIX}{host}", sys.executable, BUILD + "/bin/ppmpi-server", "-a",
            "-b", "10.231.7.255", "-i", f"10.231.7.{host + 1}", "-p", str(port),
            "-s", secret, "-w", "1", "-t", "120"]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env())


def namespace_pids(host):
    out = subprocess.run(["ip", "netns", "pids", f"{PREFIX}{host}"], capture_output=True,
                         text=True)
    return [int(p) for p in out.stdout.split()]


def main():
    if os.geteuid() != 0:
        print("discovery: needs root (ip netns); FAILED")
        return 1
    subprocess.run(HOSTS + ["up", "4", PREFIX], check=True)
    logs, servers = [], []
    try:
        for host, secret in ((1, "mys"), (2, "mys"), (3, "other")):
            log = open(f"/tmp/{PREFIX}-server{host}.log", "w+")
            logs.append(log)
            servers.append(start_server(host, secret, log))
        time.sleep(3)  # both listening (a late one is found by its own announcement anyway)
        client = subprocess.run([RUN_ON, f"{PREFIX}0", sys.executable, "-c", CLIENT],
                                capture_output=True, text=True, timeout=120, env=env())
        print(client.stdout + client.stderr)
        ok = client.returncode == 0 and "CLIENT OK" in client.stdout
        logs[2].seek(0)
        refused = "wrong secret" in logs[2].read()
        print(f"discovery: the server with another secret refused the client: {refused}")
        ok = ok and refused
    finally:
        for proc in servers:
            proc.send_signal(signal.SIGTERM)
        for proc in servers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for host in range(4):  # anything left in our namespaces is ours
            for pid in namespace_pids(host):
                os.kill(pid, signal.SIGKILL)
        for log in logs:
            log.seek(0)
            print(log.read())
            log.close()
        subprocess.run(HOSTS + ["down", PREFIX], check=False)
    print("discovery: OK" if ok else "discovery: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
