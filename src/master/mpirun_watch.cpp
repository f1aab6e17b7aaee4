#include "ppmpi/master/mpirun_watch.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <vector>

extern char** environ;

namespace ppmpi {
namespace {

std::string command_name(long pid) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    return name;
}

// $1 this process, $2 mpirun, $3 grace in tenths of a second, $4 mpirun's command name. The
// shell's output goes nowhere: this process's stderr is a pipe mpirun may have closed.
constexpr const char* kWatcher = R"sh(
alive() { [ "$(cat /proc/$1/comm 2>/dev/null)" = "$2" ]; }
i=0
while kill -0 "$1" 2>/dev/null; do
  i=$((i + 1)); [ "$i" -gt 600 ] && exit 0   # still running a minute later: not ours to end
  sleep 0.1
done
i=0
while alive "$2" "$4"; do
  i=$((i + 1)); [ "$i" -gt "$3" ] && break
  sleep 0.1
done
alive "$2" "$4" || exit 0
for signal in TERM TERM; do   # a second SIGTERM makes mpirun abort at once
  kill -"$signal" "$2" 2>/dev/null
  i=0
  while alive "$2" "$4"; do
    i=$((i + 1)); [ "$i" -gt 50 ] && break
    sleep 0.1
  done
done
exit 0
)sh";

}  // namespace

long mpirun_parent() {
    static const std::set<std::string> launchers = {"mpirun", "mpiexec", "orterun", "orted"};
    long parent = static_cast<long>(::getppid());
    return parent > 1 && launchers.count(command_name(parent)) ? parent : 0;
}

bool watch_mpirun_after_exit(std::chrono::seconds grace, std::string& why) {
    long launcher = mpirun_parent();
    if (launcher == 0) {
        why = "not started by mpirun";
        return false;
    }
    std::vector<std::string> args = {"/bin/sh",
                                     "-c",
                                     kWatcher,
                                     "ppmpi-mpirun-watch",
                                     std::to_string(::getpid()),
                                     std::to_string(launcher),
                                     std::to_string(grace.count() * 10),
                                     command_name(launcher)};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    for (int fd = 0; fd <= 2; ++fd)
        posix_spawn_file_actions_addopen(&files, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);
    // Nor any of this process's other descriptors (MPI's sockets to its daemon among them).
    posix_spawn_file_actions_addclosefrom_np(&files, 3);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Its own session: not in the process group mpirun signals when it ends this process.
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, "/bin/sh", &files, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&files);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) why = "posix_spawn of /bin/sh failed";
    return rc == 0;
}

}  // namespace ppmpi
