// Package devcluster runs the whole of Loom on one machine: a real etcd and
// an S3-compatible server inside this process, coordinator nodes and
// workers as child processes of the loom binary, synthetic datasets
// written into the embedded S3, and jobs followed with progress bars and
// evaluated when they end.
//
// `loom dev` is a layer of flags over Run; the process-level tests of
// cmd/loom start a Cluster directly and disrupt it (kill workers, kill the
// leader). Everything lives under one directory: the S3 objects, etcd, the
// coordinators' Raft logs and every process's log in logs/.
//
// The cluster's children run the loom binary named in Options.Bin, so this
// package starts no coordinator or worker code in-process; it talks to the
// coordinators over gRPC like any client.
package devcluster
