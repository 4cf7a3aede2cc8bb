package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// poolJob is what the daemon sends a spare shim (`berth shim --pool`, see internal/daemon's
// shimpool.go): the arguments a fresh shim gets on its command line.
type poolJob struct {
	Args []string `json:"args"`
}

// awaitPoolJob is a spare shim's wait: it blocks until the daemon sends a job on fd 3 (a
// socket; EOF means the daemon went away and the spare should exit), then makes the process
// look like a shim started for that container: its directory as working directory and its
// shim.log as stdout and stderr. The shim reports on the same fd 3 as a fresh shim does on its
// ready pipe.
func awaitPoolJob() ([]string, error) {
	// Raw reads: an *os.File for fd 3 here would close it when collected, and ShimMain reports
	// on fd 3 later.
	var line []byte
	buf := make([]byte, 4096)
	for len(line) == 0 || line[len(line)-1] != '\n' {
		n, err := unix.Read(3, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("wait for a job: %w", err)
		}
		if n == 0 {
			return nil, errors.New("wait for a job: the daemon went away")
		}
		line = append(line, buf[:n]...)
		if len(line) > 1<<20 {
			return nil, errors.New("job too long")
		}
	}
	var job poolJob
	if err := json.Unmarshal(line, &job); err != nil {
		return nil, fmt.Errorf("job: %w", err)
	}
	dir := ""
	for i, a := range job.Args {
		if a == "--dir" && i+1 < len(job.Args) {
			dir = job.Args[i+1]
		}
	}
	if dir == "" {
		return nil, errors.New("job: no --dir")
	}
	if err := os.Chdir(dir); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "shim.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(int(logf.Fd()), fd, 0); err != nil {
			return nil, fmt.Errorf("redirect output to shim.log: %w", err)
		}
	}
	return job.Args, nil
}
