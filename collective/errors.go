package collective

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors, checked with errors.Is. Transports return ErrClosed and
// ErrPeerClosed; Comm wraps every failure in an *OpError.
var (
	// ErrClosed: the local transport or communicator was closed.
	ErrClosed = errors.New("collective: closed")
	// ErrPeerClosed: the peer closed its side or its connection broke.
	ErrPeerClosed = errors.New("collective: peer closed the connection")
	// ErrTimeout: the peer sent nothing (or accepted nothing) within the timeout.
	ErrTimeout = errors.New("collective: peer silent")
	// ErrMismatch: a message carried another job, generation, operation,
	// sequence number, step or length than this rank expected.
	ErrMismatch = errors.New("collective: message mismatch")
	// ErrAborted: an earlier operation failed and the communicator is unusable.
	ErrAborted = errors.New("collective: communicator aborted")
	// ErrTooLarge: a message is larger than the receive buffer.
	ErrTooLarge = errors.New("collective: message larger than receive buffer")
)

// OpError is the error every Comm operation returns. It names the operation
// (kind and sequence number within the generation), this rank, and the peer
// whose message or connection failed (-1 when no single peer is at fault).
type OpError struct {
	Job        string
	Generation uint64
	Op         Op
	Seq        uint64
	Rank       int
	Peer       int
	Dir        string // "send to" or "recv from"
	Timeout    time.Duration
	Err        error
}

func (e *OpError) Error() string {
	where := ""
	if e.Peer >= 0 {
		where = fmt.Sprintf(": %s rank %d", e.Dir, e.Peer)
	}
	msg := e.Err.Error()
	if errors.Is(e.Err, ErrTimeout) && e.Timeout > 0 {
		msg = fmt.Sprintf("%v (nothing for %v)", e.Err, e.Timeout)
	}
	return fmt.Sprintf("collective: %s #%d (job %q generation %d) on rank %d%s: %s",
		e.Op, e.Seq, e.Job, e.Generation, e.Rank, where, msg)
}

func (e *OpError) Unwrap() error { return e.Err }
