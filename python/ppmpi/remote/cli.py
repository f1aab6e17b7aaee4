"""ppmpi-server: pp's ppserver, serving remote clients with ppmpi workers on MPI.

Python here is the command line (this module), the listener and each client's bounded
handshake (session.Hub, auth); from then on a client's socket belongs to this process's C++
dispatcher, which relays the client's jobs into the pool of the ppmpi.Server below (its MPI
workers, heartbeats, replacement of lost workers and time limits) and their outcomes back, as
the workers made them (include/ppmpi/master/link_relay.hpp). This process never unpickles what
a client sends: only workers do, for clients that proved the secret."""
import getopt
import ipaddress
import logging
import os
import signal
import socket
import sys

import ppmpi
from . import DEFAULT_PORT
from .discovery import Announcer
from .session import Hub

log = logging.getLogger("ppmpi.server")

USAGE = """\
Usage: ppmpi-server [-hdar] [-n proto] [-c config_path] [-i interface] [-b broadcast]
                    [-p port] [-w nworkers] [-s secret] [-t seconds] [-k seconds]
                    [-P pid_file] [-f format]

Serves ppmpi (and pp-style) clients: Server(ppservers=("host:port",), secret=...) sends jobs
here and they run on this host's ppmpi workers (MPI ranks: spawned, or the ranks of the
mpirun that started this server, as in `mpirun -np 5 ppmpi-server ...`).

Options (pp's ppserver options, with pp's meanings):
  -h, --help      print this help and exit
  -d              debug logging (ppmpi's and this server's)
  -f format       logging format (default "%(asctime)s - %(name)s - %(levelname)s - %(message)s")
  -a              auto-discovery: announce this server on the broadcast address (UDP, same
                  port number) and answer clients asking with ppservers=("*",)
  -b broadcast    broadcast address for -a (default 255.255.255.255)
  -i interface    address to listen on (default 0.0.0.0, every interface)
  -p port         TCP port (and UDP port for -a) (default 60000)
  -w nworkers     workers (default: the worker ranks of an mpirun, else the CPUs online)
  -s secret       the secret clients must prove (HMAC-SHA256 challenge-response both ways).
                  Required unless -i is a loopback address: there is no default secret
  -t seconds      exit after this many seconds with no client connected (default: never)
  -k seconds      time limit of each job; an over-time job fails with JobTimeout and its
                  worker is replaced (default 3600, as pp's socket timeout)
  -r              a fresh namespace for every job (pp: restart the worker after each job)
  -n proto        pickle protocol of the workers' results (default: the highest)
  -c path         read options from an INI file: [general] secret, debug, workers, proto,
                  restart, pid_file; [network] autodiscovery, interface, broadcast, port,
                  timeout, socket_timeout. It replaces options given before it; later
                  options override it
  -P pid_file     write this process's pid to pid_file; removed at exit

Signals: SIGUSR1 prints the job statistics; SIGTERM and SIGINT stop the server (running jobs
are cancelled, their clients run them elsewhere).
Exit status: 0 after -t or a signal, 1 if it cannot listen or start workers, 2 for bad options.
"""

DEFAULTS = {"debug": False, "format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s",
            "autodiscovery": False, "broadcast": "255.255.255.255", "interface": "0.0.0.0",
            "port": DEFAULT_PORT, "workers": None, "secret": None, "idle_exit": None,
            "job_timeout": 3600.0, "restart": False, "proto": None, "pid_file": None}


class UsageError(ValueError):
    pass


def _number(option, text, kind=float, low=0):
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"option {option} needs a number, not {text!r}") from None
    if value < low:
        raise UsageError(f"option {option} must be at least {low}, not {text}")
    return value


def read_config(path):
    """pp's config file keys (INI), as option values."""
    import configparser

    parser = configparser.ConfigParser()
    try:
        with open(path) as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as exc:
        raise UsageError(f"cannot read the config file {path}: {exc}") from None
    keys = {("general", "secret"): ("secret", str), ("general", "debug"): ("debug", "bool"),
            ("general", "workers"): ("workers", int), ("general", "proto"): ("proto", int),
            ("general", "restart"): ("restart", "bool"),
            ("general", "pid_file"): ("pid_file", str),
            ("network", "autodiscovery"): ("autodiscovery", "bool"),
            ("network", "interface"): ("interface", str),
            ("network", "broadcast"): ("broadcast", str), ("network", "port"): ("port", int),
            ("network", "timeout"): ("idle_exit", float),
            ("network", "socket_timeout"): ("job_timeout", float)}
    out = dict(DEFAULTS)
    for (section, key), (name, kind) in keys.items():
        if parser.has_option(section, key):
            try:
                out[name] = (parser.getboolean(section, key) if kind == "bool"
                             else kind(parser.get(section, key)))
            except ValueError as exc:
                raise UsageError(f"{path}: [{section}] {key}: {exc}") from None
    return out


def parse_options(argv):
    try:
        pairs, rest = getopt.getopt(argv, "hdarn:c:b:i:p:w:s:t:f:k:P:", ["help"])
    except getopt.GetoptError as exc:
        raise UsageError(str(exc)) from None
    if rest:
        raise UsageError(f"unexpected arguments: {' '.join(rest)}")
    opts = dict(DEFAULTS, help=False)
    flags = {"-d": "debug", "-a": "autodiscovery", "-r": "restart"}
    texts = {"-f": "format", "-b": "broadcast", "-i": "interface", "-s": "secret",
             "-P": "pid_file"}
    for option, value in pairs:
        if option in ("-h", "--help"):
            opts["help"] = True
        elif option in flags:
            opts[flags[option]] = True
        elif option in texts:
            opts[texts[option]] = value
        elif option == "-c":
            opts = dict(read_config(value), help=opts["help"])
        elif option == "-p":
            opts["port"] = _number(option, value, int, 1)
            if opts["port"] > 65535:
                raise UsageError(f"option -p: {value} is not a port (1..65535)")
        elif option == "-w":
            opts["workers"] = _number(option, value, int, 0)
        elif option == "-n":
            opts["proto"] = _number(option, value, int, 0)
        elif option == "-t":
            opts["idle_exit"] = _number(option, value, float, 0)
        elif option == "-k":
            opts["job_timeout"] = _number(option, value, float, 0)
    return opts


def is_loopback(interface):
    try:
        infos = socket.getaddrinfo(interface, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def listen(interface, port):
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((interface, port))
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def _configure_logging(opts):
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(opts["format"]))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if opts["debug"] else logging.INFO)
    log.propagate = False
    if opts["debug"]:
        ppmpi.debug(True)


def _fail(message, status):
    print(f"ppmpi-server: {message}", file=sys.stderr)
    return status


def main(argv=None):
    try:
        opts = parse_options(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        return _fail(f"{exc}\n(ppmpi-server --help shows the options)", 2)
    if opts["help"]:
        print(USAGE, end="")
        return 0
    if opts["secret"] is None and not is_loopback(opts["interface"]):
        return _fail(f"refusing to listen on {opts['interface']} without a secret: anyone who "
                     f"reaches the port could run code as this user. Give one with -s SECRET "
                     f"(clients pass the same as secret=...), or listen on a loopback address "
                     f"(-i 127.0.0.1)", 2)
    pid_file = opts["pid_file"]
    if pid_file:  # before the port opens: whoever can connect can also read it
        try:
            with open(pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as exc:
            return _fail(f"cannot write the pid file {pid_file}: {exc.strerror or exc}", 1)
    try:
        try:
            listener = listen(opts["interface"], opts["port"])
        except OSError as exc:
            return _fail(f"cannot listen on {opts['interface']}:{opts['port']}: "
                         f"{exc.strerror or exc}", 1)
        _configure_logging(opts)
        try:
            return _serve(listener, opts)
        finally:
            listener.close()
    finally:
        if pid_file:
            try:
                os.unlink(pid_file)
            except OSError:
                pass


def _serve(listener, opts):
    try:
        server = ppmpi.Server(opts["workers"] if opts["workers"] is not None
                              else "autodetect", restart=opts["restart"],
                              proto=opts["proto"], job_timeout=opts["job_timeout"] or None,
                              max_retries=1)  # a lost worker's job: retried by its client
    except Exception as exc:
        return _fail(f"cannot start the workers: {exc}", 1)
    try:
        announcer = (Announcer(opts["broadcast"], opts["port"]) if opts["autodiscovery"]
                     else None)
    except OSError as exc:
        server.destroy()
        return _fail(str(exc), 1)
    hub = Hub(server, listener, opts["secret"] or "", opts["job_timeout"], opts["idle_exit"])
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: hub.stop("signal"))
    if opts["secret"] is None:
        log.warning("no secret (-s): only processes on this host can connect (loopback)")
    log.info("listening on %s:%d with %d workers (pid %d)", opts["interface"], opts["port"],
             server.get_ncpus(), os.getpid())
    try:
        hub.run()
    finally:
        if announcer is not None:
            announcer.close()
        hub.close()
        server.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
