// Command berth is the whole of berth in one binary: the CLI, the daemon (`berth daemon`), the
// per-container shim (`berth shim`) and the container init (`berth init`, re-executed by the
// runtime inside new namespaces).
package main

import (
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/internal/cli"
	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/tini"
)

func main() {
	// The container init runs before anything else: it must not start the CLI's machinery
	// inside a half-built container.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		linux.InitMain() // does not return
	}
	// Mounted into containers as /sbin/docker-init for `--init`.
	if filepath.Base(os.Args[0]) == filepath.Base(container.InitPath) {
		os.Exit(tini.Main(os.Args[1:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "shim" {
		os.Exit(cli.ShimMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "shim-helper" {
		os.Exit(cli.ShimHelperMain(os.Args[2:]))
	}
	os.Exit(cli.Execute())
}
