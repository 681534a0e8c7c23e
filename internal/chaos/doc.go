// Package chaos is Loom's fault-injection suite: a seeded, reproducible
// schedule of faults played against a cluster of real processes (three
// `loom coordinator` nodes, two or more `loom worker`s, `loom etcd` and
// versitygw), after which the job's final weights must be bit-identical to
// an uninterrupted run's and its sample log must show every step's samples
// exactly once.
//
// The package keeps the decisions apart from the I/O:
//
//   - Plan turns a seed and Options into a []Fault: which kind of fault,
//     at which step, against which process, for how long. It is a pure
//     function (same seed, same schedule) with unit tests of its own.
//   - Proxy is a TCP proxy that can partition (cut and refuse every
//     connection) and delay the bytes it forwards; the suite puts one on
//     every Raft link between coordinators and one in front of every
//     worker's ring listener.
//   - S3Proxy is an HTTP proxy in front of the S3 server that answers a
//     share of requests with 5xx errors, slows some down and resets the
//     connection of others.
//   - Report gathers, per fault kind, the faults injected and survived
//     and the time each took to recover, and prints them as a table.
//
// The process-level run is TestChaos (chaos_test.go). `make test` runs its
// short form (one seed, a few faults, a tiny model); `make chaos` runs the
// long form (-chaos.long: several seeds, every fault kind). docs/chaos.md
// says what each fault does and records measured figures.
package chaos
