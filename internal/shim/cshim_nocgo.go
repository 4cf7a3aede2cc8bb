//go:build !cgo

package shim

// cShimBuilt is false without cgo: there is no C steady state to hand over to.
const cShimBuilt = false
