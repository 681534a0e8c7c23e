// Package logtest routes the logs of servers started by tests (embedded
// etcd, Raft clusters) to t.Log, so they show only for failing or -v tests,
// and drops lines logged after the test ended instead of panicking the test
// binary.
package logtest
