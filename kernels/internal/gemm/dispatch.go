package gemm

// active is the micro-kernel Sgemm uses.
var active = &goKernel

// available lists the micro-kernels this CPU can run, fastest first.
func available() []*kernel { return []*kernel{&goKernel} }
