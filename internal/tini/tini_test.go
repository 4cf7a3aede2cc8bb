package tini

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary re-executes itself as the init when asked to.
func TestMain(m *testing.M) {
	if os.Getenv("TINI_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func runInit(t *testing.T, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--"}, args...)...)
	cmd.Env = append(os.Environ(), "TINI_TEST_MAIN=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

func TestExitCodePropagates(t *testing.T) {
	cmd, _ := runInit(t, "/bin/sh", "-c", "exit 7")
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("exit = %v", err)
	}
}

func TestSignalForwarded(t *testing.T) {
	cmd, out := runInit(t, "/bin/sh", "-c", "trap 'echo got-term; exit 3' TERM; while :; do sleep 0.05; done")
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(out.String(), "got-term") {
			t.Fatalf("exit = %v, output %q", err, out.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("init did not forward SIGTERM")
	}
}

func TestMissingCommand(t *testing.T) {
	cmd, _ := runInit(t, "/nonexistent/cmd")
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 127 {
		t.Fatalf("exit = %v", err)
	}
}
