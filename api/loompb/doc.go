// Package loompb is the generated protobuf and gRPC code for api/loom.proto:
// the Jobs service (submit, get, list, cancel, resume, watch), the Workers
// service (assignment stream, progress, checkpoint commit) and the Cluster
// service coordinator nodes use to forward writes to the leader.
// Do not edit the .pb.go files; change api/loom.proto and run `make proto`.
package loompb
