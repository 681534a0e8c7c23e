// Package buildinfo reports what the running loom binary is: module
// version, VCS revision, Go version, platform, and the CPU features that the
// kernels dispatch on. `loom version` prints it; workers include it in their
// registration so that a mixed-version cluster is visible.
package buildinfo
