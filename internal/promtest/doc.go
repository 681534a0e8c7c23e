// Package promtest runs Prometheus's own tools against Loom in tests:
// promtool's metrics linter on a /metrics body, and the Prometheus server
// itself (Debian's prometheus package, which ships both binaries).
//
// Without the binaries a test skips with a message, except in CI
// (CI=true), where it fails: .ci/run installs the package.
package promtest
