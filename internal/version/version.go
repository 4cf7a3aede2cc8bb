// Package version holds berth's version strings, set at link time by the Makefile.
package version

// These are overridden with -ldflags "-X github.com/berth-dev/berth/internal/version.Version=...".
var (
	Version   = "0.1.0-dev"
	GitCommit = "unknown"
	BuildTime = ""
)

// APIVersion is the highest Docker Engine API version berth speaks; MinAPIVersion the lowest.
const (
	APIVersion    = "1.51"
	MinAPIVersion = "1.24"
)
