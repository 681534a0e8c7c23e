package gemm

// active is the micro-kernel Sgemm uses: the fastest this CPU runs.
var active = available()[0]
