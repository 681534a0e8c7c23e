package kernels

import (
	"errors"
	"fmt"
)

// ShapeError is the panic value of every op called with shapes it cannot
// take. It names the op and both operand shapes, e.g.
//
//	kernels: Matmul: shapes [2 3] and [4 5]: inner dimensions 3 and 4 differ
//
// Shape mistakes are programmer errors, so ops panic (as gonum/mat does);
// code that builds graphs from user input can turn them into errors with
// Catch.
type ShapeError struct {
	Op   string // the op, e.g. "Matmul"
	A, B []int  // the operand shapes; B is nil for one-operand ops
	Msg  string // what is wrong
}

func (e *ShapeError) Error() string {
	if e.B == nil {
		return fmt.Sprintf("kernels: %s: shape %v: %s", e.Op, e.A, e.Msg)
	}
	return fmt.Sprintf("kernels: %s: shapes %v and %v: %s", e.Op, e.A, e.B, e.Msg)
}

// Catch runs f and returns the *ShapeError it panicked with, or nil. Other
// panics propagate.
func Catch(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			var se *ShapeError
			if e, ok := r.(error); ok && errors.As(e, &se) {
				err = se
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}

func shapeErr(op string, a, b []int, format string, args ...any) *ShapeError {
	return &ShapeError{Op: op, A: append([]int{}, a...), B: cloneOrNil(b), Msg: fmt.Sprintf(format, args...)}
}

func cloneOrNil(b []int) []int {
	if b == nil {
		return nil
	}
	return append([]int{}, b...)
}
