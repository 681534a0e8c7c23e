package coordinator

import "github.com/loomtrain/loom/api/loompb"

// rule is who may call one RPC, and whether it writes through Raft.
type rule struct {
	roles    []Role
	mutating bool
}

var (
	jobRoles    = []Role{RoleUser, RoleAdmin}
	workerRoles = []Role{RoleWorker}
	nodeRoles   = []Role{RoleNode}
	// A follower forwards an admin's membership change to the leader with
	// its own (node) credentials; nodes can already change the
	// configuration through Join and the Raft log, so this grants them
	// nothing new.
	adminRoles = []Role{RoleAdmin, RoleNode}
)

// rules is the authorisation table: every RPC the server answers, and the
// roles that may call it. A method missing here is refused to everyone.
// Workers are further limited to the worker ID their certificate names
// (authorize) and, through the state machine, to that worker's job.
var rules = map[string]rule{
	loompb.Jobs_SubmitJob_FullMethodName:  {jobRoles, true},
	loompb.Jobs_GetJob_FullMethodName:     {jobRoles, false},
	loompb.Jobs_ListJobs_FullMethodName:   {jobRoles, false},
	loompb.Jobs_CancelJob_FullMethodName:  {jobRoles, true},
	loompb.Jobs_ResumeJob_FullMethodName:  {jobRoles, true},
	loompb.Jobs_WatchJob_FullMethodName:   {jobRoles, false},
	loompb.Jobs_GetMetrics_FullMethodName: {jobRoles, false},

	loompb.Workers_WatchAssignment_FullMethodName:  {workerRoles, false},
	loompb.Workers_ReportProgress_FullMethodName:   {workerRoles, false},
	loompb.Workers_CommitCheckpoint_FullMethodName: {workerRoles, true},
	loompb.Workers_ReportFailure_FullMethodName:    {workerRoles, true},

	loompb.Cluster_Apply_FullMethodName: {nodeRoles, true},
	loompb.Cluster_Join_FullMethodName:  {nodeRoles, true},

	membersMethod:      {adminRoles, false},
	addVoterMethod:     {adminRoles, true},
	removeServerMethod: {adminRoles, true},
	commitIndexMethod:  {nodeRoles, false},
}

// Methods lists every RPC in the authorisation table (for tests and docs).
func Methods() []string {
	out := make([]string, 0, len(rules))
	for m := range rules {
		out = append(out, m)
	}
	return out
}

// Allowed reports whether role may call method.
func Allowed(method string, role Role) bool {
	r, ok := rules[method]
	if !ok {
		return false
	}
	for _, x := range r.roles {
		if x == role {
			return true
		}
	}
	return false
}
