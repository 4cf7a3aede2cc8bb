// Command testbin is a stand-in for cmd/berth used by tests and bench/oci-validation: it
// dispatches "init" to linux.InitMain and everything else to the `oci` command, exactly as the
// real main does, so the runtime can be driven like runc without the rest of berth.
package main

import (
	"os"

	"github.com/berth-dev/berth/internal/runtime/linux"
	"github.com/berth-dev/berth/internal/runtime/linux/ocicmd"
	"github.com/spf13/cobra"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		linux.InitMain()
	}
	root := &cobra.Command{Use: "berth", SilenceUsage: true}
	root.AddCommand(ocicmd.NewCommand())
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}
