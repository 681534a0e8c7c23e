package grpctransport

import (
	"math/bits"
	"sync"
)

// dirtyPool is the mem.BufferPool the server reads frames into. Unlike
// gRPC's default pool it does not zero a buffer it hands out again: every
// byte of a frame buffer is overwritten by the frame before anyone reads it,
// and zeroing 16 KiB per DATA frame was ~5% of a gRPC all-reduce's CPU.
// Buffers are pooled by power-of-two capacity from 2^minClass to 2^maxClass
// bytes; others are allocated and dropped.
type dirtyPool struct {
	classes [maxClass - minClass + 1]sync.Pool
}

const (
	minClass = 8  // 256 B
	maxClass = 24 // 16 MiB
)

// class is the smallest power-of-two exponent whose size holds n bytes.
func class(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

func (p *dirtyPool) Get(n int) *[]byte {
	c := max(class(n), minClass)
	if c > maxClass {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c-minClass].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<minClass || c > 1<<maxClass || c&(c-1) != 0 {
		return // not one of ours
	}
	p.classes[class(c)-minClass].Put(b)
}
