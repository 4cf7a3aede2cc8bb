//go:build !cgo

package cli

// fastRunBuilt is false without cgo: every run goes through the Go client.
const fastRunBuilt = false
