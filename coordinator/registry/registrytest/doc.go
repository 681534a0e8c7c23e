// Package registrytest is the conformance suite every registry.Registry
// implementation passes (Fake and Etcd): RunConformance with a Harness.
package registrytest
