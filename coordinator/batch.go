package coordinator

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// progressBatch is the outcome of one flush of batched progress reports.
// Reports that carry step metrics wait for it: the worker holds on to its
// metrics until the batch is in the replicated state, so that none is
// lost when a coordinator dies between accepting a report and applying it.
type progressBatch struct {
	done chan struct{}
	err  error // set before done is closed
}

func newProgressBatch() *progressBatch { return &progressBatch{done: make(chan struct{})} }

func (b *progressBatch) finish(err error) {
	b.err = err
	close(b.done)
}

// wait returns nil once the batch is applied, or an Unavailable error
// when it was not (or not within limit): the caller should report again.
func (b *progressBatch) wait(ctx context.Context, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-b.done:
		if b.err != nil {
			return status.Errorf(codes.Unavailable, "progress batch not applied: %v", b.err)
		}
		return nil
	case <-t.C:
		return status.Errorf(codes.Unavailable, "progress batch not applied within %s", limit)
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}
