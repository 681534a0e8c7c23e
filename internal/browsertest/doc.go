// Package browsertest drives a headless chromium from Go tests (through
// chromedp) for the web UI's tests: one browser per test binary, a tab per
// test. A test without chromium installed is skipped with the reason,
// except in CI (CI=true), where it fails: .ci/run installs Debian's
// chromium.
package browsertest
