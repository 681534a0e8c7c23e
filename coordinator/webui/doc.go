// Package webui is the coordinator's web UI: the pages at / on every
// coordinator's HTTP port (next to /metrics and /healthz) and the JSON
// endpoints under /api/ that they read.
//
// Everything is embedded in the binary (embed.FS: one HTML page, one
// script, one stylesheet; charts are SVG drawn by the script) and works
// offline: the Content-Security-Policy admits nothing but this origin. The
// page polls the JSON endpoints every two seconds.
//
// The pages:
//
//   - Cluster: the Raft servers (leader, term, suffrage, API addresses) as
//     this node sees them, and every worker with its state and job.
//   - Jobs: every job with its state, stage, progress and ETA.
//   - Job: the stage timeline, loss curves per term and stage (from the
//     metric history, coordinator/history.go), throughput and where step
//     time goes (compute, communication, data), generations and restarts
//     with their causes, checkpoints, evaluation results (history series
//     named eval/...), and the tail of each worker's log when the
//     coordinator can read it (Config.WorkerLogs), or where to find it.
//
// Every answer comes from this node's replica of the state (coordinator.FSM),
// so any node serves the UI, leader or not.
//
// When the coordinator has a user (or admin) token, the UI asks for it once
// and keeps a cookie derived from it (an HMAC, not the token; HttpOnly,
// SameSite=Strict); API clients may send "Authorization: Bearer TOKEN"
// instead. A coordinator authenticated by certificates alone (no tokens)
// cannot check a browser on its plain-HTTP port and answers 403.
package webui
