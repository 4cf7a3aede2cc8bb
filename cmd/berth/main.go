// Command berth is the whole of berth in one binary: the CLI, the daemon (`berth daemon`), the
// per-container shim (`berth shim`) and the container init (`berth init`, re-executed by the
// runtime inside new namespaces).
package main

import (
	"os"

	"github.com/berth-dev/berth/internal/cli"
	"github.com/berth-dev/berth/internal/runtime/linux"
)

func main() {
	// The container init runs before anything else: it must not start the CLI's machinery
	// inside a half-built container.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		linux.InitMain() // does not return
	}
	os.Exit(cli.Execute())
}
