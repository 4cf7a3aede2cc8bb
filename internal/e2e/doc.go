// Package e2e holds berth's end-to-end tests: they build the berth binary, start `berth daemon`
// on temporary roots and drive it with `berth` and the real `docker` CLI. It has no non-test code
// and must not be imported.
package e2e
