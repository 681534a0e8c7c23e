// Package worker is the agent that runs on every training machine: it
// registers in the worker registry with a lease, watches its assignment
// from the coordinator, and for each (job, generation) it is given builds
// the trainer run with a communicator connected to its ring peers, restores
// the last committed checkpoint (or initialises the stage), trains, reports
// progress every step, checkpoints at the manifest's interval and commits
// each checkpoint through the coordinator.
//
// # Life of an assignment
//
//	coordinator ──WatchAssignment──▶ Agent ── Decide(current, next) ──▶ keep | stop | start | stop+start
//	                                   │
//	                                   ├─ generation: comm (grpctransport on --listen) + trainer.NewRun(restore)
//	                                   │    loop: Step → report progress → vote (drain?) → PlanStep → checkpoint
//	                                   │    a stale generation (FAILED_PRECONDITION) or a new one aborts the
//	                                   │    transport first, so no rank blocks in a collective
//	                                   └─ drain (ctx cancelled, SIGTERM): finish the step, checkpoint, commit,
//	                                        revoke the lease, return nil within DrainTimeout
//
// The decisions are pure functions (decide.go): what a new assignment does
// to the running generation (Decide), and what follows a step (PlanStep).
// Everything with I/O sits behind small interfaces declared here, each with
// a hand-written fake in the tests: Coordinator (the Workers gRPC service;
// GRPCCoordinator fails over between coordinator addresses), Registrar (the
// etcd registry; cmd/loom adapts coordinator/registry, which this package
// may not import), Trainer (trainer.Run; NewTrainer wraps trainer.NewRun)
// and the object stores (shard.ObjectStore).
//
// # Drain
//
// SIGTERM cancels the context given to Run. A rank that is training finishes
// its current step; the ranks then agree, with a one-element all-reduce
// after every step (the "stop vote"), that one of them is draining, so that
// every rank stops at the same step: rank 0 writes and commits a checkpoint
// of that step, the draining rank revokes its lease and exits, and the
// coordinator starts a new generation from that checkpoint without it. An
// idle agent exits at once. DrainTimeout bounds it all; past it, Run aborts
// the generation and returns an error.
//
// # Observability
//
// Handler serves /healthz (the process is up), /readyz (registered and
// connected to a coordinator) and /metrics (Prometheus: step time, tokens/s,
// loss per term, samples consumed, checkpoint durations, generation). Every
// step is logged at debug level with the ids of the samples this rank
// trained on (sample_ids), which is the audit log the resume tests check:
// no sample twice, none skipped.
package worker
