/* pause: keeps a container running until SIGTERM/SIGINT, then exits 0 (what Kubernetes' pause
 * does). The pod test's client container runs it so that `podman exec` can run lookups in it.
 * Built statically with musl (musl-gcc -static) to run on `scratch`. */
#include <signal.h>
#include <unistd.h>

static void on_signal(int sig) {
    (void)sig;
    _exit(0);
}

int main(void) {
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    for (;;) pause();
}
