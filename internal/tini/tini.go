// Package tini is the init process `--init` puts at PID 1 of a container: it starts the
// container's command as its only child, forwards every signal it receives to that child, reaps
// every process that gets orphaned into the container, and exits with the child's status. It is
// the berth binary itself, bind-mounted read-only at /sbin/docker-init and told apart by its
// name, so it must not touch anything but its own process tree.
package tini

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Main runs the init with the command after an optional "--" and returns the exit code.
func Main(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "docker-init: no command given")
		return 2
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "docker-init: %s: %v\n", args[0], err)
		return 127
	}
	// Catch everything catchable before the child exists, so no signal is lost.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Foreground: isTerminal(0), Ctty: 0},
	})
	if err != nil {
		// Without a controlling terminal, Foreground is invalid: retry plainly.
		pid, err = syscall.ForkExec(path, args, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Setpgid: true}})
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "docker-init: exec %s: %v\n", path, err)
		if err == syscall.EACCES {
			return 126
		}
		return 127
	}
	for {
		sig := <-sigs
		if sig == syscall.SIGCHLD {
			if code, done := reap(pid); done {
				return code
			}
			continue
		}
		if s, ok := sig.(syscall.Signal); ok {
			_ = syscall.Kill(pid, s)
		}
	}
}

// reap collects every exited process; done reports that the child itself exited.
func reap(child int) (code int, done bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return code, done
		}
		if pid == child {
			done = true
			switch {
			case ws.Exited():
				code = ws.ExitStatus()
			case ws.Signaled():
				code = 128 + int(ws.Signal())
			}
		}
	}
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
